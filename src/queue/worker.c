/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background worker: writes handed-over audit records and drains
 *	  the removal queue.
 *
 * Started when atlas_users is in shared_preload_libraries, it connects to
 * atlas_users.database.  It sleeps on its latch, which backends set when
 * they hand over an audit record or commit an enqueue; it wakes on its
 * own only when a queued retry falls due (or, while the extension is not
 * installed in its database, every few seconds to look again).
 *
 * SIGTERM (shutdown, pg_terminate_backend, DROP DATABASE ... WITH (FORCE))
 * ends it at the next interrupt check, also in the middle of a batch: the
 * transport checks for interrupts while it waits.  Rows it had marked
 * 'running' are put back in the queue when it starts again.  SIGHUP
 * reloads the configuration between batches.  While a refused
 * atlas_users.* value holds (settings_check.c), it claims no row and logs
 * the refusal once per reload.  Any other error ends the worker, which the
 * postmaster restarts after a second.
 *
 *-------------------------------------------------------------------------
 */
#include "queue/queue.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "funcapi.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PGDLLEXPORT void atlas_worker_main(Datum arg);

/* how often to look for the extension while it is not installed */
#define NO_EXTENSION_WAIT_MS 5000
/* how often to apply the queue's retention */
#define PURGE_INTERVAL_MS 60000
/* the longest pause before connecting again after starts that failed */
#define CONNECT_BACKOFF_MAX_MS 60000
/* how long the worker lets records gather before it inserts them */
#define AUDIT_GATHER_MS 10

PG_FUNCTION_INFO_V1(atlas_worker_status);

/*
 * atlas_worker_status(): the worker's pid, last activity and log
 * fallbacks, and until when a rate limit holds a queued removal back
 */
Datum
atlas_worker_status(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	AtlasWorkerInfo info;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	atlas_shmem_worker_info(&info);
	values[0] = Int32GetDatum((int32) info.pid);
	nulls[0] = (info.pid == 0);
	values[1] = TimestampTzGetDatum(info.activity);
	nulls[1] = (info.activity == 0);
	values[2] = Int64GetDatum((int64) info.logged_instead);
	/* a 1.3 install's function has three columns */
	if (desc->natts >= 5)
	{
		bool		waiting = info.paced_until > GetCurrentTimestamp();

		values[3] = TimestampTzGetDatum(info.paced_until);
		nulls[3] = !waiting;
		values[4] = CStringGetTextDatum(info.paced_bucket);
		nulls[4] = !waiting;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* Register the worker; called from _PG_init while preloading. */
void
atlas_worker_register(void)
{
	BackgroundWorker w;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = 1;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "atlas_users");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "atlas_worker_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "atlas_users worker");
	snprintf(w.bgw_type, BGW_MAXLEN, "atlas_users worker");
	RegisterBackgroundWorker(&w);
}

/* Is the extension installed in this database? */
static bool
extension_installed(void)
{
	bool		present;

	StartTransactionCommand();
	present = OidIsValid(get_extension_oid("atlas_users", true));
	CommitTransactionCommand();
	return present;
}

/* Drain the audit ring, letting a burst of records gather first. */
static void
drain_audit_gathered(void)
{
	AuditRecord one;

	/* a short pause gathers a burst of calls into one transaction */
	if (atlas_shmem_peek_audit(&one, 1) > 0)
	{
		(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, AUDIT_GATHER_MS,
						 PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
	atlas_audit_drain_handed();
}

/*
 * Pause before connecting when the last "failed" starts never connected
 * (atlas_users.database dropped or not created yet): 1 s, 2 s, 4 s, ... up
 * to a minute, so that the server log gets a FATAL a minute rather than a
 * second.  A shutdown or SIGTERM ends the pause at once; other wake-ups
 * of the latch do not shorten it.
 */
static void
wait_before_connecting(int failed)
{
	long		delay_ms = CONNECT_BACKOFF_MAX_MS;
	TimestampTz until;

	if (failed <= 6)
		delay_ms = Min(1000L << (failed - 1), CONNECT_BACKOFF_MAX_MS);
	ereport(LOG,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("atlas_users worker could not connect to database \"%s\" on its last %d %s; next attempt in %ld s",
					atlas_database, failed, failed == 1 ? "start" : "starts", delay_ms / 1000),
			 errhint("Create the database and run CREATE EXTENSION atlas_users in it, or set atlas_users.database and restart the server.")));
	until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay_ms);
	for (;;)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);

		if (left <= 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 left, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* what the worker keeps between rounds of its loop */
typedef struct WorkerState
{
	MemoryContext cxt;			/* reset every round */
	bool		recovered;		/* rows of an earlier process put back */
	TimestampTz last_purge;
	bool		refusal_reported;	/* since the last reload */
} WorkerState;

/*
 * Does a refused atlas_users.* value hold (settings_check.c)?  Then no row
 * is claimed: they stay queued until a reload fixes the value, instead of
 * each failing on it.  Logged once per reload.
 */
static bool
settings_refused(WorkerState *ws)
{
	volatile bool refused = false;

	PG_TRY();
	{
		atlas_settings_check();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(ws->cxt);
		if (!ws->refusal_reported)
			EmitErrorReport();
		ws->refusal_reported = true;
		FlushErrorState();
		refused = true;
	}
	PG_END_TRY();
	return refused;
}

/* Start: signals, the pause after failed starts, the database, shared state. */
static void
worker_start(void)
{
	int			failed_starts;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	failed_starts = atlas_shmem_worker_starting();
	if (failed_starts > 0)
		wait_before_connecting(failed_starts);
	BackgroundWorkerInitializeConnection(atlas_database, NULL, 0);
	pgstat_report_appname("atlas_users worker");
	atlas_shmem_worker_attach();
	ereport(LOG,
			(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
			 errmsg("atlas_users worker started in database \"%s\"", atlas_database)));
}

/*
 * The queue's housekeeping, in one transaction: put back rows an earlier
 * process left running (once), apply the retention (once a minute), and
 * return when the next queued row is due (0: none).
 */
static TimestampTz
queue_housekeeping(WorkerState *ws)
{
	TimestampTz next_due;
	uint64		requeued = 0;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!ws->recovered)
	{
		requeued = atlas_queue_recover();
		/* the removal budget remembers the window's removals (guard.c) */
		atlas_guard_recall();
	}
	next_due = atlas_queue_next_due();
	if (TimestampDifferenceExceeds(ws->last_purge, GetCurrentTimestamp(), PURGE_INTERVAL_MS))
	{
		(void) atlas_queue_purge();
		ws->last_purge = GetCurrentTimestamp();
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(ws->cxt);
	if (requeued > 0)
		ereport(LOG,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("atlas_users worker requeued %llu removals left running by an earlier process",
						(unsigned long long) requeued)));
	ws->recovered = true;
	return next_due;
}

/*
 * One round of work: the audit records handed over, then the due rows of
 * the queue.  Returns how long to sleep: -1 until the latch is set, 0 not
 * at all.
 */
static long
worker_round(WorkerState *ws)
{
	TimestampTz next_due;

	if (!extension_installed())
	{
		MemoryContextSwitchTo(ws->cxt);
		drain_audit_gathered();
		return NO_EXTENSION_WAIT_MS;
	}
	MemoryContextSwitchTo(ws->cxt);
	drain_audit_gathered();
	next_due = queue_housekeeping(ws);
	if (next_due == 0)
		return -1;
	if (next_due > GetCurrentTimestamp())
		return Max(1, (long) ((next_due - GetCurrentTimestamp()) / 1000) + 1);
	if (settings_refused(ws))
		return -1;				/* until a reload or a new row wakes the worker */
	if (atlas_queue_drain(true, 0) == 0)
		return -1;
	MemoryContextSwitchTo(ws->cxt);
	atlas_shmem_worker_activity();
	pgstat_report_activity(STATE_IDLE, NULL);
	return 0;					/* look for more at once */
}

/* The worker's main loop. */
void
atlas_worker_main(Datum arg pg_attribute_unused())
{
	WorkerState ws;

	memset(&ws, 0, sizeof(ws));
	worker_start();
	ws.cxt = AllocSetContextCreate(TopMemoryContext, "atlas_users worker",
								   ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		long		timeout;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			ws.refusal_reported = false;
		}
		MemoryContextReset(ws.cxt);
		MemoryContextSwitchTo(ws.cxt);
		timeout = worker_round(&ws);
		if (timeout == 0)
			continue;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | (timeout > 0 ? WL_TIMEOUT : 0),
						 timeout, PG_WAIT_EXTENSION);
	}
}
