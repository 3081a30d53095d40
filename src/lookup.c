/*-------------------------------------------------------------------------
 *
 * lookup.c
 *	  Reading Atlas: a user by username or id, and where they have access.
 *
 * atlas_find_user_id() resolves an e-mail address with
 * GET /api/atlas/v2/orgs/{orgId}/users?username=... (2025-02-19, which
 * covers ACTIVE and PENDING users).  atlas_user_memberships() lists the
 * organization, project and team memberships of an org user from its
 * roles.orgRoles, roles.groupRoleAssignments and teamIds.  Every list is
 * read page by page (itemsPerPage, pageNum) for as long as Atlas answers
 * with a links entry of rel "next"; the next page's URL is built from
 * base_url, never taken from the answer.  The JSON itself is read by
 * parse.c; this file copies what it needs into palloc'd memory.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas_users.h"


#include "catalog/pg_type.h"
#include "funcapi.h"
#include "parse.h"
#include "utils/array.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(atlas_find_user_id);
PG_FUNCTION_INFO_V1(atlas_user_memberships);

/* a bound on pages, against a server that always says "next" */
#define MAX_PAGES 10000

/* the last read that failed, for callers that turn the error into a result */
static AtlasCall *last_failed_read = NULL;

/* Run one read call; raise the SQL error if it failed. */
static void
run_read(AtlasCall *call)
{
	atlas_run_calls(&call, 1, 1, atlas_max_retries, NULL);
	if (call->outcome == ATLAS_OUTCOME_FAILED)
	{
		last_failed_read = call;
		atlas_raise_call_error(call);
	}
}

/*
 * Forget, or return, the last read that failed.  The queue uses it to
 * keep the HTTP status and Retry-After of a failed username lookup.
 */
AtlasCall *
atlas_lookup_last_failure(bool reset)
{
	AtlasCall  *c = last_failed_read;

	if (reset)
		last_failed_read = NULL;
	return c;
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
			 errcontext("Atlas API request %s %s", call->req.method, call->req.path)));
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
static AtlasOrgUser *
parse_org_user(const cJSON *obj)
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

typedef void (*ListItemFn) (const cJSON *item, void *arg);

/* Read one page of a list endpoint; returns whether Atlas says there is a next one. */
static bool
read_page(AtlasOperation op, const char *org_id, const char *group_id,
		  const char *query, int page, ListItemFn fn, void *arg)
{
	AtlasCall  *call = atlas_call_new(op);
	cJSON	   *volatile json = NULL;
	volatile bool more = false;

	call->org_id = (char *) org_id;
	call->group_id = (char *) group_id;
	call->query = psprintf("%sitemsPerPage=%d&pageNum=%d", query, atlas_page_size, page);
	run_read(call);

	json = cJSON_ParseWithLength(call->req.response, call->req.response_len);
	PG_TRY();
	{
		bool		next = false;

		if (!atlas_list_page_items(json, fn, arg, &next))
			bad_answer(call, "a list without \"results\"");
		more = next;
	}
	PG_FINALLY();
	{
		cJSON_Delete(json);
	}
	PG_END_TRY();
	return more;
}

/*
 * Read every page of a list endpoint and call fn for each result.
 * query is extra query text ("" or "username=...&").
 */
static void
read_all_pages(AtlasOperation op, const char *org_id, const char *group_id,
			   const char *query, ListItemFn fn, void *arg)
{
	int			page;

	for (page = 1; page <= MAX_PAGES; page++)
		if (!read_page(op, org_id, group_id, query, page, fn, arg))
			return;
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("Atlas list has more than %d pages", MAX_PAGES)));
}

typedef struct FindArgs
{
	const char *username;
	AtlasOrgUser *found;
} FindArgs;

/* Keep the result whose username is the one we look for. */
static void
find_username_item(const cJSON *item, void *arg)
{
	FindArgs   *a = (FindArgs *) arg;
	const char *name = atlas_json_string(item, "username");

	if (a->found == NULL && name && pg_strcasecmp(name, a->username) == 0)
		a->found = parse_org_user(item);
}

/*
 * Find an org user by username (an e-mail address) or by id; NULL when
 * the organization has no such user.  The organization must exist.
 */
AtlasOrgUser *
atlas_fetch_org_user(const char *org_id, const char *username_or_id)
{
	if (atlas_is_atlas_id(username_or_id))
	{
		AtlasCall  *call = atlas_call_new(ATLAS_OP_GET_ORG_USER);
		cJSON	   *volatile json = NULL;
		AtlasOrgUser *volatile u = NULL;

		call->org_id = (char *) org_id;
		call->user_id = (char *) username_or_id;
		call->missing_ok = true;
		run_read(call);
		if (call->outcome == ATLAS_OUTCOME_ALREADY_ABSENT)
			return NULL;
		json = cJSON_ParseWithLength(call->req.response, call->req.response_len);
		PG_TRY();
		{
			if (!cJSON_IsObject(json) || (u = parse_org_user(json)) == NULL)
				bad_answer(call, "an organization user without an id");
		}
		PG_FINALLY();
		{
			cJSON_Delete(json);
		}
		PG_END_TRY();
		return u;
	}
	else
	{
		FindArgs	a;

		a.username = username_or_id;
		a.found = NULL;
		read_all_pages(ATLAS_OP_LIST_ORG_USERS, org_id, NULL,
					   psprintf("username=%s&", http_escape(username_or_id)),
					   find_username_item, &a);
		return a.found;
	}
}

/* Keep the id of the project user whose username is the one we look for. */
static void
find_group_username_item(const cJSON *item, void *arg)
{
	FindArgs   *a = (FindArgs *) arg;
	const char *name = atlas_json_string(item, "username");
	const char *id = atlas_json_string(item, "id");

	if (a->found == NULL && name && atlas_parse_is_id(id) &&
		pg_strcasecmp(name, a->username) == 0)
	{
		a->found = palloc0(sizeof(AtlasOrgUser));
		a->found->id = pstrdup(id);
	}
}

/* The id of a project's user by username, or NULL; the project must exist. */
char *
atlas_find_group_user_id(const char *group_id, const char *username)
{
	FindArgs	a;

	a.username = username;
	a.found = NULL;
	read_all_pages(ATLAS_OP_LIST_GROUP_USERS, NULL, group_id,
				   psprintf("username=%s&", http_escape(username)),
				   find_group_username_item, &a);
	return a.found ? a.found->id : NULL;
}

/* atlas_find_user_id(org_id, username): the user's id, or NULL */
Datum
atlas_find_user_id(PG_FUNCTION_ARGS)
{
	char	   *org_id = atlas_id_arg(fcinfo, 0, "org_id");
	char	   *username = atlas_username_arg(fcinfo, 1, "username");
	AtlasOrgUser *u = atlas_fetch_org_user(org_id, username);

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

	if (call->outcome == ATLAS_OUTCOME_FAILED || call->req.response_len == 0)
		return NULL;
	json = cJSON_ParseWithLength(call->req.response, call->req.response_len);
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
 * The memberships of an org user: the organization, each project and
 * each team.  With names, also look their names up (concurrently).
 */
List *
atlas_user_membership_list(const char *org_id, AtlasOrgUser *u, bool with_names)
{
	List	   *result = NIL;
	AtlasMembership *m;
	ListCell   *lc;
	int			ngroups = list_length(u->groups);
	AtlasCall **calls = palloc(sizeof(AtlasCall *) * (ngroups + 1));
	TeamNames	teams = {NIL, NIL};
	int			i = 0;

	if (with_names)
	{
		calls[0] = atlas_call_new(ATLAS_OP_GET_ORG);
		calls[0]->org_id = (char *) org_id;
		calls[0]->missing_ok = true;
		foreach(lc, u->groups)
		{
			AtlasCall  *c = atlas_call_new(ATLAS_OP_GET_GROUP);

			c->group_id = ((AtlasGroupRoles *) lfirst(lc))->group_id;
			c->missing_ok = true;
			calls[++i] = c;
		}
		atlas_run_calls(calls, ngroups + 1, atlas_max_concurrency, atlas_max_retries, NULL);
		if (u->team_ids != NIL)
			read_all_pages(ATLAS_OP_LIST_TEAMS, org_id, NULL, "", team_name_item, &teams);
	}

	m = palloc0(sizeof(AtlasMembership));
	m->scope = "org";
	m->id = pstrdup(org_id);
	m->name = with_names ? answer_name(calls[0]) : NULL;
	m->roles = u->org_roles;
	m->status = u->status;
	result = lappend(result, m);

	i = 0;
	foreach(lc, u->groups)
	{
		AtlasGroupRoles *gr = (AtlasGroupRoles *) lfirst(lc);

		i++;
		m = palloc0(sizeof(AtlasMembership));
		m->scope = "project";
		m->id = gr->group_id;
		m->name = with_names ? answer_name(calls[i]) : NULL;
		m->roles = gr->roles;
		m->status = u->status;
		result = lappend(result, m);
	}
	foreach(lc, u->team_ids)
	{
		char	   *team_id = (char *) lfirst(lc);
		ListCell   *a,
				   *b;

		if (!atlas_is_atlas_id(team_id))
			continue;
		m = palloc0(sizeof(AtlasMembership));
		m->scope = "team";
		m->id = team_id;
		forboth(a, teams.ids, b, teams.names)
		{
			if (strcmp((char *) lfirst(a), team_id) == 0)
				m->name = (char *) lfirst(b);
		}
		m->status = u->status;
		result = lappend(result, m);
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
	if (!atlas_is_atlas_id(who))
		who = atlas_username_arg(fcinfo, argno, "username_or_id");
	u = atlas_fetch_org_user(org_id, who);
	*found = (u != NULL);
	if (u == NULL)
		ereport(NOTICE,
				(errcode(ERRCODE_NO_DATA),
				 errmsg("organization %s has no user %s", org_id, who),
				 errdetail("Atlas lists no ACTIVE or PENDING member with this %s.",
						   atlas_is_atlas_id(who) ? "id" : "username")));
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
