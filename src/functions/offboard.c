/*-------------------------------------------------------------------------
 *
 * offboard.c
 *	  Offboarding a person: every way they reach an organization, as a
 *	  plan or removed, one result row each.
 *
 * atlas_offboard_user(org_id, username_or_id, scope, dry_run) learns what
 * there is to know (offboard_facts.c), then, per scope:
 *	  'org'       removes the organization membership; Atlas drops the
 *				  project and team memberships, team access and org-role
 *				  access with it (action 'dropped_with_org'; a real run
 *				  leaves out the rows of access through teams, which it
 *				  does not read);
 *	  'projects'  removes every project membership, keeps the org; access
 *				  through teams and org roles stays, and its rows say why;
 *	  'teams'     removes every team membership.
 * A person whose invitation to the organization is open is a PENDING
 * user: the org removal deletes the invitation.  'org' and 'projects' also
 * delete the person's legacy project invitations, once the removals are
 * done and only those still listed then (an org removal may take one with
 * it); when Atlas has retired that endpoint, a 'project_invitations' row
 * says what could not be seen.  An organization with an ACTIVE identity
 * provider gets a row saying the person must also go there, naming the
 * IdP groups whose role mappings grant roles here.
 *
 * What Atlas refuses (the last Organization Owner, the last Project Owner
 * of a project, the last member of a team) shows as 'blocked' in a dry
 * run.  A real run still tries it, after removing everything else, so
 * the row carries Atlas's own answer; an org removal that would be
 * refused is preceded by the removal of each project and team membership
 * on its own.  One failing item never stops the others, and every removal
 * is audited (by the executor).  org_id NULL visits every organization
 * the usable servers (or the settings) see.  Each row shows the name of
 * the organization, project or team its id is (offboard_names.c), when
 * the installed version's result has a name column (1.5; not 1.4).
 * Without dry_run, a hot standby or a read-only transaction refuses the
 * call with 25006 before the lookups: nothing at all is sent.
 *
 *-------------------------------------------------------------------------
 */
#include "functions/functions.h"
#include "functions/offboard.h"

#include "funcapi.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(atlas_offboard_user);

typedef struct OffRow
{
	const char *kind;
	const char *id;
	const char *action;
	AtlasCall  *call;			/* the removal it makes; NULL: none */
	bool		with_org;		/* goes with the organization membership */
	const char *blocked;		/* why Atlas will refuse, or NULL */
	const char *outcome;		/* a fixed outcome ('stays', 'manual'), or NULL */
	const char *note;			/* the detail of a row without an answer */
	OffInvite  *invite;
} OffRow;

/* A plan: its rows and the organization removal among them. */
typedef struct OffPlan
{
	OffFacts   *f;
	List	   *rows;
	OffRow	   *org_row;
	bool		expanded;		/* the org removal comes after each membership's */
	bool		forced;			/* past the removal budget, by force */
} OffPlan;

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

/* Add a row. */
static OffRow *
add_row(OffPlan *p, const char *kind, const char *id, const char *action)
{
	OffRow	   *r = palloc0(sizeof(OffRow));

	r->kind = kind;
	r->id = id;
	r->action = action;
	p->rows = lappend(p->rows, r);
	return r;
}

/* Give a row its removal call. */
static void
add_call(OffPlan *p, OffRow *r, AtlasOperation op, const char *group_id,
		 const char *team_id, const char *user_id)
{
	AtlasCall  *c = atlas_call_new(op);

	c->target = p->f->target;
	c->org_id = p->f->org_id;
	c->group_id = (char *) group_id;
	c->team_id = (char *) team_id;
	c->user_id = (char *) user_id;
	c->username = p->f->username;
	c->missing_ok = (op != ATLAS_OP_DELETE_GROUP_INVITE);
	r->call = c;
	r->action = atlas_operation_name(op);
	r->with_org = false;
}

/* The rows of the memberships: org, projects, teams. */
static void
plan_memberships(OffPlan *p, bool dry_run)
{
	OffFacts   *f = p->f;
	AtlasOrgUser *u = f->u;
	bool		org = (strcmp(f->scope, "org") == 0);
	bool		blocked = f->last_org_owner || f->last_owner_projects || f->last_member_teams;
	ListCell   *lc;
	OffRow	   *r;

	p->expanded = org && blocked && !dry_run;
	if (org)
	{
		p->org_row = add_row(p, "org", f->org_id, NULL);
		add_call(p, p->org_row, ATLAS_OP_REMOVE_ORG_USER, NULL, NULL, u->id);
		if (f->last_org_owner)
			p->org_row->blocked = "They are the organization's last Organization Owner, and Atlas keeps one: make someone else Organization Owner first.";
		else if (blocked)
			p->org_row->blocked = "Atlas refuses the organization removal while they are a last Project Owner or a last team member (see the rows blocked).";
	}
	foreach(lc, org || strcmp(f->scope, "projects") == 0 ? u->groups : NIL)
	{
		AtlasGroupRoles *g = (AtlasGroupRoles *) lfirst(lc);

		r = add_row(p, "project", g->group_id, "dropped_with_org");
		r->with_org = org;
		if (!org || p->expanded)
			add_call(p, r, ATLAS_OP_REMOVE_PROJECT_USER, g->group_id, NULL, u->id);
		if (atlas_string_listed(f->last_owner_projects, g->group_id))
			r->blocked = "They are the project's last Project Owner, and Atlas keeps one: make someone else Project Owner first.";
	}
	foreach(lc, org || strcmp(f->scope, "teams") == 0 ? u->team_ids : NIL)
	{
		char	   *t = (char *) lfirst(lc);

		r = add_row(p, "team", t, "dropped_with_org");
		r->with_org = org;
		if (!org || p->expanded)
			add_call(p, r, ATLAS_OP_REMOVE_TEAM_USER, NULL, t, u->id);
		if (atlas_string_listed(f->last_member_teams, t))
			r->blocked = "They are the team's last member, and Atlas refuses to empty a team: add someone else or delete the team first.";
	}
}

/* The rows of access through teams and org roles (scopes org, projects). */
static void
plan_implied(OffPlan *p)
{
	OffFacts   *f = p->f;
	bool		org = (strcmp(f->scope, "org") == 0);
	static const char *const implying[] = {"ORG_OWNER", "ORG_READ_ONLY"};
	ListCell   *lc;
	OffRow	   *r;
	int			i;

	if (!org && strcmp(f->scope, "projects") != 0)
		return;
	foreach(lc, f->team_routes)
	{
		OffTeamRoute *t = (OffTeamRoute *) lfirst(lc);

		r = add_row(p, "project_via_team", t->group_id, org ? "dropped_with_org" : "stays");
		r->with_org = org;
		r->outcome = org ? NULL : "stays";
		r->note = psprintf(org ? "Reaches the project through team %s (%s); that goes with the organization membership."
						   : "Reaches the project through team %s (%s), which scope 'projects' leaves: remove the team membership (scope 'teams') or the organization membership.",
						   t->team_id, t->roles);
	}
	for (i = 0; i < (int) lengthof(implying); i++)
	{
		if (!atlas_string_listed(f->u->org_roles, implying[i]))
			continue;
		r = add_row(p, "org_role", implying[i], org ? "dropped_with_org" : "stays");
		r->with_org = org;
		r->outcome = org ? NULL : "stays";
		r->note = psprintf(org ? "%s reaches every project of the organization; it goes with the organization membership."
						   : "%s reaches every project of the organization without a project role, which scope 'projects' leaves: remove the organization membership.",
						   implying[i]);
	}
}

/*
 * The rows of pending invitations (an open org invitation that scope
 * 'projects' leaves, legacy project invitations, those that could not be
 * read), and of an identity provider.
 */
static void
plan_invitations(OffPlan *p)
{
	OffFacts   *f = p->f;
	ListCell   *lc;
	OffRow	   *r;

	if (f->u != NULL && f->u->status && strcmp(f->u->status, "PENDING") == 0 &&
		strcmp(f->scope, "projects") == 0)
	{
		r = add_row(p, "org_invitation", f->u->id, "stays");
		r->outcome = "stays";
		r->note = "Scope 'projects' leaves the invitation to the organization (the PENDING user).";
	}
	foreach(lc, strcmp(f->scope, "teams") != 0 ? f->project_invites : NIL)
	{
		OffInvite  *inv = (OffInvite *) lfirst(lc);

		r = add_row(p, "project_invitation", inv->id, NULL);
		r->invite = inv;
		add_call(p, r, ATLAS_OP_DELETE_GROUP_INVITE, inv->group_id, NULL, inv->id);
		r->note = psprintf("An invitation to project %s.", inv->group_id);
	}
	if (f->invites_unseen != NULL && strcmp(f->scope, "teams") != 0)
	{
		r = add_row(p, "project_invitations", f->org_id, "list_project_invitations");
		r->outcome = "unknown";
		r->note = f->invites_unseen;
	}
	if (f->federation != OFF_NOT_FEDERATED)
	{
		r = add_row(p, "federation", f->org_id, "remove_at_identity_provider");
		r->outcome = (f->federation == OFF_FEDERATED) ? "manual" : "unknown";
		r->note = f->federation_detail;
	}
}

/* which rows a step of the real run sends */
typedef enum OffStep
{
	OFF_MEMBERSHIPS,			/* projects and teams */
	OFF_ORG,					/* the organization membership */
	OFF_PROJECT_INVITES
} OffStep;

/* Is a row sent in a step? */
static bool
in_step(OffPlan *p, OffRow *r, OffStep step)
{
	if (r->call == NULL || (r->invite && r->invite->gone))
		return false;
	switch (step)
	{
		case OFF_MEMBERSHIPS:
			return r->invite == NULL && r != p->org_row;
		case OFF_ORG:
			return r == p->org_row;
		case OFF_PROJECT_INVITES:
			return r->invite != NULL;
	}
	return false;
}

/* The invitations a step would delete. */
static List *
step_invites(OffPlan *p, OffStep step)
{
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, p->rows)
	{
		OffRow	   *r = (OffRow *) lfirst(lc);

		if (in_step(p, r, step))
			result = lappend(result, r->invite);
	}
	return result;
}

/* Send the rows of a step, side by side. */
static void
run_step(OffPlan *p, OffStep step)
{
	AtlasCall **calls = palloc(sizeof(AtlasCall *) * Max(list_length(p->rows), 1));
	AtlasRunSpec spec = atlas_session_spec("atlas_offboard_user");
	ListCell   *lc;
	int			n = 0;

	foreach(lc, p->rows)
	{
		OffRow	   *r = (OffRow *) lfirst(lc);

		if (in_step(p, r, step))
		{
			r->call->reason = p->f->reason;
			r->call->ticket = p->f->ticket;
			r->call->forced = p->forced;
			calls[n++] = r->call;
		}
	}
	if (n > 0)
		atlas_execute(calls, n, &spec);
}

/*
 * Carry out a plan: the memberships (each first, when the org removal
 * would be refused), the org removal, then the project invitations.
 * When an org removal came before them, which may have taken them along,
 * the invitations are listed again and only those still there are
 * deleted (Atlas does not document what takes what with it).
 */
static void
run_plan(OffPlan *p)
{
	List	   *project_invites;

	run_step(p, OFF_MEMBERSHIPS);
	run_step(p, OFF_ORG);
	project_invites = step_invites(p, OFF_PROJECT_INVITES);
	if (project_invites != NIL && p->org_row != NULL)
		(void) atlas_offboard_relist_invites(p->f, project_invites);
	run_step(p, OFF_PROJECT_INVITES);
}

/*
 * Put one result row: organization, kind, id, name (1.5: a result of 9
 * columns), action, outcome, http_status, error_code, detail.
 */
static void
put_row(ReturnSetInfo *rsinfo, OffFacts *f, OffRow *r, const char *outcome,
		long http_status, const char *error_code, const char *detail)
{
	Datum		values[9];
	char		nulls[9];
	bool		isnull[9];
	int			k = f->with_names ? 1 : 0;	/* where the columns after id are */
	int			i;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = atlas_text_or_null(f->org_id, nulls, 0);
	values[1] = atlas_text_or_null(r->kind, nulls, 1);
	values[2] = atlas_text_or_null(r->id, nulls, 2);
	if (f->with_names)
		values[3] = atlas_text_or_null(atlas_offboard_name(f, r->id), nulls, 3);
	values[3 + k] = atlas_text_or_null(r->action, nulls, 3 + k);
	values[4 + k] = atlas_text_or_null(outcome, nulls, 4 + k);
	values[5 + k] = Int32GetDatum((int32) http_status);
	nulls[5 + k] = (http_status == 0) ? 'n' : ' ';
	values[6 + k] = atlas_text_or_null(error_code, nulls, 6 + k);
	values[7 + k] = atlas_text_or_null(detail, nulls, 7 + k);
	for (i = 0; i < 8 + k; i++)
		isnull[i] = (nulls[i] == 'n');
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
}

/* Put a row's result. */
static void
put_result(ReturnSetInfo *rsinfo, OffPlan *p, OffRow *r, bool dry_run)
{
	AtlasCall  *c = r->call;
	AtlasCall  *org = p->org_row ? p->org_row->call : NULL;
	bool		org_gone = org && org->outcome != ATLAS_OUTCOME_FAILED &&
		org->outcome != ATLAS_OUTCOME_NONE;

	if (r->outcome != NULL)
		put_row(rsinfo, p->f, r, r->outcome, 0, NULL, r->note);
	else if (dry_run)
		put_row(rsinfo, p->f, r, r->blocked ? "blocked" : "planned", 0, NULL,
				r->blocked ? r->blocked : r->note);
	else if (r->invite && r->invite->gone)
		put_row(rsinfo, p->f, r, "removed", 0, NULL,
				"Atlas removed the invitation with what was removed before it.");
	else if (c != NULL)
		put_row(rsinfo, p->f, r, atlas_outcome_name(c->outcome), c->answer.http_status,
				c->answer.error_code, atlas_call_detail(c));
	else if (org_gone)
		put_row(rsinfo, p->f, r, "removed", 0, NULL,
				r->note ? r->note : "Atlas removed this with the organization membership.");
	else
		put_row(rsinfo, p->f, r, "not_removed", 0, NULL,
				"The organization membership was not removed, so this remains.");
}

/* Offboard in one organization; false when there was nothing there. */
static bool
offboard_org(ReturnSetInfo *rsinfo, OffFacts *f, const char *who, bool dry_run)
{
	OffPlan		p;
	ListCell   *lc;

	memset(&p, 0, sizeof(p));
	p.f = f;
	atlas_offboard_gather(f, who);
	if (f->u != NULL)
	{
		plan_memberships(&p, dry_run);
		plan_implied(&p);
	}
	if (f->u == NULL && f->project_invites == NIL)
	{
		if (f->invites_unseen != NULL)
			ereport(NOTICE,
					(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
					 errmsg("organization %s: no member %s, and legacy project invitations could not be read",
							f->org_id, who),
					 errdetail_internal("%s", f->invites_unseen)));
		return false;
	}
	plan_invitations(&p);
	if (!dry_run && f->u != NULL)
	{
		/* the person counts once in the removal budget, before any request */
		p.forced = atlas_guard_reserve(f->org_id, NULL, &f->u->id, 1, f->force,
									   "atlas_offboard_user");
	}
	if (!dry_run)
		run_plan(&p);
	foreach(lc, p.rows)
		put_result(rsinfo, &p, (OffRow *) lfirst(lc), dry_run);
	return true;
}

/* atlas_offboard_user(org_id, username_or_id, scope, dry_run, force, reason, ticket) */
Datum
atlas_offboard_user(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *org_id = PG_ARGISNULL(0) ? NULL : atlas_id_arg(fcinfo, 0, "org_id");
	char	   *scope = scope_arg(fcinfo, 2);
	bool		dry_run = PG_GETARG_BOOL(3);
	bool		force = PG_NARGS() > 4 && atlas_bool_arg(fcinfo, 4, "force");
	char	   *reason;
	char	   *ticket;
	char	   *who;
	List	   *orgs;
	ListCell   *lc;
	int			found = 0;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("username_or_id must not be null")));
	who = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!atlas_is_id(who))
		who = atlas_username_arg(fcinfo, 1, "username_or_id");
	atlas_evidence_args(fcinfo, 5, &reason, &ticket);
	if (!dry_run)
		atlas_require_writable("offboard Atlas users");
	InitMaterializedSRF(fcinfo, 0);
	if (org_id != NULL)
	{
		OffFacts   *f = palloc0(sizeof(OffFacts));

		f->org_id = org_id;
		orgs = list_make1(f);
	}
	else
		orgs = atlas_offboard_orgs();
	foreach(lc, orgs)
	{
		OffFacts   *f = (OffFacts *) lfirst(lc);

		f->scope = scope;
		f->force = force;
		f->reason = reason;
		f->ticket = ticket;
		f->dry_run = dry_run;
		f->with_names = (rsinfo->setDesc->natts > 8);	/* 1.4: no name */
		found += offboard_org(rsinfo, f, who, dry_run) ? 1 : 0;
	}
	if (found == 0 && org_id != NULL)
		ereport(NOTICE,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("organization %s has no user %s", org_id, who),
				 atlas_is_id(who)
				 ? errdetail("Atlas lists no ACTIVE or PENDING member with this id (invitations are found by username).")
				 : errdetail("Atlas lists no ACTIVE or PENDING member and no pending invitation with this username.")));
	else if (found == 0)
		ereport(NOTICE,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("no organization has a user %s", who),
				 errdetail("%d organizations were searched: Atlas lists no ACTIVE or PENDING member and no pending invitation with this %s in any.",
						   list_length(orgs), atlas_is_id(who) ? "id" : "username")));
	return (Datum) 0;
}
