/*-------------------------------------------------------------------------
 *
 * executor.c
 *	  The one way Atlas calls are run: synchronous removals, bulk,
 *	  offboarding, lookups and listings, atlas_process_queue() and the
 *	  worker all hand their calls to a run.
 *
 * A run owns, for all of them: the concurrency (through the transport,
 * http.c), the credentials of each call's target, the service-account
 * token (fetched first when none is cached, renewed once when Atlas
 * rejects it with a 401), the single retry policy (429, 503 and transport
 * failures; a queued removal also 500, 502 and 504), the sorting of each
 * answer into succeeded, already absent or failed, the audit of every
 * finished removal (with the failed-call log line), and the cleanup when
 * an error or a cancel interrupts it.  It never raises for an Atlas
 * answer: callers differ only in what they do with finished calls, which
 * they see through the run's finished() hook or after the run.
 *
 * Calls may be added while the run goes on: by feed() between transfers
 * (the worker claims queue rows so), or by finished() (a listing asks for
 * its next page, a username lookup for its removal).
 *
 *-------------------------------------------------------------------------
 */
#include "executor/executor_int.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* how often a long run says how far it got */
#define PROGRESS_INTERVAL_MS 10000

/* runs of this process inside http_run() now */
static int	executing = 0;

/* called for a call added outside any run (rate_sets_read.c installs it) */
AtlasBeforeRunHook atlas_before_run_hook = NULL;

/* The run spec of a SQL function: the session's settings, audited here. */
AtlasRunSpec
atlas_session_spec(const char *progress_label)
{
	AtlasRunSpec spec;

	memset(&spec, 0, sizeof(spec));
	spec.concurrency = atlas_max_concurrency;
	spec.max_retries = atlas_max_retries;
	spec.progress_label = progress_label;
	spec.audit = ATLAS_AUDIT_SESSION;
	return spec;
}

/* A new run; its memory is a child of the current context. */
AtlasRun *
atlas_run_create(const AtlasRunSpec *spec)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "atlas_users run",
											  ALLOCSET_DEFAULT_SIZES);
	AtlasRun   *run = MemoryContextAllocZero(cxt, sizeof(AtlasRun));

	run->spec = *spec;
	run->cxt = cxt;
	run->last_progress = GetCurrentTimestamp();
	run->feed_more = (spec->feed != NULL);
	return run;
}

/* Append a call to one of the run's arrays, growing it. */
void
atlas_run_push(AtlasRun *run, AtlasCall ***arr, int *n, int *cap, AtlasCall *call)
{
	if (*n == *cap)
	{
		int			newcap = Max(16, *cap * 2);

		if (*arr == NULL)
			*arr = MemoryContextAlloc(run->cxt, sizeof(AtlasCall *) * newcap);
		else
			*arr = repalloc(*arr, sizeof(AtlasCall *) * newcap);
		*cap = newcap;
	}
	(*arr)[(*n)++] = call;
}

/* Remove element i of an array, keeping the order. */
void
atlas_run_take(AtlasCall **arr, int *n, int i)
{
	memmove(&arr[i], &arr[i + 1], sizeof(AtlasCall *) * (*n - i - 1));
	(*n)--;
}

/* Give a call its state and memory in the run; returns its context. */
static MemoryContext
new_call_state(AtlasRun *run, AtlasCall *call)
{
	MemoryContext cxt = AllocSetContextCreate(run->cxt, "atlas_users call",
											  ALLOCSET_SMALL_SIZES);

	call->state = MemoryContextAllocZero(cxt, sizeof(AtlasCallState));
	call->state->cxt = cxt;
	return cxt;
}

/*
 * Add a call to a run.  Its target is resolved now, so a configuration
 * error raises before the run sends anything.
 */
void
atlas_run_add(AtlasRun *run, AtlasCall *call)
{
	AtlasTarget *target;
	MemoryContext old;

	if (run->spec.audit == ATLAS_AUDIT_SESSION && atlas_operation_removes(call->op))
		atlas_require_writable("remove Atlas users");
	/* every removal sent counts toward the removal budget (guard.c) */
	atlas_guard_count_call(call);
	target = atlas_call_target(run, call);
	/* Atlas's rate-limit sets are read before a run only (never within one) */
	if (executing == 0 && atlas_before_run_hook != NULL)
		atlas_before_run_hook(target, call);
	old = MemoryContextSwitchTo(new_call_state(run, call));
	call->outcome = ATLAS_OUTCOME_NONE;
	call->answer.retry_after = -1;
	atlas_prepare_call(run, call, target);
	atlas_run_push(run, &run->pending, &run->npending, &run->pending_cap, call);
	run->nadded++;
	MemoryContextSwitchTo(old);
}

/* Mark a call done for good, with an outcome; it is reported next. */
void
atlas_run_finish(AtlasRun *run, AtlasCall *call, AtlasOutcome outcome)
{
	MemoryContext old = MemoryContextSwitchTo(run->cxt);

	if (call->started_at == 0)
		call->started_at = GetCurrentTimestamp();
	call->outcome = outcome;
	call->state->finished = true;
	call->duration_ms = (double) (GetCurrentTimestamp() - call->started_at) / 1000.0;
	run->done = lappend(run->done, call);
	MemoryContextSwitchTo(old);
}

/*
 * Finish a call that sends nothing (a username with no Atlas user, a
 * failed lookup): it is audited and reported like any other.
 */
void
atlas_run_finish_unsent(AtlasRun *run, AtlasCall *call, AtlasOutcome outcome)
{
	if (call->state == NULL)
		(void) new_call_state(run, call);
	run->nadded++;
	atlas_run_finish(run, call, outcome);
}

/* A call waits wait_ms for a rate limit: note it for progress and status. */
void
atlas_run_paced(AtlasRun *run, const AtlasPaceKey *k, long wait_ms)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);

	if (until > run->paced_until)
	{
		run->paced_until = until;
		strlcpy(run->paced_name, k->name, sizeof(run->paced_name));
		if (run->spec.audit == ATLAS_AUDIT_WORKER)
			atlas_shmem_worker_waiting(until, k->name);
	}
}

/*
 * A call of a bucket the run waited for went: the wait is over (it may end
 * before the time it was expected to, when an answer tells of tokens).
 */
void
atlas_run_unpaced(AtlasRun *run, const AtlasPaceKey *k)
{
	if (run->paced_until == 0 || strcmp(run->paced_name, k->name) != 0)
		return;
	run->paced_until = 0;
	if (run->spec.audit == ATLAS_AUDIT_WORKER)
		atlas_shmem_worker_waiting(0, "");
}

/*
 * On long runs, say every 10 seconds how far the run got, and what it
 * waits for when a rate limit holds it back.
 */
static void
report_progress(AtlasRun *run)
{
	TimestampTz now;

	if (run->spec.progress_label == NULL)
		return;
	now = GetCurrentTimestamp();
	if (!TimestampDifferenceExceeds(run->last_progress, now, PROGRESS_INTERVAL_MS))
		return;
	run->last_progress = now;
	if (run->paced_until > now)
		ereport(NOTICE,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("%s: %d of %d done; waiting %.1f s for Atlas's rate limit (%s)",
						run->spec.progress_label, run->nreported, run->nadded,
						(double) (run->paced_until - now) / 1000000.0, run->paced_name)));
	else
		ereport(NOTICE,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("%s: %d of %d done", run->spec.progress_label,
						run->nreported, run->nadded)));
}

/*
 * Report the calls that finished: audit each removal, and hand every call
 * to finished().  The worker does both in one transaction per batch of
 * finished calls, so a queue row's new state and its audit row commit
 * together.
 */
static void
report_finished(AtlasRun *run)
{
	bool		worker = (run->spec.audit == ATLAS_AUDIT_WORKER);
	MemoryContext old = CurrentMemoryContext;
	List	   *done = run->done;
	ListCell   *lc;

	if (done == NIL)
		return;
	run->done = NIL;
	if (worker)
	{
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		MemoryContextSwitchTo(run->cxt);
	}
	foreach(lc, done)
	{
		AtlasCall  *call = (AtlasCall *) lfirst(lc);

		if (atlas_operation_removes(call->op))
			atlas_audit_call(call, run->spec.audit);
		call->state->reported = true;
		run->nreported++;
		if (run->spec.finished)
			run->spec.finished(run, call, run->spec.arg);
		if (run->spec.forget_calls)
		{
			MemoryContextDelete(call->state->cxt);
			call->state = NULL;
		}
	}
	if (worker)
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	MemoryContextSwitchTo(old);
	list_free(done);
}

/* Driver callback between transfers: report, feed; false when all is done. */
static bool
executor_step(void *arg, int in_flight)
{
	AtlasRun   *run = (AtlasRun *) arg;

	report_finished(run);
	report_progress(run);
	if (run->spec.feed != NULL && run->feed_more)
	{
		int			free_slots = run->spec.concurrency - in_flight - run->npending;

		run->feed_wait_ms = -1;
		run->feed_more = run->spec.feed(run, run->spec.arg, Max(free_slots, 0),
										&run->feed_wait_ms);
		report_finished(run);
	}
	return run->npending > 0 || run->feed_more || run->done != NIL;
}

/*
 * Audit what an error (query cancel, statement_timeout, shutdown) left:
 * calls that finished and were not reported yet, with their outcome, and
 * calls started and not finished, as interrupted.  This runs in error
 * cleanup, so it only logs and hands over; it never uses SPI.
 */
static void
audit_after_error(AtlasRun *run)
{
	ListCell   *lc;
	int			i;

	HOLD_INTERRUPTS();
	foreach(lc, run->done)
	{
		AtlasCall  *call = (AtlasCall *) lfirst(lc);

		if (atlas_operation_removes(call->op))
			atlas_audit_interrupted(call);
	}
	for (i = 0; i < run->nflight; i++)
		if (atlas_operation_removes(run->flight[i]->op))
			atlas_audit_interrupted(run->flight[i]);
	for (i = 0; i < run->npending; i++)
		if (run->pending[i]->started_at != 0 && atlas_operation_removes(run->pending[i]->op))
			atlas_audit_interrupted(run->pending[i]);
	RESUME_INTERRUPTS();
}

/*
 * Driver callback: what the run waits for while the transport sleeps: an
 * answer when requests are in flight, else the rate limit or a token.
 */
static uint32
executor_wait_event(void *arg, int in_flight)
{
	AtlasRun   *run = (AtlasRun *) arg;

	return atlas_wait_event(in_flight > 0 ? ATLAS_WAIT_REQUEST : run->wait_kind);
}

/*
 * Run every call added, and every call the hooks add, to the end.  Raises
 * only for configuration errors (before any request), interrupts and the
 * hooks' own errors; on an error, what was sent is audited first.
 */
void
atlas_run_execute(AtlasRun *run)
{
	HttpDriver	driver;
	MemoryContext old = MemoryContextSwitchTo(run->cxt);

	driver.step = executor_step;
	driver.next = atlas_dispatch_next;
	driver.done = atlas_dispatch_done;
	driver.wait_event = executor_wait_event;
	driver.arg = run;
	driver.concurrency = Max(1, Min(run->spec.concurrency, ATLAS_MAX_CONCURRENCY));

	executing++;
	PG_TRY();
	{
		http_run(&driver);
	}
	PG_CATCH();
	{
		executing--;
		MemoryContextSwitchTo(old);
		audit_after_error(run);
		atlas_pace_release_all();
		atlas_token_release_fetches();
		atlas_run_wipe_secrets(run);
		PG_RE_THROW();
	}
	PG_END_TRY();
	executing--;
	atlas_run_wipe_secrets(run);
	MemoryContextSwitchTo(old);
}

/* Run a set of calls with a spec: the common case. */
void
atlas_execute(AtlasCall **calls, int ncalls, const AtlasRunSpec *spec)
{
	AtlasRun   *run = atlas_run_create(spec);
	int			i;

	for (i = 0; i < ncalls; i++)
		atlas_run_add(run, calls[i]);
	atlas_run_execute(run);
}
