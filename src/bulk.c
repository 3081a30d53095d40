/*-------------------------------------------------------------------------
 *
 * bulk.c
 *	  Bulk removal: many users from one project, organization or team in
 *	  one statement.
 *
 * All ids are validated first; then the removals run through the call
 * engine, up to atlas_users.max_concurrency at once on the curl_multi
 * transport, with a NOTICE of progress every 10 seconds.  A per-user API
 * error becomes a result row, never an error: the functions raise only
 * for invalid input or configuration (and for a query cancel, which ends
 * them within a second).  Every removal is audited.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas_users.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(atlas_remove_project_users);
PG_FUNCTION_INFO_V1(atlas_remove_org_users);
PG_FUNCTION_INFO_V1(atlas_remove_team_users);

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
		if (!atlas_is_atlas_id(ids[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid user_ids[%d]", i + 1),
					 errdetail("An Atlas id is 24 lowercase hexadecimal characters (^[a-f0-9]{24}$); no request was sent.")));
	}
	return ids;
}

/* Run calls, auditing each; interrupted runs are audited as far as they got. */
void
atlas_run_audited(AtlasCall **calls, int n, const char *progress_label)
{
	int			i;

	PG_TRY();
	{
		atlas_run_calls(calls, n, atlas_max_concurrency, atlas_max_retries, progress_label);
	}
	PG_CATCH();
	{
		atlas_audit_after_error(calls, n);
		PG_RE_THROW();
	}
	PG_END_TRY();
	for (i = 0; i < n; i++)
		atlas_audit_call(calls[i]);
}

/* Remove each user with one operation and return a row per user. */
static Datum
bulk_remove(FunctionCallInfo fcinfo, AtlasOperation op, const char *org_id,
			const char *group_id, const char *team_id, int ids_argno, const char *label)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			n;
	char	  **ids = user_ids_arg(fcinfo, ids_argno, &n);
	bool		missing_ok;
	AtlasCall **calls;
	int			i;

	if (PG_ARGISNULL(ids_argno + 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("missing_ok must not be null")));
	missing_ok = PG_GETARG_BOOL(ids_argno + 1);

	InitMaterializedSRF(fcinfo, 0);
	if (n == 0)
		return (Datum) 0;

	calls = palloc(sizeof(AtlasCall *) * n);
	for (i = 0; i < n; i++)
	{
		calls[i] = atlas_call_new(op);
		calls[i]->org_id = (char *) org_id;
		calls[i]->group_id = (char *) group_id;
		calls[i]->team_id = (char *) team_id;
		calls[i]->user_id = ids[i];
		calls[i]->missing_ok = missing_ok;
	}
	atlas_run_audited(calls, n, label);

	for (i = 0; i < n; i++)
	{
		AtlasCall  *c = calls[i];
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};
		const char *detail = atlas_call_detail(c);

		values[0] = CStringGetTextDatum(c->user_id);
		values[1] = BoolGetDatum(c->outcome == ATLAS_OUTCOME_REMOVED);
		values[2] = Int32GetDatum((int32) c->http_status);
		nulls[2] = (c->http_status == 0);
		if (c->error_code)
			values[3] = CStringGetTextDatum(c->error_code);
		else
			nulls[3] = true;
		if (detail && c->outcome != ATLAS_OUTCOME_REMOVED)
			values[4] = CStringGetTextDatum(detail);
		else
			nulls[4] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* atlas_remove_project_users(group_id, user_ids, missing_ok) */
Datum
atlas_remove_project_users(PG_FUNCTION_ARGS)
{
	char	   *group_id = atlas_id_arg(fcinfo, 0, "group_id");

	return bulk_remove(fcinfo, ATLAS_OP_REMOVE_PROJECT_USER, NULL, group_id, NULL, 1,
					   "atlas_remove_project_users");
}

/* atlas_remove_org_users(org_id, user_ids, missing_ok) */
Datum
atlas_remove_org_users(PG_FUNCTION_ARGS)
{
	char	   *org_id = atlas_id_arg(fcinfo, 0, "org_id");

	return bulk_remove(fcinfo, ATLAS_OP_REMOVE_ORG_USER, org_id, NULL, NULL, 1,
					   "atlas_remove_org_users");
}

/* atlas_remove_team_users(org_id, team_id, user_ids, missing_ok) */
Datum
atlas_remove_team_users(PG_FUNCTION_ARGS)
{
	char	   *org_id = atlas_id_arg(fcinfo, 0, "org_id");
	char	   *team_id = atlas_id_arg(fcinfo, 1, "team_id");

	return bulk_remove(fcinfo, ATLAS_OP_REMOVE_TEAM_USER, org_id, NULL, team_id, 2,
					   "atlas_remove_team_users");
}
