/*-------------------------------------------------------------------------
 *
 * pacing_sql.c
 *	  The SQL view of pacing.c's rate-limit buckets: atlas_rate_limits()
 *	  and atlas_reset_rate_limits().
 *
 *-------------------------------------------------------------------------
 */
#include "executor/executor_int.h"
#include "executor/pacing.h"

#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(atlas_rate_limits);

/* The name of a bucket's source, in atlas_rate_limits(). */
static const char *
source_name(char source)
{
	switch (source)
	{
		case PACE_FROM_LISTED:
			return "listRateLimits";
		case PACE_FROM_HEADERS:
			return "headers";
		case PACE_FROM_429:
			return "429";
	}
	return "";
}

PG_FUNCTION_INFO_V1(atlas_reset_rate_limits);

/*
 * atlas_rate_limits(): what the model knows of each bucket: capacity,
 * refill, the tokens it thinks Atlas has left, requests in flight, until
 * when it holds requests back, the 429s it saw, and where its capacity
 * and refill came from
 */
Datum
atlas_rate_limits(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PaceState  *p = atlas_pace_state();
	PaceBucket	copy[PACE_BUCKETS];
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	atlas_shared_lock(p, LW_EXCLUSIVE);
	memcpy(copy, p->buckets, sizeof(copy));
	atlas_shared_unlock(p);
	for (i = 0; i < PACE_BUCKETS; i++)
	{
		PaceBucket *b = &copy[i];
		Datum		values[10];
		bool		nulls[10] = {false, false, false, false, false, false, false, false, false, false};

		if (!b->used)
			continue;
		values[0] = CStringGetTextDatum(b->name);
		values[1] = Int32GetDatum(b->capacity);
		nulls[1] = (b->capacity <= 0);
		values[2] = Int32GetDatum(b->refill);
		nulls[2] = (b->refill <= 0);
		values[3] = Float8GetDatum(b->period_ms / 1000.0);
		nulls[3] = (b->period_ms <= 0);
		values[4] = Float8GetDatum(b->tokens);
		nulls[4] = !b->tokens_known;
		values[5] = Int32GetDatum(b->in_flight);
		values[6] = TimestampTzGetDatum(b->blocked_until);
		nulls[6] = (b->blocked_until <= GetCurrentTimestamp());
		values[7] = Int64GetDatum((int64) b->answers_429);
		values[8] = TimestampTzGetDatum(b->last_used);
		/* where capacity and refill came from (a 1.4 install has no column) */
		values[9] = CStringGetTextDatum(source_name(b->source));
		nulls[9] = (b->source == PACE_FROM_NONE);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * atlas_reset_rate_limits(): forget what was learned of every bucket (a
 * 429 that was not Atlas's, say); returns how many buckets were known
 */
Datum
atlas_reset_rate_limits(PG_FUNCTION_ARGS)
{
	PaceState  *p = atlas_pace_state();
	int			n = 0;
	int			i;

	atlas_shared_lock(p, LW_EXCLUSIVE);
	for (i = 0; i < PACE_BUCKETS; i++)
	{
		PaceBucket *b = &p->buckets[i];
		int			in_flight = b->in_flight;
		uint32		key = b->key;
		uint32		host = b->host;
		bool		used = b->used;
		char		name[ATLAS_PACE_NAME];

		if (!used)
			continue;
		n++;
		/* requests in flight are still counted when they answer */
		strlcpy(name, b->name, sizeof(name));
		memset(b, 0, sizeof(PaceBucket));
		b->used = (in_flight > 0);
		b->key = key;
		b->host = host;
		b->in_flight = in_flight;
		strlcpy(b->name, name, sizeof(b->name));
		b->min_remaining = -1;
	}
	atlas_shared_unlock(p);
	/* and what listRateLimits said: the next call reads it again */
	atlas_rate_sets_forget();
	PG_RETURN_INT32(n);
}
