/*-------------------------------------------------------------------------
 *
 * errors.c
 *	  Turning Atlas answers into SQL errors.
 *
 * Atlas answers failures with an ApiError body:
 *	  {"error": 404, "errorCode": "USER_NOT_FOUND", "detail": "...",
 *	   "reason": "Not Found", "parameters": [...]}
 * possibly wrapped as {"status": ..., "content": {...}} with envelope=true.
 * parse.c reads that; this file maps the HTTP status to a SQLSTATE, and raises
 * an ERROR whose message carries the status and errorCode, whose detail
 * carries Atlas's detail, with a hint and a context naming the request.
 * Text from Atlas is cleaned (control characters, invalid UTF-8) and
 * capped before it reaches a message.  Nothing here ever sees a secret.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas_users.h"


#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "parse.h"

/* the longest detail we keep from an answer */
#define ATLAS_MAX_DETAIL 2000
/* the longest excerpt of a non-JSON body */
#define ATLAS_MAX_EXCERPT 200

/*
 * Copy at most maxlen bytes of untrusted text, valid in the database
 * encoding: control characters become spaces, and bytes that are not
 * valid UTF-8 (or, in other encodings, any non-ASCII byte) become '?'.
 */
char *
atlas_clean_text(const char *s, size_t len, size_t maxlen)
{
	StringInfoData buf;
	bool		utf8 = (GetDatabaseEncoding() == PG_UTF8);
	size_t		i = 0;

	initStringInfo(&buf);
	while (i < len && (size_t) buf.len < maxlen)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x80)
		{
			appendStringInfoChar(&buf, (c < 0x20 || c == 0x7f) ? ' ' : (char) c);
			i++;
		}
		else if (utf8)
		{
			int			l = pg_utf_mblen((const unsigned char *) s + i);

			if (i + l <= len && pg_utf8_islegal((const unsigned char *) s + i, l))
			{
				if ((size_t) buf.len + (size_t) l > maxlen)
					break;
				appendBinaryStringInfo(&buf, s + i, l);
				i += l;
			}
			else
			{
				appendStringInfoChar(&buf, '?');
				i++;
			}
		}
		else
		{
			appendStringInfoChar(&buf, '?');
			i++;
		}
	}
	if (i < len)
		appendStringInfoString(&buf, "...");
	return buf.data;
}

/*
 * Fill in the call's error fields from a non-2xx answer: errorCode and
 * detail from an ApiError body (parse.c), or an excerpt of a body that is
 * not one.
 */
void
atlas_parse_api_error(AtlasCall *call, HttpRequest *req)
{
	AtlasErrorBody body;

	call->http_status = req->status;
	call->retry_after = req->retry_after;
	call->error_code = NULL;
	call->detail = NULL;
	call->excerpt = NULL;
	call->names_user = false;

	atlas_parse_error_body(req->response_truncated ? NULL : req->response,
						   req->response_len, call->user_id, &body);
	if (body.is_object)
	{
		if (body.has_error_code)
			call->error_code = atlas_clean_text(body.error_code, strlen(body.error_code), 64);
		if (body.has_detail)
			call->detail = atlas_clean_text(body.detail, strlen(body.detail), ATLAS_MAX_DETAIL);
		call->names_user = body.names_user;
	}
	else
	{
		const char *ct = req->content_type_in[0] ? req->content_type_in : "no content type";

		if (req->response_truncated)
			call->excerpt = psprintf("The response (%s) exceeded the %d byte limit and was not read.",
									 atlas_clean_text(ct, strlen(ct), 100),
									 ATLAS_MAX_RESPONSE_BYTES);
		else if (req->response_len == 0)
			call->excerpt = psprintf("The response (%s) had an empty body.",
									 atlas_clean_text(ct, strlen(ct), 100));
		else
			call->excerpt = psprintf("The response (%s) was not an Atlas error document: %s",
									 atlas_clean_text(ct, strlen(ct), 100),
									 atlas_clean_text(req->response, req->response_len,
													  ATLAS_MAX_EXCERPT));
	}
	if (call->error_code == NULL && req->error_code_header[0])
		call->error_code = atlas_clean_text(req->error_code_header,
											strlen(req->error_code_header), 64);
}

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

/*
 * Is this answer Atlas saying the user or membership is already absent?
 * A missing project, organization or team is not.
 */
bool
atlas_is_user_absent(AtlasCall *call)
{
	if (call->http_status != 404 || call->error_code == NULL)
		return false;
	if (strcmp(call->error_code, "USER_NOT_FOUND") == 0 ||
		strcmp(call->error_code, "USER_NOT_IN_ORG") == 0)
		return true;
	return strcmp(call->error_code, "RESOURCE_NOT_FOUND") == 0 && call->names_user;
}

/* An actionable hint for an HTTP status, or NULL. */
static const char *
status_hint(AtlasCall *call)
{
	switch (call->http_status)
	{
		case 401:
			return call->token_failed
				? "Check atlas_users.client_id and the client secret, and that this server's IP address is on the service account's access list."
				: "Check the API credentials (atlas_users.public_key and private key, or the service account), and that this server's IP address is on the API access list.";
		case 403:
			return "Removing a project user needs the Project Owner or Project Access Manager role; removing an organization or team user needs Organization Owner. Also check the API access list.";
		case 404:
			return "Check the ids: GET /api/atlas/v2/orgs/{orgId}/users?username=<e-mail> lists a user's id, and missing_ok => true accepts a user who is already gone.";
		case 406:
		case 410:
			return "Reset atlas_users.api_version to use the current resource version.";
		case 409:
			return "Atlas refused the change in the resource's current state.";
		case 429:
			return "Atlas rate-limited the request. Retry later, or let atlas_users.max_retries retry after Retry-After.";
		default:
			if (call->http_status >= 500)
				return "Atlas failed to answer; retry later.";
			if (call->http_status >= 300 && call->http_status < 400)
				return "atlas_users does not follow redirects; check atlas_users.base_url.";
			return NULL;
	}
}

/*
 * What a call's failure says in a message or a result row: that Atlas
 * could not be reached (and why), Atlas's detail, or an excerpt of a body
 * that was not an Atlas error.  NULL when there is nothing to say.
 */
char *
atlas_call_detail(AtlasCall *call)
{
	if (call->transport_failed)
		return psprintf("could not reach Atlas at %s: %s", atlas_base_host(),
						call->detail ? call->detail : "transfer failed");
	return call->detail ? call->detail : call->excerpt;
}

/* The request, for errcontext. */
static int
call_context(AtlasCall *call)
{
	if (call->token_failed)
		return errcontext("Atlas API request POST /api/oauth/token");
	return errcontext("Atlas API request %s %s", call->req.method, call->req.path);
}

/* Raise the SQL error for a failed call. */
void
atlas_raise_call_error(AtlasCall *call)
{
	const char *hint = status_hint(call);

	if (call->transport_failed)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("%s", atlas_call_detail(call)),
				 errhint("Check atlas_users.base_url, the network path to Atlas, and atlas_users.timeout_ms."),
				 call_context(call)));

	if (call->token_failed)
		ereport(ERROR,
				(errcode(atlas_status_sqlstate(call->http_status)),
				 errmsg("Atlas token request failed: %ld%s%s", call->http_status,
						call->error_code ? " " : "", call->error_code ? call->error_code : ""),
				 call->detail ? errdetail("%s", call->detail) :
				 call->excerpt ? errdetail("%s", call->excerpt) : 0,
				 hint ? errhint("%s", hint) : 0,
				 call_context(call)));

	ereport(ERROR,
			(errcode(atlas_status_sqlstate(call->http_status)),
			 errmsg("Atlas API error %ld%s%s", call->http_status,
					call->error_code ? " " : "", call->error_code ? call->error_code : ""),
			 call->detail ? errdetail("%s", call->detail) :
			 call->excerpt ? errdetail("%s", call->excerpt) : 0,
			 hint ? errhint("%s", hint) : 0,
			 call_context(call)));
	pg_unreachable();
}
