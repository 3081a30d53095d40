/*-------------------------------------------------------------------------
 *
 * queue_guard.c
 *	  Queue rows that wait for a person: rows the removal budget held,
 *	  and rows awaiting two-person approval.
 *
 * When the removal budget (guard.c) refuses a claimed row, the row is
 * held ('held'), and with it every other queued, unapproved row of the
 * same organization (or project): the budget is spent, so they would be
 * held too, and the announcement can give their number.  The first held
 * burst of an organization in a window is announced once: a WARNING in
 * the server log and a NOTIFY on the channel atlas_users_guard, whose
 * payload is a JSON object {"org_id", "group_id", "held", "budget",
 * "window_s"}.  Nothing is sent for a held row.
 *
 * atlas_release_held() queues held rows again, approved by the releasing
 * role (they count toward the budget but are not limited by it, and
 * their audit rows carry approved_by); atlas_cancel_held() cancels them,
 * with an audit row each.  atlas_approve_removal() approves a row
 * awaiting approval (atlas_users.require_approval), never by the role
 * that requested it.
 *
 *-------------------------------------------------------------------------
 */
#include "queue/queue.h"

#include <cjson/cJSON.h>

#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

PG_FUNCTION_INFO_V1(atlas_release_held);
PG_FUNCTION_INFO_V1(atlas_cancel_held);
PG_FUNCTION_INFO_V1(atlas_approve_removal);

/* the channel of the held-burst NOTIFY */
#define GUARD_CHANNEL "atlas_users_guard"

typedef struct HoldArgs
{
	AtlasHeldRow *first;		/* a held row of the scope */
	Datum		ids;			/* int8[] of the claimed rows held in it */
	int64		held;			/* rows held there now */
} HoldArgs;

/* Are two strings, either maybe NULL, equal? */
static bool
same_or_null(const char *a, const char *b)
{
	return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

/* Does the queue table have a column (older versions lack some)? */
static bool
queue_has(Oid nsp, const char *column)
{
	return get_attnum(get_relname_relid("atlas_removal_queue", nsp), column) != InvalidAttrNumber;
}

/*
 * Hold the claimed rows of one scope, and its other queued unapproved
 * rows; count its held rows.  An install older than 1.5 has no 'held':
 * its rows are queued again for a minute later.
 */
static void
hold_spi(Oid nsp, void *arg)
{
	HoldArgs   *a = (HoldArgs *) arg;
	char	   *q = atlas_ext_rel(nsp, "atlas_removal_queue");
	bool		v15 = queue_has(nsp, "approved_by");
	Oid			types[3] = {INT8ARRAYOID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	bool		isnull;

	values[0] = a->ids;
	values[1] = atlas_text_or_null(a->first->org_id, nulls, 1);
	values[2] = atlas_text_or_null(a->first->group_id, nulls, 2);
	if (SPI_execute_with_args(psprintf("UPDATE %s SET status = %s,"
									   " attempts = attempts - CASE WHEN id = ANY ($1) THEN 1 ELSE 0 END,"
									   " claimed_by = NULL, claimed_at = NULL%s,"
									   " detail = 'Held by the removal budget: nothing was sent. Release it with atlas_release_held(), or cancel it with atlas_cancel_held().'"
									   " WHERE id = ANY ($1) OR id IN (SELECT id FROM %s"
									   "  WHERE status = 'queued' AND %s"
									   "  AND org_id IS NOT DISTINCT FROM $2"
									   "  AND ($2 IS NOT NULL OR group_id = $3) FOR UPDATE SKIP LOCKED)",
									   q, v15 ? "'held'" : "'queued'",
									   v15 ? "" : ", next_attempt_at = clock_timestamp() + interval '1 minute'",
									   q, v15 ? "approved_by IS NULL" : "false"),
							  3, types, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not hold queued removals");
	if (SPI_execute_with_args(psprintf("SELECT count(*) FROM %s WHERE status = %s"
									   " AND org_id IS NOT DISTINCT FROM $2 AND ($2 IS NOT NULL OR group_id = $3)"
									   " AND $1 IS NOT NULL",
									   q, v15 ? "'held'" : "'queued'"),
							  3, types, values, nulls, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not count held removals");
	a->held = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Announce a held burst: a WARNING, and a NOTIFY with a JSON payload. */
static void
announce(const AtlasHeldRow *h, int64 held)
{
	int			used;
	int			budget = atlas_guard_budget(h->org_id, h->group_id, &used);
	cJSON	   *o = cJSON_CreateObject();
	char	   *text;
	char	   *payload;

	cJSON_AddItemToObject(o, "org_id", h->org_id ? cJSON_CreateString(h->org_id) : cJSON_CreateNull());
	cJSON_AddItemToObject(o, "group_id", h->org_id ? cJSON_CreateNull() : cJSON_CreateString(h->group_id));
	cJSON_AddNumberToObject(o, "held", (double) held);
	cJSON_AddNumberToObject(o, "budget", budget);
	cJSON_AddNumberToObject(o, "window_s", atlas_guard_window_s);
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (text == NULL)
		elog(ERROR, "out of memory");
	payload = pstrdup(text);
	cJSON_free(text);
	ereport(WARNING,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("atlas_users held " INT64_FORMAT " queued removals for %s %s: past the removal budget",
					held, h->org_id ? "organization" : "project", h->org_id ? h->org_id : h->group_id),
			 errdetail("%d people were removed there in the last %d s; the budget is %d. Nothing was sent for the held rows.",
					   used, atlas_guard_window_s, budget),
			 errhint("Check why so many removals were requested; then run atlas_release_held('%s') to send them or atlas_cancel_held('%s') to cancel them.",
					 h->org_id ? h->org_id : h->group_id, h->org_id ? h->org_id : h->group_id)));
	Async_Notify(GUARD_CHANNEL, payload);
}

/*
 * Does the removal budget (guard.c) admit a claimed row's removal?  One
 * approved or released is counted, never limited.  One that is not
 * admitted is added to *held, for atlas_queue_hold().
 */
bool
atlas_queue_admit(AtlasCall *r, int64 id, List **held)
{
	AtlasHeldRow *h;

	r->guard_counted = true;
	if (atlas_guard_admit(r->org_id, r->group_id, r->user_id ? r->user_id : r->username,
						  r->approved_by == NULL))
		return true;
	h = palloc(sizeof(AtlasHeldRow));
	h->id = id;
	h->org_id = r->org_id ? pstrdup(r->org_id) : NULL;
	h->group_id = r->group_id ? pstrdup(r->group_id) : NULL;
	*held = lappend(*held, h);
	return false;
}

/*
 * Hold the claimed rows the budget refused (of AtlasHeldRow *), in the
 * claiming transaction; announce each scope's burst once per window.
 */
void
atlas_queue_hold(List *held)
{
	ListCell   *lc;
	ListCell   *lc2;

	foreach(lc, held)
	{
		AtlasHeldRow *h = (AtlasHeldRow *) lfirst(lc);
		HoldArgs	a;
		Datum	   *ids = palloc(sizeof(Datum) * list_length(held));
		int			n = 0;

		if (h->id == 0)
			continue;			/* held with an earlier row of its scope */
		foreach(lc2, held)
		{
			AtlasHeldRow *o = (AtlasHeldRow *) lfirst(lc2);

			if (o->id != 0 && same_or_null(o->org_id, h->org_id) &&
				(h->org_id != NULL || same_or_null(o->group_id, h->group_id)))
			{
				ids[n++] = Int64GetDatum(o->id);
				if (o != h)
					o->id = 0;
			}
		}
		a.first = h;
		a.ids = PointerGetDatum(construct_array(ids, n, INT8OID, 8, true, TYPALIGN_DOUBLE));
		atlas_as_table_owner("atlas_removal_queue", hold_spi, &a);
		if (atlas_guard_should_warn(h->org_id, h->group_id))
			announce(h, a.held);
	}
}

/*
 * Cancel, as duplicates, the waiting rows (status, scope) whose identical
 * removal is pending already, or waits too with a smaller id: queued
 * again, they would break the one-pending-row rule (the unique index).
 * scope is an SQL condition on the row "w".
 */
static void
cancel_duplicates(const char *q, const char *status, const char *scope, int nargs,
				  Oid *types, Datum *values)
{
	const char *same = "p.operation = w.operation AND coalesce(p.org_id, '') = coalesce(w.org_id, '')"
		" AND coalesce(p.group_id, '') = coalesce(w.group_id, '')"
		" AND coalesce(p.team_id, '') = coalesce(w.team_id, '')"
		" AND coalesce(p.user_id, '') = coalesce(w.user_id, '')"
		" AND lower(coalesce(p.username, '')) = lower(coalesce(w.username, ''))";

	if (SPI_execute_with_args(psprintf("UPDATE %s w SET status = 'cancelled', finished_at = clock_timestamp(),"
									   " detail = 'An identical removal is queued already: nothing was sent for this one.'"
									   " WHERE w.status = '%s' AND %s AND EXISTS (SELECT 1 FROM %s p WHERE %s"
									   "  AND (p.status IN ('queued', 'running') OR (p.status = w.status AND p.id < w.id)))",
									   q, status, scope, q, same),
							  nargs, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not cancel duplicate removals");
}

typedef struct HeldArgs
{
	char	   *scope;			/* org_id, or the project's group_id */
	int			max_rows;		/* 0: all */
	bool		cancel;
	const char *role;			/* who releases or cancels */
	int64		rows;			/* rows released or cancelled */
} HeldArgs;

/* Release or cancel the held rows of a scope; runs as the table's owner. */
static void
held_spi(Oid nsp, void *arg)
{
	HeldArgs   *a = (HeldArgs *) arg;
	char	   *q = atlas_ext_rel(nsp, "atlas_removal_queue");
	char	   *audit = atlas_ext_rel(nsp, "atlas_removal_audit");
	Oid			types[3] = {TEXTOID, INT4OID, TEXTOID};
	Datum		values[3];
	char	   *pick;
	char	   *sql;

	values[0] = CStringGetTextDatum(a->scope);
	values[1] = Int32GetDatum(a->max_rows > 0 ? a->max_rows : INT_MAX);
	values[2] = CStringGetTextDatum(a->role);
	pick = psprintf("SELECT id FROM %s WHERE status = 'held' AND coalesce(org_id, group_id) = $1"
					" ORDER BY id LIMIT $2 FOR UPDATE", q);
	if (!a->cancel)
		cancel_duplicates(q, "held", "coalesce(w.org_id, w.group_id) = $1", 3, types, values);
	if (!a->cancel)
		sql = psprintf("UPDATE %s SET status = 'queued', approved_by = $3, approved_at = clock_timestamp(),"
					   " next_attempt_at = clock_timestamp(), detail = NULL WHERE id IN (%s)", q, pick);
	else
		sql = psprintf("WITH c AS (UPDATE %s SET status = 'cancelled', finished_at = clock_timestamp(),"
					   "  detail = 'Held by the removal budget; cancelled by ' || $3 || ' with atlas_cancel_held().'"
					   "  WHERE id IN (%s) RETURNING *)"
					   " INSERT INTO %s (at, requested_by, executed_as, operation, org_id, group_id, team_id,"
					   "  user_id, username, outcome, detail, duration_ms, attempts, server, queue_id, reason, ticket)"
					   " SELECT clock_timestamp(), coalesce(c.requested_by, c.enqueued_by), $3, c.operation,"
					   "  c.org_id, c.group_id, c.team_id, c.user_id, c.username, 'cancelled', c.detail, 0, 0,"
					   "  c.server, c.id, c.reason, c.ticket FROM c", q, pick, audit);
	if (SPI_execute_with_args(sql, 3, types, values, NULL, false, 0) < 0)
		elog(ERROR, "could not release or cancel held removals");
	a->rows = (int64) SPI_processed;
}

/* The org_id (or project id) argument of the held-row functions. */
static char *
scope_arg(FunctionCallInfo fcinfo)
{
	return atlas_id_arg(fcinfo, 0, "org_id");
}

/* Refuse on an install older than 1.5, which has no held rows. */
static void
require_15(Oid nsp, void *arg pg_attribute_unused())
{
	if (!queue_has(nsp, "approved_by"))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the atlas_users tables are older than the library"),
				 errhint("Run ALTER EXTENSION atlas_users UPDATE.")));
}

/* atlas_release_held(org_id, max_rows): send held rows; returns how many */
Datum
atlas_release_held(PG_FUNCTION_ARGS)
{
	HeldArgs	a = {0};

	a.scope = scope_arg(fcinfo);
	if (!PG_ARGISNULL(1) && PG_GETARG_INT32(1) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be a positive integer or NULL")));
	a.max_rows = PG_ARGISNULL(1) ? 0 : PG_GETARG_INT32(1);
	a.role = GetUserNameFromId(GetUserId(), false);
	atlas_require_writable("release held removals");
	atlas_as_table_owner("atlas_removal_queue", require_15, NULL);
	atlas_as_table_owner("atlas_removal_queue", held_spi, &a);
	if (a.rows > 0)
		atlas_queue_wake_at_commit();
	atlas_guard_burst_over(a.scope);
	PG_RETURN_INT32((int32) a.rows);
}

/* atlas_cancel_held(org_id): cancel every held row there; returns how many */
Datum
atlas_cancel_held(PG_FUNCTION_ARGS)
{
	HeldArgs	a = {0};

	a.scope = scope_arg(fcinfo);
	a.cancel = true;
	a.role = GetUserNameFromId(GetUserId(), false);
	atlas_require_writable("cancel held removals");
	atlas_as_table_owner("atlas_removal_queue", require_15, NULL);
	atlas_as_table_owner("atlas_removal_audit", held_spi, &a);
	atlas_guard_burst_over(a.scope);
	PG_RETURN_INT32((int32) a.rows);
}

typedef struct ApproveArgs
{
	int64		id;
	char	   *status;			/* the row's status, NULL: no such row */
	char	   *requested[3];	/* requested_by, enqueued_by, enqueued_as */
	bool		approve;		/* second pass: approve it */
	bool		approved;		/* it was (else: a duplicate, cancelled) */
	const char *role;
	MemoryContext cxt;
} ApproveArgs;

/* Read (and lock) a queue row, or approve it; runs as the table's owner. */
static void
approve_spi(Oid nsp, void *arg)
{
	ApproveArgs *a = (ApproveArgs *) arg;
	char	   *q = atlas_ext_rel(nsp, "atlas_removal_queue");
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(a->id), CStringGetTextDatum(a->role)};
	int			i;

	if (a->approve)
	{
		cancel_duplicates(q, "awaiting_approval", "w.id = $1", 2, types, values);
		if (SPI_execute_with_args(psprintf("UPDATE %s SET status = 'queued', approved_by = $2,"
										   " approved_at = clock_timestamp(), next_attempt_at = clock_timestamp()"
										   " WHERE id = $1 AND status = 'awaiting_approval'", q),
								  2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not approve a queued removal");
		a->approved = (SPI_processed == 1);
		return;
	}
	if (SPI_execute_with_args(psprintf("SELECT status, requested_by, enqueued_by, enqueued_as"
									   " FROM %s WHERE id = $1 FOR UPDATE", q),
							  1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read a queued removal");
	if (SPI_processed != 1)
		return;
	a->status = MemoryContextStrdup(a->cxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	for (i = 0; i < 3; i++)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 2);

		a->requested[i] = v ? MemoryContextStrdup(a->cxt, v) : NULL;
	}
}

/*
 * Is the current role (or the session's) one of the roles that requested
 * the row, or a member of one?  Then it may not approve it.
 */
static bool
is_requester(ApproveArgs *a)
{
	int			i;

	for (i = 0; i < 3; i++)
	{
		Oid			r = a->requested[i] ? get_role_oid(a->requested[i], true) : InvalidOid;

		if (!OidIsValid(r))
			continue;
		if (has_privs_of_role(GetUserId(), r) || has_privs_of_role(GetSessionUserId(), r))
			return true;
	}
	return false;
}

/* atlas_approve_removal(queue_id): approve a row awaiting approval */
Datum
atlas_approve_removal(PG_FUNCTION_ARGS)
{
	ApproveArgs a = {0};

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("queue_id must not be null")));
	a.id = PG_GETARG_INT64(0);
	a.cxt = CurrentMemoryContext;
	a.role = GetUserNameFromId(GetUserId(), false);
	atlas_require_writable("approve a queued removal");
	atlas_as_table_owner("atlas_removal_queue", require_15, NULL);
	atlas_as_table_owner("atlas_removal_queue", approve_spi, &a);
	if (a.status == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("queued removal " INT64_FORMAT " does not exist", a.id)));
	if (is_requester(&a))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" cannot approve removal " INT64_FORMAT ": it requested it",
						a.role, a.id),
				 errdetail("Removal " INT64_FORMAT " was requested by \"%s\"; a second person must approve it. Nothing was sent.",
						   a.id, a.requested[0] ? a.requested[0] : a.requested[1]),
				 errhint("Ask another role with EXECUTE on atlas_approve_removal() to approve it.")));
	if (strcmp(a.status, "awaiting_approval") != 0)
	{
		ereport(NOTICE,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("removal " INT64_FORMAT " was not approved: its status is %s", a.id, a.status),
				 errdetail("Only removals awaiting approval can be approved.")));
		PG_RETURN_BOOL(false);
	}
	a.approve = true;
	atlas_as_table_owner("atlas_removal_queue", approve_spi, &a);
	if (!a.approved)
	{
		ereport(NOTICE,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("removal " INT64_FORMAT " was cancelled instead: an identical removal is queued already",
						a.id)));
		PG_RETURN_BOOL(false);
	}
	atlas_queue_wake_at_commit();
	PG_RETURN_BOOL(true);
}
