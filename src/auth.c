/*-------------------------------------------------------------------------
 *
 * auth.c
 *	  Which credentials a call uses, and the service-account token cache.
 *
 * Digest API keys need nothing here beyond resolving them: libcurl does
 * the digest exchange, and the easy handles in http.c keep its nonce.
 *
 * A service account trades its client id and secret for a bearer token
 * at POST {base_url}/api/oauth/token.  Atlas allows 50 token requests a
 * minute per account and a token lasts an hour, so the token is cached in
 * backend memory until expires_in minus a margin, and replaced only when
 * it expires, the settings change, or Atlas rejects it with a 401.
 * Tokens are never logged, shown, or written to a table.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas_users.h"


#include "common/hashfn.h"
#include "parse.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* the token, its expiry and the settings it was granted for */
static char *token = NULL;		/* TopMemoryContext */
static TimestampTz token_valid_until = 0;
static uint32 token_key = 0;
static uint64 token_generation = 0;	/* bumped for every new token */

/* Hash the settings a token belongs to, so a change drops the token. */
static uint32
token_key_for(AtlasAuth *auth)
{
	uint32		h;

	h = hash_bytes((const unsigned char *) atlas_base_url, strlen(atlas_base_url));
	h = hash_combine(h, hash_bytes((const unsigned char *) auth->username, strlen(auth->username)));
	h = hash_combine(h, hash_bytes((const unsigned char *) auth->secret, strlen(auth->secret)));
	return h;
}

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

/* Raise 55000 for missing credentials, naming the settings to set. */
static void
no_credentials(const char *what, const char *hint) pg_attribute_noreturn();

static void
no_credentials(const char *what, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("no usable Atlas credentials: %s", what),
			 errhint("%s", hint)));
}

#define DIGEST_SETTINGS "atlas_users.public_key and atlas_users.private_key_file (or atlas_users.private_key)"
#define SA_SETTINGS "atlas_users.client_id and atlas_users.client_secret_file (or atlas_users.client_secret)"
#define DIGEST_HINT "Set " DIGEST_SETTINGS "."
#define SA_HINT "Set " SA_SETTINGS "."

/*
 * Resolve the credentials the settings select.  With digest_only (the
 * legacy v1.0 API), a service account is refused.  Raises 55000 when the
 * chosen method lacks credentials; no request is made then.
 */
AtlasAuth *
atlas_auth_resolve(bool digest_only)
{
	AtlasAuth  *auth = palloc0(sizeof(AtlasAuth));
	bool		has_client = atlas_client_id && atlas_client_id[0];
	bool		has_public = atlas_public_key && atlas_public_key[0];

	auth->method = (AtlasAuthMethod) atlas_auth_method;
	if (auth->method == ATLAS_AUTH_AUTO)
		auth->method = (has_client && !(digest_only && has_public))
			? ATLAS_AUTH_SERVICE_ACCOUNT : ATLAS_AUTH_DIGEST;

	if (digest_only && auth->method == ATLAS_AUTH_SERVICE_ACCOUNT)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the legacy v1.0 API accepts only digest API keys"),
				 errdetail("atlas_users.auth_method selects a service account."),
				 errhint("Use atlas_remove_project_user(), or set " DIGEST_SETTINGS ".")));

	if (auth->method == ATLAS_AUTH_DIGEST)
	{
		if (!has_public)
			no_credentials("atlas_users.public_key is not set",
						   has_client ? "Set atlas_users.auth_method = 'auto' or 'service_account' to use the service account, or set " DIGEST_SETTINGS "." : DIGEST_HINT " Or use a service account: set " SA_SETTINGS ".");
		auth->username = pstrdup(atlas_public_key);
		auth->secret = atlas_secret_value("atlas_users.private_key", atlas_private_key,
										  "atlas_users.private_key_file", atlas_private_key_file);
		if (auth->secret == NULL)
			no_credentials("no private key is set", DIGEST_HINT);
	}
	else
	{
		if (!has_client)
			no_credentials("atlas_users.client_id is not set", SA_HINT);
		auth->username = pstrdup(atlas_client_id);
		auth->secret = atlas_secret_value("atlas_users.client_secret", atlas_client_secret,
										  "atlas_users.client_secret_file", atlas_client_secret_file);
		if (auth->secret == NULL)
			no_credentials("no client secret is set", SA_HINT);
	}
	return auth;
}

/*
 * Return the cached token if it is still good for these settings, and its
 * generation, which identifies it without keeping a copy.
 */
const char *
atlas_auth_cached_token(AtlasAuth *auth, uint64 *generation)
{
	if (token == NULL)
		return NULL;
	if (token_key != token_key_for(auth) ||
		GetCurrentTimestamp() >= token_valid_until)
	{
		drop_token();
		return NULL;
	}
	*generation = token_generation;
	return token;
}

/* Forget the cached token if it is the one Atlas just rejected. */
void
atlas_auth_forget_token(uint64 generation)
{
	if (token != NULL && generation == token_generation)
		drop_token();
}

/* Fill in the token request: POST /api/oauth/token with Basic auth. */
void
atlas_auth_prepare_token_request(AtlasAuth *auth, HttpRequest *req)
{
	memset(req, 0, sizeof(HttpRequest));
	req->method = "POST";
	req->path = "/api/oauth/token";
	req->url = psprintf("%s%s", atlas_base_url_trimmed(), req->path);
	req->body = "grant_type=client_credentials";
	req->content_type = "application/x-www-form-urlencoded";
	req->accept = "application/json";
	req->auth = HTTP_AUTH_BASIC;
	req->username = auth->username;
	req->password = auth->secret;
	http_reset_request(req);
}

/*
 * Take the token from a token endpoint answer.  Returns false, with
 * *problem set when the answer was 200 but unusable, if there is none.
 */
bool
atlas_auth_accept_token(AtlasAuth *auth, HttpRequest *req, char **problem)
{
	AtlasTokenAnswer answer;

	*problem = NULL;
	if (req->status != 200 || req->curl_code != CURLE_OK)
		return false;
	if (!atlas_parse_token_answer(req->response, req->response_len, &answer))
	{
		*problem = pstrdup(answer.problem);
		atlas_free_token_answer(&answer);
		return false;
	}
	PG_TRY();
	{
		/* renew a minute early, or a tenth early for short tokens */
		double		margin = Min(60.0, answer.expires_in / 10.0);

		drop_token();
		token = MemoryContextStrdup(TopMemoryContext, answer.token);
		token_key = token_key_for(auth);
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
