/*-------------------------------------------------------------------------
 *
 * prepare.c
 *	  What a call of a run sends: the target it resolves to (once per run,
 *	  organization and role), its endpoint and version, its URL, headers
 *	  and body, and the credentials or token it goes with; and the wiping
 *	  of the run's secrets when it ends.
 *
 *-------------------------------------------------------------------------
 */
#include "executor/executor_int.h"

#include <cjson/cJSON.h>

#include "miscadmin.h"
#include "utils/memutils.h"

static bool old_version_warned = false;

/* The run's state of a target, made on first use. */
static TargetState *
target_state(AtlasRun *run, AtlasTarget *target)
{
	return (TargetState *) atlas_list_entry(&run->targets, run->cxt, sizeof(TargetState),
											offsetof(TargetState, target),
											&target, sizeof(AtlasTarget *));
}

/* a target the run resolved, for the calls of an organization and role */
typedef struct ResolvedTarget
{
	char	   *org_id;			/* NULL: calls with no organization */
	Oid			role;
	bool		digest_only;
	AtlasTarget *target;
} ResolvedTarget;

/*
 * The target of a call: its own, or the one its organization and role
 * resolve to (servers.c), once per run; this raises before any request
 * when the role may not use it or has no usable credentials.
 */
AtlasTarget *
atlas_call_target(AtlasRun *run, AtlasCall *call)
{
	bool		digest_only = atlas_operation_is_legacy(call->op);
	Oid			role = OidIsValid(call->role) ? call->role : GetUserId();
	ResolvedTarget *r;
	MemoryContext old;
	ListCell   *lc;

	if (call->target != NULL)
	{
		if (digest_only && call->target->method != ATLAS_AUTH_DIGEST)
			(void) atlas_target_from_settings(true);	/* raises the right error */
		return call->target;
	}
	foreach(lc, run->resolved)
	{
		r = (ResolvedTarget *) lfirst(lc);
		if (r->role == role && r->digest_only == digest_only &&
			(r->org_id == NULL ? call->org_id == NULL
			 : call->org_id != NULL && strcmp(r->org_id, call->org_id) == 0))
			return r->target;
	}
	old = MemoryContextSwitchTo(run->cxt);
	r = palloc0(sizeof(ResolvedTarget));
	r->org_id = call->org_id ? pstrdup(call->org_id) : NULL;
	r->role = role;
	r->digest_only = digest_only;
	r->target = atlas_target_for(call->org_id, role, digest_only);
	run->resolved = lappend(run->resolved, r);
	MemoryContextSwitchTo(old);
	return r->target;
}

/* Warn, once per session, that a pinned old version cannot remove pending users. */
static void
warn_old_version(const AtlasTarget *target)
{
	if (old_version_warned || target->api_version == NULL ||
		strcmp(target->api_version, ATLAS_DEFAULT_API_VERSION) >= 0)
		return;
	old_version_warned = true;
	ereport(WARNING,
			(errcode(ERRCODE_WARNING),
			 errmsg("atlas_users.api_version %s cannot remove pending (invited) users",
					target->api_version),
			 errdetail("Only resource version %s and later remove users whose invitation is pending.",
					   ATLAS_DEFAULT_API_VERSION),
			 errhint("Reset atlas_users.api_version to use %s.", ATLAS_DEFAULT_API_VERSION)));
}

/* The JSON body {"id": user_id}, palloc'd. */
static char *
user_id_body(const char *user_id)
{
	cJSON	   *obj = cJSON_CreateObject();
	char	   *text = NULL;
	char	   *result;

	if (obj == NULL || cJSON_AddStringToObject(obj, "id", user_id) == NULL ||
		(text = cJSON_PrintUnformatted(obj)) == NULL)
	{
		cJSON_Delete(obj);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	}
	result = pstrdup(text);
	cJSON_free(text);
	cJSON_Delete(obj);
	return result;
}

/* Fill in a call's endpoint, version, URL, headers and credentials. */
void
atlas_prepare_call(AtlasRun *run, AtlasCall *call, AtlasTarget *target)
{
	AtlasCallState *st = call->state;
	HttpRequest *req = &st->req;
	const AtlasEndpoint *ep = atlas_endpoint_for(call->op, target->api_version);
	const char *version = (ep->pinnable && target->api_version) ? target->api_version : ep->version;
	const char *scope;

	st->endpoint = ep;
	st->ts = target_state(run, target);
	scope = (ep->rate_scope == ATLAS_ID_USER) ? NULL : atlas_call_id(call, ep->rate_scope);
	if (!atlas_rate_set_key(target, ep, call, &st->pace))
		atlas_pace_key(&st->pace, target->host, ep->rate_set, scope ? scope : "");
	call->method = ep->method;
	call->path = atlas_endpoint_path(ep, call);
	call->api_version = version ? version : "v1.0";
	call->auth_method = (target->method == ATLAS_AUTH_DIGEST) ? "digest" : "service_account";
	call->server = target->server;
	call->server_oid = target->server ? target->server_oid : InvalidOid;
	call->host = target->host;
	if (ep->pinnable && atlas_operation_removes(call->op))
		warn_old_version(target);

	req->method = ep->method;
	req->url = psprintf("%s%s%s%s", target->base_url, call->path,
						call->query ? "?" : "", call->query ? call->query : "");
	req->accept = version ? psprintf("application/vnd.atlas.%s+json", version) : "application/json";
	if (strcmp(ep->method, "POST") == 0)
	{
		req->body = user_id_body(call->user_id);
		req->content_type = req->accept;
	}
	req->large_response = call->keep_body;	/* a list page may be large */
	req->ca_file = target->ca_file;
	atlas_target_proxy_request(target, req);
	req->timeout_ms = target->timeout_ms;
	req->connect_timeout_ms = target->connect_timeout_ms;
	req->handle_key = target->credentials_key;
	if (target->method == ATLAS_AUTH_DIGEST)
	{
		req->auth = HTTP_AUTH_DIGEST;
		req->username = target->username;
		req->password = target->secret;
	}
	else
	{
		req->auth = HTTP_AUTH_BEARER;
		req->bearer = st->ts->token;
	}
	http_prepare(req);
}

/* Wipe the run's secrets: tokens and the settings' secrets. */
void
atlas_run_wipe_secrets(AtlasRun *run)
{
	ListCell   *lc;

	foreach(lc, run->targets)
		explicit_bzero(((TargetState *) lfirst(lc))->token, ATLAS_TOKEN_MAX + 1);
	foreach(lc, run->resolved)
		atlas_target_wipe(((ResolvedTarget *) lfirst(lc))->target);
}
