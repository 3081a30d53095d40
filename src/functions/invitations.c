/*-------------------------------------------------------------------------
 *
 * invitations.c
 *	  Legacy project invitations, read as a supplement while Atlas serves
 *	  their deprecated endpoint.
 *
 * An open invitation to an organization is a PENDING user of the org
 * users listing, but a person invited through the deprecated project
 * invitation endpoint is seen only by GET /groups/{groupId}/invites
 * (sunset 2027-07-01).  Reconciliation reads it for each project of the
 * organization, side by side through the listing engine, at most
 * atlas_users.max_invitation_reads projects per statement (the reads are
 * per project); offboarding keeps to the same bound.  A supplement never
 * fails the plan: when Atlas retired the endpoint (410 VERSION_GONE, or its
 * route is gone; calendar.c then sends no other request to it in the
 * statement), or a read fails otherwise, the caller is told what could
 * not be seen and why.
 *
 *-------------------------------------------------------------------------
 */
#include "functions/functions.h"

/* what one project's listing collects */
typedef struct InviteCollect
{
	const char *group_id;
	List	  **out;			/* of AtlasLegacyInvite */
} InviteCollect;

/* Item: an id (of a project of the organization). */
static void
group_item(const cJSON *item, void *arg)
{
	List	  **ids = (List **) arg;
	const char *id = atlas_json_string(item, "id");

	if (id != NULL && atlas_is_id(id) && !atlas_string_listed(*ids, id))
		*ids = lappend(*ids, pstrdup(id));
}

/* Item: an open project invitation. */
static void
invite_item(const cJSON *item, void *arg)
{
	InviteCollect *c = (InviteCollect *) arg;
	const char *id = atlas_json_string(item, "id");
	const char *name = atlas_json_string(item, "username");
	AtlasLegacyInvite *inv;

	if (id == NULL || !atlas_is_id(id) || name == NULL)
		return;
	inv = palloc0(sizeof(AtlasLegacyInvite));
	inv->id = pstrdup(id);
	inv->group_id = pstrdup(c->group_id);
	inv->username = pstrdup(name);
	*c->out = lappend(*c->out, inv);
}

/* Order invitations by project, then id (the listings end in any order). */
static int
invite_cmp(const ListCell *a, const ListCell *b)
{
	AtlasLegacyInvite *x = (AtlasLegacyInvite *) lfirst(a);
	AtlasLegacyInvite *y = (AtlasLegacyInvite *) lfirst(b);
	int			c = strcmp(x->group_id, y->group_id);

	return c != 0 ? c : strcmp(x->id, y->id);
}

/*
 * What a retired project invitation endpoint leaves unseen, for a plan's
 * row or NOTICE.
 */
char *
atlas_invites_unseen_retired(AtlasCall *failed)
{
	return psprintf("Legacy project invitations could not be read: %s. Invitations made through that endpoint are invisible to every other listing; they expire 30 days after they were sent.",
					atlas_call_retired_message(failed));
}

/* What a failed read (of the projects, or of one's invitations) leaves unseen. */
static char *
unseen_failed(AtlasListing *l)
{
	if (l->end == ATLAS_LISTING_FAILED && atlas_call_retired(l->failed))
		return atlas_invites_unseen_retired(l->failed);
	return psprintf("Legacy project invitations could not be read: %s%s%s.",
					l->problem ? l->problem : l->failed ? atlas_call_message(l->failed) : "the listing failed",
					l->group_id ? " (project " : "", l->group_id ? psprintf("%s)", l->group_id) : "");
}

/* What the bound on invitation reads leaves unseen. */
char *
atlas_invites_unseen_bound(int nprojects)
{
	if (atlas_max_invitation_reads == 0)
		return pstrdup("Legacy project invitations were not read: atlas_users.max_invitation_reads is 0.");
	return psprintf("Legacy project invitations were read in the first %d of the organization's %d projects only (atlas_users.max_invitation_reads); invitations to the others are not seen.",
					atlas_max_invitation_reads, nprojects);
}

/*
 * Read the legacy project invitations of an organization's projects: at
 * most atlas_users.max_invitation_reads listings, side by side.  Returns
 * them (of AtlasLegacyInvite, by project, then id); *unseen says what
 * could not be seen, or is NULL.  A failed read is not raised.
 */
List *
atlas_read_project_invites(AtlasTarget *target, const char *org_id, const char *label,
						   char **unseen)
{
	AtlasListing groups;
	AtlasListing *first[1] = {&groups};
	AtlasListing **arr;
	List	   *ids = NIL;
	List	   *result = NIL;
	char	   *failed = NULL;
	ListCell   *lc;
	int			n = 0;
	int			i;

	*unseen = NULL;
	if (atlas_max_invitation_reads == 0)
	{
		*unseen = atlas_invites_unseen_bound(0);
		return NIL;
	}
	memset(&groups, 0, sizeof(groups));
	groups.op = ATLAS_OP_LIST_ORG_GROUPS;
	groups.target = target;
	groups.org_id = (char *) org_id;
	groups.item = group_item;
	groups.arg = &ids;
	groups.label = label;
	atlas_list_many(first, 1);
	if (groups.end != ATLAS_LISTING_OK)
	{
		*unseen = unseen_failed(&groups);
		return NIL;
	}
	arr = palloc(sizeof(AtlasListing *) * Max(list_length(ids), 1));
	foreach(lc, ids)
	{
		AtlasListing *l;
		InviteCollect *c;

		if (n == atlas_max_invitation_reads)
		{
			*unseen = atlas_invites_unseen_bound(list_length(ids));
			break;
		}
		l = palloc0(sizeof(AtlasListing));
		c = palloc0(sizeof(InviteCollect));
		c->group_id = (char *) lfirst(lc);
		c->out = &result;
		l->op = ATLAS_OP_LIST_GROUP_INVITES;
		l->target = target;
		l->org_id = (char *) org_id;
		l->group_id = (char *) lfirst(lc);
		l->unpaged = true;
		l->item = invite_item;
		l->arg = c;
		l->label = label;
		arr[n++] = l;
	}
	atlas_list_many(arr, n);
	for (i = 0; i < n; i++)
	{
		/* the first failure says it (a retired endpoint fails them all) */
		if (arr[i]->end != ATLAS_LISTING_OK && failed == NULL)
			failed = unseen_failed(arr[i]);
	}
	if (failed != NULL)
		*unseen = failed;
	list_sort(result, invite_cmp);
	return result;
}
