/*-------------------------------------------------------------------------
 *
 * queue_sql.c
 *	  The removal queue's SQL side: enqueueing and cancelling.
 *
 * Enqueue functions validate like the synchronous ones and insert into
 * atlas_removal_queue (as its owner); an identical removal that is still
 * queued or running (the same operation, ids, server and enqueuing role)
 * is returned instead of a new one.  At commit a
 * transaction callback sets the worker's latch; a rollback leaves nothing
 * behind and wakes nobody.  The ids a transaction enqueued are kept until
 * its end, so that its own atlas_process_queue() never runs them: nothing
 * runs before the enqueuing transaction commits.  A row keeps who
 * requested it, and why (reason, ticket); with atlas_users.require_approval
 * it waits as 'awaiting_approval' until another role approves it
 * (queue_guard.c).
 *
 *-------------------------------------------------------------------------
 */
#include "queue/queue.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(atlas_cancel_removal);

/* ids this transaction enqueued, which its own atlas_process_queue skips */
static List *xact_enqueued = NIL;	/* of int64 *, in TopTransactionContext */
static bool wake_at_commit = false;
static bool xact_callback_registered = false;

/* Wake the worker at commit; forget this transaction's ids at its end. */
static void
queue_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit)
				atlas_shmem_wake_worker();
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_at_commit = false;
			xact_enqueued = NIL;	/* its memory goes with the transaction */
			break;
		default:
			break;
	}
}

/* The ids this transaction enqueued, as an int8[] Datum. */
Datum
atlas_enqueued_here(void)
{
	int			n = list_length(xact_enqueued);
	Datum	   *ids = palloc(sizeof(Datum) * Max(n, 1));
	ListCell   *lc;
	int			i = 0;

	foreach(lc, xact_enqueued)
		ids[i++] = Int64GetDatum(*(int64 *) lfirst(lc));
	return PointerGetDatum(construct_array(ids, n, INT8OID, 8, true, TYPALIGN_DOUBLE));
}

/* Wake the worker when this transaction commits. */
void
atlas_queue_wake_at_commit(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(queue_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;
}

typedef struct EnqueueArgs
{
	const char *operation;
	char	  **ids;			/* by AtlasIdKind */
	const char *username;		/* instead of the user id, resolved when run */
	const char *enqueued_by;	/* the session's user */
	const char *enqueued_as;	/* the role whose user mapping the removal uses */
	Oid			enqueued_as_oid;
	const char *server;			/* the server it uses, or NULL: the settings */
	Oid			server_oid;
	const char *reason;			/* evidence, or NULL */
	const char *ticket;
	int64		id;
} EnqueueArgs;

/*
 * The SQL that inserts a queue row, or finds the identical pending one:
 * the same operation, ids, server and enqueuing role (by OID).  An
 * install older than the library has no server and enqueued_as (1.3) or
 * no OIDs of them (1.4).
 */
static char *
enqueue_sql(Oid nsp, bool by_name)
{
	char	   *q = atlas_ext_rel(nsp, "atlas_removal_queue");
	Oid			rel = get_relname_relid("atlas_removal_queue", nsp);
	bool		v14 = get_attnum(rel, "server") != InvalidAttrNumber;
	bool		v15 = get_attnum(rel, "server_oid") != InvalidAttrNumber;
	bool		evidence = get_attnum(rel, "reason") != InvalidAttrNumber;
	const char *same = v15 ? ", coalesce(server_oid, 0::oid), coalesce(enqueued_as_oid, 0::oid)" : "";

	/* an install older than 1.5 cannot keep a row waiting for approval */
	if (atlas_require_approval && !evidence)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("atlas_users.require_approval is on, but the atlas_users tables are older than the library"),
				 errdetail("Nothing was queued."),
				 errhint("Run ALTER EXTENSION atlas_users UPDATE.")));

	/* the unique index on pending rows decides whether this one exists */
	return psprintf("WITH ins AS ("
					" INSERT INTO %s (enqueued_by, operation, org_id, group_id, team_id, %s%s%s%s)"
					" VALUES ($1, $2, $3, $4, $5, $6%s%s%s)"
					" ON CONFLICT (operation, coalesce(org_id, ''), coalesce(group_id, ''),"
					"  coalesce(team_id, ''), %s%s) WHERE status IN ('queued', 'running')%s"
					" DO NOTHING RETURNING id)"
					" SELECT id, true FROM ins"
					" UNION ALL"
					" SELECT id, false FROM %s"
					" WHERE operation = $2 AND coalesce(org_id, '') = coalesce($3, '')"
					" AND coalesce(group_id, '') = coalesce($4, '')"
					" AND coalesce(team_id, '') = coalesce($5, '') AND %s%s"
					" AND status IN ('queued', 'running')"
					" LIMIT 1", q,
					by_name ? "username" : "user_id",
					v14 ? ", server, enqueued_as" : "", v15 ? ", server_oid, enqueued_as_oid" : "",
					evidence ? ", requested_by, reason, ticket, status" : "",
					v14 ? ", $7, $8" : "", v15 ? ", $9, $10" : "",
					evidence ? ", $1, $11, $12, $13" : "",
					by_name ? "lower(username)" : "user_id", same,
					by_name ? " AND user_id IS NULL" : "",
					q,
					by_name ? "user_id IS NULL AND lower(username) = lower($6)" : "user_id = $6",
					v15 ? " AND coalesce(server_oid, 0::oid) = coalesce($9, 0::oid)"
					" AND coalesce(enqueued_as_oid, 0::oid) = $10" : "");
}

/* Insert a queue row, or find the identical one still pending. */
static void
enqueue_spi(Oid nsp, void *arg)
{
	EnqueueArgs *a = (EnqueueArgs *) arg;
	Oid			types[13] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	OIDOID, OIDOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[13];
	char		nulls[13];
	bool		by_name = (a->ids[ATLAS_ID_USER] == NULL);
	char	   *sql = enqueue_sql(nsp, by_name);
	int			try;

	values[0] = atlas_text_or_null(a->enqueued_by, nulls, 0);
	values[1] = atlas_text_or_null(a->operation, nulls, 1);
	values[2] = atlas_text_or_null(a->ids[ATLAS_ID_ORG], nulls, 2);
	values[3] = atlas_text_or_null(a->ids[ATLAS_ID_GROUP], nulls, 3);
	values[4] = atlas_text_or_null(a->ids[ATLAS_ID_TEAM], nulls, 4);
	values[5] = atlas_text_or_null(by_name ? a->username : a->ids[ATLAS_ID_USER], nulls, 5);
	values[6] = atlas_text_or_null(a->server, nulls, 6);
	values[7] = atlas_text_or_null(a->enqueued_as, nulls, 7);
	values[8] = ObjectIdGetDatum(a->server_oid);
	nulls[8] = OidIsValid(a->server_oid) ? ' ' : 'n';
	values[9] = ObjectIdGetDatum(a->enqueued_as_oid);
	nulls[9] = ' ';
	values[10] = atlas_text_or_null(a->reason, nulls, 10);
	values[11] = atlas_text_or_null(a->ticket, nulls, 11);
	values[12] = atlas_text_or_null(atlas_require_approval ? "awaiting_approval" : "queued", nulls, 12);

	/* a concurrent enqueuer's row may commit after our snapshot: look again */
	for (try = 0; try < 3; try++)
	{
		bool		isnull;

		if (SPI_execute_with_args(sql, 13, types, values, nulls, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not enqueue a removal");
		if (SPI_processed == 1)
		{
			a->id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 1, &isnull));
			return;
		}
		CommandCounterIncrement();
	}
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not enqueue the removal: an identical one changed state concurrently"),
			 errhint("Retry the statement.")));
}

/*
 * Enqueue a validated removal of a user given by id (ids[ATLAS_ID_USER])
 * or, when that is NULL, by username, with its reason and ticket (or
 * NULL); returns its queue id.
 */
int64
atlas_enqueue(AtlasOperation op, char **ids, const char *username, const char *reason,
			  const char *ticket)
{
	EnqueueArgs a;
	MemoryContext old;

	AtlasTarget *target;

	atlas_require_writable("queue Atlas user removals");
	/* the credentials it will use must be usable now: refuse before queueing */
	target = atlas_target_for(ids[ATLAS_ID_ORG], GetUserId(), false);
	a.server = target->server;
	a.server_oid = target->server ? target->server_oid : InvalidOid;
	atlas_target_wipe(target);
	a.operation = atlas_operation_name(op);
	a.ids = ids;
	a.username = username;
	a.reason = reason;
	a.ticket = ticket;
	a.enqueued_by = GetUserNameFromId(GetSessionUserId(), false);
	a.enqueued_as = GetUserNameFromId(GetUserId(), false);
	a.enqueued_as_oid = GetUserId();
	a.id = 0;
	atlas_as_table_owner("atlas_removal_queue", enqueue_spi, &a);

	atlas_queue_wake_at_commit();
	old = MemoryContextSwitchTo(TopTransactionContext);
	xact_enqueued = lappend(xact_enqueued, palloc(sizeof(int64)));
	*(int64 *) llast(xact_enqueued) = a.id;
	MemoryContextSwitchTo(old);
	return a.id;
}

/* Enqueue what the arguments name: the ids, then the user id or username. */
static Datum
enqueue_from_args(FunctionCallInfo fcinfo, AtlasOperation op, bool by_username)
{
	char	   *ids[ATLAS_MAX_IDS];
	int			argno = atlas_ids_arg(fcinfo, 0, op, !by_username, ids);
	char	   *username = by_username ? atlas_username_arg(fcinfo, argno, "username") : NULL;
	char	   *reason;
	char	   *ticket;

	atlas_evidence_args(fcinfo, by_username ? argno + 1 : argno, &reason, &ticket);
	PG_RETURN_INT64(atlas_enqueue(op, ids, username, reason, ticket));
}

/*
 * atlas_enqueue_remove_project_user(group_id, user_id, reason, ticket),
 * atlas_enqueue_remove_org_user(org_id, user_id, reason, ticket),
 * atlas_enqueue_remove_team_user(org_id, team_id, user_id, reason, ticket),
 * and the same with _by_username and a username in place of the user id
 */
ATLAS_SQL_FUNCTION(atlas_enqueue_remove_project_user, enqueue_from_args,
				   ATLAS_OP_REMOVE_PROJECT_USER, false)
ATLAS_SQL_FUNCTION(atlas_enqueue_remove_org_user, enqueue_from_args,
				   ATLAS_OP_REMOVE_ORG_USER, false)
ATLAS_SQL_FUNCTION(atlas_enqueue_remove_team_user, enqueue_from_args,
				   ATLAS_OP_REMOVE_TEAM_USER, false)
ATLAS_SQL_FUNCTION(atlas_enqueue_remove_project_user_by_username, enqueue_from_args,
				   ATLAS_OP_REMOVE_PROJECT_USER, true)
ATLAS_SQL_FUNCTION(atlas_enqueue_remove_org_user_by_username, enqueue_from_args,
				   ATLAS_OP_REMOVE_ORG_USER, true)
ATLAS_SQL_FUNCTION(atlas_enqueue_remove_team_user_by_username, enqueue_from_args,
				   ATLAS_OP_REMOVE_TEAM_USER, true)

typedef struct CancelArgs
{
	int64		id;
	bool		cancelled;
	char	   *status;			/* the row's status when not cancelled */
	MemoryContext cxt;			/* where status goes */
} CancelArgs;

/* Cancel a queued row, or learn its status. */
static void
cancel_spi(Oid nsp, void *arg)
{
	CancelArgs *a = (CancelArgs *) arg;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(a->id)};
	char	   *q = atlas_ext_rel(nsp, "atlas_removal_queue");

	if (SPI_execute_with_args(psprintf("UPDATE %s SET status = 'cancelled', finished_at = clock_timestamp()"
									   " WHERE id = $1 AND status IN ('queued', 'held', 'awaiting_approval')"
									   " RETURNING id", q),
							  1, types, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not cancel a removal");
	a->cancelled = (SPI_processed == 1);
	if (a->cancelled)
		return;
	if (SPI_execute_with_args(psprintf("SELECT status FROM %s WHERE id = $1", q),
							  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read a queued removal");
	if (SPI_processed == 1)
		a->status = MemoryContextStrdup(a->cxt,
										SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
}

/* atlas_cancel_removal(id): true if a queued removal was cancelled */
Datum
atlas_cancel_removal(PG_FUNCTION_ARGS)
{
	CancelArgs	a = {0};

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("id must not be null")));
	a.id = PG_GETARG_INT64(0);
	a.cxt = CurrentMemoryContext;
	atlas_require_writable("cancel a queued removal");
	atlas_as_table_owner("atlas_removal_queue", cancel_spi, &a);
	if (!a.cancelled && a.status == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("queued removal " INT64_FORMAT " does not exist", a.id)));
	if (!a.cancelled)
		ereport(NOTICE,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("removal " INT64_FORMAT " was not cancelled: its status is %s", a.id, a.status),
				 errdetail("Only removals that are still queued, held or awaiting approval can be cancelled.")));
	PG_RETURN_BOOL(a.cancelled);
}
