/*-------------------------------------------------------------------------
 *
 * offboard_names.c
 *	  The names an offboarding plan shows beside its ids: the
 *	  organization's, each project's and each team's.
 *
 * Project names come with the organization's project listing that
 * offboarding reads anyway (offboard_facts.c calls
 * atlas_offboard_note_name() for each project); the organization's name
 * is one GET /orgs/{orgId}, and the teams' names one listing of the
 * organization's teams, read only when the person is on a team whose row
 * the plan shows.  A name Atlas would not give is NULL: a name never
 * stops an offboarding.  On an install still at 1.4 (whose result has no
 * name column) nothing here is read.
 *
 *-------------------------------------------------------------------------
 */
#include "executor/run.h"
#include "functions/offboard.h"


/* an id and its name */
typedef struct OffName
{
	char	   *id;
	char	   *name;
} OffName;

/* Record the id and name of a listed item (a project or a team). */
void
atlas_offboard_note_name(OffFacts *f, const cJSON *item)
{
	const char *id = atlas_json_string(item, "id");
	const char *name = atlas_json_string(item, "name");
	OffName    *n;

	if (!f->with_names || id == NULL || name == NULL || !atlas_is_id(id) ||
		atlas_offboard_name(f, id) != NULL)
		return;
	n = palloc(sizeof(OffName));
	n->id = pstrdup(id);
	n->name = atlas_clean_text(name, strlen(name), 1000);
	f->names = lappend(f->names, n);
}

/* The name of an organization, project or team id, or NULL. */
const char *
atlas_offboard_name(OffFacts *f, const char *id)
{
	ListCell   *lc;

	if (id == NULL)
		return NULL;
	if (f->org_name != NULL && strcmp(id, f->org_id) == 0)
		return f->org_name;
	foreach(lc, f->names)
	{
		OffName    *n = (OffName *) lfirst(lc);

		if (strcmp(n->id, id) == 0)
			return n->name;
	}
	return NULL;
}

/* Item: a team of the organization. */
static void
team_item(const cJSON *item, void *arg)
{
	atlas_offboard_note_name((OffFacts *) arg, item);
}

/*
 * The listing of the organization's teams, for their names, or NULL when
 * the plan shows no team row (scope 'projects', or no team).
 */
AtlasListing *
atlas_offboard_team_names(OffFacts *f)
{
	AtlasListing *l;

	if (!f->with_names || f->u == NULL || f->u->team_ids == NIL ||
		strcmp(f->scope, "projects") == 0)
		return NULL;
	l = palloc0(sizeof(AtlasListing));
	l->op = ATLAS_OP_LIST_TEAMS;
	l->target = f->target;
	l->org_id = f->org_id;
	l->item = team_item;
	l->arg = f;
	l->label = "atlas_offboard_user";
	return l;
}

/* Read the organization's name (GET /orgs/{orgId}); NULL when Atlas would not say. */
void
atlas_offboard_org_name(OffFacts *f)
{
	AtlasCall  *call;
	AtlasRunSpec spec;
	cJSON	   *json;
	const char *name;

	if (!f->with_names || f->org_name != NULL)
		return;
	call = atlas_call_new(ATLAS_OP_GET_ORG);
	call->target = f->target;
	call->org_id = f->org_id;
	call->keep_body = true;
	spec = atlas_session_spec("atlas_offboard_user");
	spec.concurrency = 1;
	atlas_execute(&call, 1, &spec);
	if (call->outcome != ATLAS_OUTCOME_SUCCEEDED || call->body_len == 0)
		return;
	json = cJSON_ParseWithLength(call->body, call->body_len);
	if (json == NULL)
		return;
	PG_TRY();
	{
		name = atlas_json_string(json, "name");
		if (name != NULL)
			f->org_name = atlas_clean_text(name, strlen(name), 1000);
	}
	PG_FINALLY();
	{
		cJSON_Delete(json);
	}
	PG_END_TRY();
}
