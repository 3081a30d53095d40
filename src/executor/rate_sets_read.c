/*-------------------------------------------------------------------------
 *
 * rate_sets_read.c
 *	  Reading the rate-limit sets Atlas publishes (listRateLimits), through
 *	  the listing engine, between runs.
 *
 * On the first call to an Atlas host (and again once
 * atlas_users.rate_limit_sets_ttl has passed), GET /api/atlas/v2/rateLimits
 * (listRateLimits, 2025-03-12) is read for the paths the extension calls,
 * and rate_sets.c keeps what it said (shared by every process when the
 * library is preloaded).  It is read outside a run only: a run in progress
 * uses what is known.  A session's calls get it through the executor's
 * hook for calls added outside a run (installed here, from _PG_init); the
 * queue's drains read it between their runs (queue_run.c).  This file
 * sits above the executor: the executor never calls into it but through
 * that hook.
 *
 *-------------------------------------------------------------------------
 */
#include "executor/executor_int.h"

#include "lib/stringinfo.h"

/* The listing's query: the paths the extension calls. */
static char *
paths_query(void)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < atlas_endpoint_count(); i++)
		if (strncmp(atlas_endpoint_at(i)->route, "/api/atlas/v2/", 14) == 0)
			appendStringInfo(&buf, "endpointPath=%s&", http_escape(atlas_endpoint_at(i)->route));
	return buf.data;
}

/*
 * Read listRateLimits from a target's host, when it was never read or
 * longer ago than atlas_users.rate_limit_sets_ttl (0: never read), and no
 * other process claimed the read.
 */
void
atlas_rate_sets_refresh(AtlasTarget *target)
{
	AtlasListing l;
	AtlasListing *arr[1] = {&l};
	AtlasRateSetsFresh *fresh;

	if (!atlas_rate_sets_claim(target))
		return;
	fresh = atlas_rate_sets_fresh();
	memset(&l, 0, sizeof(l));
	l.op = ATLAS_OP_LIST_RATE_LIMITS;
	l.target = target;
	l.query = paths_query();
	l.item = atlas_rate_sets_item;
	l.arg = fresh;
	atlas_list_many(arr, 1);
	atlas_rate_sets_store(target, l.end == ATLAS_LISTING_OK, fresh);
	if (l.end != ATLAS_LISTING_OK)
		ereport(DEBUG1,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg_internal("atlas_users: listRateLimits at %s: %s; pacing by the table and headers",
								 target->host, l.failed ? atlas_call_message(l.failed)
								 : l.problem ? l.problem : "failed")));
}

/* The executor's hook: a call is added outside any run. */
static void
before_run(AtlasTarget *target, AtlasCall *call)
{
	if (call->op != ATLAS_OP_LIST_RATE_LIMITS)
		atlas_rate_sets_refresh(target);
}

/* Install the hook; from _PG_init. */
void
atlas_rate_sets_read_init(void)
{
	atlas_before_run_hook = before_run;
}
