/*-------------------------------------------------------------------------
 *
 * listings.c
 *	  What Atlas holds, as set-returning functions: organizations, their
 *	  users, projects, teams and invitations, and who reaches a project.
 *
 * Each function reads every page of one or more Atlas lists (listing.c,
 * through the executor) and puts a row per entry into the result as the
 * page arrives: typed columns for what a query joins or filters on, and
 * the entry itself as jsonb.  A row is built in a memory context that is
 * reset after each row, and the result is a tuplestore (spilling to disk
 * past work_mem), so a listing of any length holds one page in memory.
 *
 * A column says where its value is in an entry ("a.b" follows objects;
 * sub names a field of each element of an array of objects) or that the
 * caller supplies it (an extra: the server, how a user reaches a project).
 *
 * Listings only read: they work on a hot standby and in a read-only
 * transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas_users.h"

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

typedef enum ColKind
{
	COL_TEXT,
	COL_TEXT_ARRAY,				/* strings, or sub of each object */
	COL_TIMESTAMPTZ,
	COL_INT,
	COL_BOOL,
	COL_RAW,					/* the entry as jsonb */
	COL_EXTRA					/* extra[sub index]: given by the caller */
} ColKind;

typedef struct Column
{
	const char *path;
	ColKind		kind;
	const char *sub;
	int			extra;
} Column;

#define MAX_EXTRAS 3
#define ATLAS_ID_LEN 24

/* where a listing's rows go */
typedef struct Sink
{
	ReturnSetInfo *rsinfo;
	const Column *cols;
	int			ncols;
	MemoryContext rowcxt;
	Datum		extra[MAX_EXTRAS];
	bool		extra_null[MAX_EXTRAS];
	HTAB	   *skip_ids;		/* entries whose id is here are left out */
	HTAB	   *seen_ids;		/* ids of the entries put, if wanted */
	List	   *seen;			/* and the entries' ids and roles, if wanted */
} Sink;

/* an entry of interest kept across listings (team ids, say) */
typedef struct Kept
{
	char	   *id;
	Datum		roles;			/* text[] */
	bool		roles_null;
} Kept;

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

/* The member at a dotted path, or NULL. */
static const cJSON *
member_at(const cJSON *obj, const char *path)
{
	char		name[64];
	const char *dot;

	while (obj != NULL && (dot = strchr(path, '.')) != NULL)
	{
		strlcpy(name, path, Min((size_t) (dot - path) + 1, sizeof(name)));
		obj = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;
		path = dot + 1;
	}
	return cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, path) : NULL;
}

/* A text[] of an array's strings (or of each object's sub); NULL if none. */
static bool
text_array(const cJSON *arr, const char *sub, Datum *result)
{
	const cJSON *v;
	Datum	   *elems;
	int			n = 0;

	if (!cJSON_IsArray(arr))
		return false;
	elems = palloc(sizeof(Datum) * Max(cJSON_GetArraySize(arr), 1));
	cJSON_ArrayForEach(v, arr)
	{
		const cJSON *s = sub ? member_at(v, sub) : v;

		if (cJSON_IsString(s))
			elems[n++] = CStringGetTextDatum(s->valuestring);
	}
	*result = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
	return true;
}

/*
 * A timestamptz from Atlas's ISO 8601 text; false for what does not look
 * like one (a server that is not Atlas must not make the listing fail).
 */
static bool
timestamp_value(const char *s, Datum *result)
{
	int			i;

	if (strlen(s) < 19 || s[4] != '-' || s[7] != '-' || s[10] != 'T')
		return false;
	for (i = 0; s[i]; i++)
		if (!strchr("0123456789-:.TZ+", s[i]))
			return false;
	*result = DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
								  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	return true;
}

/* The value of one column of an entry; false for NULL. */
static bool
column_value(Sink *sink, const Column *col, const cJSON *entry, Datum *value)
{
	const cJSON *m = col->path ? member_at(entry, col->path) : NULL;

	switch (col->kind)
	{
		case COL_TEXT:
			if (m == NULL || !cJSON_IsString(m))
				return false;
			*value = CStringGetTextDatum(m->valuestring);
			return true;
		case COL_TEXT_ARRAY:
			return text_array(m, col->sub, value);
		case COL_TIMESTAMPTZ:
			return m != NULL && cJSON_IsString(m) && timestamp_value(m->valuestring, value);
		case COL_INT:
			if (m == NULL || !cJSON_IsNumber(m) || m->valuedouble < PG_INT32_MIN || m->valuedouble > PG_INT32_MAX)
				return false;
			*value = Int32GetDatum((int32) m->valuedouble);
			return true;
		case COL_BOOL:
			if (!cJSON_IsBool(m))
				return false;
			*value = BoolGetDatum(cJSON_IsTrue(m));
			return true;
		case COL_RAW:
			{
				char	   *s = cJSON_PrintUnformatted(entry);

				if (s == NULL)
					return false;
				PG_TRY();
				{
					*value = DirectFunctionCall1(jsonb_in, CStringGetDatum(s));
				}
				PG_FINALLY();
				{
					free(s);
				}
				PG_END_TRY();
				return true;
			}
		case COL_EXTRA:
			*value = sink->extra[col->extra];
			return !sink->extra_null[col->extra];
	}
	return false;
}

/* A string-keyed set of Atlas ids. */
static HTAB *
id_set(const char *name)
{
	HASHCTL		ctl;

	ctl.keysize = ATLAS_ID_LEN + 1;
	ctl.entrysize = ATLAS_ID_LEN + 1;
	ctl.hcxt = CurrentMemoryContext;
	return hash_create(name, 256, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/* Is the entry's id in a set (adding it, if add)? */
static bool
id_in(HTAB *set, const char *id, bool add)
{
	char		key[ATLAS_ID_LEN + 1];
	bool		found;

	if (set == NULL || id == NULL || strlen(id) != ATLAS_ID_LEN)
		return false;
	strlcpy(key, id, sizeof(key));
	(void) hash_search(set, key, add ? HASH_ENTER : HASH_FIND, &found);
	return found;
}

/* Item function: put one entry as a row. */
static void
sink_item(const cJSON *entry, void *arg)
{
	Sink	   *sink = (Sink *) arg;
	const char *id = atlas_json_string(entry, "id");
	MemoryContext old;
	Datum		values[16];
	bool		nulls[16];
	int			i;

	if (id_in(sink->skip_ids, id, false))
		return;
	if (sink->seen_ids != NULL)
		(void) id_in(sink->seen_ids, id, true);
	old = MemoryContextSwitchTo(sink->rowcxt);
	for (i = 0; i < sink->ncols; i++)
		nulls[i] = !column_value(sink, &sink->cols[i], entry, &values[i]);
	tuplestore_putvalues(sink->rsinfo->setResult, sink->rsinfo->setDesc, values, nulls);
	MemoryContextSwitchTo(old);
	MemoryContextReset(sink->rowcxt);
}

/* Item function: keep an entry's id and a text[] (a team's roles). */
static void
keep_item(const cJSON *entry, void *arg)
{
	Sink	   *sink = (Sink *) arg;
	const char *id = atlas_json_string(entry, sink->cols[0].path);
	Kept	   *k;

	if (id == NULL)
		return;
	k = palloc0(sizeof(Kept));
	k->id = pstrdup(id);
	k->roles_null = !text_array(member_at(entry, sink->cols[1].path), NULL, &k->roles);
	sink->seen = lappend(sink->seen, k);
}

/* Start a materialized result whose rows are built from cols. */
static Sink *
sink_start(FunctionCallInfo fcinfo, const Column *cols, int ncols)
{
	Sink	   *sink = palloc0(sizeof(Sink));

	InitMaterializedSRF(fcinfo, 0);
	sink->rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	if (sink->rsinfo->setDesc->natts != ncols)
		elog(ERROR, "atlas_users: result of %d columns expected, the function has %d",
			 ncols, sink->rsinfo->setDesc->natts);
	sink->cols = cols;
	sink->ncols = ncols;
	sink->rowcxt = AllocSetContextCreate(CurrentMemoryContext, "atlas_users listing row",
										 ALLOCSET_DEFAULT_SIZES);
	return sink;
}

/* Read every page of one list into the sink (or keep, with keep_item). */
static void
list_into(Sink *sink, AtlasOperation op, AtlasTarget *target, const char *org_id,
		  const char *group_id, const char *team_id, const char *query, AtlasItemFn fn,
		  const char *label)
{
	AtlasListing listing;

	memset(&listing, 0, sizeof(listing));
	listing.op = op;
	listing.target = target;
	listing.org_id = (char *) org_id;
	listing.group_id = (char *) group_id;
	listing.team_id = (char *) team_id;
	listing.query = (char *) query;
	listing.unpaged = (op == ATLAS_OP_LIST_ORG_INVITES || op == ATLAS_OP_LIST_GROUP_INVITES);
	listing.item = fn ? fn : sink_item;
	listing.arg = sink;
	listing.label = label;
	atlas_list_all(&listing);
}

/* atlas_orgs(): the organizations each usable server's credentials see */
Datum
atlas_orgs(PG_FUNCTION_ARGS)
{
	Sink	   *sink = sink_start(fcinfo, org_cols, lengthof(org_cols));
	ListCell   *lc;

	foreach(lc, atlas_targets_everywhere())
	{
		AtlasTarget *t = (AtlasTarget *) lfirst(lc);

		sink->extra[0] = t->server ? CStringGetTextDatum(t->server) : (Datum) 0;
		sink->extra_null[0] = (t->server == NULL);
		list_into(sink, ATLAS_OP_LIST_ORGS, t, NULL, NULL, NULL, NULL, NULL, "atlas_orgs");
	}
	return (Datum) 0;
}

/* The statuses argument as query text: ACTIVE and PENDING when NULL. */
static char *
statuses_query(FunctionCallInfo fcinfo, int argno)
{
	static const char *const known[] = {"ACTIVE", "PENDING", "INVITATION_EXPIRED",
	"INVITATION_REJECTED"};
	StringInfoData buf;
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
		appendStringInfo(&buf, "orgMembershipStatuses=%s&", known[k]);
	}
	return buf.data;
}

/* atlas_org_users(org_id, statuses) */
Datum
atlas_org_users(PG_FUNCTION_ARGS)
{
	char	   *org_id = atlas_id_arg(fcinfo, 0, "org_id");
	char	   *query = statuses_query(fcinfo, 1);
	Sink	   *sink = sink_start(fcinfo, org_user_cols, lengthof(org_user_cols));

	list_into(sink, ATLAS_OP_LIST_ORG_USERS, NULL, org_id, NULL, NULL, query, NULL,
			  "atlas_org_users");
	return (Datum) 0;
}

/* atlas_org_projects(org_id) */
Datum
atlas_org_projects(PG_FUNCTION_ARGS)
{
	char	   *org_id = atlas_id_arg(fcinfo, 0, "org_id");
	Sink	   *sink = sink_start(fcinfo, project_cols, lengthof(project_cols));

	list_into(sink, ATLAS_OP_LIST_ORG_GROUPS, NULL, org_id, NULL, NULL, NULL, NULL,
			  "atlas_org_projects");
	return (Datum) 0;
}

/* atlas_org_teams(org_id) */
Datum
atlas_org_teams(PG_FUNCTION_ARGS)
{
	char	   *org_id = atlas_id_arg(fcinfo, 0, "org_id");
	Sink	   *sink = sink_start(fcinfo, team_cols, lengthof(team_cols));

	list_into(sink, ATLAS_OP_LIST_TEAMS, NULL, org_id, NULL, NULL, NULL, NULL,
			  "atlas_org_teams");
	return (Datum) 0;
}

/* atlas_team_users(org_id, team_id) */
Datum
atlas_team_users(PG_FUNCTION_ARGS)
{
	char	   *org_id = atlas_id_arg(fcinfo, 0, "org_id");
	char	   *team_id = atlas_id_arg(fcinfo, 1, "team_id");
	Sink	   *sink = sink_start(fcinfo, team_user_cols, lengthof(team_user_cols));

	list_into(sink, ATLAS_OP_LIST_TEAM_USERS, NULL, org_id, NULL, team_id, NULL, NULL,
			  "atlas_team_users");
	return (Datum) 0;
}

/* atlas_org_invitations(org_id) */
Datum
atlas_org_invitations(PG_FUNCTION_ARGS)
{
	char	   *org_id = atlas_id_arg(fcinfo, 0, "org_id");
	Sink	   *sink = sink_start(fcinfo, org_invite_cols, lengthof(org_invite_cols));

	list_into(sink, ATLAS_OP_LIST_ORG_INVITES, NULL, org_id, NULL, NULL, NULL, NULL, NULL);
	return (Datum) 0;
}

/* atlas_project_invitations(group_id) */
Datum
atlas_project_invitations(PG_FUNCTION_ARGS)
{
	char	   *group_id = atlas_id_arg(fcinfo, 0, "group_id");
	Sink	   *sink = sink_start(fcinfo, project_invite_cols, lengthof(project_invite_cols));

	list_into(sink, ATLAS_OP_LIST_GROUP_INVITES, NULL, NULL, group_id, NULL, NULL, NULL, NULL);
	return (Datum) 0;
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
	Sink	   *sink = sink_start(fcinfo, project_user_cols, lengthof(project_user_cols));
	ListCell   *lc;

	sink->seen_ids = id_set("atlas_users direct members");
	set_route(sink, "direct", NULL, NULL);
	list_into(sink, ATLAS_OP_LIST_GROUP_USERS, NULL, NULL, group_id, NULL, NULL, NULL,
			  "atlas_project_users");
	if (org_roles)
	{
		sink->skip_ids = sink->seen_ids;
		sink->seen_ids = NULL;
		set_route(sink, "org_role", NULL, NULL);
		list_into(sink, ATLAS_OP_LIST_GROUP_USERS, NULL, NULL, group_id, NULL,
				  "includeOrgUsers=true&", NULL, "atlas_project_users");
		sink->skip_ids = NULL;
	}
	if (teams)
	{
		static const Column team_keep[] = {{"teamId", COL_TEXT, NULL, 0}, {"roleNames", COL_TEXT_ARRAY, NULL, 0}};
		const Column *cols = sink->cols;
		char	   *org_id;

		sink->cols = team_keep;
		list_into(sink, ATLAS_OP_LIST_GROUP_TEAMS, NULL, NULL, group_id, NULL, NULL,
				  keep_item, "atlas_project_users");
		sink->cols = team_route_cols;
		org_id = sink->seen ? project_org(group_id) : NULL;
		foreach(lc, sink->seen)
		{
			Kept	   *team = (Kept *) lfirst(lc);

			if (!atlas_is_id(team->id))
				continue;
			set_route(sink, "team", team->id, team);
			list_into(sink, ATLAS_OP_LIST_TEAM_USERS, NULL, org_id, NULL, team->id, NULL,
					  NULL, "atlas_project_users");
		}
		sink->cols = cols;
	}
	return (Datum) 0;
}
