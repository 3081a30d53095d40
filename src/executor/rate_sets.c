/*-------------------------------------------------------------------------
 *
 * rate_sets.c
 *	  The rate-limit sets Atlas publishes: which endpoint set each endpoint
 *	  of the table is in, its scope, capacity and refill.
 *
 * On the first call to an Atlas host (and again once
 * atlas_users.rate_limit_sets_ttl has passed), GET /api/atlas/v2/rateLimits
 * (listRateLimits, 2025-03-12) is read for the paths the extension calls.
 * A call to an endpoint it lists is paced (pacing.c) in that set's bucket,
 * scoped as it says, and the bucket's model starts from its capacity and
 * refill; headers and 429s still correct it.  Where Atlas does not list
 * an endpoint, or will not answer (403, 404, an old Atlas, a transport
 * failure), the endpoint table's own grouping and header learning stay.
 * What was read is kept per process and host; it is read outside a run
 * only (a run in progress uses what is known).
 *
 *-------------------------------------------------------------------------
 */
#include "executor/executor_int.h"

#include "lib/stringinfo.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

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
	char	   *host;
	TimestampTz read_at;
	bool		listed;			/* Atlas answered the listing */
	SetOf	   *of;				/* per endpoint of the table */
} HostSets;

static List *hosts = NIL;		/* of HostSets *, in TopMemoryContext */

/* The sets known of a host, made (empty) on first use. */
static HostSets *
host_sets(const char *host, bool make)
{
	ListCell   *lc;
	HostSets   *h;
	MemoryContext old;

	foreach(lc, hosts)
	{
		h = (HostSets *) lfirst(lc);
		if (strcmp(h->host, host) == 0)
			return h;
	}
	if (!make)
		return NULL;
	old = MemoryContextSwitchTo(TopMemoryContext);
	h = palloc0(sizeof(HostSets));
	h->host = pstrdup(host);
	h->of = palloc0(sizeof(SetOf) * atlas_endpoint_count());
	hosts = lappend(hosts, h);
	MemoryContextSwitchTo(old);
	return h;
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
static void
set_item(const cJSON *item, void *arg)
{
	HostSets   *h = (HostSets *) arg;
	const char *id = atlas_json_string(item, "endpointSetId");
	const char *scope = atlas_json_string(item, "scope");
	double		cap = figure(item, "capacity");
	double		refill = figure(item, "refillRate");
	double		period = figure(item, "refillDurationSeconds");
	const cJSON *e;
	int			i;

	if (id == NULL || scope == NULL || cap < 1 || refill < 0 || period <= 0)
		return;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(item, "endpoints"))
	{
		const char *method = atlas_json_string(e, "method");
		const char *path = atlas_json_string(e, "path");

		for (i = 0; method && path && i < atlas_endpoint_count(); i++)
		{
			const AtlasEndpoint *ep = atlas_endpoint_at(i);
			SetOf	   *s = &h->of[i];

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

/* The listing's query: the paths the extension calls. */
static char *
paths_query(void)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < atlas_endpoint_count(); i++)
		if (strncmp(atlas_endpoint_at(i)->route, "/api/atlas/v2/", 14) == 0)
			appendStringInfo(&buf, "endpointPath=%s&", http_escape(atlas_endpoint_at(i)->route));
	return buf.data;
}

/*
 * Read listRateLimits from a target's host, when it was never read or
 * longer ago than atlas_users.rate_limit_sets_ttl (0: never read).
 */
void
atlas_rate_sets_refresh(AtlasTarget *target)
{
	HostSets   *h;
	AtlasListing l;
	AtlasListing *arr[1] = {&l};
	HostSets	fresh;
	TimestampTz now = GetCurrentTimestamp();

	if (atlas_rate_limit_sets_ttl_s <= 0)
		return;
	h = host_sets(target->host, true);
	if (h->read_at != 0 &&
		!TimestampDifferenceExceeds(h->read_at, now, atlas_rate_limit_sets_ttl_s * 1000))
		return;
	h->read_at = now;			/* a failed read is not tried again at once */
	memset(&fresh, 0, sizeof(fresh));
	fresh.of = palloc0(sizeof(SetOf) * atlas_endpoint_count());
	memset(&l, 0, sizeof(l));
	l.op = ATLAS_OP_LIST_RATE_LIMITS;
	l.target = target;
	l.query = paths_query();
	l.item = set_item;
	l.arg = &fresh;
	atlas_list_many(arr, 1);
	h->listed = (l.end == ATLAS_LISTING_OK);
	if (h->listed)
		memcpy(h->of, fresh.of, sizeof(SetOf) * atlas_endpoint_count());
	else
		ereport(DEBUG1,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg_internal("atlas_users: listRateLimits at %s: %s; pacing by the table and headers",
								 target->host, l.failed ? atlas_call_message(l.failed)
								 : l.problem ? l.problem : "failed")));
}

/*
 * The bucket of a call's endpoint as Atlas lists it: its pace key, and
 * the listed figures as a starting model.  False when Atlas did not say.
 */
bool
atlas_rate_set_key(const AtlasTarget *target, const AtlasEndpoint *ep, AtlasCall *call,
				   AtlasPaceKey *k)
{
	HostSets   *h = host_sets(target->host, false);
	SetOf	   *s;
	const char *scope;

	if (h == NULL || !h->listed)
		return false;
	s = &h->of[atlas_endpoint_index(ep)];
	if (!s->listed)
		return false;
	scope = (s->scope == ATLAS_ID_USER) ? NULL : atlas_call_id(call, s->scope);
	atlas_pace_key(k, target->host, s->set_id, scope ? scope : "");
	atlas_pace_preset(k, s->capacity, s->refill, s->period_ms);
	return true;
}
