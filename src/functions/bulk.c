/*-------------------------------------------------------------------------
 *
 * bulk.c
 *	  Bulk removal: many users from one project, organization or team in
 *	  one statement.
 *
 * All ids are validated first; then the removals run through the
 * executor, up to atlas_users.max_concurrency at once on the curl_multi
 * transport, with a NOTICE of progress every 10 seconds.  A per-user API
 * error becomes a result row, never an error: the functions raise only
 * for invalid input or configuration (and for a query cancel, which ends
 * them within a second).  Every removal is audited.  Past the removal
 * budget (guard.c) they fail with 55000 before the first request, unless
 * force, which the audit rows record.
 *
 *-------------------------------------------------------------------------
 */
#include "functions/functions.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"

/* The validated elements of a text[] of user ids. */
static char **
user_ids_arg(FunctionCallInfo fcinfo, int argno, int *n)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	char	  **ids;
	int			i;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("user_ids must not be null")));
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("user_ids must be a one-dimensional array")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, n);
	ids = palloc(sizeof(char *) * Max(*n, 1));
	for (i = 0; i < *n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("user_ids[%d] must not be null", i + 1),
					 errdetail("No request was sent.")));
		ids[i] = TextDatumGetCString(elems[i]);
		if (!atlas_is_id(ids[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid user_ids[%d]", i + 1),
					 errdetail("An Atlas id is 24 lowercase hexadecimal characters (^[a-f0-9]{24}$); no request was sent.")));
	}
	return ids;
}

/* Put one result row for a finished call. */
static void
put_row(ReturnSetInfo *rsinfo, AtlasCall *c)
{
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	const char *detail = atlas_call_detail(c);

	values[0] = CStringGetTextDatum(c->user_id);
	values[1] = BoolGetDatum(c->outcome == ATLAS_OUTCOME_SUCCEEDED);
	values[2] = Int32GetDatum((int32) c->answer.http_status);
	nulls[2] = (c->answer.http_status == 0);
	if (c->answer.error_code)
		values[3] = CStringGetTextDatum(c->answer.error_code);
	else
		nulls[3] = true;
	if (detail && c->outcome != ATLAS_OUTCOME_SUCCEEDED)
		values[4] = CStringGetTextDatum(detail);
	else
		nulls[4] = true;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * Remove each user of the array argument with one operation, whose other
 * ids come first; return a row per user.
 */
static Datum
bulk_remove(FunctionCallInfo fcinfo, AtlasOperation op, const char *label)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *ids[ATLAS_MAX_IDS];
	int			argno = atlas_ids_arg(fcinfo, 0, op, false, ids);
	int			n;
	char	  **user_ids = user_ids_arg(fcinfo, argno, &n);
	bool		missing_ok = atlas_bool_arg(fcinfo, argno + 1, "missing_ok");
	bool		force = PG_NARGS() > argno + 2 && atlas_bool_arg(fcinfo, argno + 2, "force");
	char	   *reason;
	char	   *ticket;
	AtlasRunSpec spec = atlas_session_spec(label);
	AtlasCall **calls;
	int			i;

	atlas_evidence_args(fcinfo, argno + 3, &reason, &ticket);
	InitMaterializedSRF(fcinfo, 0);
	if (n == 0)
		return (Datum) 0;
	atlas_require_writable("remove Atlas users");
	force = atlas_guard_reserve(ids[ATLAS_ID_ORG], ids[ATLAS_ID_GROUP], user_ids, n, force, label);

	calls = palloc(sizeof(AtlasCall *) * n);
	for (i = 0; i < n; i++)
	{
		calls[i] = atlas_call_new(op);
		ids[ATLAS_ID_USER] = user_ids[i];
		atlas_call_set_ids(calls[i], ids);
		calls[i]->missing_ok = missing_ok;
		calls[i]->forced = force;	/* past the budget, by force */
		calls[i]->reason = reason;
		calls[i]->ticket = ticket;
		calls[i]->guard_counted = true;
	}
	atlas_execute(calls, n, &spec);
	for (i = 0; i < n; i++)
		put_row(rsinfo, calls[i]);
	return (Datum) 0;
}

/*
 * atlas_remove_project_users(group_id, user_ids, missing_ok, force, reason, ticket),
 * atlas_remove_org_users(org_id, user_ids, missing_ok, force, reason, ticket),
 * atlas_remove_team_users(org_id, team_id, user_ids, missing_ok, force, reason, ticket)
 */
ATLAS_SQL_FUNCTION(atlas_remove_project_users, bulk_remove, ATLAS_OP_REMOVE_PROJECT_USER,
				   "atlas_remove_project_users")
ATLAS_SQL_FUNCTION(atlas_remove_org_users, bulk_remove, ATLAS_OP_REMOVE_ORG_USER,
				   "atlas_remove_org_users")
ATLAS_SQL_FUNCTION(atlas_remove_team_users, bulk_remove, ATLAS_OP_REMOVE_TEAM_USER,
				   "atlas_remove_team_users")
