/*-------------------------------------------------------------------------
 *
 * queue_claim.c
 *	  Claiming queued removals, each server's share of the worker, the
 *	  credentials each claimed row runs with, and a row's step in a
 *	  subtransaction (atlas_queue_row_try, through atlas_try_subxact).
 *
 * Due rows are claimed with FOR UPDATE SKIP LOCKED, so the worker and any
 * number of atlas_process_queue() callers never share a row.  The worker
 * claims at most a server's share of its concurrency for one server
 * (rows with no server count as one): atlas_users.max_concurrency less a
 * quarter of it (at least one slot) when it is 2 or more, so that rows of
 * other servers always find a slot, even while a host that hangs holds
 * its rows for their whole timeout.
 *
 * A row runs as its enqueuer, entirely: its username lookup and its
 * removal use the server it was enqueued for, by OID (a server renamed,
 * and another created under the old name, never runs it), with the user
 * mapping of the role that enqueued it, by OID too; a row with no server
 * uses the settings.  Rows of an install still at 1.4 name both by name.
 * When the credentials cannot be used, the row fails with a detail that
 * says why and how to fix it: at once when its server or role is gone,
 * else (no USAGE, no user mapping, no credentials, an unreadable key
 * file: a grant or a mapping may be mended) as a transient failure,
 * retried until atlas_users.max_attempts.  Resolving never raises: one
 * row never stops the worker.
 *
 * Rows with the same credentials share one target for the whole drain,
 * so that the run keeps one token state per identity; a target whose
 * token could not be had is retired, and the next row resolves afresh.
 * The drain's targets are wiped when it ends.
 *
 *-------------------------------------------------------------------------
 */
#include "queue/queue.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

/* the rows of one server the drain is running */
typedef struct QueueShare
{
	Oid			server;			/* InvalidOid: rows with no server */
	int			active;
} QueueShare;

/* a target rows of one identity share, in its own memory */
typedef struct QueueTarget
{
	AtlasTarget *target;
	MemoryContext cxt;
	bool		retired;		/* its token could not be had: not shared again */
} QueueTarget;

/* Does the queue table have a column (older versions lack some)? */
static bool
queue_has_column(Oid nsp, const char *column)
{
	return get_attnum(get_relname_relid("atlas_removal_queue", nsp), column) != InvalidAttrNumber;
}

/* A claimed row's removal call, in the row's memory. */
static QueueRow *
row_from_tuple(Drain *d, HeapTuple tup, TupleDesc desc, bool by_oid)
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
	row->by_oid = by_oid;
	row->server_oid = DatumGetObjectId(SPI_getbinval(tup, desc, 12, &isnull));
	if (isnull)
		row->server_oid = InvalidOid;
	row->enqueued_as_oid = DatumGetObjectId(SPI_getbinval(tup, desc, 13, &isnull));
	if (isnull)
		row->enqueued_as_oid = InvalidOid;
	call->approved_by = SPI_getvalue(tup, desc, 14);
	call->reason = SPI_getvalue(tup, desc, 15);
	call->ticket = SPI_getvalue(tup, desc, 16);

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

/* The most rows of one server the worker runs at once. */
static int
server_share(Drain *d)
{
	return (d->concurrency > 1) ? d->concurrency - Max(1, d->concurrency / 4) : 1;
}

/* The drain's count of a server's active rows, made on first use. */
static QueueShare *
share_of(Drain *d, Oid server)
{
	return (QueueShare *) atlas_list_entry(&d->shares, d->cxt, sizeof(QueueShare),
										   offsetof(QueueShare, server),
										   &server, sizeof(server));
}

/* The servers with active rows and their counts, as oid[] and int4[] Datums. */
static void
share_arrays(Drain *d, Datum *servers, Datum *counts)
{
	int			n = list_length(d->shares);
	Datum	   *s = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *c = palloc(sizeof(Datum) * Max(n, 1));
	ListCell   *lc;
	int			i = 0;

	foreach(lc, d->shares)
	{
		s[i] = ObjectIdGetDatum(((QueueShare *) lfirst(lc))->server);
		c[i++] = Int32GetDatum(((QueueShare *) lfirst(lc))->active);
	}
	*servers = PointerGetDatum(construct_array(s, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
	*counts = PointerGetDatum(construct_array(c, n, INT4OID, 4, true, TYPALIGN_INT));
}

/*
 * The rows to claim: the due rows, oldest first; for the worker (1.5),
 * at most a server's share less its active rows of each server.
 */
static char *
claim_sql(Oid nsp, bool fair)
{
	char	   *q = atlas_ext_rel(nsp, "atlas_removal_queue");
	const char *due = "status = 'queued' AND next_attempt_at <= clock_timestamp() AND id <> ALL ($2)";

	if (!fair)
		return psprintf("SELECT id FROM %s WHERE %s ORDER BY next_attempt_at, id LIMIT $1"
						" FOR UPDATE SKIP LOCKED", q, due);
	return psprintf("SELECT c.id FROM (SELECT DISTINCT coalesce(server_oid, 0::oid) AS s"
					"  FROM %s WHERE %s) srv,"
					" LATERAL (SELECT id, next_attempt_at FROM %s"
					"  WHERE %s AND coalesce(server_oid, 0::oid) = srv.s"
					"  ORDER BY next_attempt_at, id"
					"  LIMIT greatest(0, $3 - coalesce((SELECT sum(a.n) FROM unnest($4::oid[], $5::int4[])"
					"   AS a(s, n) WHERE a.s = srv.s), 0))"
					"  FOR UPDATE SKIP LOCKED) c"
					" ORDER BY c.next_attempt_at, c.id LIMIT $1", q, due, q, due);
}

/* Claim up to d->nclaim due rows; runs as the queue table's owner. */
static void
claim_spi(Oid nsp, void *arg)
{
	Drain	   *d = (Drain *) arg;
	char	   *q = atlas_ext_rel(nsp, "atlas_removal_queue");
	bool		v14 = queue_has_column(nsp, "server");
	bool		v15 = queue_has_column(nsp, "server_oid");
	bool		evidence = queue_has_column(nsp, "approved_by");
	Oid			types[5] = {INT4OID, INT8ARRAYOID, INT4OID, OIDARRAYOID, INT4ARRAYOID};
	Datum		values[5];
	uint64		r;

	values[0] = Int32GetDatum(d->nclaim);
	values[1] = atlas_enqueued_here();
	values[2] = Int32GetDatum(server_share(d));
	share_arrays(d, &values[3], &values[4]);
	if (SPI_execute_with_args(psprintf("UPDATE %s q SET status = 'running', attempts = q.attempts + 1,"
									   " claimed_by = pg_backend_pid(), claimed_at = clock_timestamp()"
									   " WHERE q.id IN (%s)"
									   " RETURNING q.id, q.operation, q.org_id, q.group_id, q.team_id,"
									   " q.user_id, q.attempts, q.username, %s, q.enqueued_by, %s, %s", q,
									   claim_sql(nsp, d->worker && v15),
									   v14 ? "q.server, q.enqueued_as" : "NULL::text, NULL::text",
									   v15 ? "q.server_oid, q.enqueued_as_oid" : "NULL::oid, NULL::oid",
									   evidence ? "q.approved_by, q.reason, q.ticket"
									   : "NULL::text, NULL::text, NULL::text"),
							  5, types, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not claim queued removals");
	for (r = 0; r < SPI_processed; r++)
	{
		QueueRow   *row = row_from_tuple(d, SPI_tuptable->vals[r], SPI_tuptable->tupdesc, v15);
		/* the list outlives SPI's memory */
		MemoryContext old = MemoryContextSwitchTo(d->cxt);

		d->claimed_rows = lappend(d->claimed_rows, row);
		MemoryContextSwitchTo(old);
	}
}

/* Claim up to n due rows into d->claimed_rows, in the current transaction. */
void
atlas_queue_claim(Drain *d, int n)
{
	ListCell   *lc;

	d->nclaim = n;
	d->claimed_rows = NIL;
	atlas_as_table_owner("atlas_removal_queue", claim_spi, d);
	foreach(lc, d->claimed_rows)
		share_of(d, ((QueueRow *) lfirst(lc))->server_oid)->active++;
}

/*
 * A row was recorded: it no longer counts in its server's share, and a
 * target whose token could not be had is not given to the next rows.
 * Returns true when its server had its whole share: rows of it may have
 * been held back.
 */
bool
atlas_queue_row_done(Drain *d, QueueRow *row)
{
	QueueShare *share = share_of(d, row->server_oid);
	bool		was_full = (share->active >= server_share(d));
	ListCell   *lc;

	share->active--;
	if (row->removal->answer.token_failed)
	{
		foreach(lc, d->targets)
			if (((QueueTarget *) lfirst(lc))->target == row->removal->target)
				((QueueTarget *) lfirst(lc))->retired = true;
	}
	return was_full;
}

/* Wipe the secrets of the drain's targets. */
void
atlas_queue_wipe_targets(Drain *d)
{
	ListCell   *lc;

	foreach(lc, d->targets)
		atlas_target_wipe(((QueueTarget *) lfirst(lc))->target);
}

/* Are two strings, either maybe NULL, the same? */
static bool
same_text(const char *a, const char *b)
{
	return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

/* Do two targets send the same requests with the same credentials? */
static bool
same_identity(const AtlasTarget *a, const AtlasTarget *b)
{
	return a->server_oid == b->server_oid && a->role == b->role && a->method == b->method &&
		a->timeout_ms == b->timeout_ms && a->connect_timeout_ms == b->connect_timeout_ms &&
		same_text(a->base_url, b->base_url) && same_text(a->ca_file, b->ca_file) &&
		same_text(a->username, b->username) && same_text(a->api_version, b->api_version) &&
		memcmp(a->secret_hash, b->secret_hash, sizeof(a->secret_hash)) == 0;
}

/*
 * Why a row of 1.5 cannot run for good (its server or role is gone, or the
 * server is not one of atlas_users), or NULL; its role in *role.
 */
static char *
gone(QueueRow *row, Oid *role)
{
	ForeignServer *srv;
	ForeignDataWrapper *fdw;
	const char *name = row->server ? row->server : "?";

	*role = row->enqueued_as_oid;
	if (row->enqueued_as == NULL && !OidIsValid(*role))
		*role = InvalidOid;		/* a row of 1.3: no role of its own */
	else if (!OidIsValid(*role) || GetUserNameFromId(*role, true) == NULL)
		return psprintf("The role that enqueued it (%s) no longer exists, and a queued row runs only with its enqueuer's user mapping. Enqueue the removal again as an existing role.",
						row->enqueued_as ? row->enqueued_as : "?");
	if (row->server == NULL && !OidIsValid(row->server_oid))
		return NULL;			/* the settings */
	srv = OidIsValid(row->server_oid) ? GetForeignServerExtended(row->server_oid, FSV_MISSING_OK) : NULL;
	if (srv == NULL)
		return psprintf("The server it was queued for (\"%s\", OID %u) no longer exists; a server created under its name is never used instead. Enqueue the removal again through an existing server.",
						name, row->server_oid);
	fdw = GetForeignDataWrapperByName("atlas_users", true);
	if (fdw == NULL || srv->fdwid != fdw->fdwid)
		return psprintf("The server it was queued for (OID %u) is no longer a server of the atlas_users foreign data wrapper. Enqueue the removal again through an atlas_users server.",
						row->server_oid);
	return NULL;
}

/* Resolve a row's target; raises when its credentials cannot be used. */
static AtlasTarget *
resolve(QueueRow *row, Oid role)
{
	if (!row->by_oid)
	{
		/* a row of an install still at 1.4: by name */
		role = row->enqueued_as ? get_role_oid(row->enqueued_as, false) : InvalidOid;
		row->removal->role = role;
		return row->server
			? atlas_target_of_server(get_foreign_server_oid(row->server, false), role, false)
			: atlas_target_from_settings(false);
	}
	row->removal->role = role;
	return OidIsValid(row->server_oid)
		? atlas_target_of_server(row->server_oid, role, false)
		: atlas_target_from_settings(false);
}

/* Why credentials could not be used, from the error: what, and how to fix it. */
static char *
unusable_detail(ErrorData *edata)
{
	return psprintf("The credentials it was queued with cannot be used: %s%s%s%s%s",
					edata->message,
					edata->detail ? " " : "", edata->detail ? edata->detail : "",
					edata->hint ? " " : "", edata->hint ? edata->hint : "");
}

/* Share a fresh target with the rows of the same identity, or keep it. */
static AtlasTarget *
shared_target(Drain *d, AtlasTarget *fresh, MemoryContext cxt)
{
	ListCell   *lc;
	QueueTarget *qt;
	MemoryContext old;

	foreach(lc, d->targets)
	{
		qt = (QueueTarget *) lfirst(lc);
		if (!qt->retired && qt->target->secret != NULL && same_identity(qt->target, fresh))
		{
			atlas_target_wipe(fresh);
			MemoryContextDelete(cxt);
			return qt->target;
		}
	}
	old = MemoryContextSwitchTo(d->cxt);
	qt = palloc0(sizeof(QueueTarget));
	qt->target = fresh;
	qt->cxt = cxt;
	d->targets = lappend(d->targets, qt);
	MemoryContextSwitchTo(old);
	return fresh;
}

/* a row's step, as atlas_try_subxact() runs it */
typedef struct RowTry
{
	Drain	   *d;
	QueueRow   *row;
	RowStep		step;
	void	   *arg;
} RowTry;

/* Run a RowTry's step. */
static void
row_try_step(void *arg)
{
	RowTry	   *t = (RowTry *) arg;

	t->step(t->d, t->row, t->arg);
}

/*
 * Run step(d, row, arg) in a subtransaction, in cxt; returns the error it
 * raised, copied into the row's memory, or NULL.  A cancel or a statement
 * timeout is raised again: it ends the drain, not the row.  The caller's
 * memory context and resource owner are current again after.
 */
ErrorData *
atlas_queue_row_try(Drain *d, QueueRow *row, RowStep step, void *arg,
					MemoryContext cxt)
{
	RowTry		t = {d, row, step, arg};

	return atlas_try_subxact(row_try_step, &t, cxt, row->cxt);
}

/* the target a row resolves to with a role, for resolve_step() */
typedef struct ResolveStep
{
	Oid			role;
	AtlasTarget *fresh;
} ResolveStep;

/* Row step: resolve the row's target (arg: a ResolveStep). */
static void
resolve_step(Drain *d pg_attribute_unused(), QueueRow *row, void *arg)
{
	ResolveStep *rs = (ResolveStep *) arg;

	rs->fresh = resolve(row, rs->role);
}

/*
 * The target a row runs with.  In a subtransaction, so that credentials
 * that cannot be used become the row's failure (row->unusable) instead of
 * an error.
 */
void
atlas_queue_row_target(Drain *d, QueueRow *row)
{
	AtlasCall  *r = row->removal;
	MemoryContext old = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(d->cxt, "atlas_users queue target",
											  ALLOCSET_SMALL_SIZES);
	ResolveStep rs = {InvalidOid, NULL};
	ErrorData  *edata;

	/* the row's failure is reported after this transaction: in its memory */
	MemoryContextSwitchTo(row->cxt);
	r->target = NULL;
	if (row->by_oid && (row->unusable = gone(row, &rs.role)) != NULL)
	{
		row->unusable_for_good = true;
		MemoryContextDelete(cxt);
		MemoryContextSwitchTo(old);
		return;
	}
	edata = atlas_queue_row_try(d, row, resolve_step, &rs, cxt);
	if (edata != NULL)
	{
		row->unusable = unusable_detail(edata);
		r->role = InvalidOid;
		FreeErrorData(edata);
	}
	MemoryContextSwitchTo(old);
	if (rs.fresh == NULL)
		MemoryContextDelete(cxt);
	else
		r->target = shared_target(d, rs.fresh, cxt);
}
