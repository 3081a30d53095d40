/*-------------------------------------------------------------------------
 *
 * atlas_api.c
 *	  The Atlas endpoint table and the call engine.
 *
 * The endpoint table says, for each operation, the method, the path
 * template and the resource version.  The call engine runs a set of
 * AtlasCalls through the transport (http.c), up to a concurrency: it
 * chooses the endpoint and version, adds the credentials, fetches a
 * service-account token first when none is cached, renews it once when
 * Atlas rejects it with a 401, retries 429 and 503 answers up to a limit,
 * and sorts each answer into removed, already absent or failed.  It never
 * raises for an Atlas answer: the caller decides what a failure means.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas_users.h"

#include <cjson/cJSON.h>

#include "common/pg_prng.h"
#include "lib/stringinfo.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

typedef struct AtlasEndpoint
{
	AtlasOperation op;
	const char *operation;		/* name in the audit table */
	const char *method;
	const char *route;			/* path template */
	const char *version;		/* resource version; NULL for v1.0 */
	bool		pinnable;		/* follows atlas_users.api_version */
	bool		legacy;			/* used only with a pinned old version */
} AtlasEndpoint;

/*
 * Removals follow a pinned atlas_users.api_version.  Reads are parsed,
 * so they always use the version whose answer shape we know.
 */
static const AtlasEndpoint endpoints[] = {
	{ATLAS_OP_REMOVE_PROJECT_USER, "remove_project_user", "DELETE",
	"/api/atlas/v2/groups/{groupId}/users/{userId}", "2025-02-19", true, false},
	{ATLAS_OP_REMOVE_ORG_USER, "remove_org_user", "DELETE",
	"/api/atlas/v2/orgs/{orgId}/users/{userId}", "2025-02-19", true, false},
	{ATLAS_OP_REMOVE_TEAM_USER, "remove_team_user", "POST",
	"/api/atlas/v2/orgs/{orgId}/teams/{teamId}:removeUser", "2025-02-19", true, false},
	{ATLAS_OP_REMOVE_TEAM_USER, "remove_team_user", "DELETE",
	"/api/atlas/v2/orgs/{orgId}/teams/{teamId}/users/{userId}", "2023-01-01", true, true},
	{ATLAS_OP_REMOVE_PROJECT_USER_V1, "remove_project_user_v1", "DELETE",
	"/api/atlas/v1.0/groups/{groupId}/users/{userId}", NULL, false, false},
	{ATLAS_OP_LIST_ORG_USERS, "list_org_users", "GET",
	"/api/atlas/v2/orgs/{orgId}/users", "2025-02-19", false, false},
	{ATLAS_OP_GET_ORG_USER, "get_org_user", "GET",
	"/api/atlas/v2/orgs/{orgId}/users/{userId}", "2025-02-19", false, false},
	{ATLAS_OP_LIST_GROUP_USERS, "list_project_users", "GET",
	"/api/atlas/v2/groups/{groupId}/users", "2025-02-19", false, false},
	{ATLAS_OP_GET_ORG, "get_org", "GET",
	"/api/atlas/v2/orgs/{orgId}", "2023-01-01", false, false},
	{ATLAS_OP_GET_GROUP, "get_project", "GET",
	"/api/atlas/v2/groups/{groupId}", "2023-01-01", false, false},
	{ATLAS_OP_LIST_TEAMS, "list_teams", "GET",
	"/api/atlas/v2/orgs/{orgId}/teams", "2023-01-01", false, false},
};

#define N_ENDPOINTS lengthof(endpoints)

/* endpoints whose deprecation we already warned of in this session */
static bool deprecation_warned[N_ENDPOINTS];
static bool old_version_warned = false;

/* base_url without a trailing slash; the result is palloc'd */
const char *
atlas_base_url_trimmed(void)
{
	char	   *url = pstrdup(atlas_base_url);
	size_t		len = strlen(url);

	while (len > 0 && url[len - 1] == '/')
		url[--len] = '\0';
	return url;
}

/* host[:port] of base_url, for messages; never holds credentials */
const char *
atlas_base_host(void)
{
	CURLU	   *u = curl_url();
	char	   *host = NULL;
	char	   *port = NULL;
	char	   *result;

	if (u == NULL || curl_url_set(u, CURLUPART_URL, atlas_base_url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		result = pstrdup("the configured atlas_users.base_url");
	else if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK)
		result = psprintf("%s:%s", host, port);
	else
		result = pstrdup(host);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return result;
}

/* A new call of an operation, with no ids yet. */
AtlasCall *
atlas_call_new(AtlasOperation op)
{
	AtlasCall  *call = palloc0(sizeof(AtlasCall));

	call->op = op;
	call->retry_after = -1;
	return call;
}

/* The audit name of an operation, from the endpoint table. */
const char *
atlas_operation_name(AtlasOperation op)
{
	int			i;

	for (i = 0; i < (int) N_ENDPOINTS; i++)
		if (endpoints[i].op == op)
			return endpoints[i].operation;
	return "unknown";
}

/* The audit name of an outcome. */
const char *
atlas_outcome_name(AtlasOutcome outcome)
{
	switch (outcome)
	{
		case ATLAS_OUTCOME_REMOVED:
			return "removed";
		case ATLAS_OUTCOME_ALREADY_ABSENT:
			return "already_absent";
		case ATLAS_OUTCOME_FAILED:
			return "failed";
		case ATLAS_OUTCOME_NONE:
			break;
	}
	return "failed";
}

/* Expand a path template with the call's ids (already validated hex). */
static char *
expand_route(const char *route, AtlasCall *call)
{
	StringInfoData buf;
	const char *p = route;

	initStringInfo(&buf);
	while (*p)
	{
		const char *value = NULL;
		size_t		skip = 0;

		if (*p == '{')
		{
			if (strncmp(p, "{groupId}", 9) == 0)
				value = call->group_id, skip = 9;
			else if (strncmp(p, "{orgId}", 7) == 0)
				value = call->org_id, skip = 7;
			else if (strncmp(p, "{teamId}", 8) == 0)
				value = call->team_id, skip = 8;
			else if (strncmp(p, "{userId}", 8) == 0)
				value = call->user_id, skip = 8;
		}
		if (skip > 0)
		{
			Assert(value != NULL && atlas_is_atlas_id(value));
			appendStringInfoString(&buf, value);
			p += skip;
		}
		else
			appendStringInfoChar(&buf, *p++);
	}
	return buf.data;
}

/* Find the endpoint for an operation at a pinned version (NULL: none). */
static int
endpoint_for(AtlasOperation op, const char *pinned)
{
	bool		legacy = (op == ATLAS_OP_REMOVE_TEAM_USER && pinned != NULL &&
						   strcmp(pinned, ATLAS_DEFAULT_API_VERSION) < 0);
	int			i;

	for (i = 0; i < (int) N_ENDPOINTS; i++)
		if (endpoints[i].op == op && endpoints[i].legacy == legacy)
			return i;
	elog(ERROR, "no endpoint for operation %d", (int) op);
	return -1;					/* keep compiler quiet */
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

typedef struct CallEngine
{
	AtlasCall **calls;
	int			ncalls;
	int			next_new;		/* first call never started */
	AtlasCall **retry;			/* calls waiting to go again */
	int			nretry;
	AtlasAuth  *auth;
	int			max_retries;
	const char *base;
	const char *accept_version; /* the version of the shared Accept header */
	char	   *accept;			/* Accept header of most calls */
	const char *progress_label; /* NOTICE progress under this name, if set */
	TimestampTz last_progress;
	int			nfinished;
	HttpRequest token_req;
	bool		token_in_flight;
	int			token_attempts;
	TimestampTz token_not_before;	/* a token retry waits until then */
	AtlasCall  *token_error;	/* set when the token request failed for good */
	uint64		token_generation;	/* of the token handed out last */
} CallEngine;

/* Fill in a call's endpoint, version, URL and fixed headers. */
static void
prepare_call(CallEngine *e, AtlasCall *call)
{
	const char *pinned = (atlas_api_version && atlas_api_version[0]) ? atlas_api_version : NULL;
	const char *version;
	const AtlasEndpoint *ep;
	HttpRequest *req = &call->req;

	call->endpoint_index = endpoint_for(call->op, pinned);
	ep = &endpoints[call->endpoint_index];
	version = (ep->pinnable && pinned) ? pinned : ep->version;

	call->operation = ep->operation;
	call->endpoint = psprintf("%s %s", ep->method, ep->route);
	call->api_version = version ? version : "v1.0";
	call->auth_method = (e->auth->method == ATLAS_AUTH_DIGEST) ? "digest" : "service_account";

	memset(req, 0, sizeof(HttpRequest));
	req->method = ep->method;
	req->path = expand_route(ep->route, call);
	req->url = psprintf("%s%s%s%s", e->base, req->path,
						call->query ? "?" : "", call->query ? call->query : "");
	if (version == NULL)
		req->accept = "application/json";
	else if (strcmp(version, e->accept_version) == 0)
		req->accept = e->accept;
	else
		req->accept = psprintf("application/vnd.atlas.%s+json", version);
	if (strcmp(ep->method, "POST") == 0)
	{
		req->body = user_id_body(call->user_id);
		req->content_type = req->accept;
	}
	http_reset_request(req);
}

/* Mark a call finished with an outcome. */
static void
finish_call(AtlasCall *call, AtlasOutcome outcome)
{
	call->outcome = outcome;
	call->finished = true;
	call->duration_ms = (double) (GetCurrentTimestamp() - call->started_at) / 1000.0;
}

/* On long runs, say every 10 seconds how far the engine got. */
static void
report_progress(CallEngine *e)
{
	TimestampTz now;

	e->nfinished++;
	if (e->progress_label == NULL)
		return;
	now = GetCurrentTimestamp();
	if (TimestampDifferenceExceeds(e->last_progress, now, 10000))
	{
		e->last_progress = now;
		ereport(NOTICE,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("%s: %d of %d done", e->progress_label, e->nfinished, e->ncalls)));
	}
}

/* Give a call the failure of the token request. */
static void
fail_with_token_error(CallEngine *e, AtlasCall *call)
{
	AtlasCall  *t = e->token_error;

	call->http_status = t->http_status;
	call->error_code = t->error_code;
	call->detail = t->detail;
	call->excerpt = t->excerpt;
	call->transport_failed = t->transport_failed;
	call->token_failed = true;
	call->retry_after = t->retry_after;
	if (call->started_at == 0)
		call->started_at = GetCurrentTimestamp();
	finish_call(call, ATLAS_OUTCOME_FAILED);
}

/* Warn, once per session and endpoint, of a Deprecation or Sunset header. */
static void
warn_deprecated(AtlasCall *call)
{
	HttpRequest *req = &call->req;

	if ((req->deprecation[0] == '\0' && req->sunset[0] == '\0') ||
		deprecation_warned[call->endpoint_index])
		return;
	deprecation_warned[call->endpoint_index] = true;
	ereport(WARNING,
			(errcode(ERRCODE_WARNING_DEPRECATED_FEATURE),
			 errmsg("Atlas endpoint %s is deprecated%s%s",
					call->endpoint,
					req->sunset[0] ? " and will be removed on " : "",
					req->sunset[0] ? atlas_clean_text(req->sunset, strlen(req->sunset), 60) : ""),
			 req->deprecation[0]
			 ? errdetail("Atlas sent Deprecation: %s, at resource version %s.",
						 atlas_clean_text(req->deprecation, strlen(req->deprecation), 60),
						 call->api_version)
			 : 0,
			 errhint("Reset atlas_users.api_version to use the current version of this endpoint.")));
}

/* Delay before retry number n (1-based): Retry-After, or backoff with jitter. */
static int64
retry_delay_ms(AtlasCall *call, int n)
{
	double		base;

	if (call->retry_after >= 0)
		return (int64) call->retry_after * 1000;
	base = 1000.0 * (1 << Min(n - 1, 6));
	return (int64) (base * (0.8 + 0.4 * pg_prng_double(&pg_global_prng_state)));
}

/* Driver callback: the next request to start, if any is ready. */
static HttpRequest *
engine_next(void *arg, int in_flight pg_attribute_unused(), long *wait_ms)
{
	CallEngine *e = (CallEngine *) arg;
	AtlasCall  *call = NULL;
	const char *token = NULL;
	TimestampTz now;
	int			i;

	*wait_ms = -1;

	if (e->auth->method == ATLAS_AUTH_SERVICE_ACCOUNT)
	{
		token = atlas_auth_cached_token(e->auth, &e->token_generation);
		if (token == NULL)
		{
			if (e->token_in_flight)
				return NULL;
			if (e->token_error == NULL)
			{
				TimestampTz now = GetCurrentTimestamp();

				if (e->token_not_before > now)
				{
					*wait_ms = Max(1, (long) ((e->token_not_before - now) / 1000));
					return NULL;
				}
				atlas_auth_prepare_token_request(e->auth, &e->token_req);
				e->token_in_flight = true;
				e->token_attempts++;
				return &e->token_req;
			}
			/* no token to be had: every call still waiting fails with it */
			while (e->next_new < e->ncalls)
				fail_with_token_error(e, e->calls[e->next_new++]);
			for (i = 0; i < e->nretry; i++)
				fail_with_token_error(e, e->retry[i]);
			e->nretry = 0;
			return NULL;
		}
	}

	now = GetCurrentTimestamp();
	for (i = 0; i < e->nretry; i++)
	{
		if (e->retry[i]->not_before <= now)
		{
			call = e->retry[i];
			e->retry[i] = e->retry[--e->nretry];
			break;
		}
	}
	if (call == NULL && e->next_new < e->ncalls)
		call = e->calls[e->next_new++];
	if (call == NULL)
	{
		for (i = 0; i < e->nretry; i++)
		{
			long		ms = (long) ((e->retry[i]->not_before - now) / 1000);

			if (*wait_ms < 0 || ms < *wait_ms)
				*wait_ms = Max(ms, 1);
		}
		return NULL;
	}

	if (call->started_at == 0)
		call->started_at = now;
	if (token != NULL)
	{
		call->req.auth = HTTP_AUTH_BEARER;
		call->req.bearer = token;
		call->token_generation = e->token_generation;
	}
	else
	{
		call->req.auth = HTTP_AUTH_DIGEST;
		call->req.username = e->auth->username;
		call->req.password = e->auth->secret;
	}
	return &call->req;
}

static void engine_sort_answer(CallEngine *e, AtlasCall *call, HttpRequest *req,
							   bool answered);

/*
 * Did Atlas answer?  libcurl keeps the last status line it saw (a digest
 * challenge's 401, say) even when the transfer then failed, so a status
 * counts only if the transfer completed, or its body was cut at our cap.
 * A 2xx to a removal counts even when the body broke off: Atlas acted.
 */
static bool
http_answered(HttpRequest *req)
{
	if (req->status < 100)
		return false;
	if (req->curl_code == CURLE_OK || req->response_truncated)
		return true;
	return req->status >= 200 && req->status < 300 && strcmp(req->method, "GET") != 0;
}

/* Driver callback: sort a finished request's answer. */
static void
engine_done(void *arg, HttpRequest *req)
{
	CallEngine *e = (CallEngine *) arg;
	AtlasCall  *call;
	bool		answered;

	if (req == &e->token_req)
	{
		char	   *problem = NULL;

		answered = http_answered(req);
		e->token_in_flight = false;
		if (atlas_auth_accept_token(e->auth, req, &problem))
			return;
		if ((req->status == 429 || req->status == 503) && e->token_attempts <= e->max_retries)
		{
			/* the token endpoint is rate-limited too: wait as it says */
			AtlasCall	tmp;

			memset(&tmp, 0, sizeof(tmp));
			tmp.retry_after = req->retry_after;
			e->token_not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															  retry_delay_ms(&tmp, e->token_attempts));
			return;
		}
		e->token_error = atlas_call_new(ATLAS_OP_REMOVE_PROJECT_USER);
		e->token_error->req.method = "POST";
		e->token_error->req.path = "/api/oauth/token";
		if (!answered)
		{
			e->token_error->transport_failed = true;
			e->token_error->detail = atlas_clean_text(req->curl_error, strlen(req->curl_error), 500);
		}
		else if (problem != NULL)
		{
			e->token_error->http_status = req->status;
			e->token_error->detail = pstrdup(problem);
		}
		else
			atlas_parse_api_error(e->token_error, req);
		return;
	}

	call = (AtlasCall *) ((char *) req - offsetof(AtlasCall, req));
	engine_sort_answer(e, call, req, http_answered(req));
	if (call->finished)
		report_progress(e);
}

/* Sort one call's answer: finished with an outcome, or queued to go again. */
static void
engine_sort_answer(CallEngine *e, AtlasCall *call, HttpRequest *req, bool answered)
{
	call->attempts++;
	call->http_status = req->status;
	warn_deprecated(call);

	if (!answered)
	{
		call->http_status = 0;
		call->transport_failed = true;
		call->detail = atlas_clean_text(req->curl_error, strlen(req->curl_error), 500);
		finish_call(call, ATLAS_OUTCOME_FAILED);
		return;
	}
	call->transport_failed = false;
	call->error_code = NULL;
	call->detail = NULL;
	call->excerpt = NULL;

	if (req->status >= 200 && req->status < 300 && req->response_truncated &&
		strcmp(req->method, "GET") == 0)
	{
		/* a read whose answer we could not hold: not usable */
		call->excerpt = psprintf("The response exceeded the %d byte limit and was not read.",
								 ATLAS_MAX_RESPONSE_BYTES);
		finish_call(call, ATLAS_OUTCOME_FAILED);
		return;
	}
	if (req->status >= 200 && req->status < 300)
	{
		/* Atlas did it, even if the rest of the body was cut short */
		finish_call(call, ATLAS_OUTCOME_REMOVED);
		return;
	}
	if (req->status == 401 && req->auth == HTTP_AUTH_BEARER && !call->reauthed)
	{
		/* the token expired or was revoked early: renew it once */
		call->reauthed = true;
		atlas_auth_forget_token(call->token_generation);
		call->not_before = 0;
		e->retry[e->nretry++] = call;
		return;
	}

	atlas_parse_api_error(call, req);
	if ((req->status == 429 || req->status == 503) &&
		call->attempts <= e->max_retries)
	{
		call->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   retry_delay_ms(call, call->attempts));
		e->retry[e->nretry++] = call;
		return;
	}
	if (call->missing_ok && atlas_is_user_absent(call))
		finish_call(call, ATLAS_OUTCOME_ALREADY_ABSENT);
	else
		finish_call(call, ATLAS_OUTCOME_FAILED);
}

/*
 * Run calls, at most concurrency at a time, retrying 429 and 503 up to
 * max_retries times each.  Every call ends with an outcome; this raises
 * only for configuration errors (before any request) and interrupts.
 */
void
atlas_run_calls(AtlasCall **calls, int ncalls, int concurrency, int max_retries,
				const char *progress_label)
{
	CallEngine	e;
	HttpDriver	driver;
	int			i;
	bool		any_v2 = false;
	bool		any_pinnable = false;

	if (ncalls <= 0)
		return;

	memset(&e, 0, sizeof(e));
	e.calls = calls;
	e.ncalls = ncalls;
	e.retry = palloc(sizeof(AtlasCall *) * ncalls);
	e.max_retries = max_retries;
	e.base = atlas_base_url_trimmed();
	e.progress_label = progress_label;
	e.last_progress = GetCurrentTimestamp();

	for (i = 0; i < ncalls; i++)
		if (calls[i]->op != ATLAS_OP_REMOVE_PROJECT_USER_V1)
			any_v2 = true;
	e.auth = atlas_auth_resolve(!any_v2);
	e.accept_version = (atlas_api_version && atlas_api_version[0])
		? atlas_api_version : ATLAS_DEFAULT_API_VERSION;
	e.accept = psprintf("application/vnd.atlas.%s+json", e.accept_version);

	for (i = 0; i < ncalls; i++)
		if (endpoints[endpoint_for(calls[i]->op, NULL)].pinnable)
			any_pinnable = true;
	if (any_pinnable && atlas_api_version && atlas_api_version[0] &&
		strcmp(atlas_api_version, ATLAS_DEFAULT_API_VERSION) < 0 && !old_version_warned)
	{
		old_version_warned = true;
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("atlas_users.api_version %s cannot remove pending (invited) users",
						atlas_api_version),
				 errdetail("Only resource version %s and later remove users whose invitation is pending.",
						   ATLAS_DEFAULT_API_VERSION),
				 errhint("Reset atlas_users.api_version to use %s.", ATLAS_DEFAULT_API_VERSION)));
	}

	for (i = 0; i < ncalls; i++)
	{
		if (calls[i]->op == ATLAS_OP_REMOVE_PROJECT_USER_V1 && e.auth->method != ATLAS_AUTH_DIGEST)
			(void) atlas_auth_resolve(true);	/* raises the right error */
		prepare_call(&e, calls[i]);
	}

	driver.next = engine_next;
	driver.done = engine_done;
	driver.arg = &e;
	driver.concurrency = concurrency;
	http_run(&driver);

	/* calls that never got a token (the loop ended on the token failure) */
	for (i = 0; i < ncalls; i++)
		if (!calls[i]->finished)
		{
			if (e.token_error)
				fail_with_token_error(&e, calls[i]);
			else
				elog(ERROR, "atlas_users: call %d did not finish", i);
		}

	if (e.auth->secret)
	{
		explicit_bzero(e.auth->secret, strlen(e.auth->secret));
		pfree(e.auth->secret);
	}
}
