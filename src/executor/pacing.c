/*-------------------------------------------------------------------------
 *
 * pacing.c
 *	  Pacing requests by Atlas's rate limits, shared by every process.
 *
 * Atlas meters each endpoint set and scope (an organization, a project)
 * with a token bucket: a request takes a token, `refill` come back every
 * `period`, up to `capacity`, and an empty bucket answers 429.  This file
 * keeps a model of each bucket a request goes to, keyed by the Atlas host,
 * the endpoint set of endpoints.c and the scope's id, and learns it from
 * what Atlas says: RateLimit-Limit and RateLimit-Remaining on any answer
 * (when Atlas sends them), and a 429's Retry-After and the capacity,
 * refill rate and period of its body.  With shared_preload_libraries the
 * buckets live in shared memory, so every session, bulk run and the worker
 * share them; without, each backend paces only itself.
 *
 * Before a request goes, it takes a token of its bucket's model, or waits
 * until one comes back.  A bucket nothing is known of paces nothing.  When
 * the model has no token and does not know when tokens come back, one
 * request at a time goes (a probe): so learning the refill rate costs at
 * most one 429.  A 429 empties the model and blocks the bucket for at
 * least Retry-After, twice as long for each further 429 in a row (the
 * 429s of requests already on their way count once), plus up to 10%
 * jitter.  The buckets are kept per host: when every slot is used, the
 * least recently used bucket of the host with the most buckets gives way,
 * so that one host (a hostile server, many project ids) cannot evict
 * what was learned of another.  Answers to requests sent together arrive
 * in any order, so the
 * model takes the least RateLimit-Remaining seen since the last refill,
 * not the last one read.  Refills are assumed to come all at once, every
 * period from the time Retry-After names: a bucket that refills
 * continuously then only has more than the model says.
 *
 *-------------------------------------------------------------------------
 */
#include "executor/executor_int.h"
#include "executor/pacing.h"

#include <limits.h>

#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

static PaceState *pace = NULL;

/* this process's requests in flight, per bucket, to give back on error */
static int	local_in_flight[PACE_BUCKETS];
static uint32 local_key[PACE_BUCKETS];
static bool exit_callback_registered = false;

/* The rate-limit buckets' shared memory, for init.c. */
const AtlasSharedSpec atlas_pace_shared = {
	"atlas_users pacing", sizeof(PaceState), (void **) &pace, NULL
};

/* The buckets: the shared ones, or backend-local ones made on first use. */
PaceState *
atlas_pace_state(void)
{
	return atlas_shared_get(&atlas_pace_shared);
}

/* The key and name of the bucket of a set and scope at a host. */
void
atlas_pace_key(AtlasPaceKey *k, const char *host, const char *set, const char *scope)
{
	uint32		h = hash_bytes((const unsigned char *) host, strlen(host));

	h = hash_combine(h, hash_bytes((const unsigned char *) set, strlen(set)));
	h = hash_combine(h, hash_bytes((const unsigned char *) scope, strlen(scope)));
	k->key = h;
	k->host = hash_bytes((const unsigned char *) host, strlen(host));
	snprintf(k->name, sizeof(k->name), "%s%s%s at %s", set, scope[0] ? " " : "", scope, host);
}

/*
 * The slot a new bucket takes when every one is used: the least recently
 * used bucket of the host that has the most (the new bucket's host counts
 * one more), so that no host evicts another's while it has fewer.
 */
static PaceBucket *
victim(PaceState *p, const AtlasPaceKey *k)
{
	PaceBucket *lru = NULL;
	uint32		most = k->host;
	int			most_n = 0;
	int			i,
				j;

	for (i = 0; i < PACE_BUCKETS; i++)
	{
		int			n = (p->buckets[i].host == k->host) ? 1 : 0;

		for (j = 0; j < PACE_BUCKETS; j++)
			n += (p->buckets[j].host == p->buckets[i].host) ? 1 : 0;
		if (n > most_n)
		{
			most_n = n;
			most = p->buckets[i].host;
		}
	}
	for (i = 0; i < PACE_BUCKETS; i++)
	{
		PaceBucket *b = &p->buckets[i];

		if (b->host == most && (lru == NULL || b->last_used < lru->last_used))
			lru = b;
	}
	return lru ? lru : &p->buckets[0];
}

/* The bucket of a key, made (or one reused, see victim()) when missing. */
static PaceBucket *
find_bucket(PaceState *p, const AtlasPaceKey *k, TimestampTz now)
{
	PaceBucket *lru = NULL;
	int			i;

	for (i = 0; i < PACE_BUCKETS; i++)
	{
		PaceBucket *b = &p->buckets[i];

		if (b->used && b->key == k->key && strcmp(b->name, k->name) == 0)
		{
			/* requests of dead processes never answer: forget them after long */
			if (b->in_flight > 0 && now - b->last_used > (int64) IN_FLIGHT_STALE_MS * 1000)
				b->in_flight = 0;
			b->last_used = now;
			return b;
		}
		if (!b->used && lru == NULL)
			lru = b;
	}
	if (lru == NULL)
		lru = victim(p, k);
	memset(lru, 0, sizeof(PaceBucket));
	lru->used = true;
	lru->key = k->key;
	lru->host = k->host;
	strlcpy(lru->name, k->name, sizeof(lru->name));
	lru->last_used = now;
	lru->min_remaining = -1;
	return lru;
}

/* Add the refills that came since the model last looked. */
static void
apply_refills(PaceBucket *b, TimestampTz now)
{
	int64		period_us = (int64) b->period_ms * 1000;
	int64		n;

	if (b->refill <= 0 || period_us <= 0 || b->next_refill == 0 || now < b->next_refill)
		return;
	n = (now - b->next_refill) / period_us + 1;
	b->tokens = Min((double) b->capacity, b->tokens + (double) n * b->refill);
	b->next_refill += n * period_us;
	b->min_remaining = -1;
}

/* Count a request in flight, here and in the bucket. */
static void
count_in_flight(PaceState *p, PaceBucket *b)
{
	int			i = (int) (b - p->buckets);

	b->in_flight++;
	if (local_key[i] != b->key)
	{
		local_key[i] = b->key;
		local_in_flight[i] = 0;
	}
	local_in_flight[i]++;
}

/* Give up every request in flight this process counted (error, exit). */
void
atlas_pace_release_all(void)
{
	PaceState  *p = pace;
	int			i;

	if (p == NULL)
		return;
	atlas_shared_lock(p, LW_EXCLUSIVE);
	for (i = 0; i < PACE_BUCKETS; i++)
	{
		if (local_in_flight[i] > 0 && p->buckets[i].key == local_key[i])
			p->buckets[i].in_flight = Max(0, p->buckets[i].in_flight - local_in_flight[i]);
		local_in_flight[i] = 0;
	}
	atlas_shared_unlock(p);
}

/* At exit, give back this process's requests in flight. */
static void
release_at_exit(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	atlas_pace_release_all();
}

/* How long, in ms (at least 1), from now until t. */
static long
ms_until(TimestampTz now, TimestampTz t)
{
	return Max(1, (long) ((t - now + 999) / 1000));
}

/*
 * May a request to this bucket go now?  True: it is counted in flight
 * until atlas_pace_answer() or atlas_pace_abandon().  False: *wait_ms says
 * how long to wait before asking again.
 */
bool
atlas_pace_acquire(const AtlasPaceKey *k, long *wait_ms)
{
	PaceState  *p = atlas_pace_state();
	TimestampTz now = GetCurrentTimestamp();
	PaceBucket *b;
	bool		go = false;

	if (!exit_callback_registered)
	{
		before_shmem_exit(release_at_exit, (Datum) 0);
		exit_callback_registered = true;
	}
	atlas_shared_lock(p, LW_EXCLUSIVE);
	b = find_bucket(p, k, now);
	apply_refills(b, now);
	if (b->blocked_until > now)
		*wait_ms = ms_until(now, b->blocked_until);
	else if (!b->tokens_known || b->tokens >= 1.0)
		go = true;
	else if (b->refill > 0 && b->next_refill > now)
		*wait_ms = ms_until(now, b->next_refill);
	else if (b->in_flight == 0)
		go = b->probing = true; /* a probe: when do tokens come back? */
	else
		*wait_ms = PROBE_WAIT_MS;
	if (go)
	{
		if (b->tokens_known)
			b->tokens -= 1.0;
		count_in_flight(p, b);
	}
	atlas_shared_unlock(p);
	return go;
}

/* A request counted in flight is over; under the lock. */
static void
end_in_flight(PaceState *p, PaceBucket *b)
{
	int			i = (int) (b - p->buckets);

	b->in_flight = Max(0, b->in_flight - 1);
	if (local_key[i] == b->key && local_in_flight[i] > 0)
		local_in_flight[i]--;
}

/* Learn from a 429: empty the model and block the bucket a while. */
static void
learn_429(PaceBucket *b, const AtlasPaceAnswer *a, TimestampTz now)
{
	int64		wait_ms;

	if (a->capacity > 0)
		b->capacity = a->capacity;
	if (a->refill > 0 && a->period_ms > 0)
	{
		b->refill = a->refill;
		b->period_ms = a->period_ms;
		b->source = PACE_FROM_429;
	}
	/* Retry-After, else a period, else a second; twice as long per 429 in a row */
	wait_ms = a->retry_after >= 0 ? (int64) a->retry_after * 1000
		: (b->period_ms > 0 ? b->period_ms : 1000);
	/*
	 * The 429s of requests that were on their way when an earlier 429
	 * blocked the bucket are the same refusal, not further ones.
	 */
	if (b->blocked_until <= now)
		b->consecutive_429++;
	b->answers_429++;
	if (b->refill > 0)
		b->next_refill = TimestampTzPlusMilliseconds(now, wait_ms);
	wait_ms <<= Min(Max(b->consecutive_429, 1) - 1, 10);
	wait_ms = Min(wait_ms, (int64) 3600 * 1000);
	wait_ms += (int64) (wait_ms * 0.1 * pg_prng_double(&pg_global_prng_state));
	b->blocked_until = Max(b->blocked_until, TimestampTzPlusMilliseconds(now, wait_ms));
	b->tokens = 0;
	b->tokens_known = true;
	b->min_remaining = 0;
}

/*
 * Learn from an answer to a request that acquire() let go; returns until
 * when the bucket is blocked (0 when it is not).
 */
TimestampTz
atlas_pace_answer(const AtlasPaceKey *k, const AtlasPaceAnswer *a)
{
	PaceState  *p = atlas_pace_state();
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz blocked;
	PaceBucket *b;

	atlas_shared_lock(p, LW_EXCLUSIVE);
	b = find_bucket(p, k, now);
	end_in_flight(p, b);
	if (a->status == 429)
		learn_429(b, a, now);
	else
	{
		b->consecutive_429 = 0;
		/* listed figures: the first refill comes a period after the first answer */
		if (b->next_refill == 0 && b->source == PACE_FROM_LISTED && b->refill > 0)
			b->next_refill = TimestampTzPlusMilliseconds(now, b->period_ms);
		if (a->limit > 0 && a->limit != b->capacity)
		{
			b->capacity = (int) Min(a->limit, INT_MAX);
			if (b->source == PACE_FROM_NONE || b->source == PACE_FROM_LISTED)
				b->source = PACE_FROM_HEADERS;
		}
		else if (a->limit > 0 && b->source == PACE_FROM_NONE)
			b->source = PACE_FROM_HEADERS;
		if (a->remaining >= 0)
		{
			/*
			 * Answers to requests sent together come back in any order,
			 * so the last one read may tell an older, higher count than
			 * one read before it.  Between refills Atlas's count only
			 * falls: the least one seen since the last refill (or a
			 * probe's, which went alone) is the newest.  Atlas's count
			 * less what is still on its way is what is left for others.
			 */
			if (b->probing || b->min_remaining < 0 || a->remaining < b->min_remaining)
				b->min_remaining = (int) Min(a->remaining, INT_MAX);
			if (!b->tokens_known || b->in_flight == 0)
				b->tokens = Max(0.0, (double) b->min_remaining - b->in_flight);
			else
				b->tokens = Min(b->tokens, Max(0.0, (double) a->remaining - b->in_flight));
			b->tokens_known = true;
		}
	}
	b->probing = false;
	blocked = b->blocked_until > now ? b->blocked_until : 0;
	atlas_shared_unlock(p);
	return blocked;
}

/* A request that acquire() let go got no answer. */
void
atlas_pace_abandon(const AtlasPaceKey *k)
{
	PaceState  *p = atlas_pace_state();
	PaceBucket *b;

	atlas_shared_lock(p, LW_EXCLUSIVE);
	b = find_bucket(p, k, GetCurrentTimestamp());
	end_in_flight(p, b);
	b->probing = false;
	atlas_shared_unlock(p);
}

/*
 * Start a bucket's model from what Atlas lists of its set (listRateLimits),
 * when nothing is known of it yet: full, refilled a period after its first
 * answer (Atlas makes a bucket full at its first request).
 */
void
atlas_pace_preset(const AtlasPaceKey *k, int capacity, int refill, int period_ms)
{
	PaceState  *p = atlas_pace_state();
	PaceBucket *b;

	atlas_shared_lock(p, LW_EXCLUSIVE);
	b = find_bucket(p, k, GetCurrentTimestamp());
	if (b->source == PACE_FROM_NONE && b->capacity == 0 && !b->tokens_known)
	{
		b->capacity = capacity;
		b->refill = refill;
		b->period_ms = period_ms;
		b->tokens = capacity;
		b->tokens_known = true;
		b->next_refill = 0;
		b->source = PACE_FROM_LISTED;
	}
	atlas_shared_unlock(p);
}

/* What the model knows of a bucket, for messages. */
bool
atlas_pace_describe(const AtlasPaceKey *k, int *capacity, int *refill, int *period_ms)
{
	PaceState  *p = atlas_pace_state();
	bool		known = false;
	int			i;

	atlas_shared_lock(p, LW_EXCLUSIVE);
	for (i = 0; i < PACE_BUCKETS; i++)
	{
		PaceBucket *b = &p->buckets[i];

		if (b->used && b->key == k->key && b->refill > 0)
		{
			*capacity = b->capacity;
			*refill = b->refill;
			*period_ms = b->period_ms;
			known = true;
		}
	}
	atlas_shared_unlock(p);
	return known;
}
