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
 * never stops the others, and every removal is audited (by the executor).
 * Without dry_run, a hot standby or a read-only transaction refuses the
 * call with 25006 before the lookups: nothing at all is sent.
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

/* The scope argument: 'org', 'projects' or 'teams'. */
static char *
scope_arg(FunctionCallInfo fcinfo, int argno)
{
	char	   *scope;

	if (PG_ARGISNULL(argno) || PG_ARGISNULL(argno + 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scope and dry_run must not be null")));
	scope = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (strcmp(scope, "org") != 0 && strcmp(scope, "projects") != 0 && strcmp(scope, "teams") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid scope \"%s\"", scope),
				 errhint("Use 'org', 'projects' or 'teams'.")));
	return scope;
}

/*
 * What the scope does with one membership: the removal operation, or -1
 * when it is dropped with the organization (0 when the scope leaves it).
 */
static int
plan_membership(const char *scope, AtlasMembership *m, AtlasOperation *op)
{
	if (strcmp(scope, "org") == 0)
	{
		if (strcmp(m->scope, "org") != 0)
			return -1;
		*op = ATLAS_OP_REMOVE_ORG_USER;
		return 1;
	}
	if (strcmp(scope, "projects") == 0 && strcmp(m->scope, "project") == 0)
	{
		*op = ATLAS_OP_REMOVE_PROJECT_USER;
		return 1;
	}
	if (strcmp(scope, "teams") == 0 && strcmp(m->scope, "team") == 0)
	{
		*op = ATLAS_OP_REMOVE_TEAM_USER;
		return 1;
	}
	return 0;
}

/* The plan: an item, and its removal call, per membership in the scope. */
static List *
plan_items(const char *org_id, AtlasOrgUser *u, const char *scope)
{
	List	   *items = NIL;
	ListCell   *lc;

	foreach(lc, atlas_user_membership_list(org_id, u, false))
	{
		AtlasMembership *m = (AtlasMembership *) lfirst(lc);
		OffboardItem *it;
		AtlasOperation op;
		int			plan = plan_membership(scope, m, &op);

		if (plan == 0)
			continue;
		it = palloc0(sizeof(OffboardItem));
		it->m = m;
		items = lappend(items, it);
		if (plan < 0)
		{
			it->action = "dropped_with_org";
			continue;
		}
		it->action = atlas_operation_name(op);
		it->call = atlas_call_new(op);
		it->call->org_id = (char *) org_id;
		if (op == ATLAS_OP_REMOVE_PROJECT_USER)
			it->call->group_id = m->id;
		if (op == ATLAS_OP_REMOVE_TEAM_USER)
			it->call->team_id = m->id;
		it->call->user_id = u->id;
		it->call->missing_ok = true;
	}
	return items;
}

/* Run the plan's removals; returns the organization removal, if any. */
static AtlasCall *
run_items(List *items)
{
	AtlasCall **calls = palloc(sizeof(AtlasCall *) * Max(list_length(items), 1));
	AtlasCall  *org_call = NULL;
	AtlasRunSpec spec = atlas_session_spec("atlas_offboard_user");
	int			ncalls = 0;
	ListCell   *lc;

	foreach(lc, items)
	{
		OffboardItem *it = (OffboardItem *) lfirst(lc);

		if (it->call == NULL)
			continue;
		calls[ncalls++] = it->call;
		if (it->call->op == ATLAS_OP_REMOVE_ORG_USER)
			org_call = it->call;
	}
	if (ncalls > 0)
		atlas_execute(calls, ncalls, &spec);
	return org_call;
}

/* Put an item's result row. */
static void
put_item(ReturnSetInfo *rsinfo, OffboardItem *it, bool dry_run, AtlasCall *org_call)
{
	AtlasCall  *c = it->call;

	if (dry_run)
		put_row(rsinfo, it->m->scope, it->m->id, it->action, "planned", 0, NULL, NULL);
	else if (c != NULL)
		put_row(rsinfo, it->m->scope, it->m->id, it->action,
				atlas_outcome_name(c->outcome), c->answer.http_status,
				c->answer.error_code, atlas_call_detail(c));
	else if (org_call && org_call->outcome == ATLAS_OUTCOME_SUCCEEDED)
		put_row(rsinfo, it->m->scope, it->m->id, it->action, "removed", 0, NULL,
				"Atlas removed this membership with the organization membership.");
	else
		put_row(rsinfo, it->m->scope, it->m->id, it->action, "not_removed", 0, NULL,
				"The organization membership was not removed, so this one remains.");
}

/* atlas_offboard_user(org_id, username_or_id, scope, dry_run) */
Datum
atlas_offboard_user(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *org_id = atlas_id_arg(fcinfo, 0, "org_id");
	char	   *scope = scope_arg(fcinfo, 2);
	bool		dry_run = PG_GETARG_BOOL(3);
	AtlasOrgUser *u;
	bool		found;
	List	   *items;
	AtlasCall  *org_call = NULL;
	ListCell   *lc;

	/* a standby or a read-only transaction refuses before the lookups too */
	if (!dry_run)
		atlas_require_writable("offboard Atlas users");
	InitMaterializedSRF(fcinfo, 0);
	u = atlas_org_user_arg(fcinfo, 1, org_id, &found);
	if (!found)
		return (Datum) 0;
	items = plan_items(org_id, u, scope);
	if (!dry_run)
		org_call = run_items(items);
	foreach(lc, items)
		put_item(rsinfo, (OffboardItem *) lfirst(lc), dry_run, org_call);
	return (Datum) 0;
}
