/*-------------------------------------------------------------------------
 *
 * executor_int.h
 *	  What the executor's own files share: the state of a call in a run,
 *	  the calendar's gate, the rate-limit buckets, the sorting of answers
 *	  and the token cache.  Included by src/executor/ files only: the rest
 *	  of the extension sees run.h, never a request.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_EXECUTOR_EXECUTOR_INT_H
#define ATLAS_EXECUTOR_EXECUTOR_INT_H

#include "executor/run.h"
#include "stats/stats.h"
#include "transport/http.h"

/* calendar.c: deprecations and sunsets */
typedef enum AtlasCalendarGate
{
	ATLAS_CALENDAR_GO,			/* the call may go */
	ATLAS_CALENDAR_WAIT,		/* a probe of its retired-or-not endpoint is out */
	ATLAS_CALENDAR_RETIRED		/* retired in this statement: finished unsent */
} AtlasCalendarGate;

extern AtlasCalendarGate atlas_calendar_gate(AtlasRun *run, AtlasCall *call);
extern void atlas_calendar_answer(AtlasCall *call, HttpRequest *req);

/* pacing.c: Atlas's rate limits */
#define ATLAS_PACE_NAME 96

/* a bucket: the endpoint set, its scope and the host */
typedef struct AtlasPaceKey
{
	uint32		key;
	uint32		host;			/* the hash of the host alone */
	char		name[ATLAS_PACE_NAME];	/* for messages */
} AtlasPaceKey;

/* what an answer said of its bucket (-1: not said) */
typedef struct AtlasPaceAnswer
{
	long		status;
	long		limit;			/* RateLimit-Limit */
	long		remaining;		/* RateLimit-Remaining */
	int			retry_after;	/* seconds */
	int			capacity;		/* a 429's */
	int			refill;
	int			period_ms;
} AtlasPaceAnswer;

extern void atlas_pace_key(AtlasPaceKey *k, const char *host, const char *set, const char *scope);
extern bool atlas_pace_acquire(const AtlasPaceKey *k, long *wait_ms);
extern TimestampTz atlas_pace_answer(const AtlasPaceKey *k, const AtlasPaceAnswer *a);
extern void atlas_pace_abandon(const AtlasPaceKey *k);
extern void atlas_pace_release_all(void);
extern bool atlas_pace_describe(const AtlasPaceKey *k, int *capacity, int *refill, int *period_ms);
extern void atlas_pace_preset(const AtlasPaceKey *k, int capacity, int refill, int period_ms);

/* rate_sets.c: the sets Atlas publishes (listRateLimits), as hosts said */
typedef struct AtlasRateSetsFresh AtlasRateSetsFresh;
extern void atlas_rate_sets_forget(void);
extern bool atlas_rate_sets_claim(const AtlasTarget *target);
extern AtlasRateSetsFresh *atlas_rate_sets_fresh(void);
extern void atlas_rate_sets_item(const cJSON *item, void *arg);
extern void atlas_rate_sets_store(const AtlasTarget *target, bool listed,
								  const AtlasRateSetsFresh *fresh);
extern bool atlas_rate_set_key(const AtlasTarget *target, const AtlasEndpoint *ep,
							   AtlasCall *call, AtlasPaceKey *k);

/*
 * executor.c: called when a call is added outside any run, before it is
 * prepared (rate_sets_read.c installs it: Atlas's sets are read then)
 */
typedef void (*AtlasBeforeRunHook) (AtlasTarget *target, AtlasCall *call);
extern PGDLLIMPORT AtlasBeforeRunHook atlas_before_run_hook;

/* executor.c and dispatch.c: a run, and a call's state in it */

/* a target's state in a run: its token, fetched by this run or not */
typedef struct TargetState
{
	AtlasTarget *target;
	HttpRequest token_req;
	bool		fetching;		/* our token request is in flight */
	int			token_attempts;
	bool		token_failed;	/* no token to be had: its calls fail */
	AtlasAnswer token_answer;	/* why */
	TimestampTz waiting_since;	/* for another process's fetch, or 0 */
	uint64		generation;		/* of the token in buf; 0: none */
	char		token[ATLAS_TOKEN_MAX + 1];
} TargetState;

struct AtlasRun
{
	AtlasRunSpec spec;
	MemoryContext cxt;
	List	   *targets;		/* of TargetState * */
	List	   *resolved;		/* of ResolvedTarget *: targets by organization and role */
	AtlasCall **pending;		/* not in flight and not finished */
	int			npending;
	int			pending_cap;
	AtlasCall **flight;			/* in flight (or started and waiting) */
	int			nflight;
	int			flight_cap;
	List	   *done;			/* finished, not yet reported */
	bool		feed_more;
	long		feed_wait_ms;
	int			nadded;
	int			nreported;
	TimestampTz last_progress;
	TimestampTz paced_until;	/* the latest a call waits for a rate limit */
	char		paced_name[ATLAS_PACE_NAME];	/* of that bucket */
	AtlasWaitKind wait_kind;	/* what the run waits for with nothing in flight */
};


extern void atlas_run_push(AtlasRun *run, AtlasCall ***arr, int *n, int *cap, AtlasCall *call);
extern void atlas_run_take(AtlasCall **arr, int *n, int i);
extern void atlas_run_finish(AtlasRun *run, AtlasCall *call, AtlasOutcome outcome);
extern void atlas_run_paced(AtlasRun *run, const AtlasPaceKey *k, long wait_ms);
extern void atlas_run_unpaced(AtlasRun *run, const AtlasPaceKey *k);
extern HttpRequest *atlas_dispatch_next(void *arg, long *wait_ms);
extern void atlas_dispatch_done(void *arg, HttpRequest *req);

/* prepare.c */
extern AtlasTarget *atlas_call_target(AtlasRun *run, AtlasCall *call);
extern void atlas_prepare_call(AtlasRun *run, AtlasCall *call, AtlasTarget *target);
extern void atlas_run_wipe_secrets(AtlasRun *run);

struct AtlasCallState
{
	MemoryContext cxt;			/* the call's memory: its request and answer */
	HttpRequest req;
	const AtlasEndpoint *endpoint;
	TargetState *ts;			/* its target's state in the run */
	TimestampTz not_before;		/* a retry waits until then */
	uint64		token_generation;	/* of the bearer token sent */
	bool		reauthed;		/* renewed a rejected token once already */
	AtlasPaceKey pace;			/* the rate-limit bucket its endpoint shares */
	bool		paced;			/* counted in flight by pacing.c */
	TimestampTz paced_since;	/* waiting for its rate limit since, or 0 */
	int			pace_waits;		/* waits for pacing before this attempt */
	double		pace_wait_ms;	/* and their time */
	bool		maybe_acted;	/* an earlier attempt may have reached Atlas */
	bool		names_user;		/* the last error names the call's user id */
	bool		in_flight;
	bool		finished;		/* done for good */
	bool		reported;		/* audited and handed to finished() */
};

/* answer.c: sorting an answer */
extern bool atlas_answer_error(AtlasAnswer *answer, HttpRequest *req, const char *user_id);
extern void atlas_answer_transport(AtlasAnswer *answer, HttpRequest *req);
extern bool atlas_answer_user_absent(AtlasCall *call);
extern void atlas_answer_scrub(AtlasAnswer *answer, const AtlasTarget *target, const char *token);
extern void atlas_answer_keep_body(AtlasCall *call, HttpRequest *req);

/* token.c: service-account tokens */
typedef enum AtlasTokenState
{
	ATLAS_TOKEN_READY,			/* here is a token */
	ATLAS_TOKEN_FETCH,			/* none: the caller must fetch one */
	ATLAS_TOKEN_WAIT,			/* none yet: another process is fetching it */
	ATLAS_TOKEN_FAILED			/* the fetch the caller waited for failed */
} AtlasTokenState;

/* a failed token request, as it is kept for the processes that waited */
typedef struct AtlasTokenFailure
{
	long		http_status;
	bool		transport_failed;
	int			retry_after;
	char		error_code[64];
	char		detail[512];
} AtlasTokenFailure;

extern AtlasTokenState atlas_token_get(const AtlasTarget *target, char *buf, uint64 *generation,
									   TimestampTz waiting_since, AtlasTokenFailure *failure,
									   long *wait_ms);
extern bool atlas_token_accept(const AtlasTarget *target, HttpRequest *req,
							   const char **problem);
extern void atlas_token_fetch_failed(const AtlasTarget *target, const AtlasTokenFailure *failure,
									 bool final, TimestampTz retry_not_before);
extern void atlas_token_reject(const AtlasTarget *target, uint64 generation);
extern void atlas_token_request(const AtlasTarget *target, HttpRequest *req);
extern void atlas_token_release_fetches(void);

#endif							/* ATLAS_EXECUTOR_EXECUTOR_INT_H */
