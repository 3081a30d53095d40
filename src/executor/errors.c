/*-------------------------------------------------------------------------
 *
 * errors.c
 *	  Failed calls as SQL errors and result rows.
 *
 * A failed call raises an ERROR whose message carries the HTTP status and
 * Atlas's errorCode, whose detail carries Atlas's detail, with a hint that
 * fits the call (a removal, a read, or the token request) and a context
 * naming the request.  A listing that ended early (too many pages, too
 * slow, not a list) raises here too, before its failed page's error.
 * Atlas's text is built outside the ereport, so it
 * goes through errmsg_internal/errdetail_internal, as postgres_fdw does
 * with remote messages; it was cleaned (control characters, invalid
 * UTF-8) and capped when the answer was read (atlas_clean_text(),
 * untrusted.c).  Nothing here ever sees a
 * secret.  atlas_try_subxact() runs a step whose error must not end the
 * statement (one queued row's, a health check's target) in a
 * subtransaction, and hands the error back, a cancel excepted.
 *
 *-------------------------------------------------------------------------
 */
#include "executor/run.h"
#include "transport/http.h"

#include "access/xact.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/resowner.h"

/* The SQLSTATE for an HTTP status; see the README's error table. */
int
atlas_status_sqlstate(long status)
{
	switch (status)
	{
		case 400:
			return ERRCODE_INVALID_PARAMETER_VALUE;
		case 401:
			return ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
		case 403:
			return ERRCODE_INSUFFICIENT_PRIVILEGE;
		case 404:
			return ERRCODE_UNDEFINED_OBJECT;
		case 406:
		case 410:
			return ERRCODE_FEATURE_NOT_SUPPORTED;
		case 409:
			return ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
		case 429:
			return ERRCODE_INSUFFICIENT_RESOURCES;
		default:
			return ERRCODE_SYSTEM_ERROR;
	}
}

/* A hint for a 401 or 403, fitting the call. */
static const char *
auth_hint(AtlasCall *call)
{
	bool		removes = atlas_operation_removes(call->op);

	if (call->answer.token_failed)
		return call->answer.http_status == 401
			? "Check the service account's client id and client secret (atlas_users.client_id and the client secret)."
			: "Check that the service account exists and may request tokens.";
	if (call->answer.http_status == 401)
		return "Check the API credentials (atlas_users.public_key and private key, or the service account), and that this server's IP address is on the API access list.";
	if (removes)
		return "Removing a project user needs the Project Owner or Project Access Manager role; removing an organization or team user needs Organization Owner. Also check the API access list.";
	return "Reading organization users, projects and teams needs Organization Member or a project role. Also check the API access list.";
}

/* Is the failure Atlas's limit of active tokens per service account? */
static bool
token_limit_reached(AtlasCall *call)
{
	return call->answer.token_failed && call->answer.http_status == 403 &&
		call->answer.error_code && strcmp(call->answer.error_code, "access_denied") == 0;
}

/* A hint for a 429: the bucket's figures, and how long to wait. */
static char *
rate_limit_hint(AtlasCall *call)
{
	AtlasAnswer *a = &call->answer;
	char	   *bucket = "";
	char	   *wait = "Retry later";

	if (a->token_failed)
		return "Atlas allows 50 token requests a minute per service account and address. Retry later; with shared_preload_libraries every session shares one token.";
	if (a->rate_capacity > 0 && a->rate_refill > 0 && a->rate_period_ms > 0)
		bucket = psprintf("The endpoint's rate limit holds %d requests and gives back %d every %g s. ",
						  a->rate_capacity, a->rate_refill, a->rate_period_ms / 1000.0);
	if (a->retry_after >= 0)
		wait = psprintf("Retry in %d s or later", a->retry_after);
	return psprintf("%s%s, or let atlas_users.max_retries (now %d) retry; atlas_users paces its requests by what Atlas reports.",
					bucket, wait, atlas_max_retries);
}

/* An actionable hint for a failed call, or NULL. */
static const char *
status_hint(AtlasCall *call)
{
	long		status = call->answer.http_status;

	switch (status)
	{
		case 401:
		case 403:
			if (token_limit_reached(call))
				return "Atlas allows a service account 100 active tokens, each valid for an hour. Preload atlas_users (shared_preload_libraries) so that every session shares one token, revoke the tokens other clients no longer need, or wait for old tokens to expire.";
			return auth_hint(call);
		case 404:
			if (!atlas_operation_removes(call->op))
				return "Check the ids: the organization, project or team must exist and be visible to these credentials.";
			return "Check the ids: GET /api/atlas/v2/orgs/{orgId}/users?username=<e-mail> lists a user's id, and missing_ok => true accepts a user who is already gone.";
		case 406:
			return "Reset atlas_users.api_version to use the current resource version.";
		case 410:
			return atlas_call_successor(call);
		case 400:
		case 409:
			/* the codes of these refusals are undocumented: a hint for any */
			if (atlas_operation_removes(call->op) &&
				(status == 409 || (call->answer.error_code &&
								   strstr(call->answer.error_code, "LAST") != NULL)))
				return "Atlas refuses to remove the last Organization Owner, the last Project Owner or the last member of a team: give the role to someone else (or add a team member) first. atlas_offboard_user(..., dry_run => true) shows what blocks a person's removal.";
			return status == 409 ? "Atlas refused the change in the resource's current state." : NULL;
		case 429:
			return rate_limit_hint(call);
		default:
			if (status >= 500)
				return "Atlas failed to answer; retry later.";
			if (status >= 300 && status < 400)
				return "atlas_users does not follow redirects; check atlas_users.base_url.";
			return NULL;
	}
}

/* The host a call went to, for messages: the one it was sent to. */
static const char *
call_host(AtlasCall *call)
{
	if (call->host != NULL)
		return call->host;
	if (call->target != NULL)
		return call->target->host;
	return http_url_host(atlas_base_url);
}

/*
 * What a call's failure says in a message or a result row: that Atlas
 * could not be reached (and why), Atlas's detail, or an excerpt of a body
 * that was not an Atlas error.  NULL when there is nothing to say.
 */
char *
atlas_call_detail(AtlasCall *call)
{
	if (call->answer.transport_failed)
		return psprintf("could not reach Atlas at %s: %s", call_host(call),
						call->answer.detail ? call->answer.detail : "transfer failed");
	return call->answer.detail ? call->answer.detail : call->answer.excerpt;
}

/*
 * The one-line summary of a failed call, as its error's message says it:
 * "Atlas API error 404 USER_NOT_FOUND", "Atlas token request failed: 401
 * invalid_client", or "could not reach Atlas at host: why".
 */
char *
atlas_call_message(AtlasCall *call)
{
	AtlasAnswer *a = &call->answer;

	if (a->transport_failed)
		return atlas_call_detail(call);
	if (a->rate_wait)
		return "Atlas's rate limit asked for a longer wait than atlas_users.rate_limit_max_wait";
	if (token_limit_reached(call))
		return "Atlas token request failed: the service account's limit of active tokens is reached (403 access_denied)";
	return psprintf("%s %ld%s%s",
					a->token_failed ? "Atlas token request failed:" : "Atlas API error",
					a->http_status, a->error_code ? " " : "",
					a->error_code ? a->error_code : "");
}

/* The request, for errcontext. */
static int
call_context(AtlasCall *call)
{
	if (call->answer.token_failed)
		return errcontext("Atlas API request POST /api/oauth/token");
	return errcontext("Atlas API request %s %s", call->method, call->path);
}

/* Raise the SQL error for a failed call. */
void
atlas_raise_call_error(AtlasCall *call)
{
	AtlasAnswer *a = &call->answer;
	const char *hint = status_hint(call);
	const char *detail = a->detail ? a->detail : a->excerpt;

	if (a->transport_failed)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg_internal("%s", atlas_call_message(call)),
				 errhint("Check atlas_users.base_url, the network path to Atlas, and atlas_users.timeout_ms."),
				 call_context(call)));

	if (a->rate_wait)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("%s", atlas_call_message(call)),
				 errdetail_internal("%s", a->detail),
				 errhint("Retry later, or raise atlas_users.rate_limit_max_wait."),
				 call_context(call)));

	if (atlas_call_retired(call))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg_internal("%s", atlas_call_retired_message(call)),
				 detail ? errdetail_internal("%s", detail) : 0,
				 errhint("%s", atlas_call_successor(call)),
				 call_context(call)));

	ereport(ERROR,
			(errcode(atlas_status_sqlstate(a->http_status)),
			 errmsg_internal("%s", atlas_call_message(call)),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0,
			 call_context(call)));
	pg_unreachable();
}

/* Raise for a listing that failed. */
void
atlas_raise_listing_error(AtlasListing *l)
{
	AtlasCall  *page = l->failed;

	switch (l->end)
	{
		case ATLAS_LISTING_OK:
		case ATLAS_LISTING_FAILED:
			break;
		case ATLAS_LISTING_TOO_MANY_PAGES:
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("Atlas list has more than %d pages", l->max_pages),
					 errdetail("%d pages and " INT64_FORMAT " entries were read, and Atlas still links a next page.",
							   l->pages, l->items),
					 errhint("Raise atlas_users.max_pages if the list is really that long; a server that never stops linking pages is not Atlas: check the base URL."),
					 errcontext("Atlas API request %s %s", page->method, page->path)));
			break;
		case ATLAS_LISTING_TOO_SLOW:
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("reading an Atlas list took longer than %d ms", l->timeout_ms),
					 errdetail("%d pages and " INT64_FORMAT " entries were read, and Atlas still links a next page.",
							   l->pages, l->items),
					 errhint("Raise atlas_users.listing_timeout, or find out why Atlas answers so slowly."),
					 errcontext("Atlas API request %s %s", page->method, page->path)));
			break;
		case ATLAS_LISTING_NOT_A_LIST:
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("unexpected answer from Atlas: %s", l->problem),
					 errcontext("Atlas API request %s %s", page->method, page->path)));
			break;
	}
	atlas_raise_call_error(page);
}

/*
 * Run fn(arg) in a subtransaction, in run_cxt: the error it raised, copied
 * into err_cxt, or NULL.  A cancel or a statement timeout is raised again:
 * it ends the statement, not just the step.
 */
ErrorData *
atlas_try_subxact(void (*fn) (void *arg), void *arg, MemoryContext run_cxt,
				  MemoryContext err_cxt)
{
	MemoryContext old = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(run_cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(err_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	CurrentResourceOwner = owner;
	return edata;
}
