/*-------------------------------------------------------------------------
 *
 * pacing.h
 *	  The rate-limit buckets of pacing.c, for pacing_sql.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_PACING_H
#define ATLAS_PACING_H

#include "executor/executor_int.h"
#include "shared/shared.h"

/* buckets modelled at once; when all are used, victim() picks one to reuse */
#define PACE_BUCKETS 64
/* how long a request in flight may go unanswered before it is forgotten */
#define IN_FLIGHT_STALE_MS (3600 * 1000)
/* how often a probe may go while another request is in flight */
#define PROBE_WAIT_MS 50

typedef struct PaceBucket
{
	bool		used;
	uint32		key;
	uint32		host;			/* hash of the host: buckets are evicted per host */
	char		name[ATLAS_PACE_NAME];
	TimestampTz last_used;
	int			capacity;		/* 0: unknown */
	int			refill;			/* tokens per period; 0: unknown */
	int			period_ms;
	double		tokens;			/* what the model says Atlas has left */
	bool		tokens_known;
	TimestampTz next_refill;	/* 0: unknown */
	int			in_flight;
	TimestampTz blocked_until;
	int			consecutive_429;
	uint64		answers_429;
	bool		probing;		/* a probe is on its way, alone */
	int			min_remaining;	/* least RateLimit-Remaining since the last refill; -1: none */
	char		source;			/* of capacity and refill: PACE_FROM_* */
} PaceBucket;

/* where a bucket's figures came from */
#define PACE_FROM_NONE 0
#define PACE_FROM_LISTED 'l'	/* listRateLimits */
#define PACE_FROM_HEADERS 'h'	/* RateLimit-Limit */
#define PACE_FROM_429 'r'		/* a 429's body */

typedef struct PaceState
{
	LWLock	   *lock;			/* NULL when backend-local */
	PaceBucket	buckets[PACE_BUCKETS];
} PaceState;

extern PaceState *atlas_pace_state(void);

#endif							/* ATLAS_PACING_H */
