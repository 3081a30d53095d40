/*-------------------------------------------------------------------------
 *
 * federation.c
 *	  Whether an organization signs people in through an identity
 *	  provider, and the role mappings by which that provider grants Atlas
 *	  roles.
 *
 * GET /orgs/{orgId}/federationSettings answers 200 for every
 * organization, also one without an identity provider
 * (identityProviderStatus INACTIVE, identityProviderId null): only ACTIVE
 * with an identityProviderId is federation.  Where it is, the connected
 * organization configuration (GET /federationSettings/{id}/
 * connectedOrgConfigs/{orgId}) says which IdP groups grant roles in the
 * organization or its projects (its roleMappings: externalGroupName ->
 * roleAssignments) and what every person signed in gets
 * (postAuthRoleGrants).  Atlas applies them at every SSO
 * login, so a person removed in Atlas but still in such a group comes
 * back.  Offboarding names those groups (offboard_facts.c);
 * atlas_org_role_mappings(org_id) lists the mappings (.../roleMappings).
 *
 *-------------------------------------------------------------------------
 */
#include "functions/functions.h"
#include "functions/listings.h"
#include "functions/offboard.h"

#include "lib/stringinfo.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(atlas_org_role_mappings);

/* what an item function collects: the groups that grant roles here */
typedef struct Groups
{
	const char *org_id;
	List	   *names;
} Groups;

/*
 * Read an organization's federation settings.  fed->known is false when
 * Atlas would not say (fed->problem says why: a 403, say).
 */
void
atlas_federation_read(const char *org_id, AtlasTarget *target, AtlasFederation *fed)
{
	AtlasCall  *call = atlas_call_new(ATLAS_OP_GET_FEDERATION);
	AtlasRunSpec spec = atlas_session_spec(NULL);
	cJSON	   *json;
	const char *status;
	const char *idp;
	const char *id;

	memset(fed, 0, sizeof(AtlasFederation));
	call->target = target;
	call->org_id = (char *) org_id;
	call->keep_body = true;
	spec.concurrency = 1;
	atlas_execute(&call, 1, &spec);
	fed->call = call;
	if (call->outcome != ATLAS_OUTCOME_SUCCEEDED)
	{
		char	   *detail = atlas_call_detail(call);

		fed->problem = psprintf("%s%s%s", atlas_call_message(call),
								detail ? ": " : "", detail ? detail : "");
		return;
	}
	json = cJSON_ParseWithLength(call->body, call->body_len);
	if (!cJSON_IsObject(json))
	{
		cJSON_Delete(json);
		fed->problem = "the answer was not an OrgFederationSettings object";
		return;
	}
	status = atlas_json_string(json, "identityProviderStatus");
	idp = atlas_json_string(json, "identityProviderId");
	id = atlas_json_string(json, "id");
	fed->known = true;
	fed->active = (status != NULL && strcmp(status, "ACTIVE") == 0 && idp != NULL && idp[0]);
	fed->idp_id = idp ? atlas_clean_text(idp, strlen(idp), 64) : NULL;
	fed->settings_id = (id != NULL && atlas_is_id(id)) ? pstrdup(id) : NULL;
	cJSON_Delete(json);
}

/* Item: a role mapping; its group is kept if it grants a role here. */
static void
mapping_item(const cJSON *item, void *arg)
{
	Groups	   *g = (Groups *) arg;
	const char *name = atlas_json_string(item, "externalGroupName");
	const cJSON *ra;
	bool		grants = false;

	if (name == NULL)
		return;
	cJSON_ArrayForEach(ra, cJSON_GetObjectItemCaseSensitive(item, "roleAssignments"))
	{
		const char *org = atlas_json_string(ra, "orgId");
		const char *group = atlas_json_string(ra, "groupId");

		/* the connected configuration is this organization's: its projects' */
		grants |= (org != NULL && strcmp(org, g->org_id) == 0) || group != NULL;
	}
	name = atlas_clean_text(name, strlen(name), 256);
	if (grants && !atlas_string_listed(g->names, name))
		g->names = lappend(g->names, (char *) name);
}

/* The strings of a JSON array, comma-separated and cleaned; NULL when none. */
static char *
joined(const cJSON *arr)
{
	StringInfoData buf;
	const cJSON *v;

	initStringInfo(&buf);
	cJSON_ArrayForEach(v, arr)
		if (cJSON_IsString(v))
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "",
						 atlas_clean_text(v->valuestring, strlen(v->valuestring), 64));
	return buf.len ? buf.data : NULL;
}

/*
 * What an ACTIVE identity provider grants here, from the connected
 * organization configuration: the IdP groups whose role mappings grant
 * roles in the organization or its projects, and the roles every person
 * it signs in gets (postAuthRoleGrants, into *post_auth; NULL: none).
 * NIL with *problem set when Atlas would not say.
 */
List *
atlas_federation_groups(const char *org_id, AtlasTarget *target, const AtlasFederation *fed,
						char **problem, char **post_auth)
{
	AtlasCall  *call = atlas_call_new(ATLAS_OP_GET_CONNECTED_ORG);
	AtlasRunSpec spec = atlas_session_spec(NULL);
	const cJSON *m;
	cJSON	   *json;
	Groups		g;

	*problem = NULL;
	*post_auth = NULL;
	if (fed->settings_id == NULL)
	{
		*problem = "Atlas named no federation settings id";
		return NIL;
	}
	call->target = target;
	call->org_id = (char *) org_id;
	call->group_id = fed->settings_id;	/* the federation's id travels as group_id */
	call->keep_body = true;
	spec.concurrency = 1;
	atlas_execute(&call, 1, &spec);
	if (call->outcome != ATLAS_OUTCOME_SUCCEEDED)
	{
		*problem = atlas_call_message(call);
		return NIL;
	}
	json = cJSON_ParseWithLength(call->body, call->body_len);
	if (!cJSON_IsObject(json))
	{
		cJSON_Delete(json);
		*problem = "the answer was not a ConnectedOrgConfig object";
		return NIL;
	}
	memset(&g, 0, sizeof(g));
	g.org_id = org_id;
	cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(json, "roleMappings"))
		mapping_item(m, &g);
	*post_auth = joined(cJSON_GetObjectItemCaseSensitive(json, "postAuthRoleGrants"));
	cJSON_Delete(json);
	return g.names;
}

/* the columns of atlas_org_role_mappings() */
static const Column mapping_cols[] = {
	{"id", COL_TEXT, NULL, 0}, {"externalGroupName", COL_TEXT, NULL, 0},
	{"roleAssignments", COL_TEXT_ARRAY, "role", 0},
	{"roleAssignments", COL_TEXT_ARRAY, "orgId", 0},
	{"roleAssignments", COL_TEXT_ARRAY, "groupId", 0},
	{NULL, COL_RAW, NULL, 0},
};

/* atlas_org_role_mappings(org_id): the role mappings of its identity provider */
Datum
atlas_org_role_mappings(PG_FUNCTION_ARGS)
{
	char	   *org_id = atlas_id_arg(fcinfo, 0, "org_id");
	Sink	   *sink = atlas_rows_start(fcinfo, mapping_cols, lengthof(mapping_cols));
	AtlasFederation fed;

	atlas_federation_read(org_id, NULL, &fed);
	if (!fed.known && fed.call->outcome != ATLAS_OUTCOME_SUCCEEDED)
		atlas_raise_call_error(fed.call);
	if (!fed.known)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("unexpected answer from Atlas: %s", fed.problem),
				 errcontext("Atlas API request GET /api/atlas/v2/orgs/%s/federationSettings",
							org_id)));
	if (!fed.active)
	{
		ereport(NOTICE,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("organization %s signs no one in through an identity provider", org_id),
				 errdetail("Its federation settings are INACTIVE or name no identity provider, so Atlas applies no role mappings.")));
		return (Datum) 0;
	}
	if (fed.settings_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("unexpected answer from Atlas: federation settings without an id")));
	atlas_rows_list_into(sink, ATLAS_OP_LIST_ROLE_MAPPINGS, NULL, org_id, fed.settings_id,
						 NULL, NULL, NULL, "atlas_org_role_mappings");
	return (Datum) 0;
}
