/*-------------------------------------------------------------------------
 *
 * listings.c
 *	  What Atlas holds, as set-returning functions: organizations, their
 *	  users, projects, teams and invitations, and who reaches a project.
 *
 * Each function reads every page of one or more Atlas lists (listing.c,
 * through the executor) and puts a row per entry into the result as the
 * page arrives (listing_rows.c): typed columns for what a query joins or
 * filters on, and the entry itself as jsonb.  The tables below say where
 * each column's value is in an entry.
 *
 * Listings only read: they work on a hot standby and in a read-only
 * transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "functions/functions.h"
#include "functions/listings.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(atlas_orgs);
PG_FUNCTION_INFO_V1(atlas_org_users);
PG_FUNCTION_INFO_V1(atlas_org_projects);
PG_FUNCTION_INFO_V1(atlas_org_teams);
PG_FUNCTION_INFO_V1(atlas_team_users);
PG_FUNCTION_INFO_V1(atlas_org_invitations);
PG_FUNCTION_INFO_V1(atlas_project_invitations);
PG_FUNCTION_INFO_V1(atlas_project_users);

static const Column org_cols[] = {
	{"id", COL_TEXT, NULL, 0}, {"name", COL_TEXT, NULL, 0}, {"isDeleted", COL_BOOL, NULL, 0},
	{NULL, COL_EXTRA, NULL, 0}, {NULL, COL_RAW, NULL, 0},
};

static const Column org_user_cols[] = {
	{"id", COL_TEXT, NULL, 0}, {"username", COL_TEXT, NULL, 0}, {"orgMembershipStatus", COL_TEXT, NULL, 0},
	{"firstName", COL_TEXT, NULL, 0}, {"lastName", COL_TEXT, NULL, 0},
	{"roles.orgRoles", COL_TEXT_ARRAY, NULL, 0}, {"teamIds", COL_TEXT_ARRAY, NULL, 0},
	{"roles.groupRoleAssignments", COL_TEXT_ARRAY, "groupId", 0},
	{"createdAt", COL_TIMESTAMPTZ, NULL, 0}, {"lastAuth", COL_TIMESTAMPTZ, NULL, 0},
	{"invitationCreatedAt", COL_TIMESTAMPTZ, NULL, 0}, {"invitationExpiresAt", COL_TIMESTAMPTZ, NULL, 0},
	{"inviterUsername", COL_TEXT, NULL, 0}, {NULL, COL_RAW, NULL, 0},
};

static const Column project_cols[] = {
	{"id", COL_TEXT, NULL, 0}, {"name", COL_TEXT, NULL, 0}, {"created", COL_TIMESTAMPTZ, NULL, 0},
	{"clusterCount", COL_INT, NULL, 0}, {NULL, COL_RAW, NULL, 0},
};

static const Column team_cols[] = {
	{"id", COL_TEXT, NULL, 0}, {"name", COL_TEXT, NULL, 0}, {NULL, COL_RAW, NULL, 0},
};

static const Column team_user_cols[] = {
	{"id", COL_TEXT, NULL, 0}, {"username", COL_TEXT, NULL, 0}, {"orgMembershipStatus", COL_TEXT, NULL, 0},
	{"firstName", COL_TEXT, NULL, 0}, {"lastName", COL_TEXT, NULL, 0}, {NULL, COL_RAW, NULL, 0},
};

static const Column org_invite_cols[] = {
	{"id", COL_TEXT, NULL, 0}, {"username", COL_TEXT, NULL, 0}, {"roles", COL_TEXT_ARRAY, NULL, 0},
	{"teamIds", COL_TEXT_ARRAY, NULL, 0}, {"groupRoleAssignments", COL_TEXT_ARRAY, "groupId", 0},
	{"inviterUsername", COL_TEXT, NULL, 0}, {"createdAt", COL_TIMESTAMPTZ, NULL, 0},
	{"expiresAt", COL_TIMESTAMPTZ, NULL, 0}, {NULL, COL_RAW, NULL, 0},
};

static const Column project_invite_cols[] = {
	{"id", COL_TEXT, NULL, 0}, {"username", COL_TEXT, NULL, 0}, {"roles", COL_TEXT_ARRAY, NULL, 0},
	{"inviterUsername", COL_TEXT, NULL, 0}, {"createdAt", COL_TIMESTAMPTZ, NULL, 0},
	{"expiresAt", COL_TIMESTAMPTZ, NULL, 0}, {NULL, COL_RAW, NULL, 0},
};

/* id, username, status, via, roles, team_id, raw */
static const Column project_user_cols[] = {
	{"id", COL_TEXT, NULL, 0}, {"username", COL_TEXT, NULL, 0}, {"orgMembershipStatus", COL_TEXT, NULL, 0},
	{NULL, COL_EXTRA, NULL, 0}, {"roles", COL_TEXT_ARRAY, NULL, 0}, {NULL, COL_EXTRA, NULL, 1},
	{NULL, COL_RAW, NULL, 0},
};

/* the same, with the roles given by the caller (a team's roles) */
static const Column team_route_cols[] = {
	{"id", COL_TEXT, NULL, 0}, {"username", COL_TEXT, NULL, 0}, {"orgMembershipStatus", COL_TEXT, NULL, 0},
	{NULL, COL_EXTRA, NULL, 0}, {NULL, COL_EXTRA, NULL, 2}, {NULL, COL_EXTRA, NULL, 1},
	{NULL, COL_RAW, NULL, 0},
};

/* atlas_orgs(): the organizations each usable server's credentials see */
Datum
atlas_orgs(PG_FUNCTION_ARGS)
{
	Sink	   *sink = atlas_rows_start(fcinfo, org_cols, lengthof(org_cols));
	ListCell   *lc;

	foreach(lc, atlas_targets_everywhere())
	{
		AtlasTarget *t = (AtlasTarget *) lfirst(lc);

		sink->extra[0] = t->server ? CStringGetTextDatum(t->server) : (Datum) 0;
		sink->extra_null[0] = (t->server == NULL);
		atlas_rows_list_into(sink, ATLAS_OP_LIST_ORGS, t, NULL, NULL, NULL, NULL, NULL,
							 "atlas_orgs");
	}
	return (Datum) 0;
}

/* The statuses argument as query text (known, each once): ACTIVE and PENDING when NULL. */
static char *
statuses_query(FunctionCallInfo fcinfo, int argno)
{
	static const char *const known[] = {"ACTIVE", "PENDING", "INVITATION_EXPIRED",
	"INVITATION_REJECTED"};
	StringInfoData buf;
	bool		seen[lengthof(known)] = {false};
	Datum	   *elems;
	bool	   *enulls;
	int			n,
				i,
				k;

	if (PG_ARGISNULL(argno))
		return NULL;
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(argno), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &enulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("statuses must not be empty"),
				 errhint("Pass NULL for ACTIVE and PENDING users.")));
	initStringInfo(&buf);
	for (i = 0; i < n; i++)
	{
		char	   *s = enulls[i] ? NULL : TextDatumGetCString(elems[i]);

		for (k = 0; s && k < (int) lengthof(known); k++)
			if (pg_strcasecmp(s, known[k]) == 0)
				break;
		if (s == NULL || k == (int) lengthof(known))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid statuses element: %s", s ? s : "NULL"),
					 errhint("Use ACTIVE, PENDING, INVITATION_EXPIRED or INVITATION_REJECTED.")));
		if (seen[k])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("statuses lists %s more than once", known[k]),
					 errdetail("Element %d repeats it; nothing was sent to Atlas.", i + 1),
					 errhint("Name each status once.")));
		seen[k] = true;
		appendStringInfo(&buf, "orgMembershipStatuses=%s&", known[k]);
	}
	return buf.data;
}

/*
 * A listing function of one list: its ids are the function's first
 * arguments, in the order of the list's path.
 */
static Datum
list_by_ids(FunctionCallInfo fcinfo, AtlasOperation op, const Column *cols, int ncols,
			const char *label)
{
	char	   *ids[ATLAS_MAX_IDS];
	int			next = atlas_ids_arg(fcinfo, 0, op, false, ids);
	char	   *query = (op == ATLAS_OP_LIST_ORG_USERS) ? statuses_query(fcinfo, next) : NULL;
	Sink	   *sink = atlas_rows_start(fcinfo, cols, ncols);

	atlas_rows_list_into(sink, op, NULL, ids[ATLAS_ID_ORG], ids[ATLAS_ID_GROUP],
						 ids[ATLAS_ID_TEAM], query, NULL, label);
	return (Datum) 0;
}

/* atlas_org_users(org_id, statuses) */
Datum
atlas_org_users(PG_FUNCTION_ARGS)
{
	return list_by_ids(fcinfo, ATLAS_OP_LIST_ORG_USERS, org_user_cols,
					   lengthof(org_user_cols), "atlas_org_users");
}

/* atlas_org_projects(org_id) */
Datum
atlas_org_projects(PG_FUNCTION_ARGS)
{
	return list_by_ids(fcinfo, ATLAS_OP_LIST_ORG_GROUPS, project_cols,
					   lengthof(project_cols), "atlas_org_projects");
}

/* atlas_org_teams(org_id) */
Datum
atlas_org_teams(PG_FUNCTION_ARGS)
{
	return list_by_ids(fcinfo, ATLAS_OP_LIST_TEAMS, team_cols, lengthof(team_cols),
					   "atlas_org_teams");
}

/* atlas_team_users(org_id, team_id) */
Datum
atlas_team_users(PG_FUNCTION_ARGS)
{
	return list_by_ids(fcinfo, ATLAS_OP_LIST_TEAM_USERS, team_user_cols,
					   lengthof(team_user_cols), "atlas_team_users");
}

/* atlas_org_invitations(org_id) */
Datum
atlas_org_invitations(PG_FUNCTION_ARGS)
{
	return list_by_ids(fcinfo, ATLAS_OP_LIST_ORG_INVITES, org_invite_cols,
					   lengthof(org_invite_cols), NULL);
}

/* atlas_project_invitations(group_id) */
Datum
atlas_project_invitations(PG_FUNCTION_ARGS)
{
	return list_by_ids(fcinfo, ATLAS_OP_LIST_GROUP_INVITES, project_invite_cols,
					   lengthof(project_invite_cols), NULL);
}

/* Set the sink's route extras: via, team_id, and a team's roles. */
static void
set_route(Sink *sink, const char *via, const char *team_id, Kept *team)
{
	sink->extra[0] = CStringGetTextDatum(via);
	sink->extra_null[0] = false;
	sink->extra[1] = team_id ? CStringGetTextDatum(team_id) : (Datum) 0;
	sink->extra_null[1] = (team_id == NULL);
	sink->extra[2] = team ? team->roles : (Datum) 0;
	sink->extra_null[2] = (team == NULL || team->roles_null);
}

/* The organization of a project (GET /groups/{groupId}). */
static char *
project_org(const char *group_id)
{
	AtlasCall  *call = atlas_call_new(ATLAS_OP_GET_GROUP);
	cJSON	   *json;
	const char *org;
	char	   *result = NULL;

	call->group_id = (char *) group_id;
	atlas_read(call);
	json = cJSON_ParseWithLength(call->body, call->body_len);
	org = atlas_json_string(json, "orgId");
	if (org != NULL && atlas_is_id(org))
		result = pstrdup(org);
	cJSON_Delete(json);
	if (result == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("unexpected answer from Atlas: a project without a valid orgId"),
				 errcontext("Atlas API request GET %s", call->path)));
	return result;
}

/*
 * atlas_project_users(group_id, through_teams, through_org_roles): who
 * reaches a project, one row per way: 'direct' (a project role), 'team'
 * (a team with a role in the project; team_id says which), 'org_role'
 * (an organization role that reaches every project, such as Organization
 * Owner; listed by Atlas's includeOrgUsers, less the direct members).
 */
Datum
atlas_project_users(PG_FUNCTION_ARGS)
{
	char	   *group_id = atlas_id_arg(fcinfo, 0, "group_id");
	bool		teams = atlas_bool_arg(fcinfo, 1, "through_teams");
	bool		org_roles = atlas_bool_arg(fcinfo, 2, "through_org_roles");
	Sink	   *sink = atlas_rows_start(fcinfo, project_user_cols, lengthof(project_user_cols));
	ListCell   *lc;

	sink->seen_ids = atlas_rows_id_set("atlas_users direct members");
	set_route(sink, "direct", NULL, NULL);
	atlas_rows_list_into(sink, ATLAS_OP_LIST_GROUP_USERS, NULL, NULL, group_id, NULL, NULL,
						 NULL, "atlas_project_users");
	if (org_roles)
	{
		sink->skip_ids = sink->seen_ids;
		sink->seen_ids = NULL;
		set_route(sink, "org_role", NULL, NULL);
		atlas_rows_list_into(sink, ATLAS_OP_LIST_GROUP_USERS, NULL, NULL, group_id, NULL,
							 "includeOrgUsers=true&", NULL, "atlas_project_users");
		sink->skip_ids = NULL;
	}
	if (teams)
	{
		static const Column team_keep[] = {
			{"teamId", COL_TEXT, NULL, 0}, {"roleNames", COL_TEXT_ARRAY, NULL, 0},
		};
		const Column *cols = sink->cols;
		char	   *org_id;

		sink->cols = team_keep;
		atlas_rows_list_into(sink, ATLAS_OP_LIST_GROUP_TEAMS, NULL, NULL, group_id, NULL, NULL,
							 atlas_rows_keep_item, "atlas_project_users");
		sink->cols = team_route_cols;
		org_id = sink->seen ? project_org(group_id) : NULL;
		foreach(lc, sink->seen)
		{
			Kept	   *team = (Kept *) lfirst(lc);

			if (!atlas_is_id(team->id))
				continue;
			set_route(sink, "team", team->id, team);
			atlas_rows_list_into(sink, ATLAS_OP_LIST_TEAM_USERS, NULL, org_id, NULL, team->id,
								 NULL, NULL, "atlas_project_users");
		}
		sink->cols = cols;
	}
	return (Datum) 0;
}
