/*-------------------------------------------------------------------------
 *
 * token.c
 *	  Service-account tokens: the request that trades a client id and
 *	  secret for a bearer token, and the cache that keeps the token.
 *
 * A service account trades its client id and secret for a bearer token
 * at POST {base_url}/api/oauth/token.  A token lasts an hour, so it is
 * cached until expires_in minus a margin, and replaced only when it
 * expires, the credentials change (the target's key), or Atlas rejects it
 * with a 401.  The executor asks for the token before each request; when
 * there is none it fetches one itself and hands the answer back here.
 * Tokens are never logged, shown, or written to a table, and are wiped
 * from memory when replaced.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas_users.h"

#include "executor.h"
#include "parse.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* the token of this backend, its expiry and the target it was granted for */
static char *token = NULL;		/* TopMemoryContext */
static TimestampTz token_valid_until = 0;
static uint32 token_key = 0;
static uint64 token_generation = 0; /* bumped for every new token */

/* Wipe and free the cached token. */
static void
drop_token(void)
{
	if (token != NULL)
	{
		explicit_bzero(token, strlen(token));
		pfree(token);
		token = NULL;
	}
	token_valid_until = 0;
}

/*
 * The token for a target.  READY copies it into buf (ATLAS_TOKEN_MAX + 1
 * bytes) unless *generation already names it; FETCH asks the caller to
 * fetch one.
 */
AtlasTokenState
atlas_token_get(const AtlasTarget *target, char *buf, uint64 *generation)
{
	if (token != NULL &&
		(token_key != target->key || GetCurrentTimestamp() >= token_valid_until))
		drop_token();
	if (token == NULL)
		return ATLAS_TOKEN_FETCH;
	if (*generation != token_generation)
	{
		strlcpy(buf, token, ATLAS_TOKEN_MAX + 1);
		*generation = token_generation;
	}
	return ATLAS_TOKEN_READY;
}

/* Forget the token if it is the one Atlas just rejected. */
void
atlas_token_reject(const AtlasTarget *target, uint64 generation)
{
	if (token != NULL && token_key == target->key && generation == token_generation)
		drop_token();
}

/* The fetch this process made failed: nothing to release here. */
void
atlas_token_fetch_failed(const AtlasTarget *target pg_attribute_unused())
{
}

/* Fill in the token request: POST /api/oauth/token with Basic auth. */
void
atlas_token_request(const AtlasTarget *target, HttpRequest *req)
{
	memset(req, 0, sizeof(HttpRequest));
	req->method = "POST";
	req->url = psprintf("%s/api/oauth/token", target->base_url);
	req->body = "grant_type=client_credentials";
	req->content_type = "application/x-www-form-urlencoded";
	req->accept = "application/json";
	req->auth = HTTP_AUTH_BASIC;
	req->username = target->username;
	req->password = target->secret;
	req->ca_file = target->ca_file;
	req->timeout_ms = target->timeout_ms;
	req->connect_timeout_ms = target->connect_timeout_ms;
	req->handle_key = target->credentials_key;
	http_prepare(req);
}

/*
 * Take the token from a token endpoint answer.  Returns false if there is
 * none, with *problem set when the answer was a 200 but unusable.
 */
bool
atlas_token_accept(const AtlasTarget *target, HttpRequest *req, const char **problem)
{
	AtlasTokenAnswer answer;

	*problem = NULL;
	if (req->status != 200 || !req->answered || req->response_truncated)
		return false;
	if (!atlas_parse_token_answer(req->response, req->response_len, &answer))
	{
		*problem = answer.problem;
		atlas_free_token_answer(&answer);
		return false;
	}
	PG_TRY();
	{
		/* renew a minute early, or a tenth early for short tokens */
		double		margin = Min(60.0, answer.expires_in / 10.0);

		drop_token();
		token = MemoryContextStrdup(TopMemoryContext, answer.token);
		token_key = target->key;
		token_generation++;
		token_valid_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														(int64) ((answer.expires_in - margin) * 1000));
	}
	PG_FINALLY();
	{
		atlas_free_token_answer(&answer);
	}
	PG_END_TRY();
	return true;
}
