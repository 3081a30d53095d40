/*-------------------------------------------------------------------------
 *
 * health.c
 *	  The token state of each server, for atlas_health(): until when the
 *	  cached service-account token is valid, never the token.
 *
 * The servers are those a call "in every organization" would use (see
 * atlas_targets_everywhere): every trusted server the current user may
 * use, else the atlas_users.* settings.  A server whose credentials cannot
 * be resolved (no user mapping, a missing secret) is a row of its own,
 * with state 'unavailable', rather than an error: a health check answers.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas_users.h"

#include "access/xact.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "stats.h"
#include "utils/builtins.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(atlas_token_states);

/*
 * The target of a server (InvalidOid: the settings), or NULL when its
 * credentials cannot be resolved; the error is dropped in a subtransaction.
 */
static AtlasTarget *
try_target(Oid server_oid)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	AtlasTarget *volatile t = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		t = OidIsValid(server_oid) ? atlas_target_of_server(server_oid, GetUserId(), false)
			: atlas_target_from_settings(false);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		t = NULL;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return t;
}

/* Put the row of one server (NULL name: the settings). */
static void
put_state(ReturnSetInfo *rsinfo, const char *server, AtlasTarget *t)
{
	Datum		values[4];
	bool		nulls[4] = {server == NULL, false, true, true};
	const char *state = "unavailable";

	values[0] = server ? CStringGetTextDatum(server) : (Datum) 0;
	if (t != NULL && t->method != ATLAS_AUTH_SERVICE_ACCOUNT)
		state = "digest";
	else if (t != NULL)
	{
		TimestampTz valid_until;
		TimestampTz failed_at;

		atlas_token_state(t, &valid_until, &failed_at);
		state = valid_until > GetCurrentTimestamp() ? "valid" : "none";
		values[2] = TimestampTzGetDatum(valid_until);
		nulls[2] = (valid_until == 0);
		values[3] = TimestampTzGetDatum(failed_at);
		nulls[3] = (failed_at == 0);
	}
	values[1] = CStringGetTextDatum(state);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	if (t != NULL)
		atlas_target_wipe(t);
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
	List	   *servers;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	servers = atlas_usable_servers(GetUserId());
	foreach(lc, servers)
	{
		Oid			oid = lfirst_oid(lc);

		put_state(rsinfo, GetForeignServer(oid)->servername, try_target(oid));
	}
	if (servers == NIL)
		put_state(rsinfo, NULL, try_target(InvalidOid));
	return (Datum) 0;
}
