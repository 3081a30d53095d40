/*-------------------------------------------------------------------------
 *
 * reconcile.c
 *	  Bringing an organization down to a list of people to keep, with a
 *	  guard on how many it may remove.
 *
 * atlas_reconcile_org(org_id, keep_usernames, dry_run, max_removals,
 * force) lists the organization's users (ACTIVE and PENDING: an open
 * invitation to the organization is a PENDING user, whose removal deletes
 * it), and, while Atlas serves the deprecated endpoint, the legacy project
 * invitations of its projects (invitations.c: people invited that way are
 * seen nowhere else; at most atlas_users.max_invitation_reads projects).
 * It plans to remove every user, and to delete every legacy project
 * invitation, whose username is not in keep_usernames (compared
 * case-insensitively).  Invitations that could not be read (the endpoint
 * retired, a read failed, or past the bound) are a row 'unknown' that says
 * so; the plan goes on.  It never removes:
 *	  - the identity the credentials belong to (a user whose username or
 *		id is the key's public key or the service account's client id);
 *	  - the last Organization Owner: when no ACTIVE Organization Owner
 *		would stay, no owner is removed (their rows say 'blocked').
 * The blast-radius guard: a plan that would remove more than
 * max_removals people, or more than half of the people in the
 * organization, is refused with an error before anything is removed,
 * unless force; a dry run returns the plan with a WARNING instead.  An
 * empty or NULL keep list is refused unless force, so an HR query that
 * returns nothing can never empty an organization.  Then the removal
 * budget shared with every other path (guard.c) must admit the people,
 * or force (audited as forced); the listing tells it the organization's
 * size.
 *
 * A real run removes the users (through the executor: paced, retried,
 * audited).  One row per person not kept comes back.
 *
 *-------------------------------------------------------------------------
 */
#include "functions/functions.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/hsearch.h"

PG_FUNCTION_INFO_V1(atlas_reconcile_org);

/* someone not kept */
typedef struct Person
{
	const char *kind;			/* "user", "project_invitation", or
								 * "project_invitations" (unseen) */
	const char *action;
	char	   *id;
	char	   *group_id;		/* of a project invitation */
	char	   *username;		/* valid text, for rows and the audit */
	char	   *name;			/* as listed: who the person is */
	char	   *status;
	bool		owner;			/* an ACTIVE Organization Owner */
	const char *outcome;		/* 'blocked' or 'skipped', or NULL: to remove */
	const char *detail;
	AtlasCall  *call;
} Person;

typedef struct Reconcile
{
	char	   *org_id;
	AtlasTarget *target;
	HTAB	   *keep;			/* lowercased usernames */
	HTAB	   *people;			/* lowercased usernames of everyone listed */
	List	   *out;			/* of Person: not kept */
	int			kept_owners;	/* ACTIVE Organization Owners kept */
	int			to_remove;		/* people (distinct usernames) planned */
	HTAB	   *removing;		/* their lowercased usernames */
	bool		forced;			/* past the removal budget, by force */
	char	   *reason;			/* evidence for the audit, or NULL */
	char	   *ticket;
} Reconcile;

/* A set of lowercased strings, compared over their full length. */
static HTAB *
name_set(const char *name)
{
	return atlas_strset_create(name, 1024);
}

/*
 * Is the lowercased s in a set (adding it, if add)?  Names are compared
 * in full.  A name that is not valid UTF-8 (only a hostile server sends
 * one) is its own bytes, marked so that no valid name can equal it: it is
 * never kept, and two such names are never counted as one person.
 */
static bool
name_in(HTAB *set, const char *s, bool add)
{
	char	   *key;
	bool		found;

	if (s == NULL)
		return false;
	if (atlas_is_valid_utf8(s, strlen(s)))
		key = str_tolower(s, strlen(s), DEFAULT_COLLATION_OID);
	else
		key = psprintf("\x01%s", s);
	found = atlas_strset_in(set, key, add);
	pfree(key);
	return found;
}

/* The keep list: 22023 for NULL elements, or for none without force. */
static HTAB *
keep_arg(FunctionCallInfo fcinfo, int argno, bool force)
{
	HTAB	   *keep = name_set("atlas_users keep_usernames");
	Datum	   *elems;
	bool	   *nulls;
	int			n = 0;
	int			i;

	if (!PG_ARGISNULL(argno))
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(argno), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &n);
	if (n == 0 && !force)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("keep_usernames is %s", PG_ARGISNULL(argno) ? "NULL" : "empty"),
				 errdetail("Reconciling against no one would remove everyone in the organization; nothing was sent to Atlas."),
				 errhint("Check the query that builds the list. To empty an organization on purpose, pass force => true.")));
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("keep_usernames must not contain NULL"),
					 errdetail("Element %d is NULL; nothing was sent to Atlas.", i + 1)));
		(void) name_in(keep, TextDatumGetCString(elems[i]), true);
	}
	return keep;
}

/* A non-null argument of a reconciliation, or 22023. */
static Datum
required_arg(FunctionCallInfo fcinfo, int argno, const char *param)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be null", param)));
	return PG_GETARG_DATUM(argno);
}

/* A person not kept, from a listed entry. */
static Person *
add_person(Reconcile *rc, const char *kind, const char *id, const char *username,
		   const char *status)
{
	Person	   *p = palloc0(sizeof(Person));

	p->kind = kind;
	p->action = "remove_org_user";
	p->id = pstrdup(id);
	p->username = username ? atlas_valid_text(username, strlen(username)) : NULL;
	p->name = username ? pstrdup(username) : NULL;
	p->status = status ? atlas_valid_text(status, strlen(status)) : NULL;
	rc->out = lappend(rc->out, p);
	return p;
}

/* Item: an organization user. */
static void
user_item(const cJSON *item, void *arg)
{
	Reconcile  *rc = (Reconcile *) arg;
	const char *id = atlas_json_string(item, "id");
	const char *name = atlas_json_string(item, "username");
	const char *status = atlas_json_string(item, "orgMembershipStatus");
	const cJSON *roles = cJSON_GetObjectItemCaseSensitive(item, "roles");
	bool		owner;
	Person	   *p;

	if (id == NULL || !atlas_is_id(id) || name == NULL)
		return;
	(void) name_in(rc->people, name, true);
	owner = status && strcmp(status, "ACTIVE") == 0 && cJSON_IsObject(roles) &&
		atlas_json_has_string(cJSON_GetObjectItemCaseSensitive(roles, "orgRoles"), "ORG_OWNER");
	if (name_in(rc->keep, name, false))
	{
		rc->kept_owners += owner ? 1 : 0;
		return;
	}
	p = add_person(rc, "user", id, name, status);
	p->owner = owner;
}

/* List the organization's users. */
static void
list_org(Reconcile *rc)
{
	AtlasListing l;

	memset(&l, 0, sizeof(l));
	l.op = ATLAS_OP_LIST_ORG_USERS;
	l.target = rc->target;
	l.org_id = rc->org_id;
	l.item = user_item;
	l.arg = rc;
	l.label = "atlas_reconcile_org";
	atlas_list_all(&l);
}

/*
 * Read the legacy project invitations, while Atlas serves them: those of
 * people not kept are to delete; what could not be read is a row.
 */
static void
list_invitations(Reconcile *rc)
{
	char	   *unseen;
	List	   *invites = atlas_read_project_invites(rc->target, rc->org_id,
													 "atlas_reconcile_org", &unseen);
	ListCell   *lc;
	Person	   *p;

	foreach(lc, invites)
	{
		AtlasLegacyInvite *inv = (AtlasLegacyInvite *) lfirst(lc);

		(void) name_in(rc->people, inv->username, true);
		if (name_in(rc->keep, inv->username, false))
			continue;
		p = add_person(rc, "project_invitation", inv->id, inv->username, "PENDING");
		p->action = "delete_project_invitation";
		p->group_id = inv->group_id;
		p->detail = psprintf("A legacy invitation to project %s.", inv->group_id);
	}
	if (unseen != NULL)
	{
		p = add_person(rc, "project_invitations", rc->org_id, NULL, NULL);
		p->action = "list_project_invitations";
		p->outcome = "unknown";
		p->detail = unseen;
	}
}

/*
 * Mark who is never removed: the credentials' own identity, and the
 * owners when no ACTIVE Organization Owner would stay; count the people
 * to remove.
 */
static void
protect(Reconcile *rc)
{
	AtlasTarget *t = rc->target ? rc->target : atlas_target_for(rc->org_id, GetUserId(), false);
	ListCell   *lc;

	rc->removing = name_set("atlas_users removing");
	foreach(lc, rc->out)
	{
		Person	   *p = (Person *) lfirst(lc);

		if (p->outcome != NULL)
			continue;			/* a row of what could not be read */
		if (t->username && (pg_strcasecmp(p->username, t->username) == 0 ||
							strcmp(p->id, t->username) == 0))
		{
			p->outcome = "skipped";
			p->detail = "The credentials in use belong to this identity; it is never removed.";
		}
		else if (p->owner && rc->kept_owners == 0)
		{
			p->outcome = "blocked";
			p->detail = "No ACTIVE Organization Owner is in keep_usernames, and Atlas keeps one: no owner is removed. Keep at least one owner.";
		}
		else if (!name_in(rc->removing, p->name, true))
			rc->to_remove++;
	}
}

/*
 * The blast-radius guard: NULL when the plan may run, else why not.
 */
static char *
guard(Reconcile *rc, int max_removals)
{
	long		people = hash_get_num_entries(rc->people);

	if (rc->to_remove > max_removals)
		return psprintf("It would remove %d people, more than max_removals (%d).",
						rc->to_remove, max_removals);
	if ((long) rc->to_remove * 2 > people)
		return psprintf("It would remove %d of the organization's %ld people, more than half.",
						rc->to_remove, people);
	return NULL;
}

/*
 * Reserve the people to remove in the removal budget (guard.c), before
 * the first removal: 55000 past it unless force.
 */
static void
reserve_budget(Reconcile *rc, bool force)
{
	char	  **ids = palloc(sizeof(char *) * Max(list_length(rc->out), 1));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, rc->out)
	{
		Person	   *p = (Person *) lfirst(lc);

		if (p->outcome == NULL && strcmp(p->kind, "user") == 0)
			ids[n++] = p->id;
	}
	if (n > 0)
		rc->forced = atlas_guard_reserve(rc->org_id, NULL, ids, n, force, "atlas_reconcile_org");
}

/* Run the plan: remove the users. */
static void
run_plan(Reconcile *rc)
{
	int			n = list_length(rc->out);
	AtlasCall **calls = palloc(sizeof(AtlasCall *) * Max(n, 1));
	AtlasRunSpec spec = atlas_session_spec("atlas_reconcile_org");
	ListCell   *lc;
	int			ncalls = 0;

	foreach(lc, rc->out)
	{
		Person	   *p = (Person *) lfirst(lc);

		if (p->outcome != NULL)
			continue;
		p->call = atlas_call_new(p->group_id ? ATLAS_OP_DELETE_GROUP_INVITE
								 : ATLAS_OP_REMOVE_ORG_USER);
		p->call->target = rc->target;
		p->call->org_id = rc->org_id;
		p->call->group_id = p->group_id;
		/* an invitation's id travels as the call's user_id */
		p->call->user_id = p->id;
		p->call->username = p->username;
		/* as in offboarding, a project invitation's 404 is not 'already absent' */
		p->call->missing_ok = (p->group_id == NULL);
		p->call->forced = rc->forced;
		p->call->reason = rc->reason;
		p->call->ticket = rc->ticket;
		calls[ncalls++] = p->call;
	}
	if (ncalls > 0)
		atlas_execute(calls, ncalls, &spec);
}

/* Put a person's row. */
static void
put_person(ReturnSetInfo *rsinfo, Person *p, bool dry_run)
{
	Datum		values[9];
	char		nulls[9];
	bool		isnull[9];
	const char *outcome = p->outcome;
	const char *detail = p->detail;
	long		status = 0;
	const char *code = NULL;
	int			i;

	if (outcome == NULL && dry_run)
		outcome = "planned";
	else if (outcome == NULL && p->call)
	{
		outcome = atlas_outcome_name(p->call->outcome);
		status = p->call->answer.http_status;
		code = p->call->answer.error_code;
		detail = atlas_call_detail(p->call) ? atlas_call_detail(p->call) : p->detail;
	}
	memset(nulls, ' ', sizeof(nulls));
	values[0] = atlas_text_or_null(p->kind, nulls, 0);
	values[1] = atlas_text_or_null(p->id, nulls, 1);
	values[2] = atlas_text_or_null(p->username, nulls, 2);
	values[3] = atlas_text_or_null(p->status, nulls, 3);
	values[4] = atlas_text_or_null(p->action, nulls, 4);
	values[5] = atlas_text_or_null(outcome, nulls, 5);
	values[6] = Int32GetDatum((int32) status);
	nulls[6] = status == 0 ? 'n' : ' ';
	values[7] = atlas_text_or_null(code, nulls, 7);
	values[8] = atlas_text_or_null(detail, nulls, 8);
	for (i = 0; i < 9; i++)
		isnull[i] = (nulls[i] == 'n');
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
}

/*
 * atlas_reconcile_org(org_id, keep_usernames, dry_run, max_removals, force,
 * reason, ticket)
 */
Datum
atlas_reconcile_org(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Reconcile	rc;
	bool		dry_run;
	bool		force;
	int			max_removals;
	char	   *refused;
	ListCell   *lc;

	memset(&rc, 0, sizeof(rc));
	rc.org_id = atlas_id_arg(fcinfo, 0, "org_id");
	dry_run = DatumGetBool(required_arg(fcinfo, 2, "dry_run"));
	max_removals = DatumGetInt32(required_arg(fcinfo, 3, "max_removals"));
	force = DatumGetBool(required_arg(fcinfo, 4, "force"));
	atlas_evidence_args(fcinfo, 5, &rc.reason, &rc.ticket);
	if (max_removals < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_removals must not be negative")));
	rc.keep = keep_arg(fcinfo, 1, force);
	if (!dry_run)
		atlas_require_writable("reconcile an Atlas organization");
	InitMaterializedSRF(fcinfo, 0);
	rc.people = name_set("atlas_users people");
	list_org(&rc);
	atlas_guard_note_size(rc.org_id, hash_get_num_entries(rc.people));
	list_invitations(&rc);
	protect(&rc);
	refused = force ? NULL : guard(&rc, max_removals);
	if (refused && !dry_run)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("reconciliation of organization %s refused by its blast-radius guard", rc.org_id),
				 errdetail("%s Nothing was removed.", refused),
				 errhint("Check keep_usernames (%ld given). If the removals are meant, raise max_removals or pass force => true.",
						 hash_get_num_entries(rc.keep))));
	if (refused)
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("a real run would be refused by the blast-radius guard"),
				 errdetail("%s", refused),
				 errhint("Check keep_usernames. If the removals are meant, raise max_removals or pass force => true.")));
	if (!dry_run)
	{
		reserve_budget(&rc, force);
		run_plan(&rc);
	}
	foreach(lc, rc.out)
		put_person(rsinfo, (Person *) lfirst(lc), dry_run);
	return (Datum) 0;
}
