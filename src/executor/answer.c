/*-------------------------------------------------------------------------
 *
 * answer.c
 *	  What an answer says, for the executor: the failure in an error
 *	  body, a transport failure, an already absent user (a deprecation is
 *	  calendar.c's).
 *
 * Atlas answers failures with an ApiError body:
 *	  {"error": 404, "errorCode": "USER_NOT_FOUND", "detail": "...",
 *	   "reason": "Not Found", "parameters": [...]}
 * possibly wrapped as {"status": ..., "content": {...}} with envelope=true.
 * parse.c reads that; this file keeps it as an AtlasAnswer, with the errorCode
 * of the X-Error-Code header when the body has none, and an excerpt of a
 * body that is not an Atlas error.  Text from Atlas is cleaned (control
 * characters, invalid UTF-8) and capped before it is kept.
 *
 *-------------------------------------------------------------------------
 */
#include "executor/executor_int.h"

#include <limits.h>
#include <string.h>
#include <math.h>

#include "common/base64.h"
#include "lib/stringinfo.h"
#include "utils/memutils.h"

/* the longest detail we keep from an answer */
#define ATLAS_MAX_DETAIL 2000
/* the longest excerpt of a non-JSON body */
#define ATLAS_MAX_EXCERPT 200

/* A fixed header value, cleaned. */
static char *
clean_header(const char *v, size_t maxlen)
{
	return atlas_clean_text(v, strlen(v), maxlen);
}

/* Describe a body that is not an Atlas error document. */
static char *
body_excerpt(HttpRequest *req)
{
	const char *ct = req->content_type_in[0] ? req->content_type_in : "no content type";

	if (req->response_truncated)
		return psprintf("The response (%s) exceeded the %zu byte limit and was not read.",
						clean_header(ct, 100), http_response_cap(req));
	if (req->response_len == 0)
		return psprintf("The response (%s) had an empty body.", clean_header(ct, 100));
	return psprintf("The response (%s) was not an Atlas error document: %s",
					clean_header(ct, 100),
					atlas_clean_text(req->response, req->response_len, ATLAS_MAX_EXCERPT));
}

/*
 * Read a non-2xx answer: errorCode and detail from an ApiError body, or
 * an excerpt of a body that is not one.  Returns whether its detail or
 * parameters name user_id (which may be NULL).
 */
bool
atlas_answer_error(AtlasAnswer *a, HttpRequest *req, const char *user_id)
{
	AtlasErrorBody body;

	a->http_status = req->status;
	a->transport_failed = false;
	a->error_code = NULL;
	a->detail = NULL;
	a->excerpt = NULL;

	atlas_parse_error_body(req->response_truncated ? NULL : req->response,
						   req->response_len, user_id, &body);
	if (body.is_object)
	{
		if (body.has_error_code)
			a->error_code = atlas_clean_text(body.error_code, strlen(body.error_code), 64);
		if (body.has_detail)
			a->detail = atlas_clean_text(body.detail, strlen(body.detail), ATLAS_MAX_DETAIL);
	}
	else
		a->excerpt = body_excerpt(req);
	if (a->error_code == NULL && req->error_code_header[0])
		a->error_code = clean_header(req->error_code_header, 64);

	/* Retry-After: the header, else the body's parameter, else its detail */
	a->retry_after = req->retry_after;
	if (a->retry_after < 0 && body.rate_retry_after >= 0)
		a->retry_after = (int) Min(ceil(body.rate_retry_after), 86400);
	a->rate_capacity = (int) Min(body.rate_capacity, INT_MAX);
	a->rate_refill = (int) Min(body.rate_refill, INT_MAX);
	a->rate_period_ms = body.rate_period < 0 ? -1 : (int) Min(body.rate_period * 1000, INT_MAX);
	return body.is_object && body.names_user;
}

/* Copy an answer, its texts into the current memory context. */
void
atlas_answer_copy(AtlasAnswer *dst, const AtlasAnswer *src)
{
	*dst = *src;
	dst->error_code = src->error_code ? pstrdup(src->error_code) : NULL;
	dst->detail = src->detail ? pstrdup(src->detail) : NULL;
	dst->excerpt = src->excerpt ? pstrdup(src->excerpt) : NULL;
}

/* Read a transfer that got no answer. */
void
atlas_answer_transport(AtlasAnswer *a, HttpRequest *req)
{
	a->http_status = 0;
	a->transport_failed = true;
	a->error_code = NULL;
	a->excerpt = NULL;
	a->retry_after = -1;
	a->rate_capacity = a->rate_refill = a->rate_period_ms = -1;
	a->detail = atlas_clean_text(req->error, strlen(req->error), 500);
}

/*
 * Is the failure Atlas saying that the user or membership is already
 * absent?  A missing project, organization or team is not.
 */
bool
atlas_answer_user_absent(AtlasCall *call)
{
	const char *code = call->answer.error_code;

	if (call->answer.http_status != 404 || code == NULL)
		return false;
	if (strcmp(code, "USER_NOT_FOUND") == 0 || strcmp(code, "USER_NOT_IN_ORG") == 0)
		return true;
	return strcmp(code, "RESOURCE_NOT_FOUND") == 0 && call->state->names_user;
}

/* Replace every occurrence of a secret in text by "[redacted]"; returns the new text. */
static char *
redact(char *text, const char *secret)
{
	StringInfoData buf;
	size_t		n = secret ? strlen(secret) : 0;
	char	   *p = text;
	char	   *hit;

	/* a short "secret" would blank ordinary words: every real one is long */
	if (text == NULL || n < 8 || strstr(text, secret) == NULL)
		return text;
	initStringInfo(&buf);
	while ((hit = strstr(p, secret)) != NULL)
	{
		appendBinaryStringInfo(&buf, p, hit - p);
		appendStringInfoString(&buf, "[redacted]");
		p = hit + n;
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

/*
 * Blank the value of every "Authorization" header a text quotes: up to
 * the end of the line, a semicolon or a quote.
 */
static char *
redact_authorization(char *text)
{
	char	   *p;

	if (text == NULL)
		return NULL;
	for (p = text; (p = strcasestr(p, "authorization")) != NULL;)
	{
		char	   *v = p + strlen("authorization");

		while (*v == ' ' || *v == ':' || *v == '=' || *v == '"')
			v++;
		p = v;
		while (*p && *p != ';' && *p != '"' && *p != '\n' && *p != '\r' && *p != ',')
			*p++ = '*';
	}
	return text;
}

/* Base64 of "username:secret", the Basic credentials. */
static char *
basic_credentials(const AtlasTarget *t)
{
	char	   *plain = psprintf("%s:%s", t->username, t->secret);
	int			len = pg_b64_enc_len(strlen(plain));
	char	   *b64 = palloc0(len + 1);

	if (atlas_b64_encode(plain, strlen(plain), b64, len) < 0)
		b64[0] = '\0';
	explicit_bzero(plain, strlen(plain));
	pfree(plain);
	return b64;
}

/* Scrub one text of every credential of the target. */
static char *
scrub_text(char *text, const AtlasTarget *t, const char *basic, const char *token)
{
	text = redact(text, t->secret);
	text = redact(text, basic);
	text = redact(text, token);
	return redact_authorization(text);
}

/*
 * Scrub what an answer says of every credential in use: the secret, the
 * Basic credentials, the bearer token and any Authorization header a
 * misconfigured proxy (or something posing as Atlas) echoed back.  What
 * we raise, log or store comes from here, so no credential gets there.
 */
void
atlas_answer_scrub(AtlasAnswer *a, const AtlasTarget *t, const char *token)
{
	char	   *basic;

	if (t == NULL || t->secret == NULL)
		return;
	basic = basic_credentials(t);
	a->detail = scrub_text(a->detail, t, basic, token);
	a->excerpt = scrub_text(a->excerpt, t, basic, token);
	a->error_code = scrub_text(a->error_code, t, basic, token);
	explicit_bzero(basic, strlen(basic));
	pfree(basic);
}

/* Keep a successful answer's body on the call (it is the run's memory). */
void
atlas_answer_keep_body(AtlasCall *call, HttpRequest *req)
{
	call->body = req->response;
	call->body_len = req->response_len;
	req->response = "";
	req->response_len = 0;
}
