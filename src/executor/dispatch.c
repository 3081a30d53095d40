/*-------------------------------------------------------------------------
 *
 * dispatch.c
 *	  Sending a run's calls: which call goes next, with which token, and
 *	  what each answer means: finished, or sent again under the retry
 *	  policy.
 *
 * These are the transport driver's next() and done() callbacks of a run
 * (executor.c starts the run).  next() looks through the calls waiting to
 * be sent for one whose retry is due and whose target has a token; a
 * service-account target without one gets its token request sent first,
 * or waits while another process fetches it.  done() sorts an answer: a
 * 2xx succeeded; a 401 to a bearer token renews the token once and sends
 * again; a retryable failure goes again after the policy's delay while
 * the run's retries last; an absent user is an outcome when the caller
 * allows it; anything else failed.
 *
 *-------------------------------------------------------------------------
 */
#include "executor/executor_int.h"

#include "common/pg_prng.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* how often a call waits for the answer that says whether its endpoint retired */
#define CALENDAR_WAIT_MS 20

/* Finish a call with its target's token failure. */
static void
fail_with_token(AtlasRun *run, AtlasCall *call)
{
	call->answer = call->state->ts->token_answer;
	atlas_run_finish(run, call, ATLAS_OUTCOME_FAILED);
}

/*
 * Is a failed attempt worth another, and after how long?  The one retry
 * policy: a 429 or 503, and a transport failure, are retried, and a
 * queued removal also retries 500, 502 and 504, and credentials it could
 * not use (it has time, and the configuration may be mended; a statement
 * at a prompt does not wait for them).  The delay is the backoff of
 * atlas_users.retry_base_ms doubled per attempt, plus up to 25% jitter,
 * and never shorter than Retry-After.
 */
bool
atlas_retry_due(const AtlasAnswer *answer, int attempt, bool queued, int64 *delay_ms)
{
	long		st = answer->http_status;
	double		backoff;

	if (!(answer->transport_failed || st == 429 || st == 503 ||
		  (queued && (st == 500 || st == 502 || st == 504 || answer->config_failed))))
		return false;
	backoff = (double) atlas_retry_base_ms * (double) (1 << Min(Max(attempt, 1) - 1, 16));
	backoff = Min(backoff, 3600.0 * 1000);
	backoff *= 1.0 + 0.25 * pg_prng_double(&pg_global_prng_state);
	*delay_ms = (int64) Max(backoff, answer->retry_after * 1000.0);
	return true;
}

/* Send a call again after a delay. */
static void
requeue(AtlasRun *run, AtlasCall *call, int64 delay_ms)
{
	call->state->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay_ms);
	atlas_run_push(run, &run->pending, &run->npending, &run->pending_cap, call);
}

/*
 * Does an answer ask a longer wait (Retry-After) than a statement waits,
 * atlas_users.rate_limit_max_wait?  Then it says so in the answer, which
 * fails at once.  (The queue never waits in a run: it retries the row
 * later, after the Retry-After.)
 */
static bool
wait_too_long(AtlasAnswer *a)
{
	if (a->retry_after < 0 || a->retry_after <= atlas_rate_limit_max_wait_s)
		return false;
	a->rate_wait = true;
	a->detail = psprintf("Atlas answered %ld and asks to wait %d s (Retry-After), longer than atlas_users.rate_limit_max_wait (%d s); the request was not sent again.%s%s",
						 a->http_status, a->retry_after, atlas_rate_limit_max_wait_s,
						 a->detail ? " Atlas said: " : "", a->detail ? a->detail : "");
	return true;
}

/* Retry the call if the policy and the run's retries allow; true if so. */
static bool
maybe_retry(AtlasRun *run, AtlasCall *call)
{
	int64		delay_ms;

	if (call->attempts > run->spec.max_retries ||
		!atlas_retry_due(&call->answer, call->attempts, false, &delay_ms) ||
		wait_too_long(&call->answer))
		return false;
	requeue(run, call, delay_ms);
	return true;
}

/* Keep a failure another process's token request met, for this run's calls. */
static void
take_token_failure(TargetState *ts, const AtlasTokenFailure *f)
{
	AtlasAnswer *a = &ts->token_answer;

	memset(a, 0, sizeof(AtlasAnswer));
	a->token_failed = true;
	a->http_status = f->http_status;
	a->transport_failed = f->transport_failed;
	a->retry_after = f->retry_after;
	a->error_code = f->error_code[0] ? pstrdup(f->error_code) : NULL;
	a->detail = f->detail[0] ? pstrdup(f->detail) : NULL;
	ts->token_failed = true;
}

/* Lower *wait_ms to ms (-1 is no wait yet). */
static void
wait_at_most(long *wait_ms, long ms)
{
	*wait_ms = (*wait_ms < 0) ? ms : Min(*wait_ms, ms);
}

/*
 * How far the token of a call's target is: true when the call may go.
 * Otherwise *token_req is a token request to send first, or the call
 * waits (*wait_ms), or its target's token failed.
 */
static bool
token_ready(TargetState *ts, HttpRequest **token_req, long *wait_ms)
{
	AtlasTokenFailure failure;
	long		ms = -1;

	*token_req = NULL;
	if (ts->target->method != ATLAS_AUTH_SERVICE_ACCOUNT)
		return true;
	if (ts->token_failed || ts->fetching)
		return false;
	switch (atlas_token_get(ts->target, ts->token, &ts->generation, ts->waiting_since,
							&failure, &ms))
	{
		case ATLAS_TOKEN_READY:
			ts->waiting_since = 0;
			return true;
		case ATLAS_TOKEN_WAIT:
			if (ts->waiting_since == 0)
				ts->waiting_since = GetCurrentTimestamp();
			wait_at_most(wait_ms, ms);
			return false;
		case ATLAS_TOKEN_FAILED:
			take_token_failure(ts, &failure);
			return false;
		case ATLAS_TOKEN_FETCH:
			break;
	}
	atlas_token_request(ts->target, &ts->token_req);
	ts->fetching = true;
	ts->token_attempts++;
	*token_req = &ts->token_req;
	return false;
}

/*
 * May the call go by its rate limit?  True: it is counted in flight.
 * Otherwise it waits (*wait_ms), or it failed because the wait would be
 * longer than atlas_users.rate_limit_max_wait.
 */
static bool
pace_ready(AtlasRun *run, AtlasCall *call, long *wait_ms)
{
	AtlasCallState *st = call->state;
	long		ms = -1;

	if (atlas_pace_acquire(&st->pace, &ms))
	{
		atlas_run_unpaced(run, &st->pace);
		if (st->paced_since != 0)
		{
			/* for the statistics: this attempt waited for its rate limit */
			st->pace_waits++;
			st->pace_wait_ms += (double) (GetCurrentTimestamp() - st->paced_since) / 1000.0;
			st->paced_since = 0;
		}
		return true;
	}
	if (ms > (long) atlas_rate_limit_max_wait_s * 1000)
	{
		AtlasAnswer *a = &call->answer;

		a->rate_wait = true;
		a->http_status = 0;
		a->transport_failed = false;
		a->error_code = NULL;
		a->excerpt = NULL;
		a->detail = psprintf("Atlas's rate limit for %s asks to wait %ld s, longer than atlas_users.rate_limit_max_wait (%d s); the request was not sent.",
							 st->pace.name, (ms + 999) / 1000, atlas_rate_limit_max_wait_s);
		atlas_run_finish(run, call, ATLAS_OUTCOME_FAILED);
		return false;
	}
	atlas_run_paced(run, &st->pace, ms);
	if (st->paced_since == 0)
		st->paced_since = GetCurrentTimestamp();
	run->wait_kind = ATLAS_WAIT_RATE_LIMIT;
	wait_at_most(wait_ms, ms);
	return false;
}

/* Driver callback: the next request to start, if one is ready. */
HttpRequest *
atlas_dispatch_next(void *arg, long *wait_ms)
{
	AtlasRun   *run = (AtlasRun *) arg;
	TimestampTz now = GetCurrentTimestamp();
	uint32		waiting[16];	/* buckets that made a call wait, in this pass */
	int			nwaiting = 0;
	int			i;
	int			k;

	*wait_ms = run->feed_more ? run->feed_wait_ms : -1;
	run->wait_kind = ATLAS_WAIT_REQUEST;
	for (i = 0; i < run->npending; i++)
	{
		AtlasCall  *call = run->pending[i];
		AtlasCallState *st = call->state;
		HttpRequest *token_req;

		for (k = 0; k < nwaiting && waiting[k] != st->pace.key; k++)
			;
		if (k < nwaiting)
			continue;			/* its bucket just said wait */
		if (st->not_before > now)
		{
			if (call->answer.http_status == 429)
				run->wait_kind = ATLAS_WAIT_RATE_LIMIT;
			wait_at_most(wait_ms, Max(1, (long) ((st->not_before - now) / 1000)));
			continue;
		}
		switch (atlas_calendar_gate(run, call))
		{
			case ATLAS_CALENDAR_RETIRED:
				atlas_run_take(run->pending, &run->npending, i--);
				atlas_run_finish(run, call, ATLAS_OUTCOME_FAILED);
				continue;
			case ATLAS_CALENDAR_WAIT:
				wait_at_most(wait_ms, CALENDAR_WAIT_MS);
				continue;
			case ATLAS_CALENDAR_GO:
				break;
		}
		if (!token_ready(st->ts, &token_req, wait_ms))
		{
			if (token_req != NULL)
				return token_req;
			if (st->ts->token_failed)
			{
				atlas_run_take(run->pending, &run->npending, i--);
				fail_with_token(run, call);
			}
			else if (st->ts->waiting_since != 0)
				run->wait_kind = ATLAS_WAIT_TOKEN;
			continue;
		}
		if (!pace_ready(run, call, wait_ms))
		{
			if (call->state->finished)
				atlas_run_take(run->pending, &run->npending, i--);
			else if (nwaiting < (int) lengthof(waiting))
				waiting[nwaiting++] = st->pace.key;
			continue;
		}
		atlas_run_take(run->pending, &run->npending, i);
		st->paced = true;
		if (call->started_at == 0)
			call->started_at = now;
		st->token_generation = st->ts->generation;
		st->in_flight = true;
		atlas_run_push(run, &run->flight, &run->nflight, &run->flight_cap, call);
		return &st->req;
	}
	return NULL;
}

/* The failure of a token request, as kept for other processes. */
static void
token_failure_of(const AtlasAnswer *a, AtlasTokenFailure *f)
{
	memset(f, 0, sizeof(AtlasTokenFailure));
	f->http_status = a->http_status;
	f->transport_failed = a->transport_failed;
	f->retry_after = a->retry_after;
	if (a->error_code)
		strlcpy(f->error_code, a->error_code, sizeof(f->error_code));
	if (a->detail || a->excerpt)
		strlcpy(f->detail, a->detail ? a->detail : a->excerpt, sizeof(f->detail));
}

/* Sort the answer of a token request. */
static void
token_done(AtlasRun *run, TargetState *ts, HttpRequest *req)
{
	const char *problem = NULL;
	AtlasAnswer *a = &ts->token_answer;
	AtlasTokenFailure failure;
	int64		delay_ms = 0;
	bool		retry;

	ts->fetching = false;
	if (atlas_token_accept(ts->target, req, &problem))
		return;

	/* what the token endpoint said, read as any answer is */
	memset(a, 0, sizeof(AtlasAnswer));
	a->token_failed = true;
	if (!req->answered)
		atlas_answer_transport(a, req);
	else if (problem != NULL)
	{
		/* a 200 that holds no usable token */
		a->http_status = req->status;
		a->retry_after = -1;
		a->detail = pstrdup(problem);
	}
	else
		(void) atlas_answer_error(a, req, NULL);
	atlas_answer_scrub(a, ts->target, ts->token);

	/* the token endpoint is rate-limited too: wait as it says */
	retry = (problem == NULL && !a->transport_failed && ts->token_attempts <= run->spec.max_retries &&
			 atlas_retry_due(a, ts->token_attempts, false, &delay_ms) && !wait_too_long(a));
	/* nobody asks again before Retry-After: the limit is the cluster's */
	delay_ms = Max(delay_ms, a->retry_after * 1000L);
	token_failure_of(a, &failure);
	atlas_token_fetch_failed(ts->target, &failure, !retry,
							 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay_ms));
	ts->token_failed = !retry;
}

/* Sort a 2xx answer: Atlas did it, even if the rest of the body broke off. */
static void
sort_success(AtlasRun *run, AtlasCall *call, HttpRequest *req)
{
	if (req->response_truncated && strcmp(req->method, "GET") == 0)
	{
		/* a read whose answer we could not hold: not usable */
		call->answer.excerpt = psprintf("The response exceeded the %zu byte limit and was not read.",
										http_response_cap(req));
		atlas_run_finish(run, call, ATLAS_OUTCOME_FAILED);
		return;
	}
	if (call->keep_body)
		atlas_answer_keep_body(call, req);
	atlas_run_finish(run, call, ATLAS_OUTCOME_SUCCEEDED);
}

/* Sort one call's answer: finished with an outcome, or to be sent again. */
static void
sort_answer(AtlasRun *run, AtlasCall *call, HttpRequest *req)
{
	AtlasCallState *st = call->state;

	call->attempts++;
	call->answer.http_status = req->status;
	call->answer.token_failed = false;
	if (!req->answered)
	{
		atlas_answer_transport(&call->answer, req);
		st->maybe_acted |= !req->not_sent;
		if (!maybe_retry(run, call))
			atlas_run_finish(run, call, ATLAS_OUTCOME_FAILED);
		return;
	}
	atlas_calendar_answer(call, req);
	if (req->status >= 200 && req->status < 300)
	{
		/* what earlier attempts said no longer holds */
		call->answer.transport_failed = false;
		call->answer.error_code = NULL;
		call->answer.detail = NULL;
		call->answer.excerpt = NULL;
		call->answer.retry_after = -1;
		sort_success(run, call, req);
		return;
	}
	if (req->status == 401 && req->auth == HTTP_AUTH_BEARER && !st->reauthed)
	{
		/* the token expired or was revoked early: renew it once */
		st->reauthed = true;
		atlas_token_reject(st->ts->target, st->token_generation);
		requeue(run, call, 0);
		return;
	}
	st->names_user = atlas_answer_error(&call->answer, req, call->user_id);
	atlas_answer_scrub(&call->answer, st->ts->target, st->ts->token);
	if (maybe_retry(run, call))
		return;
	if ((call->missing_ok || st->maybe_acted) && atlas_answer_user_absent(call))
		atlas_run_finish(run, call, ATLAS_OUTCOME_ALREADY_ABSENT);
	else
		atlas_run_finish(run, call, ATLAS_OUTCOME_FAILED);
}

/* Tell pacing.c what the answer said of its bucket. */
static void
tell_pacing(AtlasCall *call, HttpRequest *req)
{
	AtlasCallState *st = call->state;
	AtlasPaceAnswer pa;

	if (!st->paced)
		return;
	st->paced = false;
	if (!req->answered)
	{
		atlas_pace_abandon(&st->pace);
		return;
	}
	pa.status = req->status;
	pa.limit = req->ratelimit_limit;
	pa.remaining = req->ratelimit_remaining;
	pa.retry_after = call->answer.retry_after;
	pa.capacity = req->status == 429 ? call->answer.rate_capacity : -1;
	pa.refill = req->status == 429 ? call->answer.rate_refill : -1;
	pa.period_ms = req->status == 429 ? call->answer.rate_period_ms : -1;
	(void) atlas_pace_answer(&st->pace, &pa);
}

/*
 * Count a finished request in the statistics: its target's server and
 * host, its endpoint and its answer; names only, never a secret or an id.
 */
static void
count_request(const AtlasTarget *target, const char *endpoint, HttpRequest *req,
			  bool retry, AtlasCallState *st)
{
	AtlasStatSample s;

	s.server = target->server;
	s.host = target->host ? target->host : "";
	s.endpoint = endpoint;
	s.http_status = req->answered ? req->status : 0;
	s.elapsed_ms = req->elapsed_ms;
	s.retry = retry;
	s.rate_limit_waits = st ? st->pace_waits : 0;
	s.rate_limit_wait_ms = st ? st->pace_wait_ms : 0;
	s.bytes = (int64) req->response_len;
	atlas_stat_count(&s);
	if (st)
	{
		st->pace_waits = 0;
		st->pace_wait_ms = 0;
	}
}

/* Driver callback: a request finished. */
void
atlas_dispatch_done(void *arg, HttpRequest *req)
{
	AtlasRun   *run = (AtlasRun *) arg;
	MemoryContext old = MemoryContextSwitchTo(run->cxt);
	ListCell   *lc;
	int			i;

	foreach(lc, run->targets)
	{
		TargetState *ts = (TargetState *) lfirst(lc);

		if (req == &ts->token_req)
		{
			count_request(ts->target, "token", req, ts->token_attempts > 1, NULL);
			token_done(run, ts, req);
			MemoryContextSwitchTo(old);
			return;
		}
	}
	for (i = 0; i < run->nflight; i++)
	{
		AtlasCall  *call = run->flight[i];

		if (&call->state->req != req)
			continue;
		atlas_run_take(run->flight, &run->nflight, i);
		call->state->in_flight = false;
		count_request(call->state->ts->target, call->state->endpoint->name, req,
					  call->attempts > 0, call->state);
		MemoryContextSwitchTo(call->state->cxt);
		sort_answer(run, call, req);
		tell_pacing(call, req);
		break;
	}
	if (req->response_len > 0)
		pfree(req->response);
	req->response = "";
	req->response_len = 0;
	MemoryContextSwitchTo(old);
}
