/*-------------------------------------------------------------------------
 *
 * remove.c
 *	  The synchronous SQL removal functions.
 *
 * Each function validates its ids (the operation's, in order), runs one
 * call through the executor, which also audits it, and returns true when
 * Atlas removed the user, false when the user was already absent and
 * missing_ok was given, or raises the SQL error for Atlas's answer.  A
 * reason and a ticket, when given, go into the audit row.
 *
 *-------------------------------------------------------------------------
 */
#include "functions/functions.h"

/* Remove the user the arguments name; the ids come first, then missing_ok. */
static Datum
remove_from_args(FunctionCallInfo fcinfo, AtlasOperation op)
{
	AtlasCall  *call = atlas_call_new(op);
	AtlasRunSpec spec = atlas_session_spec(NULL);
	char	   *ids[ATLAS_MAX_IDS];
	int			argno = atlas_ids_arg(fcinfo, 0, op, true, ids);

	atlas_call_set_ids(call, ids);
	call->missing_ok = atlas_bool_arg(fcinfo, argno, "missing_ok");
	/* evidence; the removal counts toward the budget, unlimited (guard.c) */
	atlas_evidence_args(fcinfo, argno + 1, (char **) &call->reason, (char **) &call->ticket);
	spec.concurrency = 1;
	atlas_execute(&call, 1, &spec);
	if (call->outcome == ATLAS_OUTCOME_FAILED)
		atlas_raise_call_error(call);
	PG_RETURN_BOOL(call->outcome == ATLAS_OUTCOME_SUCCEEDED);
}

/*
 * atlas_remove_project_user(group_id, user_id, missing_ok, reason, ticket),
 * atlas_remove_org_user(org_id, user_id, missing_ok, reason, ticket),
 * atlas_remove_team_user(org_id, team_id, user_id, missing_ok, reason, ticket),
 * atlas_remove_project_user_v1(group_id, user_id, missing_ok, reason, ticket):
 * the legacy API
 */
ATLAS_SQL_FUNCTION(atlas_remove_project_user, remove_from_args, ATLAS_OP_REMOVE_PROJECT_USER)
ATLAS_SQL_FUNCTION(atlas_remove_org_user, remove_from_args, ATLAS_OP_REMOVE_ORG_USER)
ATLAS_SQL_FUNCTION(atlas_remove_team_user, remove_from_args, ATLAS_OP_REMOVE_TEAM_USER)
ATLAS_SQL_FUNCTION(atlas_remove_project_user_v1, remove_from_args, ATLAS_OP_REMOVE_PROJECT_USER_V1)
