/*-------------------------------------------------------------------------
 *
 * queue.c
 *	  The after-commit removal queue: enqueueing, cancelling, the HR
 *	  trigger helper, and processing batches of queued removals.
 *
 * Enqueue functions validate like the synchronous ones and insert into
 * atlas_removal_queue (as its owner); an identical removal that is still
 * queued or running is returned instead of a new one.  At commit a
 * transaction callback sets the worker's latch; a rollback leaves nothing
 * behind and wakes nobody.
 *
 * A batch claims due rows with FOR UPDATE SKIP LOCKED, so the worker and
 * any number of atlas_process_queue() callers never share a row, runs
 * them through the call engine at atlas_users.max_concurrency, and
 * records each result: done, failed, or queued again with exponential
 * backoff and jitter that never comes before Retry-After.  A user already
 * absent counts as done (removal is idempotent, and an earlier attempt may
 * have removed them).  Every attempt writes an audit row.
 *
 * The worker commits 'running' before it calls Atlas, so that a crash
 * leaves visible 'running' rows; atlas_queue_recover() puts rows whose
 * claimer is gone back in the queue.  atlas_process_queue() runs inside
 * its caller's transaction, so its rows are only locked: if the caller
 * rolls back, they are simply queued again.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas_users.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(atlas_enqueue_remove_project_user);
PG_FUNCTION_INFO_V1(atlas_enqueue_remove_org_user);
PG_FUNCTION_INFO_V1(atlas_enqueue_remove_team_user);
PG_FUNCTION_INFO_V1(atlas_cancel_removal);
PG_FUNCTION_INFO_V1(atlas_process_queue);
PG_FUNCTION_INFO_V1(atlas_offboard_trigger);

/* ids this transaction enqueued, which its own atlas_process_queue skips */
static List *xact_enqueued = NIL;	/* of int64, in TopTransactionContext */
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

/* The schema-qualified name of a relation of the extension. */
static char *
ext_rel(Oid nsp, const char *rel)
{
	return psprintf("%s.%s", quote_identifier(get_namespace_name(nsp)), rel);
}

/* the memory context of as_queue_owner's caller, for results that outlive SPI */
static MemoryContext caller_cxt = NULL;

/* Run fn(nsp, arg) with SPI connected, as the owner of the queue table. */
static void
as_queue_owner(AtlasOwnerFn fn, void *arg)
{
	caller_cxt = CurrentMemoryContext;
	atlas_as_table_owner("atlas_removal_queue", fn, arg);
}

/* ----------------------------------------------------------------
 * Enqueueing
 * ----------------------------------------------------------------
 */
typedef struct EnqueueArgs
{
	const char *operation;
	const char *org_id;
	const char *group_id;
	const char *team_id;
	const char *user_id;
	const char *username;		/* instead of user_id, resolved when run */
	const char *enqueued_by;
	int64		id;
} EnqueueArgs;

/* Datum of a text argument, or NULL. */
static Datum
text_arg(const char *s, char *nulls, int i)
{
	if (s == NULL)
	{
		nulls[i] = 'n';
		return (Datum) 0;
	}
	nulls[i] = ' ';
	return CStringGetTextDatum(s);
}

/* Insert a queue row, or find the identical one still pending. */
static void
enqueue_spi(Oid nsp, void *arg)
{
	EnqueueArgs *a = (EnqueueArgs *) arg;
	Oid			types[6] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[6];
	char		nulls[6];
	char	   *q = ext_rel(nsp, "atlas_removal_queue");
	char	   *sql;
	int			try;
	bool		by_name = (a->user_id == NULL);

	values[0] = text_arg(a->enqueued_by, nulls, 0);
	values[1] = text_arg(a->operation, nulls, 1);
	values[2] = text_arg(a->org_id, nulls, 2);
	values[3] = text_arg(a->group_id, nulls, 3);
	values[4] = text_arg(a->team_id, nulls, 4);
	values[5] = text_arg(by_name ? a->username : a->user_id, nulls, 5);

	/* the unique index on pending rows decides whether this one exists */
	sql = psprintf("WITH ins AS ("
				   " INSERT INTO %s (enqueued_by, operation, org_id, group_id, team_id, %s)"
				   " VALUES ($1, $2, $3, $4, $5, $6)"
				   " ON CONFLICT (operation, coalesce(org_id, ''), coalesce(group_id, ''),"
				   "  coalesce(team_id, ''), %s) WHERE status IN ('queued', 'running')%s"
				   " DO NOTHING RETURNING id)"
				   " SELECT id, true FROM ins"
				   " UNION ALL"
				   " SELECT id, false FROM %s"
				   " WHERE operation = $2 AND coalesce(org_id, '') = coalesce($3, '')"
				   " AND coalesce(group_id, '') = coalesce($4, '')"
				   " AND coalesce(team_id, '') = coalesce($5, '') AND %s"
				   " AND status IN ('queued', 'running')"
				   " LIMIT 1", q,
				   by_name ? "username" : "user_id",
				   by_name ? "lower(username)" : "user_id",
				   by_name ? " AND user_id IS NULL" : "",
				   q,
				   by_name ? "user_id IS NULL AND lower(username) = lower($6)" : "user_id = $6");

	/* a concurrent enqueuer's row may commit after our snapshot: look again */
	for (try = 0; try < 3; try++)
	{
		bool		isnull;

		if (SPI_execute_with_args(sql, 6, types, values, nulls, false, 0) != SPI_OK_SELECT)
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
 * Enqueue a validated removal of a user given by id or, with a NULL
 * user_id, by username; returns its queue id.
 */
static int64
enqueue(const char *operation, const char *org_id, const char *group_id,
		const char *team_id, const char *user_id, const char *username)
{
	EnqueueArgs a;
	MemoryContext old;

	a.operation = operation;
	a.org_id = org_id;
	a.group_id = group_id;
	a.team_id = team_id;
	a.user_id = user_id;
	a.username = username;
	a.enqueued_by = GetUserNameFromId(GetSessionUserId(), false);
	a.id = 0;
	as_queue_owner(enqueue_spi, &a);

	if (!xact_callback_registered)
	{
		RegisterXactCallback(queue_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;
	old = MemoryContextSwitchTo(TopTransactionContext);
	xact_enqueued = lappend(xact_enqueued, (void *) palloc(sizeof(int64)));
	*(int64 *) llast(xact_enqueued) = a.id;
	MemoryContextSwitchTo(old);
	return a.id;
}

/* atlas_enqueue_remove_project_user(group_id, user_id) */
Datum
atlas_enqueue_remove_project_user(PG_FUNCTION_ARGS)
{
	char	   *group_id = atlas_id_arg(fcinfo, 0, "group_id");
	char	   *user_id = atlas_id_arg(fcinfo, 1, "user_id");

	PG_RETURN_INT64(enqueue("remove_project_user", NULL, group_id, NULL, user_id, NULL));
}

/* atlas_enqueue_remove_org_user(org_id, user_id) */
Datum
atlas_enqueue_remove_org_user(PG_FUNCTION_ARGS)
{
	char	   *org_id = atlas_id_arg(fcinfo, 0, "org_id");
	char	   *user_id = atlas_id_arg(fcinfo, 1, "user_id");

	PG_RETURN_INT64(enqueue("remove_org_user", org_id, NULL, NULL, user_id, NULL));
}

/* atlas_enqueue_remove_team_user(org_id, team_id, user_id) */
Datum
atlas_enqueue_remove_team_user(PG_FUNCTION_ARGS)
{
	char	   *org_id = atlas_id_arg(fcinfo, 0, "org_id");
	char	   *team_id = atlas_id_arg(fcinfo, 1, "team_id");
	char	   *user_id = atlas_id_arg(fcinfo, 2, "user_id");

	PG_RETURN_INT64(enqueue("remove_team_user", org_id, NULL, team_id, user_id, NULL));
}

PG_FUNCTION_INFO_V1(atlas_enqueue_remove_project_user_by_username);
PG_FUNCTION_INFO_V1(atlas_enqueue_remove_org_user_by_username);
PG_FUNCTION_INFO_V1(atlas_enqueue_remove_team_user_by_username);

/* atlas_enqueue_remove_project_user_by_username(group_id, username) */
Datum
atlas_enqueue_remove_project_user_by_username(PG_FUNCTION_ARGS)
{
	char	   *group_id = atlas_id_arg(fcinfo, 0, "group_id");
	char	   *username = atlas_username_arg(fcinfo, 1, "username");

	PG_RETURN_INT64(enqueue("remove_project_user", NULL, group_id, NULL, NULL, username));
}

/* atlas_enqueue_remove_org_user_by_username(org_id, username) */
Datum
atlas_enqueue_remove_org_user_by_username(PG_FUNCTION_ARGS)
{
	char	   *org_id = atlas_id_arg(fcinfo, 0, "org_id");
	char	   *username = atlas_username_arg(fcinfo, 1, "username");

	PG_RETURN_INT64(enqueue("remove_org_user", org_id, NULL, NULL, NULL, username));
}

/* atlas_enqueue_remove_team_user_by_username(org_id, team_id, username) */
Datum
atlas_enqueue_remove_team_user_by_username(PG_FUNCTION_ARGS)
{
	char	   *org_id = atlas_id_arg(fcinfo, 0, "org_id");
	char	   *team_id = atlas_id_arg(fcinfo, 1, "team_id");
	char	   *username = atlas_username_arg(fcinfo, 2, "username");

	PG_RETURN_INT64(enqueue("remove_team_user", org_id, NULL, team_id, NULL, username));
}

/* ----------------------------------------------------------------
 * Cancelling
 * ----------------------------------------------------------------
 */
typedef struct CancelArgs
{
	int64		id;
	bool		cancelled;
	char	   *status;			/* the row's status when not cancelled */
} CancelArgs;

/* Cancel a queued row, or learn its status. */
static void
cancel_spi(Oid nsp, void *arg)
{
	CancelArgs *a = (CancelArgs *) arg;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(a->id)};
	char	   *q = ext_rel(nsp, "atlas_removal_queue");

	if (SPI_execute_with_args(psprintf("UPDATE %s SET status = 'cancelled', finished_at = clock_timestamp()"
									   " WHERE id = $1 AND status = 'queued' RETURNING id", q),
							  1, types, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not cancel a removal");
	a->cancelled = (SPI_processed == 1);
	if (a->cancelled)
		return;
	if (SPI_execute_with_args(psprintf("SELECT status FROM %s WHERE id = $1", q),
							  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read a queued removal");
	if (SPI_processed == 1)
		a->status = MemoryContextStrdup(caller_cxt,
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
	as_queue_owner(cancel_spi, &a);
	if (!a.cancelled && a.status == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("queued removal " INT64_FORMAT " does not exist", a.id)));
	if (!a.cancelled)
		ereport(NOTICE,
				(errcode(ERRCODE_WARNING),
				 errmsg("removal " INT64_FORMAT " was not cancelled: its status is %s", a.id, a.status),
				 errdetail("Only removals that are still queued can be cancelled.")));
	PG_RETURN_BOOL(a.cancelled);
}

/* ----------------------------------------------------------------
 * The HR trigger helper
 * ----------------------------------------------------------------
 */

/* Map a trigger's operation argument to the operation name. */
static const char *
trigger_operation(const char *arg)
{
	if (strcmp(arg, "project") == 0 || strcmp(arg, "remove_project_user") == 0)
		return "remove_project_user";
	if (strcmp(arg, "org") == 0 || strcmp(arg, "remove_org_user") == 0)
		return "remove_org_user";
	if (strcmp(arg, "team") == 0 || strcmp(arg, "remove_team_user") == 0)
		return "remove_team_user";
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid atlas_offboard_trigger operation \"%s\"", arg),
			 errhint("The first trigger argument is 'project', 'org' or 'team'.")));
	return NULL;
}

/*
 * atlas_offboard_trigger(): an AFTER ROW trigger that enqueues a removal.
 * Arguments: the operation ('project', 'org' or 'team'), then one
 * 'param=column' per id, reading the id from the row's column, or
 * 'param:=value' giving it literally; params are org_id, group_id,
 * team_id, user_id and username (an e-mail address, resolved when the
 * removal runs).  A row with neither a user id nor a username is skipped.
 */
Datum
atlas_offboard_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Trigger    *tg;
	HeapTuple	row;
	TupleDesc	desc;
	const char *operation;
	char	   *ids[5] = {NULL, NULL, NULL, NULL, NULL};
	static const char *const names[5] = {"org_id", "group_id", "team_id", "user_id", "username"};
	bool		needed[4];
	int			i;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("atlas_offboard_trigger() must be called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("atlas_offboard_trigger() must be an AFTER ... FOR EACH ROW trigger")));

	tg = td->tg_trigger;
	if (tg->tgnargs < 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("atlas_offboard_trigger() needs an operation and the id columns"),
				 errhint("Example: atlas_offboard_trigger('org', 'org_id:=5d40865dd5ec13e5f9e9d899', 'user_id=atlas_user_id')")));
	operation = trigger_operation(tg->tgargs[0]);
	row = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	desc = RelationGetDescr(td->tg_relation);

	for (i = 1; i < tg->tgnargs; i++)
	{
		char	   *arg = pstrdup(tg->tgargs[i]);
		char	   *eq = strchr(arg, '=');
		bool		literal;
		int			k;
		char	   *value;

		if (eq == NULL || eq == arg)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid atlas_offboard_trigger argument \"%s\"", tg->tgargs[i]),
					 errhint("Write 'param=column' or 'param:=value', with param one of org_id, group_id, team_id, user_id, username.")));
		literal = (eq[-1] == ':');
		if (literal)
			eq[-1] = '\0';
		*eq = '\0';
		for (k = 0; k < 5; k++)
			if (strcmp(arg, names[k]) == 0)
				break;
		if (k == 5)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown atlas_offboard_trigger parameter \"%s\"", arg),
					 errhint("Use org_id, group_id, team_id, user_id or username.")));
		if (literal)
			value = eq + 1;
		else
		{
			int			attno = SPI_fnumber(desc, eq + 1);

			if (attno <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("column \"%s\" of atlas_offboard_trigger argument \"%s\" does not exist in \"%s\"",
								eq + 1, tg->tgargs[i], RelationGetRelationName(td->tg_relation))));
			value = SPI_getvalue(row, desc, attno);
		}
		if (value != NULL && k == 4)
		{
			if (!atlas_is_username(value))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid username from atlas_offboard_trigger argument \"%s\"", tg->tgargs[i]),
						 errdetail("An Atlas username is an e-mail address; no removal was queued.")));
		}
		else if (value != NULL && !atlas_is_atlas_id(value))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid %s from atlas_offboard_trigger argument \"%s\"", arg, tg->tgargs[i]),
					 errdetail("An Atlas id is 24 lowercase hexadecimal characters (^[a-f0-9]{24}$); no removal was queued.")));
		ids[k] = value;
	}

	needed[0] = strcmp(operation, "remove_project_user") != 0;
	needed[1] = strcmp(operation, "remove_project_user") == 0;
	needed[2] = strcmp(operation, "remove_team_user") == 0;
	needed[3] = false;
	if (ids[3] == NULL && ids[4] == NULL)
	{
		/* this person has no Atlas user id or username: nothing to remove */
		return PointerGetDatum(NULL);
	}
	for (i = 0; i < 3; i++)
		if (needed[i] && ids[i] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("atlas_offboard_trigger(%s) has no %s", tg->tgargs[0], names[i]),
					 errhint("Add a '%s=column' or '%s:=value' trigger argument, or make the column non-null.",
							 names[i], names[i])));

	if (strcmp(operation, "remove_project_user") != 0 && ids[0] == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("atlas_offboard_trigger(%s) has no org_id", tg->tgargs[0])));
	enqueue(operation, needed[0] ? ids[0] : NULL, needed[1] ? ids[1] : NULL,
			needed[2] ? ids[2] : NULL, ids[3], ids[3] ? NULL : ids[4]);
	return PointerGetDatum(NULL);
}

/* ----------------------------------------------------------------
 * Processing batches
 * ----------------------------------------------------------------
 */
typedef struct BatchArgs
{
	int			max_items;
	bool		worker;
	int			n;
	int64	   *ids;
	int		   *attempts;		/* the row's attempts, this one included */
	char	  **usernames;		/* rows given by username, else NULL */
	AtlasCall **calls;
} BatchArgs;

/* Map an operation name from the queue to the engine's operation. */
static AtlasOperation
queue_operation(const char *name)
{
	if (strcmp(name, "remove_org_user") == 0)
		return ATLAS_OP_REMOVE_ORG_USER;
	if (strcmp(name, "remove_team_user") == 0)
		return ATLAS_OP_REMOVE_TEAM_USER;
	return ATLAS_OP_REMOVE_PROJECT_USER;
}

/* Claim up to max_items due rows and build their calls. */
static void
claim_spi(Oid nsp, void *arg)
{
	BatchArgs  *a = (BatchArgs *) arg;
	char	   *q = ext_rel(nsp, "atlas_removal_queue");
	Oid			types[2] = {INT4OID, INT8ARRAYOID};
	Datum		values[2];
	int			nskip = list_length(xact_enqueued);
	Datum	   *skip = palloc(sizeof(Datum) * Max(nskip, 1));
	ListCell   *lc;
	int			i = 0;
	uint64		r;
	MemoryContext old;

	foreach(lc, xact_enqueued)
		skip[i++] = Int64GetDatum(*(int64 *) lfirst(lc));
	values[0] = Int32GetDatum(a->max_items);
	values[1] = PointerGetDatum(construct_array(skip, nskip, INT8OID, 8, true, TYPALIGN_DOUBLE));

	if (SPI_execute_with_args(psprintf("UPDATE %s q SET status = 'running', attempts = q.attempts + 1,"
									   " claimed_by = pg_backend_pid(), claimed_at = clock_timestamp()"
									   " WHERE q.id IN (SELECT id FROM %s"
									   "  WHERE status = 'queued' AND next_attempt_at <= clock_timestamp()"
									   "  AND id <> ALL ($2)"
									   "  ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)"
									   " RETURNING q.id, q.operation, q.org_id, q.group_id, q.team_id,"
									   " q.user_id, q.attempts, q.username", q, q),
							  2, types, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not claim queued removals");

	/* copy the rows out of SPI's memory into the caller's */
	old = MemoryContextSwitchTo(caller_cxt);
	a->n = (int) SPI_processed;
	a->ids = palloc(sizeof(int64) * Max(a->n, 1));
	a->attempts = palloc(sizeof(int) * Max(a->n, 1));
	a->usernames = palloc0(sizeof(char *) * Max(a->n, 1));
	a->calls = palloc(sizeof(AtlasCall *) * Max(a->n, 1));
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		AtlasCall  *call;

		call = atlas_call_new(queue_operation(SPI_getvalue(tup, desc, 2)));
		call->org_id = SPI_getvalue(tup, desc, 3);
		call->group_id = SPI_getvalue(tup, desc, 4);
		call->team_id = SPI_getvalue(tup, desc, 5);
		call->user_id = SPI_getvalue(tup, desc, 6);
		a->ids[r] = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		a->attempts[r] = DatumGetInt32(SPI_getbinval(tup, desc, 7, &isnull));
		/*
		 * A queued removal wants the user gone: if Atlas says the user or
		 * membership is already absent, the row is done (an earlier attempt,
		 * maybe one whose transaction rolled back, may have removed it).  The
		 * 404 and its errorCode stay on the row and in the audit.
		 */
		call->missing_ok = true;
		if (call->user_id == NULL)
			a->usernames[r] = SPI_getvalue(tup, desc, 8);
		call->username = a->usernames[r];
		a->calls[r] = call;
	}
	MemoryContextSwitchTo(old);
}

/*
 * Resolve a username row's user id, in a subtransaction so that a failed
 * lookup becomes the call's failure instead of the batch's error.  A
 * username with no Atlas user leaves nothing to remove: already absent.
 */
static void
resolve_username(AtlasCall *call)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	(void) atlas_lookup_last_failure(true);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		char	   *id = NULL;

		if (call->op == ATLAS_OP_REMOVE_PROJECT_USER)
			id = atlas_find_group_user_id(call->group_id, call->username);
		else
		{
			AtlasOrgUser *u = atlas_fetch_org_user(call->org_id, call->username);
			ListCell   *lc;

			if (u && call->op == ATLAS_OP_REMOVE_TEAM_USER)
			{
				/* only a member of the team has something to remove */
				foreach(lc, u->team_ids)
				{
					if (strcmp((char *) lfirst(lc), call->team_id) == 0)
						id = u->id;
				}
			}
			else if (u)
				id = u->id;
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (id)
			call->user_id = pstrdup(id);
		else
		{
			call->operation = atlas_operation_name(call->op);
			call->started_at = GetCurrentTimestamp();
			call->http_status = 200;
			call->attempts = 1;
			call->detail = psprintf("No Atlas user has the username %s there: nothing to remove.",
									call->username);
			call->outcome = ATLAS_OUTCOME_ALREADY_ABSENT;
			call->finished = true;
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		AtlasCall  *failed;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;

		/* keep what Atlas answered the lookup, Retry-After included */
		failed = atlas_lookup_last_failure(true);
		if (failed)
		{
			call->http_status = failed->http_status;
			call->error_code = failed->error_code;
			call->retry_after = failed->retry_after;
			call->transport_failed = failed->transport_failed;
		}
		call->operation = atlas_operation_name(call->op);
		call->started_at = GetCurrentTimestamp();
		call->attempts = 1;
		call->detail = psprintf("Looking up the username failed: %s%s%s", edata->message,
								edata->detail ? " " : "", edata->detail ? edata->detail : "");
		call->outcome = ATLAS_OUTCOME_FAILED;
		call->finished = true;
		/* the lookup's transient failures are worth another attempt */
		call->retry_lookup = (edata->sqlerrcode == ERRCODE_CONNECTION_FAILURE ||
							  edata->sqlerrcode == ERRCODE_INSUFFICIENT_RESOURCES ||
							  edata->sqlerrcode == ERRCODE_SYSTEM_ERROR);
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

/* Resolve the batch's usernames; the calls that are left run. */
static AtlasCall **
resolve_batch(BatchArgs *a, int *nrun)
{
	AtlasCall **run = palloc(sizeof(AtlasCall *) * Max(a->n, 1));
	int			i;

	*nrun = 0;
	for (i = 0; i < a->n; i++)
	{
		if (a->usernames[i])
			resolve_username(a->calls[i]);
		if (!a->calls[i]->finished)
			run[(*nrun)++] = a->calls[i];
	}
	return run;
}

/* Is a failed call worth another attempt? */
static bool
call_retryable(AtlasCall *call)
{
	if (call->transport_failed || call->retry_lookup)
		return true;
	return call->http_status == 429 || call->http_status >= 500;
}

/* Delay before the next attempt: backoff with jitter, never before Retry-After. */
static int64
queue_retry_delay_ms(AtlasCall *call, int attempts)
{
	double		backoff = (double) atlas_retry_base_ms * (double) (1 << Min(attempts - 1, 16));
	double		floor_ms = call->retry_after >= 0 ? call->retry_after * 1000.0 : 0;

	backoff = Min(backoff, 3600.0 * 1000);
	backoff *= 1.0 + 0.25 * pg_prng_double(&pg_global_prng_state);
	return (int64) Max(backoff, floor_ms);
}

/* Record the batch's results in the queue, and audit each attempt. */
static void
record_spi(Oid nsp, void *arg)
{
	BatchArgs  *a = (BatchArgs *) arg;
	char	   *sql = psprintf("UPDATE %s SET status = $2, http_status = $3, error_code = $4,"
							   " detail = $5, next_attempt_at = coalesce($6, next_attempt_at),"
							   " finished_at = CASE WHEN $2 IN ('done', 'failed') THEN clock_timestamp() END,"
							   " claimed_by = NULL, claimed_at = NULL"
							   " WHERE id = $1 RETURNING attempts",
							   ext_rel(nsp, "atlas_removal_queue"));
	Oid			types[6] = {INT8OID, TEXTOID, INT4OID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	SPIPlanPtr	plan = SPI_prepare(sql, 6, types);
	int			i;

	if (plan == NULL)
		elog(ERROR, "could not prepare the queue update");
	for (i = 0; i < a->n; i++)
	{
		AtlasCall  *call = a->calls[i];
		Datum		values[6];
		char		nulls[6] = {' ', ' ', ' ', ' ', ' ', 'n'};
		const char *status;

		if (call->outcome == ATLAS_OUTCOME_REMOVED || call->outcome == ATLAS_OUTCOME_ALREADY_ABSENT)
			status = "done";
		else
			status = "failed";

		values[0] = Int64GetDatum(a->ids[i]);
		values[2] = Int32GetDatum((int32) call->http_status);
		if (call->http_status == 0)
			nulls[2] = 'n';
		values[3] = text_arg(call->error_code, nulls, 3);
		values[4] = text_arg(call->detail ? call->detail : call->excerpt, nulls, 4);

		if (strcmp(status, "failed") == 0 && call_retryable(call) &&
			a->attempts[i] < atlas_max_attempts)
		{
			status = "queued";
			values[5] = TimestampTzGetDatum(TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																		queue_retry_delay_ms(call, a->attempts[i])));
			nulls[5] = ' ';
		}
		values[1] = CStringGetTextDatum(status);
		if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "could not record a queued removal's result");
	}
	SPI_freeplan(plan);
}

/* Put rows whose claimer is gone back in the queue; returns how many. */
static void
recover_spi(Oid nsp, void *arg)
{
	char	   *q = ext_rel(nsp, "atlas_removal_queue");

	if (SPI_execute(psprintf("UPDATE %s q SET status = 'queued', next_attempt_at = clock_timestamp(),"
							 " claimed_by = NULL, claimed_at = NULL"
							 " WHERE status = 'running' AND NOT EXISTS ("
							 "  SELECT 1 FROM pg_catalog.pg_stat_activity a"
							 "  WHERE a.pid = q.claimed_by AND a.backend_start <= q.claimed_at)", q),
					false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not recover running removals");
	*(uint64 *) arg = SPI_processed;
}

/* Requeue rows left 'running' by a crashed or killed claimer. */
uint64
atlas_queue_recover(void)
{
	uint64		n = 0;

	as_queue_owner(recover_spi, &n);
	return n;
}

/* Claim a batch in the current transaction. */
static void
claim_batch(BatchArgs *a)
{
	as_queue_owner(claim_spi, a);
}

/* Audit each call and record the results, in the current transaction. */
static void
record_batch(BatchArgs *a)
{
	int			i;

	as_queue_owner(record_spi, a);
	for (i = 0; i < a->n; i++)
	{
		if (a->worker)
		{
			AuditRecord rec;

			atlas_audit_record_from_call(a->calls[i], &rec);
			atlas_audit_insert(&rec);
		}
		else
			atlas_audit_call(a->calls[i]);
	}
}

/*
 * Worker: claim a batch and commit 'running', resolve usernames, call
 * Atlas outside any transaction, then commit the results.  Returns how many were processed.
 */
int
atlas_queue_worker_batch(int max_items)
{
	BatchArgs	a = {0};
	AtlasCall **run;
	int			nrun;
	MemoryContext cxt = CurrentMemoryContext;

	a.max_items = max_items;
	a.worker = true;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(cxt);
	claim_batch(&a);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	if (a.n == 0)
		return 0;

	/* lookups use subtransactions, so they need a transaction */
	StartTransactionCommand();
	MemoryContextSwitchTo(cxt);
	run = resolve_batch(&a, &nrun);
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);

	atlas_run_calls(run, nrun, atlas_max_concurrency, 0, NULL);

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(cxt);
	record_batch(&a);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return a.n;
}

/* The earliest next_attempt_at of a queued row, or 0 if none. */
static void
next_due_spi(Oid nsp, void *arg)
{
	bool		isnull;
	Datum		d;

	if (SPI_execute(psprintf("SELECT min(next_attempt_at) FROM %s WHERE status = 'queued'",
							 ext_rel(nsp, "atlas_removal_queue")), true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the queue");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	*(TimestampTz *) arg = isnull ? 0 : DatumGetTimestampTz(d);
}

/* When the next queued row is due (0: none), read in the current transaction. */
TimestampTz
atlas_queue_next_due(void)
{
	TimestampTz t = 0;

	as_queue_owner(next_due_spi, &t);
	return t;
}

/* Delete finished rows older than atlas_users.queue_retention. */
static void
purge_spi(Oid nsp, void *arg)
{
	char	   *sql = psprintf("DELETE FROM %s WHERE status IN ('done', 'failed', 'cancelled')"
							   " AND finished_at < clock_timestamp() - make_interval(secs => %d)",
							   ext_rel(nsp, "atlas_removal_queue"), atlas_queue_retention_s);

	if (SPI_execute(sql, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not purge the queue");
	*(uint64 *) arg = SPI_processed;
}

/* Apply the queue's retention; returns how many rows were deleted. */
uint64
atlas_queue_purge(void)
{
	uint64		n = 0;

	if (atlas_queue_retention_s > 0)
		as_queue_owner(purge_spi, &n);
	return n;
}

/* atlas_process_queue(max_items): drain a batch in this session */
Datum
atlas_process_queue(PG_FUNCTION_ARGS)
{
	BatchArgs	a = {0};

	if (PG_ARGISNULL(0) || PG_GETARG_INT32(0) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_items must be a positive integer")));
	a.max_items = PG_GETARG_INT32(0);
	a.worker = false;

	/* fail on configuration before touching any row */
	(void) atlas_auth_resolve(false);

	claim_batch(&a);
	if (a.n > 0)
	{
		AtlasCall **run;
		int			nrun;

		run = resolve_batch(&a, &nrun);
		PG_TRY();
		{
			atlas_run_calls(run, nrun, atlas_max_concurrency, 0, NULL);
		}
		PG_CATCH();
		{
			atlas_audit_after_error(run, nrun);
			PG_RE_THROW();
		}
		PG_END_TRY();
		record_batch(&a);
	}
	PG_RETURN_INT32(a.n);
}
