/*-------------------------------------------------------------------------
 *
 * handoff.c
 *	  Shared state between backends and the background worker: the audit
 *	  hand-off ring, the worker's identity, and the worker's draining of
 *	  the ring into the audit table.
 *
 * Only with shared_preload_libraries = 'atlas_users'.  A backend that
 * finishes a call copies its AuditRecord into a bounded ring under an
 * LWLock and sets the worker's latch; the worker inserts the records in
 * its own transaction, so they survive the caller's rollback, error or
 * exit.  Records are numbered: "handed" counts records put in the ring,
 * "written" counts records committed to the table; the ring holds the
 * records between the two.  atlas_audit_flush() waits on a condition
 * variable for "written" to reach what was handed before it was called.
 * When the ring is full, a backend waits a bounded time for room, then
 * writes the whole record to the server log instead.
 *
 *-------------------------------------------------------------------------
 */
#include "audit/audit.h"
#include "shared/shared.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/*
 * Records the ring holds: the worker drains it within milliseconds, so a
 * small ring suffices, and it keeps the shared pages a backend touches
 * (about 1.7 MB) small.
 */
#define AUDIT_RING_SIZE 1024
/* how long a backend waits for room in a full ring */
#define AUDIT_FULL_WAIT_MS 2000
/* records the worker inserts in one transaction */
#define AUDIT_BATCH 256

typedef struct AtlasShared
{
	LWLock	   *lock;
	ConditionVariable cv;		/* "written" advanced, or room in the ring */
	pid_t		worker_pid;
	Latch	   *worker_latch;
	Oid			worker_dboid;	/* database the worker serves */
	TimestampTz worker_activity;
	TimestampTz worker_paced_until; /* the worker waits for a rate limit until */
	char		worker_paced_bucket[96];	/* that bucket */
	uint64		handed;
	uint64		written;
	uint64		logged_instead; /* records that went to the log, ring full */
	int			worker_failed_starts;	/* starts in a row that never connected */
	AuditRecord ring[AUDIT_RING_SIZE];
} AtlasShared;

static AtlasShared *shared = NULL;

/* A new shared state: its condition variable. */
static void
shared_made(void *s)
{
	ConditionVariableInit(&((AtlasShared *) s)->cv);
}

/* The hand-off's shared memory, for init.c; never made backend-local. */
const AtlasSharedSpec atlas_handoff_shared = {
	"atlas_users", sizeof(AtlasShared), (void **) &shared, shared_made
};

/* Is the durable audit available to this backend's database? */
bool
atlas_shmem_audit_available(void)
{
	bool		ok;

	if (shared == NULL)
		return false;
	LWLockAcquire(shared->lock, LW_SHARED);
	ok = shared->worker_pid != 0 && shared->worker_dboid == MyDatabaseId;
	LWLockRelease(shared->lock);
	return ok;
}

/* Is the library preloaded (is there shared state at all)? */
bool
atlas_shmem_preloaded(void)
{
	return shared != NULL;
}

/* Wake the worker, if there is one. */
void
atlas_shmem_wake_worker(void)
{
	Latch	   *latch = NULL;

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_SHARED);
	if (shared->worker_pid != 0)
		latch = shared->worker_latch;
	LWLockRelease(shared->lock);
	if (latch)
		SetLatch(latch);
}

/*
 * Hand a record to the worker.  Returns false when the ring stayed full
 * for AUDIT_FULL_WAIT_MS; the caller must then log the record itself.
 * Never raises: it also runs in error cleanup.
 */
bool
atlas_shmem_hand_audit(AuditRecord *rec)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   AUDIT_FULL_WAIT_MS);
	bool		done = false;

	if (shared == NULL)
		return false;
	for (;;)
	{
		Latch	   *latch = NULL;
		long		left;
		bool		was_empty = false;

		LWLockAcquire(shared->lock, LW_EXCLUSIVE);
		if (shared->handed - shared->written < AUDIT_RING_SIZE)
		{
			was_empty = (shared->handed == shared->written);
			memcpy(&shared->ring[shared->handed % AUDIT_RING_SIZE], rec, sizeof(AuditRecord));
			shared->handed++;
			done = true;
		}

		/*
		 * Wake the worker when the ring stops being empty, or is full.  While
		 * records wait, the worker is awake already: it drains until empty.
		 */
		if (shared->worker_pid != 0 && (was_empty || !done))
			latch = shared->worker_latch;
		LWLockRelease(shared->lock);
		if (latch)
			SetLatch(latch);
		if (done)
			break;

		left = (long) ((deadline - GetCurrentTimestamp()) / 1000);
		if (left <= 0)
		{
			LWLockAcquire(shared->lock, LW_EXCLUSIVE);
			shared->logged_instead++;
			LWLockRelease(shared->lock);
			break;
		}
		ConditionVariableTimedSleep(&shared->cv, Min(left, 100), PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	return done;
}

/* How many records have been handed over so far. */
uint64
atlas_shmem_audit_handed(void)
{
	uint64		n;

	LWLockAcquire(shared->lock, LW_SHARED);
	n = shared->handed;
	LWLockRelease(shared->lock);
	return n;
}

/* Wait until every record numbered below target is written; false on timeout. */
bool
atlas_shmem_wait_written(uint64 target, int timeout_ms)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	bool		ok = false;

	for (;;)
	{
		long		left;

		LWLockAcquire(shared->lock, LW_SHARED);
		ok = shared->written >= target;
		LWLockRelease(shared->lock);
		if (ok)
			break;
		left = (long) ((deadline - GetCurrentTimestamp()) / 1000);
		if (left <= 0)
			break;
		ConditionVariableTimedSleep(&shared->cv, Min(left, 100), PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	return ok;
}

/*
 * Worker side: copy up to max records waiting in the ring into out, and
 * return how many.  They stay in the ring until atlas_shmem_audit_done().
 */
int
atlas_shmem_peek_audit(AuditRecord *out, int max)
{
	int			n = 0;
	uint64		seq;

	LWLockAcquire(shared->lock, LW_SHARED);
	for (seq = shared->written; seq < shared->handed && n < max; seq++)
		memcpy(&out[n++], &shared->ring[seq % AUDIT_RING_SIZE], sizeof(AuditRecord));
	LWLockRelease(shared->lock);
	return n;
}

/* Worker side: n records from the ring are committed; free their room. */
void
atlas_shmem_audit_done(int n)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->written += n;
	shared->worker_activity = GetCurrentTimestamp();
	LWLockRelease(shared->lock);
	ConditionVariableBroadcast(&shared->cv);
}

/* Clear the worker's registration; runs at worker exit. */
static void
worker_detach(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (shared->worker_pid == MyProcPid)
	{
		shared->worker_pid = 0;
		shared->worker_latch = NULL;
		shared->worker_dboid = InvalidOid;
	}
	LWLockRelease(shared->lock);
	ConditionVariableBroadcast(&shared->cv);
}

/* Worker side: register as the worker serving this database. */
void
atlas_shmem_worker_attach(void)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->worker_pid = MyProcPid;
	shared->worker_latch = MyLatch;
	shared->worker_dboid = MyDatabaseId;
	shared->worker_activity = GetCurrentTimestamp();
	shared->worker_failed_starts = 0;
	LWLockRelease(shared->lock);
	on_shmem_exit(worker_detach, (Datum) 0);
}

/*
 * Worker side, before connecting: count this start, and return how many
 * starts in a row before it never connected (atlas_shmem_worker_attach
 * sets the count back to 0).
 */
int
atlas_shmem_worker_starting(void)
{
	int			failed;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	failed = shared->worker_failed_starts;
	if (shared->worker_failed_starts < INT_MAX)
		shared->worker_failed_starts++;
	LWLockRelease(shared->lock);
	return failed;
}

/* Worker side: note that the worker did something just now. */
void
atlas_shmem_worker_activity(void)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->worker_activity = GetCurrentTimestamp();
	LWLockRelease(shared->lock);
}

/* Worker side: note that a rate limit holds a queued removal back until then. */
void
atlas_shmem_worker_waiting(TimestampTz until, const char *bucket)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->worker_paced_until = until;
	strlcpy(shared->worker_paced_bucket, bucket, sizeof(shared->worker_paced_bucket));
	LWLockRelease(shared->lock);
}

/* The worker: its pid (0 if none), last activity, log fallbacks and rate-limit wait. */
void
atlas_shmem_worker_info(AtlasWorkerInfo *info)
{
	memset(info, 0, sizeof(AtlasWorkerInfo));
	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_SHARED);
	info->pid = shared->worker_pid;
	info->activity = shared->worker_activity;
	info->logged_instead = shared->logged_instead;
	info->paced_until = shared->worker_paced_until;
	strlcpy(info->paced_bucket, shared->worker_paced_bucket, sizeof(info->paced_bucket));
	LWLockRelease(shared->lock);
}

/*
 * Insert a batch of handed-over audit records in one transaction.  If they
 * cannot be inserted (the table is gone, say), log them whole instead:
 * a record is never dropped silently.
 */
static void
insert_batch(AuditRecord *recs, int n)
{
	int			i;

	PG_TRY();
	{
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		for (i = 0; i < n; i++)
			atlas_audit_insert(&recs[i]);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		for (i = 0; i < n; i++)
			atlas_audit_log(&recs[i], "audit row could not be inserted");
	}
	PG_END_TRY();
}

/* Insert the handed-over audit records, a batch per transaction; outside any. */
void
atlas_audit_drain_handed(void)
{
	static AuditRecord *buf = NULL;
	MemoryContext cxt = CurrentMemoryContext;
	int			n;

	if (buf == NULL)
		buf = MemoryContextAlloc(TopMemoryContext, sizeof(AuditRecord) * AUDIT_BATCH);
	while ((n = atlas_shmem_peek_audit(buf, AUDIT_BATCH)) > 0)
	{
		insert_batch(buf, n);
		MemoryContextSwitchTo(cxt);
		atlas_shmem_audit_done(n);
	}
}
