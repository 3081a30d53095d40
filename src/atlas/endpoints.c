/*-------------------------------------------------------------------------
 *
 * endpoints.c
 *	  The operations and the Atlas endpoints that carry them out; a new
 *	  call of an operation, and the audit name of its outcome.
 *
 * One table says, for each operation, its name (in the audit and the
 * queue), the trigger's short alias, the method, the path template and
 * the resource version.  Everything else is read from it: the name of an
 * operation and the operation of a name (an unknown name is an error,
 * never a default), whether it removes, and which ids it takes, in the
 * order of its SQL arguments (the order of the path's placeholders, then
 * the user id of a POST body), and which rate limit it shares: its
 * endpoint set and the id that scopes it (pacing.c): the fallback where
 * Atlas's listRateLimits does not say (rate_sets.c), after what real
 * answers show (GET /orgs/{orgId} shares the org invitations' bucket); a
 * limit shared more widely than it says still only costs a 429 and a
 * wait).  Removals follow a pinned
 * atlas_users.api_version; reads always use the version whose answer
 * shape the parsers know.  The last two columns are Atlas's calendar
 * (calendar.c): the sunset the spec announces (of the endpoint, or, for a
 * pinnable one, of its versions before 2025-02-19) and what replaces it.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas/atlas.h"

#include "lib/stringinfo.h"

/* what replaces the invitation endpoints after their sunset */
#define ORG_INVITES_SUCCESSOR \
	"Open organization invitations are the PENDING users of GET /api/atlas/v2/orgs/{orgId}/users (atlas_org_users(org_id, ARRAY['PENDING'])); removing such a user (atlas_remove_org_user) deletes the invitation."
#define PROJECT_INVITES_SUCCESSOR \
	"Invite people to the organization with project roles instead: they are PENDING users of GET /api/atlas/v2/orgs/{orgId}/users. Invitations made through this endpoint expire 30 days after they were sent."

static const AtlasEndpoint endpoints[] = {
	{ATLAS_OP_REMOVE_PROJECT_USER, "remove_project_user", "project", "DELETE",
		"/api/atlas/v2/groups/{groupId}/users/{userId}", "2025-02-19", true, false,
	"project_users", ATLAS_ID_GROUP, "2027-07-01",
	NULL},
	{ATLAS_OP_REMOVE_ORG_USER, "remove_org_user", "org", "DELETE",
		"/api/atlas/v2/orgs/{orgId}/users/{userId}", "2025-02-19", true, false,
	"org_users", ATLAS_ID_ORG, "2027-07-01",
	NULL},
	{ATLAS_OP_REMOVE_TEAM_USER, "remove_team_user", "team", "POST",
		"/api/atlas/v2/orgs/{orgId}/teams/{teamId}:removeUser", "2025-02-19", true, false,
	"teams", ATLAS_ID_ORG, "2027-07-01",
	NULL},
	{ATLAS_OP_REMOVE_TEAM_USER, "remove_team_user", "team", "DELETE",
		"/api/atlas/v2/orgs/{orgId}/teams/{teamId}/users/{userId}", "2023-01-01", true, true,
	"teams", ATLAS_ID_ORG, "2027-07-01",
	"POST /api/atlas/v2/orgs/{orgId}/teams/{teamId}:removeUser at 2025-02-19: reset atlas_users.api_version"},
	{ATLAS_OP_REMOVE_PROJECT_USER_V1, "remove_project_user_v1", NULL, "DELETE",
		"/api/atlas/v1.0/groups/{groupId}/users/{userId}", NULL, false, false,
	"v1", ATLAS_ID_GROUP, NULL, NULL},
	{ATLAS_OP_LIST_ORG_USERS, "list_org_users", NULL, "GET",
		"/api/atlas/v2/orgs/{orgId}/users", "2025-02-19", false, false,
	"org_users", ATLAS_ID_ORG, NULL, NULL},
	{ATLAS_OP_GET_ORG_USER, "get_org_user", NULL, "GET",
		"/api/atlas/v2/orgs/{orgId}/users/{userId}", "2025-02-19", false, false,
	"org_users", ATLAS_ID_ORG, NULL, NULL},
	{ATLAS_OP_LIST_GROUP_USERS, "list_project_users", NULL, "GET",
		"/api/atlas/v2/groups/{groupId}/users", "2025-02-19", false, false,
	"project_users", ATLAS_ID_GROUP, NULL, NULL},
	{ATLAS_OP_GET_ORG, "get_org", NULL, "GET",
		"/api/atlas/v2/orgs/{orgId}", "2023-01-01", false, false,
	"orgs", ATLAS_ID_ORG, NULL, NULL},
	{ATLAS_OP_GET_GROUP, "get_project", NULL, "GET",
		"/api/atlas/v2/groups/{groupId}", "2023-01-01", false, false,
	"projects", ATLAS_ID_GROUP, NULL, NULL},
	{ATLAS_OP_LIST_TEAMS, "list_teams", NULL, "GET",
		"/api/atlas/v2/orgs/{orgId}/teams", "2023-01-01", false, false,
	"teams", ATLAS_ID_ORG, NULL, NULL},
	{ATLAS_OP_LIST_ORGS, "list_orgs", NULL, "GET",
		"/api/atlas/v2/orgs", "2023-01-01", false, false,
	"orgs", ATLAS_ID_USER, NULL, NULL},
	{ATLAS_OP_LIST_ORG_GROUPS, "list_org_projects", NULL, "GET",
		"/api/atlas/v2/orgs/{orgId}/groups", "2023-01-01", false, false,
	"orgs", ATLAS_ID_ORG, NULL, NULL},
	{ATLAS_OP_LIST_TEAM_USERS, "list_team_users", NULL, "GET",
		"/api/atlas/v2/orgs/{orgId}/teams/{teamId}/users", "2025-02-19", false, false,
	"teams", ATLAS_ID_ORG, NULL, NULL},
	{ATLAS_OP_LIST_GROUP_TEAMS, "list_project_teams", NULL, "GET",
		"/api/atlas/v2/groups/{groupId}/teams", "2023-01-01", false, false,
	"projects", ATLAS_ID_GROUP, NULL, NULL},
	{ATLAS_OP_LIST_ORG_INVITES, "list_org_invitations", NULL, "GET",
		"/api/atlas/v2/orgs/{orgId}/invites", "2023-01-01", false, false,
	"orgs", ATLAS_ID_ORG, "2027-07-01",
	ORG_INVITES_SUCCESSOR},
	{ATLAS_OP_LIST_GROUP_INVITES, "list_project_invitations", NULL, "GET",
		"/api/atlas/v2/groups/{groupId}/invites", "2023-01-01", false, false,
	"invites", ATLAS_ID_GROUP, "2027-07-01",
	PROJECT_INVITES_SUCCESSOR},
	{ATLAS_OP_GET_FEDERATION, "get_federation_settings", NULL, "GET",
		"/api/atlas/v2/orgs/{orgId}/federationSettings", "2023-01-01", false, false,
	"orgs", ATLAS_ID_ORG, NULL, NULL},
	/* a federation's id travels as the call's group_id */
	{ATLAS_OP_GET_CONNECTED_ORG, "get_connected_org_config", NULL, "GET",
		"/api/atlas/v2/federationSettings/{federationSettingsId}/connectedOrgConfigs/{orgId}",
		"2023-01-01", false, false,
	"orgs", ATLAS_ID_ORG, NULL, NULL},
	{ATLAS_OP_LIST_ROLE_MAPPINGS, "list_role_mappings", NULL, "GET",
		"/api/atlas/v2/federationSettings/{federationSettingsId}/connectedOrgConfigs/{orgId}/roleMappings",
		"2023-01-01", false, false,
	"orgs", ATLAS_ID_ORG, NULL, NULL},
	{ATLAS_OP_LIST_RATE_LIMITS, "list_rate_limits", NULL, "GET",
		"/api/atlas/v2/rateLimits", "2025-03-12", false, false,
	"rate_limits", ATLAS_ID_USER, NULL, NULL},
	/* an invitation's id travels as the call's user_id (and in the audit) */
	{ATLAS_OP_DELETE_ORG_INVITE, "delete_org_invitation", NULL, "DELETE",
		"/api/atlas/v2/orgs/{orgId}/invites/{invitationId}", "2023-01-01", false, false,
	"orgs", ATLAS_ID_ORG, "2027-07-01",
	ORG_INVITES_SUCCESSOR},
	{ATLAS_OP_DELETE_GROUP_INVITE, "delete_project_invitation", NULL, "DELETE",
		"/api/atlas/v2/groups/{groupId}/invites/{invitationId}", "2023-01-01", false, false,
	"invites", ATLAS_ID_GROUP, "2027-07-01",
	PROJECT_INVITES_SUCCESSOR},
};

#define N_ENDPOINTS lengthof(endpoints)

/* the placeholders of the path templates, and the ids they stand for */
static const struct
{
	const char *placeholder;
	AtlasIdKind kind;
	const char *param;
}			id_names[] = {
	{"{orgId}", ATLAS_ID_ORG, "org_id"},
	{"{groupId}", ATLAS_ID_GROUP, "group_id"},
	{"{teamId}", ATLAS_ID_TEAM, "team_id"},
	{"{userId}", ATLAS_ID_USER, "user_id"},
	{"{invitationId}", ATLAS_ID_USER, "invitation_id"},	/* after the kinds */
	{"{federationSettingsId}", ATLAS_ID_GROUP, "federation_settings_id"},
};

/* The first endpoint of an operation. */
static const AtlasEndpoint *
first_endpoint(AtlasOperation op)
{
	int			i;

	for (i = 0; i < (int) N_ENDPOINTS; i++)
		if (endpoints[i].op == op)
			return &endpoints[i];
	elog(ERROR, "atlas_users: no endpoint for operation %d", (int) op);
	return NULL;				/* keep compiler quiet */
}

/* The name of an operation, in the audit and the queue. */
const char *
atlas_operation_name(AtlasOperation op)
{
	return first_endpoint(op)->name;
}

/* Does the operation change anything in Atlas? */
bool
atlas_operation_removes(AtlasOperation op)
{
	return strcmp(first_endpoint(op)->method, "GET") != 0;
}

/* Is it an operation of the legacy v1.0 API (digest keys only)? */
bool
atlas_operation_is_legacy(AtlasOperation op)
{
	return first_endpoint(op)->version == NULL;
}

/*
 * The removal operation of a name ("remove_org_user"), or, with
 * trigger_alias, of a trigger's short alias too ("org").  False when
 * there is none.
 */
bool
atlas_operation_lookup(const char *name, bool trigger_alias, AtlasOperation *op)
{
	int			i;

	for (i = 0; i < (int) N_ENDPOINTS; i++)
	{
		const AtlasEndpoint *ep = &endpoints[i];

		if (ep->alias == NULL)
			continue;
		if (strcmp(ep->name, name) == 0 ||
			(trigger_alias && strcmp(ep->alias, name) == 0))
		{
			*op = ep->op;
			return true;
		}
	}
	return false;
}

/* Like atlas_operation_lookup(), but an unknown name raises 22023. */
AtlasOperation
atlas_operation_from_name(const char *name, bool trigger_alias)
{
	AtlasOperation op;

	if (!atlas_operation_lookup(name, trigger_alias, &op))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown removal operation \"%s\"", name),
				 errhint(trigger_alias
						 ? "Use 'project', 'org' or 'team'."
						 : "Use remove_project_user, remove_org_user or remove_team_user.")));
	return op;
}

/* The id kind of the placeholder at p, or -1. */
static int
placeholder_at(const char *p, size_t *len)
{
	int			k;

	for (k = 0; k < (int) lengthof(id_names); k++)
	{
		*len = strlen(id_names[k].placeholder);
		if (strncmp(p, id_names[k].placeholder, *len) == 0)
			return k;
	}
	return -1;
}

/*
 * The ids an operation takes, in the order of its SQL arguments: the
 * placeholders of its path, then the user of a POST body.  Returns how
 * many.
 */
int
atlas_operation_ids(AtlasOperation op, AtlasIdKind *kinds)
{
	const AtlasEndpoint *ep = first_endpoint(op);
	const char *p;
	int			n = 0;
	bool		has_user = false;

	for (p = ep->route; *p; p++)
	{
		size_t		len;
		int			k = placeholder_at(p, &len);

		if (k < 0)
			continue;
		kinds[n++] = id_names[k].kind;
		has_user |= (id_names[k].kind == ATLAS_ID_USER);
		p += len - 1;
	}
	if (!has_user && strcmp(ep->method, "POST") == 0)
		kinds[n++] = ATLAS_ID_USER;
	return n;
}

/* The SQL parameter name of an id, e.g. "group_id". */
const char *
atlas_id_param_name(AtlasIdKind kind)
{
	return id_names[kind].param;
}

/* A call's value of an id. */
char *
atlas_call_id(AtlasCall *call, AtlasIdKind kind)
{
	switch (kind)
	{
		case ATLAS_ID_ORG:
			return call->org_id;
		case ATLAS_ID_GROUP:
			return call->group_id;
		case ATLAS_ID_TEAM:
			return call->team_id;
		case ATLAS_ID_USER:
			return call->user_id;
	}
	return NULL;
}

/* Put ids, indexed by AtlasIdKind (NULL where absent), on a call. */
void
atlas_call_set_ids(AtlasCall *call, char **ids)
{
	call->org_id = ids[ATLAS_ID_ORG];
	call->group_id = ids[ATLAS_ID_GROUP];
	call->team_id = ids[ATLAS_ID_TEAM];
	call->user_id = ids[ATLAS_ID_USER];
}

/*
 * The endpoint of an operation at a pinned version (NULL: none pinned):
 * a pin before 2025-02-19 selects the deprecated team endpoint.
 */
const AtlasEndpoint *
atlas_endpoint_for(AtlasOperation op, const char *pinned)
{
	bool		legacy = (pinned != NULL && strcmp(pinned, ATLAS_DEFAULT_API_VERSION) < 0);
	const AtlasEndpoint *first = NULL;
	int			i;

	for (i = 0; i < (int) N_ENDPOINTS; i++)
	{
		if (endpoints[i].op != op)
			continue;
		if (first == NULL)
			first = &endpoints[i];
		if (endpoints[i].legacy == legacy)
			return &endpoints[i];
	}
	Assert(first != NULL);
	return first;
}

/* The index of an endpoint in the table (for per-endpoint state). */
int
atlas_endpoint_index(const AtlasEndpoint *ep)
{
	return (int) (ep - endpoints);
}

/* The endpoint at an index of the table. */
const AtlasEndpoint *
atlas_endpoint_at(int i)
{
	Assert(i >= 0 && i < (int) N_ENDPOINTS);
	return &endpoints[i];
}

/* How many endpoints the table has. */
int
atlas_endpoint_count(void)
{
	return (int) N_ENDPOINTS;
}

/* Expand a path template with the call's ids (validated hex). */
char *
atlas_endpoint_path(const AtlasEndpoint *ep, AtlasCall *call)
{
	StringInfoData buf;
	const char *p = ep->route;

	initStringInfo(&buf);
	while (*p)
	{
		size_t		len;
		int			k = placeholder_at(p, &len);

		if (*p == '{' && k >= 0)
		{
			const char *value = atlas_call_id(call, id_names[k].kind);

			if (value == NULL || !atlas_is_id(value))
				elog(ERROR, "atlas_users: %s without a valid %s",
					 ep->name, id_names[k].param);
			appendStringInfoString(&buf, value);
			p += len;
		}
		else
			appendStringInfoChar(&buf, *p++);
	}
	return buf.data;
}

/* A new call of an operation, with no ids yet. */
AtlasCall *
atlas_call_new(AtlasOperation op)
{
	AtlasCall  *call = palloc0(sizeof(AtlasCall));

	call->op = op;
	call->answer.retry_after = -1;
	return call;
}

/* The audit name of an outcome: a removal's. */
const char *
atlas_outcome_name(AtlasOutcome outcome)
{
	switch (outcome)
	{
		case ATLAS_OUTCOME_SUCCEEDED:
			return "removed";
		case ATLAS_OUTCOME_ALREADY_ABSENT:
			return "already_absent";
		case ATLAS_OUTCOME_FAILED:
		case ATLAS_OUTCOME_NONE:
			break;
	}
	return "failed";
}
