/*-------------------------------------------------------------------------
 *
 * offboard.c
 *	  Offboarding a person: every place they have access, as a plan or
 *	  removed, one result row per membership.
 *
 * atlas_offboard_user(org_id, username_or_id, scope, dry_run) reads the
 * user's memberships (lookup.c), then:
 *	  scope 'org'      removes the organization membership; Atlas drops the
 *					   project and team memberships with it, and each is
 *					   listed with action 'dropped_with_org';
 *	  scope 'projects' removes every project membership, keeps the org;
 *	  scope 'teams'    removes every team membership.
 * dry_run returns the plan and sends no DELETE or POST.  One failing item
 * never stops the others, and every removal is audited.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas_users.h"

#include "funcapi.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(atlas_offboard_user);

typedef struct OffboardItem
{
	AtlasMembership *m;
	const char *action;
	AtlasCall  *call;			/* NULL when Atlas drops it with the org */
} OffboardItem;

/* Put one result row. */
static void
put_row(ReturnSetInfo *rsinfo, const char *scope, const char *id, const char *action,
		const char *outcome, long http_status, const char *error_code, const char *detail)
{
	Datum		values[7];
	bool		nulls[7] = {false, false, false, false, false, false, false};

	values[0] = CStringGetTextDatum(scope);
	values[1] = CStringGetTextDatum(id);
	values[2] = CStringGetTextDatum(action);
	values[3] = CStringGetTextDatum(outcome);
	values[4] = Int32GetDatum((int32) http_status);
	nulls[4] = (http_status == 0);
	if (error_code)
		values[5] = CStringGetTextDatum(error_code);
	else
		nulls[5] = true;
	if (detail)
		values[6] = CStringGetTextDatum(detail);
	else
		nulls[6] = true;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* atlas_offboard_user(org_id, username_or_id, scope, dry_run) */
Datum
atlas_offboard_user(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *org_id = atlas_id_arg(fcinfo, 0, "org_id");
	char	   *scope;
	bool		dry_run;
	AtlasOrgUser *u;
	bool		found;
	List	   *items = NIL;
	ListCell   *lc;
	AtlasCall **calls;
	AtlasCall  *org_call = NULL;
	int			ncalls = 0;

	if (PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scope and dry_run must not be null")));
	scope = text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (strcmp(scope, "org") != 0 && strcmp(scope, "projects") != 0 && strcmp(scope, "teams") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid scope \"%s\"", scope),
				 errhint("Use 'org', 'projects' or 'teams'.")));
	dry_run = PG_GETARG_BOOL(3);

	InitMaterializedSRF(fcinfo, 0);
	u = atlas_org_user_arg(fcinfo, 1, org_id, &found);
	if (!found)
		return (Datum) 0;

	foreach(lc, atlas_user_membership_list(org_id, u, false))
	{
		AtlasMembership *m = (AtlasMembership *) lfirst(lc);
		OffboardItem *it = palloc0(sizeof(OffboardItem));
		AtlasOperation op;

		it->m = m;
		if (strcmp(scope, "org") == 0)
		{
			if (strcmp(m->scope, "org") != 0)
			{
				it->action = "dropped_with_org";
				items = lappend(items, it);
				continue;
			}
			it->action = "remove_org_user";
			op = ATLAS_OP_REMOVE_ORG_USER;
		}
		else if (strcmp(scope, "projects") == 0 && strcmp(m->scope, "project") == 0)
		{
			it->action = "remove_project_user";
			op = ATLAS_OP_REMOVE_PROJECT_USER;
		}
		else if (strcmp(scope, "teams") == 0 && strcmp(m->scope, "team") == 0)
		{
			it->action = "remove_team_user";
			op = ATLAS_OP_REMOVE_TEAM_USER;
		}
		else
			continue;
		it->call = atlas_call_new(op);
		it->call->org_id = org_id;
		if (op == ATLAS_OP_REMOVE_PROJECT_USER)
			it->call->group_id = m->id;
		if (op == ATLAS_OP_REMOVE_TEAM_USER)
			it->call->team_id = m->id;
		it->call->user_id = u->id;
		it->call->missing_ok = true;
		if (op == ATLAS_OP_REMOVE_ORG_USER)
			org_call = it->call;
		items = lappend(items, it);
	}

	if (!dry_run)
	{
		calls = palloc(sizeof(AtlasCall *) * Max(list_length(items), 1));
		foreach(lc, items)
		{
			OffboardItem *it = (OffboardItem *) lfirst(lc);

			if (it->call)
				calls[ncalls++] = it->call;
		}
		if (ncalls > 0)
			atlas_run_audited(calls, ncalls, "atlas_offboard_user");
	}

	foreach(lc, items)
	{
		OffboardItem *it = (OffboardItem *) lfirst(lc);
		AtlasCall  *c = it->call;

		if (dry_run)
			put_row(rsinfo, it->m->scope, it->m->id, it->action, "planned", 0, NULL, NULL);
		else if (c != NULL)
			put_row(rsinfo, it->m->scope, it->m->id, it->action,
					atlas_outcome_name(c->outcome), c->http_status, c->error_code,
					atlas_call_detail(c));
		else if (org_call && org_call->outcome == ATLAS_OUTCOME_REMOVED)
			put_row(rsinfo, it->m->scope, it->m->id, it->action, "removed", 0, NULL,
					"Atlas removed this membership with the organization membership.");
		else
			put_row(rsinfo, it->m->scope, it->m->id, it->action, "not_removed", 0, NULL,
					"The organization membership was not removed, so this one remains.");
	}
	return (Datum) 0;
}
