/*-------------------------------------------------------------------------
 *
 * audit_sql.c
 *	  The audit table's SQL functions: waiting for the durable audit,
 *	  keeping the table append-only, and purging it for retention (never
 *	  rows younger than atlas_users.audit_min_retention).
 *
 *-------------------------------------------------------------------------
 */
#include "audit/audit.h"
#include "settings/settings.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

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

	if (SPI_execute_with_args(psprintf("DELETE FROM %s WHERE at < now() - $1",
									   atlas_ext_rel(nsp, "atlas_removal_audit")),
							  1, types, &a->older_than, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not purge the audit table");
	a->deleted = SPI_processed;
}

/*
 * Refuse a purge that would delete rows younger than
 * atlas_users.audit_min_retention (a negative interval among them), or
 * 22023.
 */
static void
check_retention(Datum older_than)
{
	Interval   *zero = palloc0(sizeof(Interval));
	Interval   *min = palloc0(sizeof(Interval));
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TimestampTz cutoff;

	if (DatumGetInt32(DirectFunctionCall2(interval_cmp, older_than, IntervalPGetDatum(zero))) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than must not be negative"),
				 errdetail("A negative interval would delete every audit row; nothing was deleted.")));
	min->day = atlas_audit_min_retention_min / (HOURS_PER_DAY * MINS_PER_HOUR);
	min->time = (int64) (atlas_audit_min_retention_min % (HOURS_PER_DAY * MINS_PER_HOUR)) * USECS_PER_MINUTE;
	cutoff = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
													 TimestampTzGetDatum(now), older_than));
	if (cutoff > DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
														 TimestampTzGetDatum(now),
														 IntervalPGetDatum(min))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("older_than is shorter than atlas_users.audit_min_retention"),
				 errdetail("Audit rows younger than %s are always kept; nothing was deleted.",
						   DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(min)))),
				 errhint("Purge older rows, or have a superuser lower atlas_users.audit_min_retention.")));
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
	check_retention(a.older_than);
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
