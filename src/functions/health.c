/*-------------------------------------------------------------------------
 *
 * health.c
 *	  atlas_health(), one row for monitoring: the queue's rows by status
 *	  (counted as the queue's owner, so a monitoring role needs EXECUTE
 *	  only), the worker, the token state of each server and the last 429;
 *	  and atlas_token_states(), the token states alone.
 *
 * The servers are those a call "in every organization" would use (see
 * atlas_targets_everywhere): every trusted server the current user may
 * use, else the atlas_users.* settings.  A server whose credentials cannot
 * be resolved (no user mapping, a missing secret) is a row of its own,
 * with state 'unavailable', rather than an error: a health check answers.
 * Never a token, a secret or a user id.
 *
 *-------------------------------------------------------------------------
 */
#include "executor/run.h"
#include "stats/stats.h"

#include "access/htup_details.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(atlas_token_states);
PG_FUNCTION_INFO_V1(atlas_health);

/* a server's target, as atlas_try_subxact() resolves it */
typedef struct TargetTry
{
	Oid			server_oid;		/* InvalidOid: the settings */
	AtlasTarget *target;
} TargetTry;

/* Resolve a TargetTry's target. */
static void
target_step(void *arg)
{
	TargetTry  *tt = (TargetTry *) arg;

	tt->target = OidIsValid(tt->server_oid)
		? atlas_target_of_server(tt->server_oid, GetUserId(), false)
		: atlas_target_from_settings(false);
}

/*
 * The target of a server (InvalidOid: the settings), or NULL when its
 * credentials cannot be resolved: the error is dropped (a cancel is not).
 */
static AtlasTarget *
try_target(Oid server_oid)
{
	TargetTry	tt = {server_oid, NULL};
	ErrorData  *edata = atlas_try_subxact(target_step, &tt, CurrentMemoryContext,
										  CurrentMemoryContext);

	if (edata != NULL)
	{
		FreeErrorData(edata);
		return NULL;
	}
	return tt.target;
}

/* a server's token state */
typedef struct TokenState
{
	char	   *server;			/* NULL: the settings */
	const char *state;			/* valid, none, digest or unavailable */
	TimestampTz valid_until;	/* 0: none */
	TimestampTz failed_at;		/* 0: none */
} TokenState;

/* The token state of a server (NULL name: the settings) whose target is t. */
static TokenState *
token_state(char *server, AtlasTarget *t)
{
	TokenState *st = palloc0(sizeof(TokenState));

	st->server = server;
	st->state = "unavailable";
	if (t != NULL && t->method != ATLAS_AUTH_SERVICE_ACCOUNT)
		st->state = "digest";
	else if (t != NULL)
	{
		atlas_token_state(t, &st->valid_until, &st->failed_at);
		st->state = st->valid_until > GetCurrentTimestamp() ? "valid" : "none";
	}
	if (t != NULL)
		atlas_target_wipe(t);
	return st;
}

/* The token states of every server a call in every organization uses. */
static List *
token_states(void)
{
	List	   *servers = atlas_usable_servers(GetUserId());
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, servers)
	{
		Oid			oid = lfirst_oid(lc);

		result = lappend(result, token_state(GetForeignServer(oid)->servername, try_target(oid)));
	}
	if (servers == NIL)
		result = lappend(result, token_state(NULL, try_target(InvalidOid)));
	return result;
}

/*
 * atlas_token_states(): per server, its authentication's state ('valid',
 * 'none', 'digest' or 'unavailable'), until when its token is valid and
 * when its last token request failed
 */
Datum
atlas_token_states(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	foreach(lc, token_states())
	{
		TokenState *st = (TokenState *) lfirst(lc);
		Datum		values[4];
		bool		nulls[4] = {st->server == NULL, false, st->valid_until == 0, st->failed_at == 0};

		values[0] = st->server ? CStringGetTextDatum(st->server) : (Datum) 0;
		values[1] = CStringGetTextDatum(st->state);
		values[2] = TimestampTzGetDatum(st->valid_until);
		values[3] = TimestampTzGetDatum(st->failed_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* Append a JSON string, or null. */
static void
json_text(StringInfo buf, const char *key, const char *value)
{
	appendStringInfo(buf, "\"%s\": ", key);
	if (value == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, value);
}

/* The token states as a jsonb array of objects. */
static Datum
token_states_jsonb(void)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	foreach(lc, token_states())
	{
		TokenState *st = (TokenState *) lfirst(lc);

		appendStringInfoString(&buf, foreach_current_index(lc) > 0 ? ", {" : "{");
		json_text(&buf, "server", st->server);
		appendStringInfoString(&buf, ", ");
		json_text(&buf, "state", st->state);
		appendStringInfoString(&buf, ", ");
		json_text(&buf, "valid_until", st->valid_until ? timestamptz_to_str(st->valid_until) : NULL);
		appendStringInfoString(&buf, ", ");
		json_text(&buf, "failed_at", st->failed_at ? timestamptz_to_str(st->failed_at) : NULL);
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, ']');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/* the queue's figures, read as its owner */
typedef struct QueueFigures
{
	MemoryContext cxt;			/* where the row goes */
	HeapTuple	tuple;
	TupleDesc	desc;
} QueueFigures;

/* Count the queue's rows; runs under atlas_as_table_owner(). */
static void
queue_spi(Oid nsp, void *arg)
{
	QueueFigures *q = (QueueFigures *) arg;
	char	   *sql = psprintf("SELECT count(*) FILTER (WHERE status = 'queued'),"
							   " count(*) FILTER (WHERE status = 'running'),"
							   " count(*) FILTER (WHERE status = 'held'),"
							   " count(*) FILTER (WHERE status = 'awaiting_approval'),"
							   " count(*) FILTER (WHERE status = 'failed' AND finished_at > now() - interval '24 hours'),"
							   " now() - min(enqueued_at) FILTER (WHERE status = 'queued'),"
							   " max(finished_at) FILTER (WHERE status = 'done'),"
							   " max(finished_at) FILTER (WHERE status = 'failed')"
							   " FROM %s", atlas_ext_rel(nsp, "atlas_removal_queue"));
	MemoryContext old;

	if (SPI_execute(sql, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not count the queue's rows");
	old = MemoryContextSwitchTo(q->cxt);
	q->tuple = heap_copytuple(SPI_tuptable->vals[0]);
	q->desc = CreateTupleDescCopy(SPI_tuptable->tupdesc);
	MemoryContextSwitchTo(old);
}

/* atlas_health(): one row for monitoring */
Datum
atlas_health(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	QueueFigures q = {CurrentMemoryContext, NULL, NULL};
	Datum		values[12];
	bool		nulls[12];
	AtlasWorkerInfo w;
	TimestampTz last_429 = atlas_stat_last_call(429);

	InitMaterializedSRF(fcinfo, 0);
	atlas_as_table_owner("atlas_removal_queue", queue_spi, &q);
	heap_deform_tuple(q.tuple, q.desc, values, nulls);	/* the first 6 and 8, 9 */
	values[9] = values[7];
	nulls[9] = nulls[7];
	values[8] = values[6];
	nulls[8] = nulls[6];
	atlas_shmem_worker_info(&w);
	values[6] = BoolGetDatum(w.pid != 0);
	nulls[6] = false;
	values[7] = TimestampTzGetDatum(w.activity);
	nulls[7] = (w.activity == 0);
	values[10] = token_states_jsonb();
	nulls[10] = false;
	values[11] = TimestampTzGetDatum(last_429);
	nulls[11] = (last_429 == 0);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
