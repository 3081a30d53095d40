/*-------------------------------------------------------------------------
 *
 * audit.c
 *	  The audit trail: one atlas_removal_audit row per removal call, and
 *	  per queue attempt.
 *
 * A finished call becomes a flat AuditRecord (fixed-size fields, no
 * pointers, no credentials).  The executor hands each finished removal
 * here, whatever path it came from.  Every failed call is written to the
 * server log, whole, when it happens, so that a failure is on record even
 * when the caller's transaction rolls back.  Where the record then goes
 * (the worker's ring or the table) is audit_call.c's choice.
 * The insert runs as the table's owner (owner.c), so callers need no
 * privilege on the table and cannot forge or change rows.
 *
 *-------------------------------------------------------------------------
 */
#include "audit/audit.h"
#include "settings/settings.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#define AUDIT_FIXED_ARGS 16
#define AUDIT_NARGS 24

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

/*
 * Refuse, before any request, what would change Atlas or the queue where
 * its rows cannot be written: on a hot standby, and in a read-only
 * transaction (the audit row of a removal is written in this transaction
 * when the worker does not serve it, so a removal could happen without
 * one).  what names the refused action, for the message.
 */
void
atlas_require_writable(const char *what)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot %s on a hot standby", what),
				 errdetail("Every removal writes an audit row, and a standby cannot write; nothing was sent to Atlas."),
				 errhint("Run it on the primary. Lookups and listings work on a standby.")));
	if (XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot %s in a read-only transaction", what),
				 errdetail("Every removal writes an audit row; nothing was sent to Atlas."),
				 errhint("Run it in a read-write transaction.")));
}

/* Build the audit record of a finished call. */
void
atlas_audit_record_from_call(AtlasCall *call, AuditRecord *rec)
{
	memset(rec, 0, sizeof(AuditRecord));
	rec->at = call->started_at ? call->started_at : GetCurrentTimestamp();
	set_field(rec->requested_by, NAMEDATALEN,
			  call->requested_by ? call->requested_by : GetUserNameFromId(GetSessionUserId(), true));
	set_field(rec->executed_as, NAMEDATALEN,
			  GetUserNameFromId(OidIsValid(call->role) ? call->role : GetUserId(), true));
	set_field(rec->operation, sizeof(rec->operation), atlas_operation_name(call->op));
	set_field(rec->org_id, sizeof(rec->org_id), call->org_id);
	set_field(rec->group_id, sizeof(rec->group_id), call->group_id);
	set_field(rec->team_id, sizeof(rec->team_id), call->team_id);
	set_field(rec->user_id, sizeof(rec->user_id), call->user_id);
	set_field(rec->username, sizeof(rec->username), call->username);
	set_field(rec->api_version, sizeof(rec->api_version), call->api_version);
	set_field(rec->auth_method, sizeof(rec->auth_method), call->auth_method);
	rec->http_status = (int) call->answer.http_status;
	set_field(rec->outcome, sizeof(rec->outcome), atlas_outcome_name(call->outcome));
	set_field(rec->error_code, sizeof(rec->error_code), call->answer.error_code);
	set_field(rec->detail, sizeof(rec->detail),
			  call->answer.detail ? call->answer.detail : call->answer.excerpt);
	rec->duration_ms = call->duration_ms;
	rec->attempts = call->attempts;
	set_field(rec->server, sizeof(rec->server), call->server);
	rec->queue_id = call->queue_id;
	rec->server_oid = call->server_oid;
	set_field(rec->approved_by, sizeof(rec->approved_by), call->approved_by);
	set_field(rec->reason, sizeof(rec->reason), call->reason);
	set_field(rec->ticket, sizeof(rec->ticket), call->ticket);
	rec->forced = call->forced;
}

/* Does the audit table have a column (older versions lack some)? */
static bool
has_column(Oid nsp, const char *column)
{
	return get_attnum(get_relname_relid("atlas_removal_audit", nsp), column) != InvalidAttrNumber;
}

/*
 * Prepare the insert for the extension's schema, once per backend.  An
 * install older than the library (between a package upgrade and ALTER
 * EXTENSION UPDATE) lacks the newer columns: they are left out.
 */
static void
prepare_insert(Oid nsp)
{
	static const char *const optional[] = {"username", "server", "queue_id", "server_oid",
	"approved_by", "reason", "ticket", "forced"};
	Oid			types[AUDIT_NARGS] = {TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID,
	TEXTOID, TEXTOID, FLOAT8OID, INT4OID, TEXTOID, TEXTOID, INT8OID, OIDOID, TEXTOID, TEXTOID,
	TEXTOID, BOOLOID};
	StringInfoData cols;
	StringInfoData params;
	int			nargs = AUDIT_FIXED_ARGS;
	int			i;
	SPIPlanPtr	plan;

	initStringInfo(&cols);
	initStringInfo(&params);
	appendStringInfoString(&cols, "at, requested_by, executed_as, operation, org_id, group_id, team_id, "
						   "user_id, api_version, auth_method, http_status, outcome, error_code, "
						   "detail, duration_ms, attempts");
	appendStringInfoString(&params, "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16");
	for (i = 0; i < (int) lengthof(optional); i++)
	{
		/* a missing column's argument is passed on as NULL and left unused */
		if (!has_column(nsp, optional[i]))
			continue;
		appendStringInfo(&cols, ", %s", optional[i]);
		appendStringInfo(&params, ", $%d", AUDIT_FIXED_ARGS + i + 1);
		nargs = AUDIT_FIXED_ARGS + i + 1;
	}
	plan = SPI_prepare(psprintf("INSERT INTO %s (%s) VALUES (%s)",
								atlas_ext_rel(nsp, "atlas_removal_audit"), cols.data, params.data),
					   nargs, types);
	if (plan == NULL)
		elog(ERROR, "could not prepare the audit insert: %s",
			 SPI_result_code_string(SPI_result));
	if (audit_plan != NULL)
		SPI_freeplan(audit_plan);
	SPI_keepplan(plan);
	audit_plan = plan;
	audit_plan_nsp = nsp;
}

/* Insert one audit record; runs under atlas_as_table_owner(). */
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
	values[4] = atlas_text_or_null(rec->org_id, nulls, 4);
	values[5] = atlas_text_or_null(rec->group_id, nulls, 5);
	values[6] = atlas_text_or_null(rec->team_id, nulls, 6);
	values[7] = atlas_text_or_null(rec->user_id, nulls, 7);
	values[8] = atlas_text_or_null(rec->api_version, nulls, 8);
	values[9] = atlas_text_or_null(rec->auth_method, nulls, 9);
	values[10] = Int32GetDatum(rec->http_status);
	if (rec->http_status == 0)
		nulls[10] = 'n';
	values[11] = CStringGetTextDatum(rec->outcome);
	values[12] = atlas_text_or_null(rec->error_code, nulls, 12);
	values[13] = atlas_text_or_null(rec->detail, nulls, 13);
	values[14] = Float8GetDatum(rec->duration_ms);
	values[15] = Int32GetDatum(rec->attempts);
	values[16] = atlas_text_or_null(rec->username, nulls, 16);
	values[17] = atlas_text_or_null(rec->server, nulls, 17);
	values[18] = Int64GetDatum(rec->queue_id);
	nulls[18] = (rec->queue_id == 0) ? 'n' : ' ';
	values[19] = ObjectIdGetDatum(rec->server_oid);
	nulls[19] = OidIsValid(rec->server_oid) ? ' ' : 'n';
	values[20] = atlas_text_or_null(rec->approved_by, nulls, 20);
	values[21] = atlas_text_or_null(rec->reason, nulls, 21);
	values[22] = atlas_text_or_null(rec->ticket, nulls, 22);
	values[23] = BoolGetDatum(rec->forced);

	if (audit_plan == NULL || audit_plan_nsp != nsp)
		prepare_insert(nsp);
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
			 errmsg_internal("atlas_users audit: %s operation=%s org_id=%s group_id=%s team_id=%s user_id=%s "
							 "username=%s outcome=%s http_status=%d error_code=%s attempts=%d duration_ms=%.1f "
							 "api_version=%s auth_method=%s requested_by=%s executed_as=%s at=%s",
							 why, rec->operation, rec->org_id, rec->group_id, rec->team_id,
							 rec->user_id, rec->username, rec->outcome, rec->http_status,
							 rec->error_code, rec->attempts, rec->duration_ms, rec->api_version,
							 rec->auth_method, rec->requested_by, rec->executed_as,
							 timestamptz_to_str(rec->at)),
			 rec->detail[0] ? errdetail_log("%s", rec->detail) : 0));
}
