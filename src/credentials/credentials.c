/*-------------------------------------------------------------------------
 *
 * credentials.c
 *	  Where calls go and with which credentials: the AtlasTarget.
 *
 * A target is the base URL, CA file, pinned resource version, time
 * limits and credentials that a call uses: those of a foreign server and
 * a user mapping (servers.c), or of the atlas_users.* settings, resolved
 * here.  Resolving it checks the credentials before any request is made,
 * and raises 55000 naming the settings to set when the chosen method
 * lacks them.  The target's key identifies its URL, CA file
 * and credentials (the secret enters only through a hash), so caches of
 * tokens and digest state never serve other credentials.
 *
 *-------------------------------------------------------------------------
 */
#include "credentials/credentials.h"
#include "transport/http.h"

#include "common/cryptohash.h"
#include "common/hashfn.h"
#include "common/sha2.h"
#include "lib/stringinfo.h"
#include "utils/resowner.h"

#define DIGEST_SETTINGS "atlas_users.public_key and atlas_users.private_key_file (or atlas_users.private_key)"
#define SA_SETTINGS "atlas_users.client_id and atlas_users.client_secret_file (or atlas_users.client_secret)"
#define DIGEST_HINT "Set " DIGEST_SETTINGS "."
#define SA_HINT "Set " SA_SETTINGS "."

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

/* Hash a string into a running hash. */
static uint32
hash_string(uint32 h, const char *s)
{
	return hash_combine(h, hash_bytes((const unsigned char *) s, strlen(s)));
}

/*
 * The SHA-256 of len bytes: what identifies a secret where it must not be.
 * The hash context belongs to a resource owner; outside a transaction (the
 * worker between transactions) a long-lived one of our own serves.
 */
static void
sha256_of(const void *data, size_t len, uint8 *out)
{
	static ResourceOwner own_owner = NULL;
	ResourceOwner save = CurrentResourceOwner;
	pg_cryptohash_ctx *ctx;
	bool		ok;

	if (save == NULL)
	{
		if (own_owner == NULL)
			own_owner = ResourceOwnerCreate(NULL, "atlas_users secret hash");
		CurrentResourceOwner = own_owner;
	}
	ctx = pg_cryptohash_create(PG_SHA256);
	ok = ctx != NULL && pg_cryptohash_init(ctx) == 0 &&
		pg_cryptohash_update(ctx, (const uint8 *) data, len) == 0 &&
		pg_cryptohash_final(ctx, out, PG_SHA256_DIGEST_LENGTH) == 0;
	pg_cryptohash_free(ctx);
	CurrentResourceOwner = save;
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not hash a secret")));
}

/* The identity of a target's credentials: method, username and secret. */
static uint32
credentials_key(const AtlasTarget *t)
{
	uint32		h = hash_combine(0, (uint32) t->method);

	h = hash_string(h, t->username);
	return hash_string(h, t->secret);
}

/* Warn, once per session, that an inline secret setting is deprecated. */
static void
warn_inline_secret(const char *setting, const char *file_setting)
{
	static bool warned = false;

	if (warned)
		return;
	warned = true;
	ereport(WARNING,
			(errcode(ERRCODE_WARNING_DEPRECATED_FEATURE),
			 errmsg("%s is deprecated", setting),
			 errdetail("An inline secret setting is written to the server log when the configuration is reloaded, and backends that have not loaded atlas_users show it to any role."),
			 errhint("Keep the secret in a user mapping of a foreign server of the atlas_users wrapper, or in %s.",
					 file_setting)));
}

/* Fill in the credentials of the chosen method, or raise 55000. */
static void
settings_credentials(AtlasTarget *t, bool digest_only)
{
	bool		has_client = atlas_client_id && atlas_client_id[0];
	bool		has_public = atlas_public_key && atlas_public_key[0];

	t->method = (AtlasAuthMethod) atlas_auth_method;
	if (t->method == ATLAS_AUTH_AUTO)
		t->method = (has_client && !(digest_only && has_public))
			? ATLAS_AUTH_SERVICE_ACCOUNT : ATLAS_AUTH_DIGEST;

	if (digest_only && t->method == ATLAS_AUTH_SERVICE_ACCOUNT)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the legacy v1.0 API accepts only digest API keys"),
				 errdetail("atlas_users.auth_method selects a service account."),
				 errhint("Use atlas_remove_project_user(), or set " DIGEST_SETTINGS ".")));

	if (t->method == ATLAS_AUTH_DIGEST)
	{
		if (!has_public)
			no_credentials("atlas_users.public_key is not set",
						   has_client ? "Set atlas_users.auth_method = 'auto' or 'service_account' to use the service account, or set " DIGEST_SETTINGS "." : DIGEST_HINT " Or use a service account: set " SA_SETTINGS ".");
		t->username = pstrdup(atlas_public_key);
		if (atlas_private_key && atlas_private_key[0])
			warn_inline_secret("atlas_users.private_key", "atlas_users.private_key_file");
		t->secret = atlas_secret_value("atlas_users.private_key", atlas_private_key,
									   "atlas_users.private_key_file", atlas_private_key_file);
		if (t->secret == NULL)
			no_credentials("no private key is set", DIGEST_HINT);
	}
	else
	{
		if (!has_client)
			no_credentials("atlas_users.client_id is not set", SA_HINT);
		t->username = pstrdup(atlas_client_id);
		if (atlas_client_secret && atlas_client_secret[0])
			warn_inline_secret("atlas_users.client_secret", "atlas_users.client_secret_file");
		t->secret = atlas_secret_value("atlas_users.client_secret", atlas_client_secret,
									   "atlas_users.client_secret_file", atlas_client_secret_file);
		if (t->secret == NULL)
			no_credentials("no client secret is set", SA_HINT);
	}
}

/*
 * The target the atlas_users.* settings describe.  With digest_only (the
 * legacy v1.0 API), a service account is refused.  Raises 55000 when the
 * chosen method lacks credentials; no request is made then.
 */
AtlasTarget *
atlas_target_from_settings(bool digest_only)
{
	AtlasTarget *t = atlas_target_new(atlas_base_url, atlas_ca_file, atlas_api_version,
									  atlas_timeout_ms, atlas_connect_timeout_ms);

	settings_credentials(t, digest_only);
	atlas_target_seal(t);
	return t;
}

/*
 * A target with its connection options (api_version may be NULL or ""),
 * and no credentials yet.  Every target, the settings' or a foreign
 * server's, is made here, so a refused atlas_users.* value (settings_check.c)
 * raises 22023 before any call.
 */
AtlasTarget *
atlas_target_new(const char *base_url, const char *ca_file, const char *api_version,
				 int timeout_ms, int connect_timeout_ms)
{
	AtlasTarget *t = palloc0(sizeof(AtlasTarget));
	size_t		len;

	atlas_settings_check();		/* no call while a refused setting holds */
	t->base_url = pstrdup(base_url);
	len = strlen(t->base_url);
	while (len > 0 && t->base_url[len - 1] == '/')
		t->base_url[--len] = '\0';
	t->ca_file = pstrdup(ca_file ? ca_file : "");
	t->api_version = (api_version && api_version[0]) ? pstrdup(api_version) : NULL;
	t->timeout_ms = timeout_ms;
	t->connect_timeout_ms = connect_timeout_ms;
	t->proxy = pstrdup(atlas_proxy ? atlas_proxy : "");
	return t;
}

/*
 * A server's proxy (NULL: the atlas_users.proxy setting's; "": none) and
 * the user mapping's proxy credentials, which must come together and
 * count only with a proxy.  Raises 55000 for a user without a password.
 */
void
atlas_target_proxy(AtlasTarget *t, const char *proxy, const char *user, char *password,
				   const char *where)
{
	if (proxy != NULL)
		t->proxy = pstrdup(proxy);
	if (t->proxy[0] == '\0' || (user == NULL && password == NULL))
	{
		/* no proxy to give them to: a password read is wiped at once */
		if (password != NULL)
		{
			explicit_bzero(password, strlen(password));
			pfree(password);
		}
		return;
	}
	if (user == NULL || password == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("incomplete proxy credentials in %s", where),
				 errhint("Give it both proxy_user and proxy_password_file (or proxy_password).")));
	t->proxy_user = pstrdup(user);
	t->proxy_password = password;
}

/* Put a target's proxy in a request: it and its credentials, or none. */
void
atlas_target_proxy_request(const AtlasTarget *t, HttpRequest *req)
{
	req->proxy = t->proxy;
	req->proxy_user = t->proxy_user;
	req->proxy_password = t->proxy_password;
}

/* Compute a target's host (for messages) and identities once its credentials are in. */
void
atlas_target_seal(AtlasTarget *t)
{
	StringInfoData id;

	sha256_of(t->secret, strlen(t->secret), t->secret_hash);
	/* base URL (any length), NUL, username, NUL, the secret's hash */
	initStringInfo(&id);
	appendBinaryStringInfo(&id, t->base_url, strlen(t->base_url) + 1);
	appendBinaryStringInfo(&id, t->username, strlen(t->username) + 1);
	appendBinaryStringInfo(&id, (const char *) t->secret_hash, sizeof(t->secret_hash));
	sha256_of(id.data, id.len, t->identity);
	pfree(id.data);
	t->credentials_key = credentials_key(t);
	t->key = hash_string(hash_string(t->credentials_key, t->base_url), t->ca_file);
	t->host = http_url_host(t->base_url);
}

/* Wipe a target's secret from memory once its run is over. */
void
atlas_target_wipe(AtlasTarget *target)
{
	if (target != NULL && target->secret != NULL)
	{
		explicit_bzero(target->secret, strlen(target->secret));
		pfree(target->secret);
		target->secret = NULL;
	}
	if (target != NULL && target->proxy_password != NULL)
	{
		explicit_bzero(target->proxy_password, strlen(target->proxy_password));
		pfree(target->proxy_password);
		target->proxy_password = NULL;
	}
}
