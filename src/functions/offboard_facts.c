/*-------------------------------------------------------------------------
 *
 * offboard_facts.c
 *	  What offboarding must know of a person in one organization, read
 *	  from Atlas before anything is removed.
 *
 * Beyond the person's memberships (lookup.c), offboarding reads what the
 * v2 user endpoints do not show:
 *	  - legacy project invitations (made through the deprecated project
 *		invitation endpoint, which alone shows them, until its sunset; in
 *		at most atlas_users.max_invitation_reads projects).  An
 *		open invitation to the organization is a PENDING user of the org
 *		users listing (lookup.c finds it), so no deprecated read is needed
 *		for it.  When Atlas has retired the project invitation endpoint,
 *		the plan goes on and says what it could not see (calendar.c);
 *	  - the projects the person reaches through their teams (one teams
 *		listing per project), only where the plan shows them: not in a
 *		real run of scope 'org', whose rows would only say the access
 *		went with the organization membership;
 *	  - what Atlas refuses: the last Organization Owner, the last Project
 *		Owner of a project, the last member of a team (counted from the
 *		listings, so the plan never depends on the error code Atlas would
 *		answer, which is undocumented);
 *	  - whether the organization signs people in through an ACTIVE
 *		identity provider, and which IdP groups map roles here
 *		(federation.c).
 * Reads that do not depend on each other run side by side (listing.c's
 * atlas_list_many); a failed read raises before anything is removed.
 * Nothing is read twice in one statement but the invitations, listed
 * again after the removals (offboard.c).
 * With org_id NULL, atlas_offboard_orgs() says which organizations to
 * visit: each usable server's organization, or every organization its
 * credentials list.
 *
 *-------------------------------------------------------------------------
 */
#include "functions/functions.h"
#include "functions/offboard.h"
#include "transport/http.h"

#include "lib/stringinfo.h"
#include "utils/builtins.h"

/* what an item function of one listing collects */
typedef struct Collect
{
	OffFacts   *f;
	const char *group_id;		/* the project the listing is of */
	const char *team_id;
	const char *role;			/* owners: the role counted */
	int			others;			/* owners and team members other than the person */
	List	  **ids;
} Collect;

/* A listing of the collecting kind; arg is a new Collect. */
static AtlasListing *
new_listing(OffFacts *f, AtlasOperation op, const char *group_id, const char *team_id,
			const char *query, AtlasItemFn fn)
{
	AtlasListing *l = palloc0(sizeof(AtlasListing));
	Collect    *c = palloc0(sizeof(Collect));

	c->f = f;
	c->group_id = group_id;
	c->team_id = team_id;
	l->op = op;
	l->target = f->target;
	l->org_id = f->org_id;
	l->group_id = (char *) group_id;
	l->team_id = (char *) team_id;
	l->query = (char *) query;
	l->unpaged = (op == ATLAS_OP_LIST_GROUP_INVITES);
	l->item = fn;
	l->arg = c;
	l->label = "atlas_offboard_user";
	return l;
}

/*
 * Run listings side by side; raise for the first that failed, except a
 * project invitation listing whose endpoint Atlas retired: that is noted.
 */
static void
read_all(OffFacts *f, List *listings)
{
	AtlasListing **arr = palloc(sizeof(AtlasListing *) * Max(list_length(listings), 1));
	ListCell   *lc;
	int			n = 0;

	foreach(lc, listings)
		arr[n++] = (AtlasListing *) lfirst(lc);
	atlas_list_many(arr, n);
	foreach(lc, listings)
	{
		AtlasListing *l = (AtlasListing *) lfirst(lc);

		if (l->end == ATLAS_LISTING_OK || l->op == ATLAS_OP_LIST_TEAMS)
			continue;			/* the teams' names only: they stay NULL */
		if (l->op == ATLAS_OP_LIST_GROUP_INVITES && l->end == ATLAS_LISTING_FAILED &&
			atlas_call_retired(l->failed))
		{
			f->invites_unseen = atlas_invites_unseen_retired(l->failed);
			continue;
		}
		atlas_raise_listing_error(l);
	}
}

/* Item: a project invitation of the person (the username filter is checked). */
static void
invite_item(const cJSON *item, void *arg)
{
	Collect    *c = (Collect *) arg;
	const char *id = atlas_json_string(item, "id");
	const char *name = atlas_json_string(item, "username");
	OffInvite  *inv;

	if (id == NULL || !atlas_is_id(id) || name == NULL ||
		pg_strcasecmp(name, c->f->username) != 0)
		return;
	inv = palloc0(sizeof(OffInvite));
	inv->id = pstrdup(id);
	inv->group_id = pstrdup(c->group_id);
	c->f->project_invites = lappend(c->f->project_invites, inv);
}

/* Item: an id (of a project of the organization). */
static void
id_item(const cJSON *item, void *arg)
{
	Collect    *c = (Collect *) arg;
	const char *id = atlas_json_string(item, "id");

	if (id != NULL && atlas_is_id(id) && !atlas_string_listed(*c->ids, id))
	{
		*c->ids = lappend(*c->ids, pstrdup(id));
		atlas_offboard_note_name(c->f, item);
	}
}

/* Item: an ACTIVE holder of c->role other than the person (owners). */
static void
owner_item(const cJSON *item, void *arg)
{
	Collect    *c = (Collect *) arg;
	const char *id = atlas_json_string(item, "id");
	const char *status = atlas_json_string(item, "orgMembershipStatus");
	const cJSON *roles = cJSON_GetObjectItemCaseSensitive(item, "roles");

	if (id == NULL || strcmp(id, c->f->u->id) == 0 || status == NULL ||
		strcmp(status, "ACTIVE") != 0)
		return;
	if (cJSON_IsObject(roles))	/* an org user: roles.orgRoles */
		roles = cJSON_GetObjectItemCaseSensitive(roles, "orgRoles");
	if (cJSON_IsArray(roles) && atlas_json_has_string(roles, c->role))
		c->others++;
}

/* Item: a member of a team other than the person. */
static void
member_item(const cJSON *item, void *arg)
{
	Collect    *c = (Collect *) arg;
	const char *id = atlas_json_string(item, "id");

	if (id != NULL && strcmp(id, c->f->u->id) != 0)
		c->others++;
}

/* Item: a team with a role in a project; kept if the person is on it. */
static void
team_role_item(const cJSON *item, void *arg)
{
	Collect    *c = (Collect *) arg;
	const char *team = atlas_json_string(item, "teamId");
	const cJSON *roles = cJSON_GetObjectItemCaseSensitive(item, "roleNames");
	const cJSON *v;
	OffTeamRoute *r;
	StringInfoData buf;

	if (team == NULL || !atlas_string_listed(c->f->u->team_ids, team))
		return;
	initStringInfo(&buf);
	cJSON_ArrayForEach(v, roles)
		if (cJSON_IsString(v))
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", v->valuestring);
	r = palloc0(sizeof(OffTeamRoute));
	r->group_id = pstrdup(c->group_id);
	r->team_id = pstrdup(team);
	r->roles = buf.data;
	c->f->team_routes = lappend(c->f->team_routes, r);
}

/* The listings that count owners and team members; see blockers(). */
static List *
blocker_listings(OffFacts *f)
{
	AtlasOrgUser *u = f->u;
	bool		active = (u->status && strcmp(u->status, "ACTIVE") == 0);
	bool		org = (strcmp(f->scope, "org") == 0);
	List	   *result = NIL;
	List	   *teams = NIL;
	ListCell   *lc;
	AtlasListing *l;

	if (org && active && atlas_string_listed(u->org_roles, "ORG_OWNER"))
	{
		l = new_listing(f, ATLAS_OP_LIST_ORG_USERS, NULL, NULL, NULL, owner_item);
		((Collect *) l->arg)->role = "ORG_OWNER";
		result = lappend(result, l);
	}
	foreach(lc, (org || strcmp(f->scope, "projects") == 0) && active ? u->groups : NIL)
	{
		AtlasGroupRoles *g = (AtlasGroupRoles *) lfirst(lc);

		if (!atlas_string_listed(g->roles, "GROUP_OWNER"))
			continue;
		l = new_listing(f, ATLAS_OP_LIST_GROUP_USERS, g->group_id, NULL, NULL, owner_item);
		((Collect *) l->arg)->role = "GROUP_OWNER";
		result = lappend(result, l);
	}
	foreach(lc, (org || strcmp(f->scope, "teams") == 0) ? u->team_ids : NIL)
	{
		if (atlas_string_listed(teams, (char *) lfirst(lc)))
			continue;			/* a team listed twice is read once */
		teams = lappend(teams, lfirst(lc));
		result = lappend(result, new_listing(f, ATLAS_OP_LIST_TEAM_USERS, NULL,
											 (char *) lfirst(lc), NULL, member_item));
	}
	return result;
}

/* Read the blockers' counts out of their finished listings. */
static void
blockers(OffFacts *f, List *listings)
{
	ListCell   *lc;

	foreach(lc, listings)
	{
		AtlasListing *l = (AtlasListing *) lfirst(lc);
		Collect    *c = (Collect *) l->arg;

		if (c->others > 0)
			continue;
		if (l->op == ATLAS_OP_LIST_ORG_USERS)
			f->last_org_owner = true;
		else if (l->op == ATLAS_OP_LIST_GROUP_USERS)
			f->last_owner_projects = lappend(f->last_owner_projects, l->group_id);
		else
			f->last_member_teams = lappend(f->last_member_teams, l->team_id);
	}
}

/*
 * Does the organization sign people in through an ACTIVE identity
 * provider, and which of its groups map roles here?
 */
static void
read_federation(OffFacts *f)
{
	AtlasFederation fed;
	List	   *groups;
	char	   *problem;
	char	   *post_auth;
	StringInfoData names;
	ListCell   *lc;

	atlas_federation_read(f->org_id, f->target, &fed);
	if (!fed.known || !fed.active)
	{
		f->federation = fed.known ? OFF_NOT_FEDERATED : OFF_FEDERATION_UNKNOWN;
		if (!fed.known)
			f->federation_detail = psprintf("Atlas would not say whether organization %s signs people in through an identity provider: %s",
											f->org_id, fed.problem);
		return;
	}
	f->federation = OFF_FEDERATED;
	groups = atlas_federation_groups(f->org_id, f->target, &fed, &problem, &post_auth);
	initStringInfo(&names);
	foreach(lc, groups)
		appendStringInfo(&names, "%s\"%s\"", names.len ? ", " : "", (char *) lfirst(lc));
	f->federation_detail = psprintf("Organization %s signs people in through federated identity provider %s, which grants roles here at every SSO login%s%s%s%s%s: remove the person there too, or their access returns at their next SSO login.",
									f->org_id, fed.idp_id,
									problem ? " (its role mappings could not be read: " :
									groups ? " to members of the IdP groups " : "",
									problem ? problem : names.data,
									problem ? ")" : "",
									post_auth ? ", and to everyone it signs in: " : "",
									post_auth ? post_auth : "");
}

/* Order team routes by project, then team (the listings end in any order). */
static int
route_cmp(const ListCell *a, const ListCell *b)
{
	OffTeamRoute *x = (OffTeamRoute *) lfirst(a);
	OffTeamRoute *y = (OffTeamRoute *) lfirst(b);
	int			c = strcmp(x->group_id, y->group_id);

	return c != 0 ? c : strcmp(x->team_id, y->team_id);
}

/* Order invitations by project, then id. */
static int
invite_cmp(const ListCell *a, const ListCell *b)
{
	OffInvite  *x = (OffInvite *) lfirst(a);
	OffInvite  *y = (OffInvite *) lfirst(b);
	int			c = strcmp(x->group_id, y->group_id);

	return c != 0 ? c : strcmp(x->id, y->id);
}

/*
 * Learn what offboarding who (a username or an id) in f->org_id must
 * know.  f->u stays NULL when the person is not a member; their
 * invitations are still looked for by username.
 */
void
atlas_offboard_gather(OffFacts *f, const char *who)
{
	bool		projects = (strcmp(f->scope, "teams") != 0);
	bool		routes;
	AtlasListing *names;
	List	   *first = NIL;
	List	   *second = NIL;
	List	   *project_ids = NIL;
	List	   *owners = NIL;
	ListCell   *lc;
	char	   *q;
	int			reads = 0;

	f->u = atlas_fetch_org_user(f->org_id, who, f->target);
	f->username = f->u ? f->u->username : (atlas_is_id(who) ? NULL : pstrdup(who));
	/* a real 'org' run's rows of access through teams only say dropped_with_org */
	routes = f->u != NULL && f->u->team_ids != NIL &&
		(f->dry_run || strcmp(f->scope, "org") != 0);
	if (f->username != NULL && projects)
	{
		first = lappend(first, new_listing(f, ATLAS_OP_LIST_ORG_GROUPS, NULL, NULL, NULL,
										   id_item));
		((Collect *) llast_node(AtlasListing, first)->arg)->ids = &project_ids;
	}
	if (f->u != NULL)
		owners = blocker_listings(f);
	if ((names = atlas_offboard_team_names(f)) != NULL)
		first = lappend(first, names);
	read_all(f, list_concat(first, owners));
	blockers(f, owners);
	foreach(lc, project_ids)
	{
		char	   *g = (char *) lfirst(lc);

		q = psprintf("username=%s&", http_escape(f->username));
		/* the reads are per project: bounded (invitations.c) */
		if (reads++ < atlas_max_invitation_reads)
			second = lappend(second, new_listing(f, ATLAS_OP_LIST_GROUP_INVITES, g, NULL, q,
												 invite_item));
		else if (f->invites_unseen == NULL)
			f->invites_unseen = atlas_invites_unseen_bound(list_length(project_ids));
		if (routes)
			second = lappend(second, new_listing(f, ATLAS_OP_LIST_GROUP_TEAMS, g, NULL, NULL,
												 team_role_item));
	}
	read_all(f, second);
	list_sort(f->team_routes, route_cmp);
	list_sort(f->project_invites, invite_cmp);
	if (f->u != NULL || f->project_invites != NIL)
	{
		atlas_offboard_org_name(f);
		read_federation(f);
	}
}

/*
 * After the removals: which of the project invitations are still listed.
 * Sets each one's gone; false when a listing failed (then none is marked).
 */
bool
atlas_offboard_relist_invites(OffFacts *f, List *invites)
{
	List	   *listings = NIL;
	List	   *saved = f->project_invites;
	List	   *groups = NIL;
	AtlasListing **arr;
	ListCell   *lc;
	int			n;
	bool		ok = true;
	char	   *q = psprintf("username=%s&", http_escape(f->username));

	foreach(lc, invites)
	{
		OffInvite  *inv = (OffInvite *) lfirst(lc);

		if (atlas_string_listed(groups, inv->group_id))
			continue;
		groups = lappend(groups, inv->group_id);
		listings = lappend(listings, new_listing(f, ATLAS_OP_LIST_GROUP_INVITES,
												 inv->group_id, NULL, q, invite_item));
	}
	f->project_invites = NIL;
	arr = palloc(sizeof(AtlasListing *) * Max(list_length(listings), 1));
	n = 0;
	foreach(lc, listings)
		arr[n++] = (AtlasListing *) lfirst(lc);
	atlas_list_many(arr, n);
	foreach(lc, listings)
		ok &= (((AtlasListing *) lfirst(lc))->end == ATLAS_LISTING_OK);
	foreach(lc, ok ? invites : NIL)
	{
		OffInvite  *inv = (OffInvite *) lfirst(lc);
		ListCell   *lc2;

		inv->gone = true;
		foreach(lc2, f->project_invites)
			if (strcmp(((OffInvite *) lfirst(lc2))->id, inv->id) == 0)
			inv->gone = false;
	}
	f->project_invites = saved;
	return ok;
}

/* Item: an organization's id, for atlas_offboard_orgs(). */
static void
org_item(const cJSON *item, void *arg)
{
	Collect    *c = (Collect *) arg;
	const char *id = atlas_json_string(item, "id");

	if (id != NULL && atlas_is_id(id) && !atlas_string_listed(*c->ids, id))
	{
		*c->ids = lappend(*c->ids, pstrdup(id));
		atlas_offboard_note_name(c->f, item);
	}
}

/*
 * Every organization to offboard from when none is named, with the
 * credentials to use there: a server's own organization, or every one its
 * credentials list (GET /orgs, whose names the plans show); an
 * organization seen twice is visited once, with the first server.
 */
List *
atlas_offboard_orgs(void)
{
	List	   *result = NIL;
	List	   *seen = NIL;
	ListCell   *lc;

	foreach(lc, atlas_targets_everywhere())
	{
		AtlasTarget *t = (AtlasTarget *) lfirst(lc);
		List	   *ids = NIL;
		ListCell   *lc2;
		OffFacts	probe;		/* keeps the names GET /orgs gives */

		memset(&probe, 0, sizeof(probe));
		probe.with_names = true;
		if (t->org_id != NULL)
			ids = list_make1(t->org_id);
		else
		{
			AtlasListing *l;

			probe.target = t;
			l = new_listing(&probe, ATLAS_OP_LIST_ORGS, NULL, NULL, NULL, org_item);
			((Collect *) l->arg)->ids = &ids;
			atlas_list_all(l);
		}
		foreach(lc2, ids)
		{
			OffFacts   *f;

			if (atlas_string_listed(seen, (char *) lfirst(lc2)))
				continue;
			seen = lappend(seen, lfirst(lc2));
			f = palloc0(sizeof(OffFacts));
			f->org_id = (char *) lfirst(lc2);
			f->target = t;
			f->org_name = (char *) atlas_offboard_name(&probe, f->org_id);
			result = lappend(result, f);
		}
	}
	return result;
}
