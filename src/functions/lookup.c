/*-------------------------------------------------------------------------
 *
 * lookup.c
 *	  Reading Atlas: a user by username or id, and where they have access.
 *
 * atlas_find_user_id() resolves an e-mail address with
 * GET /api/atlas/v2/orgs/{orgId}/users?username=... (2025-02-19, which
 * covers ACTIVE and PENDING users).  atlas_user_memberships() lists the
 * organization, project and team memberships of an org user from its
 * roles.orgRoles, roles.groupRoleAssignments and teamIds.  Lists are read
 * page by page by listing.c, and every call runs through the executor.
 * The JSON itself is read by parse.c; this file copies what it needs into
 * palloc'd memory.
 *
 *-------------------------------------------------------------------------
 */
#include "functions/functions.h"
#include "transport/http.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(atlas_find_user_id);
PG_FUNCTION_INFO_V1(atlas_user_memberships);

/* Run one read call; raise the SQL error if it failed. */
void
atlas_read(AtlasCall *call)
{
	AtlasRunSpec spec = atlas_session_spec(NULL);

	spec.concurrency = 1;
	call->keep_body = true;
	atlas_execute(&call, 1, &spec);
	if (call->outcome == ATLAS_OUTCOME_FAILED)
		atlas_raise_call_error(call);
}

/* Raise for an answer that is not the JSON we expect. */
static void
bad_answer(AtlasCall *call, const char *what) pg_attribute_noreturn();

static void
bad_answer(AtlasCall *call, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROTOCOL_VIOLATION),
			 errmsg("unexpected answer from Atlas: %s", what),
			 errcontext("Atlas API request %s %s", call->method, call->path)));
}

/* A string member, cleaned and palloc'd, or NULL. */
static char *
member_string(const cJSON *obj, const char *name)
{
	const char *v = atlas_json_string(obj, name);

	return v ? atlas_clean_text(v, strlen(v), 1000) : NULL;
}

/* A List of cleaned, palloc'd copies of n strings. */
static List *
string_list(char **a, int n)
{
	List	   *result = NIL;
	int			i;

	for (i = 0; i < n; i++)
		result = lappend(result, atlas_clean_text(a[i], strlen(a[i]), 200));
	return result;
}

/*
 * Parse an OrgUserResponse (2025-02-19) with parse.c, into palloc'd
 * memory; NULL when it has no well-formed id.
 */
AtlasOrgUser *
atlas_org_user_from_json(const cJSON *obj)
{
	AtlasParsedUser *volatile p = atlas_parse_org_user(obj);
	AtlasOrgUser *volatile u = NULL;

	if (p == NULL)
		return NULL;
	PG_TRY();
	{
		int			i;

		u = palloc0(sizeof(AtlasOrgUser));
		u->id = pstrdup(p->id);
		u->username = p->username ? atlas_clean_text(p->username, strlen(p->username), 1000) : NULL;
		u->status = p->status ? atlas_clean_text(p->status, strlen(p->status), 100) : NULL;
		u->org_roles = string_list(p->org_roles, p->n_org_roles);
		u->team_ids = string_list(p->team_ids, p->nteams);
		for (i = 0; i < p->ngroups; i++)
		{
			AtlasGroupRoles *gr = palloc0(sizeof(AtlasGroupRoles));

			gr->group_id = pstrdup(p->groups[i].group_id);
			gr->roles = string_list(p->groups[i].roles, p->groups[i].nroles);
			u->groups = lappend(u->groups, gr);
		}
	}
	PG_FINALLY();
	{
		atlas_free_parsed_user(p);
	}
	PG_END_TRY();
	return u;
}

typedef struct FindArgs
{
	const char *username;
	AtlasOrgUser **found;
} FindArgs;

/* Keep the result whose username is the one we look for. */
static void
find_username_item(const cJSON *item, void *arg)
{
	FindArgs   *a = (FindArgs *) arg;
	const char *name = atlas_json_string(item, "username");

	if (*a->found == NULL && name && pg_strcasecmp(name, a->username) == 0)
		*a->found = atlas_org_user_from_json(item);
}

/*
 * Set up a listing that looks for a username among an organization's or a
 * project's users (op is ATLAS_OP_LIST_ORG_USERS or _LIST_GROUP_USERS);
 * *found gets the user, or stays NULL.
 */
void
atlas_username_listing(AtlasListing *listing, AtlasOperation op, const char *org_id,
					   const char *group_id, const char *username, AtlasOrgUser **found)
{
	FindArgs   *a = palloc(sizeof(FindArgs));

	a->username = pstrdup(username);
	a->found = found;
	*found = NULL;
	memset(listing, 0, sizeof(AtlasListing));
	listing->op = op;
	listing->org_id = (char *) org_id;
	listing->group_id = (char *) group_id;
	listing->query = psprintf("username=%s&", http_escape(username));
	listing->item = find_username_item;
	listing->arg = a;
}

/*
 * Find an org user by username (an e-mail address) or by id; NULL when
 * the organization has no such user.  The organization must exist.
 */
AtlasOrgUser *
atlas_fetch_org_user(const char *org_id, const char *username_or_id, AtlasTarget *target)
{
	AtlasOrgUser *u = NULL;

	if (atlas_is_id(username_or_id))
	{
		AtlasCall  *call = atlas_call_new(ATLAS_OP_GET_ORG_USER);
		cJSON	   *volatile json = NULL;

		call->target = target;
		call->org_id = (char *) org_id;
		call->user_id = (char *) username_or_id;
		call->missing_ok = true;
		atlas_read(call);
		if (call->outcome == ATLAS_OUTCOME_ALREADY_ABSENT)
			return NULL;
		json = cJSON_ParseWithLength(call->body, call->body_len);
		PG_TRY();
		{
			if (!cJSON_IsObject(json) || (u = atlas_org_user_from_json(json)) == NULL)
				bad_answer(call, "an organization user without an id");
		}
		PG_FINALLY();
		{
			cJSON_Delete(json);
		}
		PG_END_TRY();
	}
	else
	{
		AtlasListing listing;

		atlas_username_listing(&listing, ATLAS_OP_LIST_ORG_USERS, org_id, NULL,
							   username_or_id, &u);
		listing.target = target;
		atlas_list_all(&listing);
	}
	return u;
}

/* atlas_find_user_id(org_id, username): the user's id, or NULL */
Datum
atlas_find_user_id(PG_FUNCTION_ARGS)
{
	char	   *org_id = atlas_id_arg(fcinfo, 0, "org_id");
	char	   *username = atlas_username_arg(fcinfo, 1, "username");
	AtlasOrgUser *u = atlas_fetch_org_user(org_id, username, NULL);

	if (u == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(u->id));
}

/* Read the "name" of a single resource answer, or NULL. */
static char *
answer_name(AtlasCall *call)
{
	cJSON	   *json;
	char	   *volatile name = NULL;

	if (call->outcome != ATLAS_OUTCOME_SUCCEEDED || call->body_len == 0)
		return NULL;
	json = cJSON_ParseWithLength(call->body, call->body_len);
	if (json == NULL)
		return NULL;
	PG_TRY();
	{
		name = member_string(json, "name");
	}
	PG_FINALLY();
	{
		cJSON_Delete(json);
	}
	PG_END_TRY();
	return name;
}

typedef struct TeamNames
{
	List	   *ids;
	List	   *names;
} TeamNames;

/* Collect a team's id and name. */
static void
team_name_item(const cJSON *item, void *arg)
{
	TeamNames  *t = (TeamNames *) arg;
	char	   *id = member_string(item, "id");

	if (id)
	{
		t->ids = lappend(t->ids, id);
		t->names = lappend(t->names, member_string(item, "name"));
	}
}

/* A text[] of a List of char *. */
static Datum
text_array(List *l)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(l), 1));
	ListCell   *lc;
	int			n = 0;

	foreach(lc, l)
		elems[n++] = CStringGetTextDatum((char *) lfirst(lc));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * Look up the names of an org user's organization and projects
 * (concurrently) and of its organization's teams.  names[0] gets the
 * organization's, names[i] the name of u->groups' i-th project (NULL where
 * Atlas gave none).
 */
static void
membership_names(const char *org_id, AtlasOrgUser *u, char **names, TeamNames *teams)
{
	int			ngroups = list_length(u->groups);
	AtlasCall **calls = palloc(sizeof(AtlasCall *) * (ngroups + 1));
	AtlasRunSpec spec = atlas_session_spec(NULL);
	ListCell   *lc;
	int			i = 0;

	calls[0] = atlas_call_new(ATLAS_OP_GET_ORG);
	calls[0]->org_id = (char *) org_id;
	foreach(lc, u->groups)
	{
		calls[++i] = atlas_call_new(ATLAS_OP_GET_GROUP);
		calls[i]->group_id = ((AtlasGroupRoles *) lfirst(lc))->group_id;
	}
	for (i = 0; i <= ngroups; i++)
		calls[i]->keep_body = true;
	atlas_execute(calls, ngroups + 1, &spec);
	for (i = 0; i <= ngroups; i++)
		names[i] = answer_name(calls[i]);
	if (u->team_ids != NIL)
	{
		AtlasListing listing;

		memset(&listing, 0, sizeof(listing));
		listing.op = ATLAS_OP_LIST_TEAMS;
		listing.org_id = (char *) org_id;
		listing.item = team_name_item;
		listing.arg = teams;
		atlas_list_all(&listing);
	}
}

/* A membership row. */
static AtlasMembership *
membership(const char *scope, char *id, char *name, List *roles, char *status)
{
	AtlasMembership *m = palloc0(sizeof(AtlasMembership));

	m->scope = scope;
	m->id = id;
	m->name = name;
	m->roles = roles;
	m->status = status;
	return m;
}

/*
 * The memberships of an org user: the organization, each project and
 * each team.  With names, also look their names up.
 */
List *
atlas_user_membership_list(const char *org_id, AtlasOrgUser *u, bool with_names)
{
	List	   *result = NIL;
	char	  **names = palloc0(sizeof(char *) * (list_length(u->groups) + 1));
	TeamNames	teams = {NIL, NIL};
	ListCell   *lc;
	int			i = 0;

	if (with_names)
		membership_names(org_id, u, names, &teams);
	result = lappend(result, membership("org", pstrdup(org_id), names[0], u->org_roles, u->status));
	foreach(lc, u->groups)
	{
		AtlasGroupRoles *gr = (AtlasGroupRoles *) lfirst(lc);

		result = lappend(result, membership("project", gr->group_id, names[++i], gr->roles,
											u->status));
	}
	foreach(lc, u->team_ids)
	{
		char	   *team_id = (char *) lfirst(lc);
		char	   *name = NULL;
		ListCell   *a,
				   *b;

		if (!atlas_is_id(team_id))
			continue;
		forboth(a, teams.ids, b, teams.names)
		{
			if (strcmp((char *) lfirst(a), team_id) == 0)
				name = (char *) lfirst(b);
		}
		result = lappend(result, membership("team", team_id, name, NIL, u->status));
	}
	return result;
}

/* The org user named by an argument that is a username or an id, or raise. */
AtlasOrgUser *
atlas_org_user_arg(FunctionCallInfo fcinfo, int argno, const char *org_id, bool *found)
{
	char	   *who;
	AtlasOrgUser *u;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("username_or_id must not be null")));
	who = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (!atlas_is_id(who))
		who = atlas_username_arg(fcinfo, argno, "username_or_id");
	u = atlas_fetch_org_user(org_id, who, NULL);
	*found = (u != NULL);
	if (u == NULL)
		ereport(NOTICE,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("organization %s has no user %s", org_id, who),
				 errdetail("Atlas lists no ACTIVE or PENDING member with this %s.",
						   atlas_is_id(who) ? "id" : "username")));
	return u;
}

/* atlas_user_memberships(org_id, username_or_id): where a user has access */
Datum
atlas_user_memberships(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *org_id = atlas_id_arg(fcinfo, 0, "org_id");
	AtlasOrgUser *u;
	bool		found;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	u = atlas_org_user_arg(fcinfo, 1, org_id, &found);
	if (!found)
		return (Datum) 0;

	foreach(lc, atlas_user_membership_list(org_id, u, true))
	{
		AtlasMembership *m = (AtlasMembership *) lfirst(lc);
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};

		values[0] = CStringGetTextDatum(m->scope);
		values[1] = CStringGetTextDatum(m->id);
		if (m->name)
			values[2] = CStringGetTextDatum(m->name);
		else
			nulls[2] = true;
		if (strcmp(m->scope, "team") == 0)
			nulls[3] = true;	/* Atlas gives no per-team roles */
		else
			values[3] = text_array(m->roles);
		if (m->status)
			values[4] = CStringGetTextDatum(m->status);
		else
			nulls[4] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
