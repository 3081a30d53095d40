/*-------------------------------------------------------------------------
 *
 * queue_run.c
 *	  Running queued removals, for the worker and atlas_process_queue():
 *	  claiming rows, resolving usernames, recording each row's result,
 *	  and putting back rows a dead claimer left running.
 *
 * A drain is one executor run.  Its feed() claims due rows with FOR
 * UPDATE SKIP LOCKED, so the worker and any number of
 * atlas_process_queue() callers never share a row; a row named by
 * username first runs its lookup (a listing), whose last page adds the
 * removal.  Each row is recorded as soon as its removal finishes: done,
 * failed, or queued again with the backoff of the executor's retry
 * policy, never before Retry-After.  A user already absent counts as
 * done (removal is idempotent, and an earlier attempt may have removed
 * them).  Every attempt writes an audit row.
 * Nothing is sent for a claimed row that the removal budget does not
 * admit: it is held instead (queue_guard.c).
 * Atlas's rate-limit sets (listRateLimits) are read between runs only: a
 * row claimed for a host whose sets are due (its first row, or the
 * atlas_users.rate_limit_sets_ttl passed) waits, claimed, while the run
 * ends; the sets are read, and a new run starts it and claims on.
 *
 * Each row runs as its enqueuer: its lookup and its removal use the
 * credentials queue_claim.c resolves for it (its server, by OID, and its
 * enqueuing role's user mapping), never the worker's own.  A row that
 * cannot run fails with a detail that says why; an error while a row's
 * call is added or its lookup's page is read fails that row only (in a
 * subtransaction), so one row never stops the worker nor holds others
 * back.
 *
 * The worker claims rows in a transaction of their own that commits
 * 'running' before it calls Atlas, so that a crash leaves visible
 * 'running' rows; atlas_queue_recover() puts rows whose claimer is gone
 * back in the queue.  It keeps claiming while rows finish, so one slow
 * row never holds the others back, and records each finished row (with
 * its audit row) in the same transaction.  atlas_process_queue() claims
 * once and runs inside its caller's transaction, so its rows are only
 * locked: if the caller rolls back, they are simply queued again.
 *
 *-------------------------------------------------------------------------
 */
#include "queue/queue.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/resowner.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(atlas_process_queue);

/* rows the worker claims at once, at most */
#define WORKER_CLAIM_MAX 32

/*
 * Run one step of a row (adding its calls to the run, reading its
 * lookup's page) in a subtransaction: an error fails that row, with the
 * error in its detail, and never the drain.
 */
static void
row_step(Drain *d, QueueRow *row, RowStep step, void *arg)
{
	ErrorData  *edata = atlas_queue_row_try(d, row, step, arg, row->cxt);

	if (edata == NULL || row->removal->outcome != ATLAS_OUTCOME_NONE)
		return;
	row->removal->answer.detail = MemoryContextStrdup(row->cxt, edata->message);
	atlas_run_finish_unsent(d->run, row->removal, ATLAS_OUTCOME_FAILED);
}

/* Row step: start a claimed row, its lookup or its removal. */
static void
start_row(Drain *d, QueueRow *row, void *arg pg_attribute_unused())
{
	AtlasCall  *r = row->removal;
	AtlasOperation lookup_op;

	if (r->user_id != NULL)
	{
		atlas_run_add(d->run, r);
		return;
	}
	/* a team member is found among the org's users, with their teams */
	lookup_op = (r->op == ATLAS_OP_REMOVE_PROJECT_USER)
		? ATLAS_OP_LIST_GROUP_USERS : ATLAS_OP_LIST_ORG_USERS;
	atlas_username_listing(&row->listing, lookup_op, r->org_id, r->group_id,
						   r->username, &row->found);
	row->listing.owner = row;
	/* the lookup runs with the row's own credentials, as its removal */
	row->listing.target = r->target;
	/* one slow lookup must not hold its row, or the worker, for long */
	row->listing.timeout_ms = atlas_worker_lookup_timeout_ms;
	atlas_run_add(d->run, atlas_listing_first(&row->listing));
}

/* Claim rows and start them (or hold them), in the current transaction. */
static void
claim(Drain *d, int n)
{
	ListCell   *lc;
	int			claimed;
	List	   *held = NIL;

	atlas_queue_claim(d, n);
	claimed = list_length(d->claimed_rows);
	d->claimed += claimed;
	d->active += claimed;
	d->claim_again = (claimed == n);
	foreach(lc, d->claimed_rows)
	{
		QueueRow   *row = (QueueRow *) lfirst(lc);
		AtlasCall  *r = row->removal;
		MemoryContext old = CurrentMemoryContext;

		if (!atlas_queue_admit(row->removal, row->id, &held))
		{
			/* held by the removal budget: nothing is sent for it */
			(void) atlas_queue_row_done(d, row);
			MemoryContextDelete(row->cxt);
			d->claimed--;
			d->active--;
			continue;
		}
		atlas_queue_row_target(d, row);
		if (row->unusable == NULL && atlas_rate_sets_due(r->target))
		{
			/* its host's sets are read before the next run: it waits */
			MemoryContextSwitchTo(d->cxt);
			d->deferred = lappend(d->deferred, row);
			MemoryContextSwitchTo(old);
			continue;
		}
		MemoryContextSwitchTo(row->cxt);
		if (row->unusable == NULL)
			row_step(d, row, start_row, NULL);
		else
		{
			/* a grant or a mapping may be mended: retried, unless it is gone */
			r->answer.config_failed = !row->unusable_for_good;
			r->answer.detail = row->unusable;
			atlas_run_finish_unsent(d->run, r, ATLAS_OUTCOME_FAILED);
		}
		MemoryContextSwitchTo(old);
	}
	list_free(d->claimed_rows);
	d->claimed_rows = NIL;
	if (held != NIL)
		atlas_queue_hold(held);
}

/* The worker: claim in a transaction of its own, committing 'running'. */
static void
claim_committed(Drain *d, int n)
{
	MemoryContext old = CurrentMemoryContext;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	claim(d, n);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(old);
}

/* Run hook between transfers: claim more rows when there is room. */
static bool
drain_feed(AtlasRun *run pg_attribute_unused(), void *arg, int free_slots, long *wait_ms)
{
	Drain	   *d = (Drain *) arg;
	bool		wake;
	ListCell   *lc;

	if (!d->worker)
	{
		if (d->claimed == 0 && d->max_items > 0)
			claim(d, d->max_items);
		return false;
	}

	foreach(lc, d->finished_rows)
		MemoryContextDelete((MemoryContext) lfirst(lc));
	list_free(d->finished_rows);
	d->finished_rows = NIL;
	atlas_audit_drain_handed();

	wake = MyLatch->is_set;
	if (wake)
		ResetLatch(MyLatch);
	if (d->next_due != 0 && d->next_due <= GetCurrentTimestamp())
	{
		d->next_due = 0;
		wake = true;
	}
	*wait_ms = 50;
	/* rows wait for a host's rate-limit sets: no more claims in this run */
	if (d->deferred != NIL)
		return d->active > list_length(d->deferred);
	if (free_slots > 0 && (wake || d->claim_again || d->claimed == 0))
		claim_committed(d, Min(free_slots, WORKER_CLAIM_MAX));
	return d->active > list_length(d->deferred) || (d->claim_again && d->deferred == NIL);
}

/* Record a row's result; runs as the queue table's owner. */
static void
record_spi(Oid nsp, void *arg)
{
	QueueRow   *row = (QueueRow *) arg;
	AtlasCall  *call = row->removal;
	static SPIPlanPtr plan = NULL;
	static Oid	plan_nsp = InvalidOid;
	Oid			types[6] = {INT8OID, TEXTOID, INT4OID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', 'n'};
	const char *status = "failed";
	int64		delay_ms;

	if (plan == NULL || plan_nsp != nsp)
	{
		plan = SPI_prepare(psprintf("UPDATE %s SET status = $2, http_status = $3, error_code = $4,"
									" detail = $5, next_attempt_at = coalesce($6, next_attempt_at),"
									" finished_at = CASE WHEN $2 IN ('done', 'failed') THEN clock_timestamp() END,"
									" claimed_by = NULL, claimed_at = NULL WHERE id = $1",
									atlas_ext_rel(nsp, "atlas_removal_queue")), 6, types);
		if (plan == NULL)
			elog(ERROR, "could not prepare the queue update");
		SPI_keepplan(plan);
		plan_nsp = nsp;
	}
	if (call->outcome == ATLAS_OUTCOME_SUCCEEDED || call->outcome == ATLAS_OUTCOME_ALREADY_ABSENT)
		status = "done";
	else if (row->attempts < atlas_max_attempts &&
			 atlas_retry_due(&call->answer, row->attempts, true, &delay_ms))
	{
		status = "queued";
		values[5] = TimestampTzGetDatum(TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay_ms));
		nulls[5] = ' ';
	}
	values[0] = Int64GetDatum(row->id);
	values[1] = CStringGetTextDatum(status);
	values[2] = Int32GetDatum((int32) call->answer.http_status);
	nulls[2] = (call->answer.http_status == 0) ? 'n' : ' ';
	values[3] = atlas_text_or_null(call->answer.error_code, nulls, 3);
	values[4] = atlas_text_or_null(atlas_call_detail(call), nulls, 4);
	if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record a queued removal's result");
	row->requeued_for = (nulls[5] == ' ') ? DatumGetTimestampTz(values[5]) : 0;
}

/* Finish a row named by username once its lookup is over. */
static void
lookup_finished(Drain *d, QueueRow *row)
{
	AtlasCall  *r = row->removal;
	AtlasListing *l = &row->listing;
	ListCell   *lc;

	if (l->failed)
	{
		/* the lookup's call and its memory go once it is reported */
		if (l->end == ATLAS_LISTING_FAILED)
			atlas_answer_copy(&r->answer, &l->failed->answer);
		r->answer.detail = psprintf("Looking up the username failed: %s%s%s",
									l->problem ? l->problem : atlas_call_message(l->failed),
									atlas_call_detail(l->failed) ? " " : "",
									atlas_call_detail(l->failed) ? atlas_call_detail(l->failed) : "");
		atlas_run_finish_unsent(d->run, r, ATLAS_OUTCOME_FAILED);
		return;
	}
	if (row->found && r->op == ATLAS_OP_REMOVE_TEAM_USER)
	{
		/* only a member of the team has something to remove */
		char	   *id = NULL;

		foreach(lc, row->found->team_ids)
			if (strcmp((char *) lfirst(lc), r->team_id) == 0)
				id = row->found->id;
		r->user_id = id;
	}
	else if (row->found)
		r->user_id = row->found->id;
	if (r->user_id != NULL)
	{
		atlas_run_add(d->run, r);
		return;
	}
	r->answer.detail = psprintf("No Atlas user has the username %s there: nothing to remove.",
								r->username);
	atlas_run_finish_unsent(d->run, r, ATLAS_OUTCOME_ALREADY_ABSENT);
}

/* Row step: a page of a row's lookup arrived; read it, then go on. */
static void
lookup_page(Drain *d, QueueRow *row, void *arg)
{
	AtlasCall  *next = atlas_listing_page_done(&row->listing, (AtlasCall *) arg);

	if (next != NULL)
		atlas_run_add(d->run, next);
	else
		lookup_finished(d, row);
}

/* Run hook: a call of a row finished (a lookup page, or its removal). */
static void
drain_finished(AtlasRun *run pg_attribute_unused(), AtlasCall *call, void *arg)
{
	Drain	   *d = (Drain *) arg;
	QueueRow   *row = (QueueRow *) call->owner;
	MemoryContext old = MemoryContextSwitchTo(row->cxt);

	if (call != row->removal)
		row_step(d, row, lookup_page, call);
	else
	{
		atlas_as_table_owner("atlas_removal_queue", record_spi, row);
		if (row->requeued_for != 0 && (d->next_due == 0 || row->requeued_for < d->next_due))
			d->next_due = row->requeued_for;
		d->active--;
		/* its server's share has room again: rows held back may be claimed */
		if (atlas_queue_row_done(d, row))
			d->claim_again = true;
		if (d->worker)
		{
			MemoryContextSwitchTo(d->cxt);
			d->finished_rows = lappend(d->finished_rows, row->cxt);
		}
	}
	MemoryContextSwitchTo(old);
}

/*
 * Between runs: read the rate-limit sets of the hosts rows waited for,
 * then run those rows (and, for the worker, the rows it claims next) in a
 * new run.
 */
static void
run_deferred(Drain *d, const AtlasRunSpec *spec)
{
	List	   *rows = d->deferred;
	MemoryContext old = CurrentMemoryContext;
	ListCell   *lc;

	d->deferred = NIL;
	foreach(lc, rows)
		atlas_rate_sets_refresh(((QueueRow *) lfirst(lc))->removal->target);
	d->run = atlas_run_create(spec);
	if (d->worker)
	{
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
	}
	foreach(lc, rows)
	{
		QueueRow   *row = (QueueRow *) lfirst(lc);

		MemoryContextSwitchTo(row->cxt);
		row_step(d, row, start_row, NULL);
	}
	if (d->worker)
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	MemoryContextSwitchTo(old);
	list_free(rows);
	atlas_run_execute(d->run);
}

/*
 * Drain the queue: the worker (outside any transaction) while rows are
 * due, or atlas_process_queue() (up to max_items rows, in the caller's
 * transaction).  Returns how many rows were claimed.
 */
int
atlas_queue_drain(bool worker, int max_items)
{
	Drain		d;
	AtlasRunSpec spec;

	memset(&d, 0, sizeof(d));
	d.worker = worker;
	d.max_items = max_items;
	d.cxt = AllocSetContextCreate(CurrentMemoryContext, "atlas_users drain",
								  ALLOCSET_DEFAULT_SIZES);
	memset(&spec, 0, sizeof(spec));
	spec.concurrency = atlas_max_concurrency;
	spec.max_retries = 0;		/* the queue retries with next_attempt_at */
	spec.audit = worker ? ATLAS_AUDIT_WORKER : ATLAS_AUDIT_SESSION;
	spec.forget_calls = worker;
	spec.finished = drain_finished;
	spec.feed = drain_feed;
	spec.arg = &d;
	d.concurrency = spec.concurrency;
	d.run = atlas_run_create(&spec);
	PG_TRY();
	{
		atlas_run_execute(d.run);
		while (d.deferred != NIL)
			run_deferred(&d, &spec);
	}
	PG_FINALLY();
	{
		atlas_queue_wipe_targets(&d);
	}
	PG_END_TRY();
	MemoryContextDelete(d.cxt);
	return d.claimed;
}

/* atlas_process_queue(max_items): drain up to max_items due rows in this session */
Datum
atlas_process_queue(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_GETARG_INT32(0) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_items must be a positive integer")));
	/*
	 * Fail on the server's state and a refused setting before touching any
	 * row; each row then runs with its own credentials (a server's, or the
	 * settings'), so an install with credentials only in servers drains too.
	 */
	atlas_require_writable("run queued Atlas user removals");
	atlas_settings_check();
	PG_RETURN_INT32(atlas_queue_drain(false, PG_GETARG_INT32(0)));
}
