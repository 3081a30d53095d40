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
 *
 * Each row runs with the credentials it was enqueued for: those of the
 * server it names and the user mapping of the role that enqueued it, or
 * the settings'.  When they cannot be used (the server or role is gone,
 * the role lost USAGE or its mapping, a key file is unreadable), the row
 * is queued again, as a transient failure, until max_attempts.
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
#include "atlas_users.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "commands/user.h"
#include "foreign/foreign.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/resowner.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(atlas_process_queue);

/* rows the worker claims at once, at most */
#define WORKER_CLAIM_MAX 32

/* one claimed queue row */
typedef struct QueueRow
{
	int64		id;
	int			attempts;		/* this one included */
	MemoryContext cxt;			/* the row's memory */
	AtlasCall  *removal;
	AtlasListing listing;		/* the username lookup, for rows by username */
	AtlasOrgUser *found;
	char	   *server;			/* the server it was enqueued for, or NULL */
	char	   *enqueued_as;	/* the role whose user mapping it uses */
	char	   *unusable;		/* why its credentials cannot be used, or NULL */
	TimestampTz requeued_for;	/* recorded as queued again, due then */
} QueueRow;

typedef struct Drain
{
	bool		worker;
	int			max_items;		/* atlas_process_queue(): rows to claim */
	int			claimed;
	int			active;			/* claimed and not yet recorded */
	bool		claim_again;	/* the last claim was full: more may be due */
	TimestampTz next_due;		/* the worker: when a row it requeued is due */
	MemoryContext cxt;
	List	   *finished_rows;	/* the worker: memory of recorded rows, to free */
	List	   *claimed_rows;	/* claim_spi: the rows it claimed */
	int			nclaim;			/* claim_spi: how many to claim */
	AtlasRun   *run;
} Drain;

/* Start a claimed row: its lookup, or its removal. */
static void
start_row(Drain *d, QueueRow *row)
{
	AtlasCall  *r = row->removal;
	AtlasOperation lookup_op;
	MemoryContext old = MemoryContextSwitchTo(row->cxt);

	if (row->unusable != NULL)
	{
		r->answer.config_failed = true;
		r->answer.detail = row->unusable;
		atlas_run_finish_unsent(d->run, r, ATLAS_OUTCOME_FAILED);
	}
	else if (r->user_id != NULL)
		atlas_run_add(d->run, r);
	else
	{
		/* a team member is found among the org's users, with their teams */
		lookup_op = (r->op == ATLAS_OP_REMOVE_PROJECT_USER)
			? ATLAS_OP_LIST_GROUP_USERS : ATLAS_OP_LIST_ORG_USERS;
		atlas_username_listing(&row->listing, lookup_op, r->org_id, r->group_id,
							   r->username, &row->found);
		row->listing.owner = row;
		/* one slow lookup must not hold its row, or the worker, for long */
		row->listing.timeout_ms = atlas_worker_lookup_timeout_ms;
		atlas_run_add(d->run, atlas_listing_first(&row->listing));
	}
	MemoryContextSwitchTo(old);
}

/* A claimed row's removal call, in the row's memory. */
static QueueRow *
row_from_tuple(Drain *d, HeapTuple tup, TupleDesc desc)
{
	MemoryContext cxt = AllocSetContextCreate(d->cxt, "atlas_users queue row",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	QueueRow   *row = palloc0(sizeof(QueueRow));
	AtlasCall  *call;
	bool		isnull;

	row->cxt = cxt;
	row->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	row->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 7, &isnull));
	call = atlas_call_new(atlas_operation_from_name(SPI_getvalue(tup, desc, 2), false));
	call->org_id = SPI_getvalue(tup, desc, 3);
	call->group_id = SPI_getvalue(tup, desc, 4);
	call->team_id = SPI_getvalue(tup, desc, 5);
	call->user_id = SPI_getvalue(tup, desc, 6);
	if (call->user_id == NULL)
		call->username = SPI_getvalue(tup, desc, 8);
	row->server = SPI_getvalue(tup, desc, 9);
	row->enqueued_as = SPI_getvalue(tup, desc, 10);
	call->requested_by = SPI_getvalue(tup, desc, 11);
	call->approved_by = SPI_getvalue(tup, desc, 12);
	call->reason = SPI_getvalue(tup, desc, 13);
	call->ticket = SPI_getvalue(tup, desc, 14);

	/*
	 * A queued removal wants the user gone: if Atlas says the user or
	 * membership is already absent, the row is done (an earlier attempt,
	 * maybe one whose transaction rolled back, may have removed it).  The
	 * 404 and its errorCode stay on the row and in the audit.
	 */
	call->missing_ok = true;
	call->queue_id = row->id;
	call->owner = row;
	row->removal = call;
	MemoryContextSwitchTo(old);
	return row;
}

/* Does the queue table have a column (older versions lack some)? */
static bool
queue_has_column(Oid nsp, const char *column)
{
	return get_attnum(get_relname_relid("atlas_removal_queue", nsp), column) != InvalidAttrNumber;
}

/* Claim up to d->nclaim due rows; runs as the queue table's owner. */
static void
claim_spi(Oid nsp, void *arg)
{
	Drain	   *d = (Drain *) arg;
	char	   *q = atlas_ext_rel(nsp, "atlas_removal_queue");
	bool		v14 = queue_has_column(nsp, "server");
	bool		v15 = queue_has_column(nsp, "approved_by");
	Oid			types[2] = {INT4OID, INT8ARRAYOID};
	Datum		values[2];
	uint64		r;

	values[0] = Int32GetDatum(d->nclaim);
	values[1] = atlas_enqueued_here();
	if (SPI_execute_with_args(psprintf("UPDATE %s q SET status = 'running', attempts = q.attempts + 1,"
									   " claimed_by = pg_backend_pid(), claimed_at = clock_timestamp()"
									   " WHERE q.id IN (SELECT id FROM %s"
									   "  WHERE status = 'queued' AND next_attempt_at <= clock_timestamp()"
									   "  AND id <> ALL ($2)"
									   "  ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)"
									   " RETURNING q.id, q.operation, q.org_id, q.group_id, q.team_id,"
									   " q.user_id, q.attempts, q.username, %s, q.enqueued_by, %s", q, q,
									   v14 ? "q.server, q.enqueued_as" : "NULL::text, NULL::text",
									   v15 ? "q.approved_by, q.reason, q.ticket" : "NULL::text, NULL::text, NULL::text"),
							  2, types, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not claim queued removals");
	for (r = 0; r < SPI_processed; r++)
	{
		QueueRow   *row = row_from_tuple(d, SPI_tuptable->vals[r], SPI_tuptable->tupdesc);
		/* the list outlives SPI's memory */
		MemoryContext old = MemoryContextSwitchTo(d->cxt);

		d->claimed_rows = lappend(d->claimed_rows, row);
		MemoryContextSwitchTo(old);
	}
}

/*
 * The target a row runs with: its server's and its enqueuer's mapping, or
 * the settings'.  In a subtransaction, so that credentials that cannot be
 * used become the row's failure (row->unusable) instead of an error.
 */
static void
row_target(QueueRow *row)
{
	AtlasCall  *r = row->removal;
	ResourceOwner owner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(row->cxt);
	PG_TRY();
	{
		Oid			role = row->enqueued_as ? get_role_oid(row->enqueued_as, false) : InvalidOid;

		r->role = role;
		r->target = row->server
			? atlas_target_of_server(get_foreign_server_oid(row->server, false), role, false)
			: atlas_target_from_settings(false);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(row->cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		row->unusable = psprintf("The credentials it was queued with cannot be used: %s%s%s",
								 edata->message, edata->hint ? " " : "",
								 edata->hint ? edata->hint : "");
		r->target = NULL;
		r->role = InvalidOid;
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(row->cxt);
	CurrentResourceOwner = owner;
}

/* Claim rows and start them (or hold them), in the current transaction. */
static void
claim(Drain *d, int n)
{
	ListCell   *lc;
	int			claimed;
	List	   *held = NIL;

	d->nclaim = n;
	d->claimed_rows = NIL;
	atlas_as_table_owner("atlas_removal_queue", claim_spi, d);
	claimed = list_length(d->claimed_rows);
	d->claimed += claimed;
	d->active += claimed;
	d->claim_again = (claimed == n);
	foreach(lc, d->claimed_rows)
	{
		QueueRow   *row = (QueueRow *) lfirst(lc);
		MemoryContext old = CurrentMemoryContext;

		if (!atlas_queue_admit(row->removal, row->id, &held))
		{
			/* held by the removal budget: nothing is sent for it */
			MemoryContextDelete(row->cxt);
			d->claimed--;
			d->active--;
			continue;
		}
		row_target(row);
		MemoryContextSwitchTo(old);
		start_row(d, row);
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
	atlas_worker_drain_audit();

	wake = MyLatch->is_set;
	if (wake)
		ResetLatch(MyLatch);
	if (d->next_due != 0 && d->next_due <= GetCurrentTimestamp())
	{
		d->next_due = 0;
		wake = true;
	}
	if (free_slots > 0 && (wake || d->claim_again || d->claimed == 0))
		claim_committed(d, Min(free_slots, WORKER_CLAIM_MAX));
	*wait_ms = 50;
	return d->active > 0 || d->claim_again;
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

/* Run hook: a call of a row finished (a lookup page, or its removal). */
static void
drain_finished(AtlasRun *run, AtlasCall *call, void *arg)
{
	Drain	   *d = (Drain *) arg;
	QueueRow   *row = (QueueRow *) call->owner;
	MemoryContext old = MemoryContextSwitchTo(row->cxt);

	if (call != row->removal)
	{
		AtlasCall  *next = atlas_listing_page_done(&row->listing, call);

		if (next != NULL)
			atlas_run_add(run, next);
		else
			lookup_finished(d, row);
	}
	else
	{
		atlas_as_table_owner("atlas_removal_queue", record_spi, row);
		if (row->requeued_for != 0 && (d->next_due == 0 || row->requeued_for < d->next_due))
			d->next_due = row->requeued_for;
		d->active--;
		if (d->worker)
		{
			MemoryContextSwitchTo(d->cxt);
			d->finished_rows = lappend(d->finished_rows, row->cxt);
		}
	}
	MemoryContextSwitchTo(old);
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
	d.run = atlas_run_create(&spec);
	atlas_run_execute(d.run);
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
	/* fail on the server's state and the configuration before touching any row */
	atlas_require_writable("run queued Atlas user removals");
	atlas_target_wipe(atlas_target_from_settings(false));
	PG_RETURN_INT32(atlas_queue_drain(false, PG_GETARG_INT32(0)));
}
