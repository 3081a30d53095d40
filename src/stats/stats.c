/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Request statistics: counters of every request the executor finished,
 *	  by server, host, endpoint and HTTP status, for the
 *	  atlas_stat_requests view, and atlas_stat_reset().
 *
 * The executor counts each finished request here (dispatch.c's done
 * callback, the one place every answer passes), token requests included.
 * With shared_preload_libraries the counters live in shared memory and
 * cover the whole cluster (every backend and the worker) until a restart
 * or atlas_stat_reset(); without it, each backend keeps its own, which
 * the view shows.  The table is a fixed open-addressing hash of
 * STAT_ENTRIES entries, never shrunk but by a reset: when it is full, a
 * request of a new key is counted in one overflow row whose endpoint is
 * "(other)".  A row holds names only (server, host, operation), never a
 * secret, a token or a user id.
 *
 *-------------------------------------------------------------------------
 */
#include "shared/shared.h"
#include "stats/stats.h"

#include "common/hashfn.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* keys counted before the overflow row takes the rest */
#define STAT_ENTRIES 1024
#define STAT_HOST_LEN 128
#define STAT_ENDPOINT_LEN 48

typedef struct StatEntry
{
	bool		used;
	uint32		hash;
	char		server[NAMEDATALEN];	/* "" for the atlas_users.* settings */
	char		host[STAT_HOST_LEN];
	char		endpoint[STAT_ENDPOINT_LEN];
	int32		http_status;
	int64		calls;
	double		total_ms;
	double		max_ms;
	int64		retries;
	int64		rate_limit_waits;
	double		rate_limit_wait_ms;
	int64		bytes;
	TimestampTz last_call;
} StatEntry;

typedef struct StatTable
{
	LWLock	   *lock;			/* NULL in a backend-local table */
	TimestampTz stats_reset;
	StatEntry	overflow;		/* keys that found the table full */
	StatEntry	entries[STAT_ENTRIES];
} StatTable;

static StatTable *stats = NULL;

PG_FUNCTION_INFO_V1(atlas_stat_requests_rows);
PG_FUNCTION_INFO_V1(atlas_stat_reset);

/* A new table: its statistics start now. */
static void
table_made(void *t)
{
	((StatTable *) t)->stats_reset = GetCurrentTimestamp();
}

/* The request statistics' shared memory, for init.c. */
const AtlasSharedSpec atlas_stat_shared = {
	"atlas_users request statistics", sizeof(StatTable), (void **) &stats, table_made
};

/* The table: the shared one, or a backend-local one made on first use. */
static StatTable *
stat_table(void)
{
	return atlas_shared_get(&atlas_stat_shared);
}

/* The hash of a sample's key. */
static uint32
sample_hash(const AtlasStatSample *s)
{
	const char *server = s->server ? s->server : "";
	uint32		h = hash_bytes((const unsigned char *) server, strlen(server));

	h = hash_combine(h, hash_bytes((const unsigned char *) s->host, strlen(s->host)));
	h = hash_combine(h, hash_bytes((const unsigned char *) s->endpoint, strlen(s->endpoint)));
	return hash_combine(h, hash_uint32((uint32) s->http_status));
}

/* Does an entry hold a sample's key? */
static bool
entry_is(const StatEntry *e, uint32 hash, const AtlasStatSample *s)
{
	return e->hash == hash && e->http_status == (int32) s->http_status &&
		strcmp(e->server, s->server ? s->server : "") == 0 &&
		strncmp(e->host, s->host, STAT_HOST_LEN - 1) == 0 &&
		strncmp(e->endpoint, s->endpoint, STAT_ENDPOINT_LEN - 1) == 0;
}

/* The entry of a sample's key, taken now if new; the overflow row when full. */
static StatEntry *
find_entry(StatTable *t, const AtlasStatSample *s)
{
	uint32		hash = sample_hash(s);
	int			i;

	for (i = 0; i < STAT_ENTRIES; i++)
	{
		StatEntry  *e = &t->entries[(hash + i) % STAT_ENTRIES];

		if (e->used && entry_is(e, hash, s))
			return e;
		if (!e->used)
		{
			e->used = true;
			e->hash = hash;
			strlcpy(e->server, s->server ? s->server : "", sizeof(e->server));
			strlcpy(e->host, s->host, sizeof(e->host));
			strlcpy(e->endpoint, s->endpoint, sizeof(e->endpoint));
			e->http_status = (int32) s->http_status;
			return e;
		}
	}
	t->overflow.used = true;
	strlcpy(t->overflow.endpoint, "(other)", sizeof(t->overflow.endpoint));
	return &t->overflow;
}

/* Count one finished request.  Never raises: it runs as answers arrive. */
void
atlas_stat_count(const AtlasStatSample *s)
{
	StatTable  *t = stat_table();
	StatEntry  *e;

	atlas_shared_lock(t, LW_EXCLUSIVE);
	e = find_entry(t, s);
	e->calls++;
	e->total_ms += s->elapsed_ms;
	e->max_ms = Max(e->max_ms, s->elapsed_ms);
	e->retries += s->retry ? 1 : 0;
	e->rate_limit_waits += s->rate_limit_waits;
	e->rate_limit_wait_ms += s->rate_limit_wait_ms;
	e->bytes += s->bytes;
	e->last_call = GetCurrentTimestamp();
	atlas_shared_unlock(t);
}

/* When a request last got an answer of this status (0: never since the reset). */
TimestampTz
atlas_stat_last_call(int http_status)
{
	StatTable  *t = stat_table();
	TimestampTz last = 0;
	int			i;

	atlas_shared_lock(t, LW_SHARED);
	for (i = 0; i < STAT_ENTRIES; i++)
		if (t->entries[i].used && t->entries[i].http_status == http_status)
			last = Max(last, t->entries[i].last_call);
	atlas_shared_unlock(t);
	return last;
}

/* Put one entry as a row of the view. */
static void
put_entry(ReturnSetInfo *rsinfo, const StatEntry *e, TimestampTz reset, bool overflow)
{
	Datum		values[13];
	bool		nulls[13];

	memset(nulls, 0, sizeof(nulls));
	values[0] = CStringGetTextDatum(e->server);
	nulls[0] = (e->server[0] == '\0');
	values[1] = CStringGetTextDatum(e->host);
	nulls[1] = overflow;
	values[2] = CStringGetTextDatum(e->endpoint);
	values[3] = Int32GetDatum(e->http_status);
	nulls[3] = overflow;
	values[4] = Int64GetDatum(e->calls);
	values[5] = Float8GetDatum(e->total_ms);
	values[6] = Float8GetDatum(e->max_ms);
	values[7] = Int64GetDatum(e->retries);
	values[8] = Int64GetDatum(e->rate_limit_waits);
	values[9] = Float8GetDatum(e->rate_limit_wait_ms);
	values[10] = Int64GetDatum(e->bytes);
	values[11] = TimestampTzGetDatum(e->last_call);
	values[12] = TimestampTzGetDatum(reset);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * atlas_stat_requests_rows(): the counters, a row per server, host,
 * endpoint and HTTP status (the atlas_stat_requests view)
 */
Datum
atlas_stat_requests_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StatTable  *t = stat_table();
	StatEntry  *copy = palloc(sizeof(StatEntry) * STAT_ENTRIES);
	StatEntry	overflow;
	TimestampTz reset;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	/* copy under the lock; build the rows after it */
	atlas_shared_lock(t, LW_SHARED);
	memcpy(copy, t->entries, sizeof(StatEntry) * STAT_ENTRIES);
	overflow = t->overflow;
	reset = t->stats_reset;
	atlas_shared_unlock(t);
	for (i = 0; i < STAT_ENTRIES; i++)
		if (copy[i].used)
			put_entry(rsinfo, &copy[i], reset, false);
	if (overflow.used)
		put_entry(rsinfo, &overflow, reset, true);
	pfree(copy);
	return (Datum) 0;
}

/* atlas_stat_reset(): zero every counter; returns the time of the reset */
Datum
atlas_stat_reset(PG_FUNCTION_ARGS)
{
	StatTable  *t = stat_table();
	TimestampTz now = GetCurrentTimestamp();

	atlas_shared_lock(t, LW_EXCLUSIVE);
	memset(&t->overflow, 0, sizeof(StatEntry));
	memset(t->entries, 0, sizeof(t->entries));
	t->stats_reset = now;
	atlas_shared_unlock(t);
	PG_RETURN_TIMESTAMPTZ(now);
}
