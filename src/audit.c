/*-------------------------------------------------------------------------
 *
 * audit.c
 *	  The audit trail: one atlas_removal_audit row per call.
 *
 * A call's outcome becomes a flat AuditRecord (fixed-size fields, no
 * pointers, no credentials), which is inserted into the extension's
 * atlas_removal_audit table.  The insert runs as the table's owner, so
 * callers need no privilege on the table and cannot forge or change rows.
 * Every failed call is also written to the server log, whole, so that a
 * failure is on record even when the caller's transaction rolls back.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas_users.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "commands/trigger.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#define AUDIT_NARGS 17

static SPIPlanPtr audit_plan = NULL;
static Oid	audit_plan_nsp = InvalidOid;

/* Copy a string into a fixed field, clipped at a character boundary. */
static void
set_field(char *dst, size_t dstlen, const char *src)
{
	int			len;

	if (src == NULL)
	{
		dst[0] = '\0';
		return;
	}
	len = pg_mbcliplen(src, strlen(src), dstlen - 1);
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/* Build the audit record of a finished call. */
void
atlas_audit_record_from_call(AtlasCall *call, AuditRecord *rec)
{
	memset(rec, 0, sizeof(AuditRecord));
	rec->at = call->started_at ? call->started_at : GetCurrentTimestamp();
	set_field(rec->requested_by, NAMEDATALEN, GetUserNameFromId(GetSessionUserId(), true));
	set_field(rec->executed_as, NAMEDATALEN, GetUserNameFromId(GetUserId(), true));
	set_field(rec->operation, sizeof(rec->operation),
			  call->operation ? call->operation : atlas_operation_name(call->op));
	set_field(rec->org_id, sizeof(rec->org_id), call->org_id);
	set_field(rec->group_id, sizeof(rec->group_id), call->group_id);
	set_field(rec->team_id, sizeof(rec->team_id), call->team_id);
	set_field(rec->user_id, sizeof(rec->user_id), call->user_id);
	set_field(rec->username, sizeof(rec->username), call->username);
	set_field(rec->api_version, sizeof(rec->api_version), call->api_version);
	set_field(rec->auth_method, sizeof(rec->auth_method), call->auth_method);
	rec->http_status = (int) call->http_status;
	set_field(rec->outcome, sizeof(rec->outcome), atlas_outcome_name(call->outcome));
	set_field(rec->error_code, sizeof(rec->error_code), call->error_code);
	set_field(rec->detail, sizeof(rec->detail), call->detail ? call->detail : call->excerpt);
	rec->duration_ms = call->duration_ms;
	rec->attempts = call->attempts;
}

/* The schema atlas_users is installed in. */
Oid
atlas_extension_namespace(void)
{
	Oid			extoid = get_extension_oid("atlas_users", false);
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nsp = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		nsp = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"atlas_users\" has no schema")));
	return nsp;
}

/* The owner of a relation of the extension's schema. */
Oid
atlas_relation_owner(Oid nsp, const char *relname)
{
	Oid			relid = get_relname_relid(relname, nsp);
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" does not exist", get_namespace_name(nsp), relname),
				 errhint("Reinstall the atlas_users extension.")));
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Run the extension's own SQL with search_path = pg_catalog, pg_temp, so
 * that no object of the caller's search_path (an operator, a function)
 * can stand in for a built-in one.  Returns the level for
 * atlas_unpin_search_path(); an error restores it by itself.
 */
int
atlas_pin_search_path(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

/* Restore the search_path pinned by atlas_pin_search_path(). */
void
atlas_unpin_search_path(int level)
{
	AtEOXact_GUC(true, level);
}

/*
 * Run fn(nsp, arg) with SPI connected, as the owner of one of the
 * extension's tables and with search_path pinned.  Callers need no
 * privilege on the table, and their search_path cannot reach our SQL.
 */
void
atlas_as_table_owner(const char *relname, AtlasOwnerFn fn, void *arg)
{
	Oid			nsp = atlas_extension_namespace();
	Oid			owner = atlas_relation_owner(nsp, relname);
	Oid			save_userid;
	int			save_sec;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		int			level = atlas_pin_search_path();

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		fn(nsp, arg);
		SPI_finish();
		atlas_unpin_search_path(level);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
}

/* A text Datum of a field, or NULL when the field is empty. */
static Datum
text_or_null(const char *s, char *nulls, int i)
{
	if (s[0] == '\0')
	{
		nulls[i] = 'n';
		return (Datum) 0;
	}
	return CStringGetTextDatum(s);
}

/* Insert one prepared audit record; runs under atlas_as_table_owner(). */
static void
audit_insert_spi(Oid nsp, void *arg)
{
	AuditRecord *rec = (AuditRecord *) arg;
	Datum		values[AUDIT_NARGS];
	char		nulls[AUDIT_NARGS];

	memset(nulls, ' ', sizeof(nulls));
	values[0] = TimestampTzGetDatum(rec->at);
	values[1] = CStringGetTextDatum(rec->requested_by);
	values[2] = CStringGetTextDatum(rec->executed_as);
	values[3] = CStringGetTextDatum(rec->operation);
	values[4] = text_or_null(rec->org_id, nulls, 4);
	values[5] = text_or_null(rec->group_id, nulls, 5);
	values[6] = text_or_null(rec->team_id, nulls, 6);
	values[7] = text_or_null(rec->user_id, nulls, 7);
	values[8] = text_or_null(rec->api_version, nulls, 8);
	values[9] = text_or_null(rec->auth_method, nulls, 9);
	values[10] = Int32GetDatum(rec->http_status);
	if (rec->http_status == 0)
		nulls[10] = 'n';
	values[11] = CStringGetTextDatum(rec->outcome);
	values[12] = text_or_null(rec->error_code, nulls, 12);
	values[13] = text_or_null(rec->detail, nulls, 13);
	values[14] = Float8GetDatum(rec->duration_ms);
	values[15] = Int32GetDatum(rec->attempts);
	values[16] = text_or_null(rec->username, nulls, 16);

	if (audit_plan == NULL || audit_plan_nsp != nsp)
	{
		Oid			types[AUDIT_NARGS] = {TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID,
			TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID,
		TEXTOID, TEXTOID, FLOAT8OID, INT4OID, TEXTOID};
		char	   *sql;
		SPIPlanPtr	plan;
		bool		has_username;

		/* extension versions before 1.2 have no username column */
		has_username = get_attnum(get_relname_relid("atlas_removal_audit", nsp),
								  "username") != InvalidAttrNumber;
		sql = psprintf("INSERT INTO %s.atlas_removal_audit "
					   "(at, requested_by, executed_as, operation, org_id, group_id, team_id, "
					   "user_id, api_version, auth_method, http_status, outcome, error_code, "
					   "detail, duration_ms, attempts%s) "
					   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16%s)",
					   quote_identifier(get_namespace_name(nsp)),
					   has_username ? ", username" : "",
					   has_username ? ", $17" : "");
		plan = SPI_prepare(sql, has_username ? AUDIT_NARGS : AUDIT_NARGS - 1, types);
		if (plan == NULL)
			elog(ERROR, "could not prepare the audit insert: %s",
				 SPI_result_code_string(SPI_result));
		if (audit_plan != NULL)
			SPI_freeplan(audit_plan);
		SPI_keepplan(plan);
		audit_plan = plan;
		audit_plan_nsp = nsp;
	}
	if (SPI_execute_plan(audit_plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert an audit row");
}

/*
 * Insert an audit record in the current transaction, as the audit
 * table's owner.  The caller must be in a transaction with a snapshot.
 */
void
atlas_audit_insert(AuditRecord *rec)
{
	atlas_as_table_owner("atlas_removal_audit", audit_insert_spi, rec);
}

/* Write a whole audit record to the server log. */
void
atlas_audit_log(AuditRecord *rec, const char *why)
{
	ereport(LOG_SERVER_ONLY,
			(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
			 errmsg("atlas_users audit: %s operation=%s org_id=%s group_id=%s team_id=%s user_id=%s "
					"username=%s outcome=%s http_status=%d error_code=%s attempts=%d duration_ms=%.1f "
					"api_version=%s auth_method=%s requested_by=%s executed_as=%s at=%s",
					why, rec->operation, rec->org_id, rec->group_id, rec->team_id,
					rec->user_id, rec->username, rec->outcome, rec->http_status, rec->error_code,
					rec->attempts, rec->duration_ms, rec->api_version, rec->auth_method,
					rec->requested_by, rec->executed_as, timestamptz_to_str(rec->at)),
			 rec->detail[0] ? errdetail_log("%s", rec->detail) : 0));
}

/*
 * Say once per session that the audit is transactional here, and why.
 */
static void
notice_transactional_audit(void)
{
	static bool noticed = false;

	if (noticed)
		return;
	noticed = true;
	if (!atlas_shmem_preloaded())
		ereport(NOTICE,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("atlas_users is not preloaded: audit rows are written in the calling transaction"),
				 errdetail("A rollback of this transaction also removes its audit rows; failures are always in the server log."),
				 errhint("Add atlas_users to shared_preload_libraries to make the audit durable and start the queue worker.")));
	else
		ereport(NOTICE,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("the atlas_users worker does not serve this database: audit rows are written in the calling transaction"),
				 errdetail("The worker connects to atlas_users.database = \"%s\".", atlas_database),
				 errhint("Run offboarding in that database for a durable audit.")));
}

/*
 * Hand a record to the worker if it serves this database, so that it
 * survives this transaction; otherwise insert it here.
 */
static void
audit_record(AuditRecord *rec, bool logged)
{
	if (atlas_shmem_audit_available())
	{
		if (!atlas_shmem_hand_audit(rec) && !logged)
			atlas_audit_log(rec, "audit buffer full");
		return;
	}
	notice_transactional_audit();
	atlas_audit_insert(rec);
}

/* Record a finished call in the audit trail. */
void
atlas_audit_call(AtlasCall *call)
{
	AuditRecord rec;
	bool		failed = (call->outcome == ATLAS_OUTCOME_FAILED);

	atlas_audit_record_from_call(call, &rec);
	if (failed)
		atlas_audit_log(&rec, "failed call");
	audit_record(&rec, failed);
}

/*
 * Audit the calls of a run that an error (query cancel, statement_timeout,
 * shutdown) interrupted: those that finished with their outcome, those
 * still in flight as failed.  This runs in error cleanup, before the
 * transaction aborts, so it only logs and hands over; it never uses SPI.
 */
void
atlas_audit_after_error(AtlasCall **calls, int ncalls)
{
	int			i;
	bool		durable = atlas_shmem_audit_available();

	HOLD_INTERRUPTS();
	for (i = 0; i < ncalls; i++)
	{
		AtlasCall  *call = calls[i];
		AuditRecord rec;

		if (call->started_at == 0)
			continue;			/* never sent */
		if (!call->finished)
		{
			call->outcome = ATLAS_OUTCOME_FAILED;
			call->http_status = 0;
			call->attempts = Max(call->attempts, 1);
			call->duration_ms = (double) (GetCurrentTimestamp() - call->started_at) / 1000.0;
			call->error_code = NULL;
			call->excerpt = NULL;
			call->detail = "The call was interrupted (query cancel, statement_timeout or shutdown) before Atlas answered; Atlas may or may not have removed the user.";
		}
		atlas_audit_record_from_call(call, &rec);
		if (!durable || call->outcome == ATLAS_OUTCOME_FAILED)
			atlas_audit_log(&rec, call->finished ? "call in an interrupted statement" : "interrupted call");
		if (durable)
			(void) atlas_shmem_hand_audit(&rec);
	}
	RESUME_INTERRUPTS();
}

PG_FUNCTION_INFO_V1(atlas_audit_flush);

/* atlas_audit_flush(timeout_ms): wait until handed-over records are in the table */
Datum
atlas_audit_flush(PG_FUNCTION_ARGS)
{
	int			timeout_ms = PG_ARGISNULL(0) ? 5000 : PG_GETARG_INT32(0);

	if (timeout_ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout_ms must not be negative")));
	/* without the worker, rows are written in the caller's transaction */
	if (!atlas_shmem_preloaded())
		PG_RETURN_BOOL(true);
	PG_RETURN_BOOL(atlas_shmem_wait_written(atlas_shmem_audit_handed(), timeout_ms));
}

/* set only while atlas_purge_audit() deletes rows */
static bool purge_in_progress = false;

PG_FUNCTION_INFO_V1(atlas_audit_guard);
PG_FUNCTION_INFO_V1(atlas_purge_audit);

/*
 * atlas_audit_guard(): BEFORE UPDATE OR DELETE and BEFORE TRUNCATE trigger
 * that keeps atlas_removal_audit append-only, for its owner too; only
 * atlas_purge_audit() may delete.
 */
Datum
atlas_audit_guard(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("atlas_audit_guard() must be called as a trigger")));
	if (purge_in_progress && TRIGGER_FIRED_BY_DELETE(td->tg_event))
		return PointerGetDatum(td->tg_trigtuple);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("atlas_removal_audit is append-only"),
			 errdetail("Audit rows cannot be updated, deleted or truncated."),
			 errhint("For retention, the extension owner can run atlas_purge_audit(older_than interval).")));
	return PointerGetDatum(NULL);
}

typedef struct PurgeArgs
{
	Datum		older_than;		/* interval */
	uint64		deleted;
} PurgeArgs;

/* Delete audit rows older than the interval; runs under atlas_as_table_owner(). */
static void
purge_spi(Oid nsp, void *arg)
{
	PurgeArgs  *a = (PurgeArgs *) arg;
	Oid			types[1] = {INTERVALOID};

	if (SPI_execute_with_args(psprintf("DELETE FROM %s.atlas_removal_audit WHERE at < now() - $1",
									   quote_identifier(get_namespace_name(nsp))),
							  1, types, &a->older_than, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not purge the audit table");
	a->deleted = SPI_processed;
}

/* atlas_purge_audit(older_than): delete audit rows older than that; returns how many */
Datum
atlas_purge_audit(PG_FUNCTION_ARGS)
{
	PurgeArgs	a;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than must not be null")));
	a.older_than = PG_GETARG_DATUM(0);
	a.deleted = 0;
	purge_in_progress = true;
	PG_TRY();
	{
		atlas_as_table_owner("atlas_removal_audit", purge_spi, &a);
	}
	PG_FINALLY();
	{
		purge_in_progress = false;
	}
	PG_END_TRY();
	PG_RETURN_INT64((int64) a.deleted);
}
