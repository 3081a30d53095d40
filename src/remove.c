/*-------------------------------------------------------------------------
 *
 * remove.c
 *	  The synchronous SQL removal functions.
 *
 * Each function validates its ids, runs one call through the engine
 * (atlas_api.c), audits it (audit.c), and returns true when Atlas removed
 * the user, false when the user was already absent and missing_ok was
 * given, or raises the SQL error for Atlas's answer (errors.c).
 *
 *-------------------------------------------------------------------------
 */
#include "atlas_users.h"

PG_FUNCTION_INFO_V1(atlas_remove_project_user);
PG_FUNCTION_INFO_V1(atlas_remove_org_user);
PG_FUNCTION_INFO_V1(atlas_remove_team_user);
PG_FUNCTION_INFO_V1(atlas_remove_project_user_v1);

/* The missing_ok argument, which must not be NULL. */
static bool
missing_ok_arg(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("missing_ok must not be null")));
	return PG_GETARG_BOOL(argno);
}

/* Run one removal, audit it, and return its result or raise its error. */
static bool
remove_one(AtlasCall *call)
{
	PG_TRY();
	{
		atlas_run_calls(&call, 1, 1, atlas_max_retries, NULL);
	}
	PG_CATCH();
	{
		atlas_audit_after_error(&call, 1);
		PG_RE_THROW();
	}
	PG_END_TRY();
	atlas_audit_call(call);
	if (call->outcome == ATLAS_OUTCOME_FAILED)
		atlas_raise_call_error(call);
	return call->outcome == ATLAS_OUTCOME_REMOVED;
}

/* atlas_remove_project_user(group_id, user_id, missing_ok) */
Datum
atlas_remove_project_user(PG_FUNCTION_ARGS)
{
	AtlasCall  *call = atlas_call_new(ATLAS_OP_REMOVE_PROJECT_USER);

	call->group_id = atlas_id_arg(fcinfo, 0, "group_id");
	call->user_id = atlas_id_arg(fcinfo, 1, "user_id");
	call->missing_ok = missing_ok_arg(fcinfo, 2);
	PG_RETURN_BOOL(remove_one(call));
}

/* atlas_remove_org_user(org_id, user_id, missing_ok) */
Datum
atlas_remove_org_user(PG_FUNCTION_ARGS)
{
	AtlasCall  *call = atlas_call_new(ATLAS_OP_REMOVE_ORG_USER);

	call->org_id = atlas_id_arg(fcinfo, 0, "org_id");
	call->user_id = atlas_id_arg(fcinfo, 1, "user_id");
	call->missing_ok = missing_ok_arg(fcinfo, 2);
	PG_RETURN_BOOL(remove_one(call));
}

/* atlas_remove_team_user(org_id, team_id, user_id, missing_ok) */
Datum
atlas_remove_team_user(PG_FUNCTION_ARGS)
{
	AtlasCall  *call = atlas_call_new(ATLAS_OP_REMOVE_TEAM_USER);

	call->org_id = atlas_id_arg(fcinfo, 0, "org_id");
	call->team_id = atlas_id_arg(fcinfo, 1, "team_id");
	call->user_id = atlas_id_arg(fcinfo, 2, "user_id");
	call->missing_ok = missing_ok_arg(fcinfo, 3);
	PG_RETURN_BOOL(remove_one(call));
}

/* atlas_remove_project_user_v1(group_id, user_id, missing_ok): legacy API */
Datum
atlas_remove_project_user_v1(PG_FUNCTION_ARGS)
{
	AtlasCall  *call = atlas_call_new(ATLAS_OP_REMOVE_PROJECT_USER_V1);

	call->group_id = atlas_id_arg(fcinfo, 0, "group_id");
	call->user_id = atlas_id_arg(fcinfo, 1, "user_id");
	call->missing_ok = missing_ok_arg(fcinfo, 2);
	PG_RETURN_BOOL(remove_one(call));
}
