/*-------------------------------------------------------------------------
 *
 * rate_sets.c
 *	  The rate-limit sets Atlas publishes: which endpoint set each endpoint
 *	  of the table is in, its scope, capacity and refill, as a host said.
 *
 * rate_sets_read.c reads them (listRateLimits) and hands the endpoint sets
 * to atlas_rate_sets_item(); this file keeps what a host said, with the
 * time it was read, and gives a call's endpoint its bucket
 * (atlas_rate_set_key(), for prepare.c).  A call to an endpoint Atlas
 * lists is paced (pacing.c) in that set's bucket, scoped as it says, and
 * the bucket's model starts from its capacity and refill; headers and
 * 429s still correct it.  Where Atlas does not list an endpoint, or would
 * not answer, the endpoint table's own grouping and header learning stay.
 *
 * With shared_preload_libraries the sets live in shared memory, keyed by
 * host: one read per host and atlas_users.rate_limit_sets_ttl serves
 * every session and the worker.  Without preloading each process keeps
 * its own.  Up to RATE_SET_HOSTS hosts are kept; a new host takes the
 * place of the one read longest ago.  Nothing here calls Atlas.
 *
 *-------------------------------------------------------------------------
 */
#include "executor/executor_int.h"
#include "shared/shared.h"

#include "storage/lwlock.h"
#include "utils/timestamp.h"

/* hosts whose sets are kept */
#define RATE_SET_HOSTS 16
/* endpoints of the table, at most */
#define RATE_SET_ENDPOINTS 64

/* what Atlas said of one endpoint of the table */
typedef struct SetOf
{
	bool		listed;
	char		set_id[64];
	AtlasIdKind scope;			/* ATLAS_ID_USER: not scoped by an id */
	int			capacity;
	int			refill;
	int			period_ms;
} SetOf;

/* what a host said */
typedef struct HostSets
{
	char		host[256];		/* "": a free slot */
	TimestampTz read_at;		/* claimed for reading then; 0: never */
	bool		listed;			/* Atlas answered the listing */
	SetOf		of[RATE_SET_ENDPOINTS]; /* per endpoint of the table */
} HostSets;

typedef struct RateSetsState
{
	LWLock	   *lock;			/* NULL: process-local */
	HostSets	hosts[RATE_SET_HOSTS];
} RateSetsState;

/* what one listing collects, before it is stored */
struct AtlasRateSetsFresh
{
	SetOf		of[RATE_SET_ENDPOINTS];
};

static RateSetsState *sets = NULL;

/* The rate-limit sets' shared memory, for init.c. */
const AtlasSharedSpec atlas_rate_sets_shared = {
	"atlas_users rate-limit sets", sizeof(RateSetsState), (void **) &sets, NULL
};

/* The sets, locked: the shared ones, or process-local ones made on first use. */
static RateSetsState *
state(LWLockMode mode)
{
	RateSetsState *s = atlas_shared_get(&atlas_rate_sets_shared);

	atlas_shared_lock(s, mode);
	return s;
}

/* Unlock the sets, if they are shared. */
static void
release(RateSetsState *s)
{
	atlas_shared_unlock(s);
}

/*
 * The slot of a host, or NULL; with make, a new one (the free slot, or
 * the one read longest ago).  A host name too long to keep has none.
 */
static HostSets *
host_slot(RateSetsState *s, const char *host, bool make)
{
	HostSets   *oldest = NULL;
	int			i;

	if (host == NULL || strlen(host) >= sizeof(s->hosts[0].host))
		return NULL;
	for (i = 0; i < RATE_SET_HOSTS; i++)
	{
		HostSets   *h = &s->hosts[i];

		if (strcmp(h->host, host) == 0)
			return h;
		if (oldest == NULL || h->host[0] == '\0' ||
			(oldest->host[0] != '\0' && h->read_at < oldest->read_at))
			oldest = h;
	}
	if (!make)
		return NULL;
	memset(oldest, 0, sizeof(HostSets));
	strlcpy(oldest->host, host, sizeof(oldest->host));
	return oldest;
}

/* Is a read of a host's sets due (never read, or longer ago than the TTL)? */
static bool
read_due(const HostSets *h, TimestampTz now)
{
	return h == NULL || h->read_at == 0 ||
		TimestampDifferenceExceeds(h->read_at, now, atlas_rate_limit_sets_ttl_s * 1000);
}

/* Is listRateLimits due at a target's host (never read, or too long ago)? */
bool
atlas_rate_sets_due(const AtlasTarget *target)
{
	RateSetsState *s;
	bool		due;

	if (atlas_rate_limit_sets_ttl_s <= 0 || target == NULL ||
		strlen(target->host) >= sizeof(s->hosts[0].host))
		return false;
	s = state(LW_SHARED);
	due = read_due(host_slot(s, target->host, false), GetCurrentTimestamp());
	release(s);
	return due;
}

/* Forget what every host said (atlas_reset_rate_limits()). */
void
atlas_rate_sets_forget(void)
{
	RateSetsState *s = state(LW_EXCLUSIVE);

	memset(s->hosts, 0, sizeof(s->hosts));
	release(s);
}

/*
 * Claim the read of a host's sets, when it is due: the time is set now,
 * so that no other process reads it meanwhile, and a failed read is not
 * tried again before the TTL.  True: the caller reads and stores.
 */
bool
atlas_rate_sets_claim(const AtlasTarget *target)
{
	RateSetsState *s;
	HostSets   *h;
	TimestampTz now = GetCurrentTimestamp();
	bool		claimed = false;

	if (atlas_rate_limit_sets_ttl_s <= 0 || strlen(target->host) >= sizeof(s->hosts[0].host))
		return false;
	s = state(LW_EXCLUSIVE);
	h = host_slot(s, target->host, true);
	if (h != NULL && read_due(h, now))
	{
		h->read_at = now;
		claimed = true;
	}
	release(s);
	return claimed;
}

/* A new, empty collection of what a listing says. */
AtlasRateSetsFresh *
atlas_rate_sets_fresh(void)
{
	return palloc0(sizeof(AtlasRateSetsFresh));
}

/* The "value" of a RateLimitEndpointSet figure, or -1. */
static double
figure(const cJSON *set, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(set, name), "value");

	return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e9 ? v->valuedouble : -1;
}

/* Item: an endpoint set; the table's endpoints in it learn it. */
void
atlas_rate_sets_item(const cJSON *item, void *arg)
{
	AtlasRateSetsFresh *fresh = (AtlasRateSetsFresh *) arg;
	const char *id = atlas_json_string(item, "endpointSetId");
	const char *scope = atlas_json_string(item, "scope");
	double		cap = figure(item, "capacity");
	double		refill = figure(item, "refillRate");
	double		period = figure(item, "refillDurationSeconds");
	int			n = Min(atlas_endpoint_count(), RATE_SET_ENDPOINTS);
	const cJSON *e;
	int			i;

	if (id == NULL || scope == NULL || cap < 1 || refill < 0 || period <= 0)
		return;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(item, "endpoints"))
	{
		const char *method = atlas_json_string(e, "method");
		const char *path = atlas_json_string(e, "path");

		for (i = 0; method && path && i < n; i++)
		{
			const AtlasEndpoint *ep = atlas_endpoint_at(i);
			SetOf	   *s = &fresh->of[i];

			if (strcmp(ep->method, method) != 0 || strcmp(ep->route, path) != 0)
				continue;
			s->listed = true;
			strlcpy(s->set_id, id, sizeof(s->set_id));
			s->scope = strcmp(scope, "ORGANIZATION") == 0 ? ATLAS_ID_ORG
				: strcmp(scope, "GROUP") == 0 ? ATLAS_ID_GROUP : ATLAS_ID_USER;
			s->capacity = (int) cap;
			s->refill = (int) refill;
			s->period_ms = (int) (period * 1000);
		}
	}
}

/*
 * Keep what a host said: its sets (fresh), or, when listed is false, that
 * it would not say (then the table and headers pace its calls).
 */
void
atlas_rate_sets_store(const AtlasTarget *target, bool listed, const AtlasRateSetsFresh *fresh)
{
	RateSetsState *s = state(LW_EXCLUSIVE);
	HostSets   *h = host_slot(s, target->host, true);

	if (h != NULL)
	{
		h->listed = listed;
		if (listed)
			memcpy(h->of, fresh->of, sizeof(h->of));
		if (h->read_at == 0)
			h->read_at = GetCurrentTimestamp();
	}
	release(s);
}

/*
 * The bucket of a call's endpoint as Atlas lists it: its pace key, and
 * the listed figures as a starting model.  False when Atlas did not say.
 */
bool
atlas_rate_set_key(const AtlasTarget *target, const AtlasEndpoint *ep, AtlasCall *call,
				   AtlasPaceKey *k)
{
	RateSetsState *s;
	HostSets   *h;
	SetOf		of;
	int			i = atlas_endpoint_index(ep);
	const char *scope;

	if (i >= RATE_SET_ENDPOINTS)
		return false;
	s = state(LW_SHARED);
	h = host_slot(s, target->host, false);
	memset(&of, 0, sizeof(of));
	if (h != NULL && h->listed)
		of = h->of[i];
	release(s);
	if (!of.listed)
		return false;
	scope = (of.scope == ATLAS_ID_USER) ? NULL : atlas_call_id(call, of.scope);
	atlas_pace_key(k, target->host, of.set_id, scope ? scope : "");
	atlas_pace_preset(k, of.capacity, of.refill, of.period_ms);
	return true;
}
