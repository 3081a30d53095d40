/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  The atlas_users.* settings: their variables and definitions (their
 *	  check and show hooks are settings_hooks.c's).
 *
 * Every setting is PGC_SUSET.  Secrets are GUC_SUPERUSER_ONLY and
 * GUC_NO_SHOW_ALL, and their show hook prints a mask, so that not even
 * members of pg_read_all_settings can read them back.  Reading secrets
 * from key files is keyfile.c's.  The definitions are framed by
 * settings_load.c, which finds the values given before the library loaded
 * that PostgreSQL refused while defining them (settings_check.c then
 * stops every Atlas call).
 *
 *-------------------------------------------------------------------------
 */
#include "settings/settings_int.h"
#include "transport/http.h"

#include <ctype.h>
#include <limits.h>

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/varlena.h"

char	   *atlas_base_url = NULL;
char	   *atlas_ca_file = NULL;
char	   *atlas_proxy = NULL;
char	   *atlas_public_key = NULL;
char	   *atlas_private_key = NULL;
char	   *atlas_private_key_file = NULL;
char	   *atlas_client_id = NULL;
char	   *atlas_client_secret = NULL;
char	   *atlas_client_secret_file = NULL;
int			atlas_auth_method = ATLAS_AUTH_AUTO;
char	   *atlas_api_version = NULL;
int			atlas_timeout_ms = 30000;
int			atlas_connect_timeout_ms = 10000;
int			atlas_max_concurrency = 8;
int			atlas_max_retries = 2;
int			atlas_rate_limit_max_wait_s = 120;
int			atlas_rate_limit_sets_ttl_s = 3600;
int			atlas_max_attempts = 5;
int			atlas_page_size = 500;
int			atlas_max_pages = 1000;
int			atlas_max_invitation_reads = 250;
int			atlas_listing_timeout_ms = 10 * 60 * 1000;
int			atlas_worker_lookup_timeout_ms = 60 * 1000;
int			atlas_retry_base_ms = 1000;
int			atlas_queue_retention_s = 7 * 24 * 3600;
int			atlas_audit_min_retention_min = 7 * 24 * 60;
char	   *atlas_database = NULL;
char	   *atlas_server = NULL;
char	   *atlas_trusted_server_owners = NULL;
int			atlas_server_timeout_max_ms = 60000;
int			atlas_guard_max_removals = 20;
int			atlas_guard_window_s = 3600;
int			atlas_guard_max_share = 50;
bool		atlas_require_approval = false;
int			atlas_offboarding_target_s = 24 * 3600;

static const struct config_enum_entry auth_method_options[] = {
	{"auto", ATLAS_AUTH_AUTO, false},
	{"digest", ATLAS_AUTH_DIGEST, false},
	{"service_account", ATLAS_AUTH_SERVICE_ACCOUNT, false},
	{NULL, 0, false}
};

/* Define where calls go: the API, servers, the CA and the proxy. */
static void
define_where_settings(void)
{
	DefineCustomStringVariable("atlas_users.base_url",
							   "Base URL of the Atlas Administration API.",
							   "Must be https, except for loopback hosts.",
							   &atlas_base_url,
							   "https://cloud.mongodb.com",
							   PGC_SUSET, 0,
							   atlas_check_base_url, NULL, NULL);

	DefineCustomStringVariable("atlas_users.server",
							   "Foreign server (of the atlas_users wrapper) whose credentials calls use when no server is for their organization.",
							   "Empty: the atlas_users.* settings.",
							   &atlas_server,
							   "",
							   PGC_USERSET, 0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("atlas_users.trusted_server_owners",
							   "Roles, besides superusers, whose servers calls may use without naming them.",
							   "A comma-separated list of role names; members of these roles count too.  Servers of other owners are used only when atlas_users.server names them.",
							   &atlas_trusted_server_owners,
							   "",
							   PGC_SUSET, GUC_LIST_INPUT,
							   atlas_check_role_list, NULL, NULL);

	DefineCustomIntVariable("atlas_users.server_timeout_max_ms",
							"Largest timeout_ms and connect_timeout_ms of a server whose owner is not a superuser.",
							"Such servers' larger values are refused when set and lowered to this when used.",
							&atlas_server_timeout_max_ms,
							60000, 100, 3600000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("atlas_users.ca_file",
							   "File of CA certificates that verify the Atlas server, instead of the system store.",
							   NULL,
							   &atlas_ca_file,
							   "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("atlas_users.proxy",
							   "HTTP proxy (http:// or https:// URL) that calls to Atlas go through, in a CONNECT tunnel.",
							   "Empty: no proxy, whatever the server's environment says.",
							   &atlas_proxy,
							   "",
							   PGC_SUSET, 0,
							   atlas_check_proxy, NULL, NULL);
}

/* Define the credentials of the settings, and the resource version. */
static void
define_credential_settings(void)
{
	DefineCustomStringVariable("atlas_users.public_key",
							   "Public key of the Atlas programmatic API key (digest authentication).",
							   NULL,
							   &atlas_public_key,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("atlas_users.private_key",
							   "Private key of the Atlas programmatic API key. Prefer atlas_users.private_key_file.",
							   NULL,
							   &atlas_private_key,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, atlas_show_private_key);

	DefineCustomStringVariable("atlas_users.private_key_file",
							   "File holding the private key; owned by the server's OS user, mode 0600 or 0400.",
							   NULL,
							   &atlas_private_key_file,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("atlas_users.client_id",
							   "Client id of the Atlas service account (OAuth client credentials).",
							   NULL,
							   &atlas_client_id,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("atlas_users.client_secret",
							   "Client secret of the Atlas service account. Prefer atlas_users.client_secret_file.",
							   NULL,
							   &atlas_client_secret,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, atlas_show_client_secret);

	DefineCustomStringVariable("atlas_users.client_secret_file",
							   "File holding the client secret; owned by the server's OS user, mode 0600 or 0400.",
							   NULL,
							   &atlas_client_secret_file,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomEnumVariable("atlas_users.auth_method",
							 "How to authenticate: auto, digest or service_account.",
							 "auto uses the service account when atlas_users.client_id is set, digest keys otherwise.",
							 &atlas_auth_method,
							 ATLAS_AUTH_AUTO,
							 auth_method_options,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("atlas_users.api_version",
							   "Pins the Atlas resource version (YYYY-MM-DD) of every v2 call; empty uses each operation's current version.",
							   NULL,
							   &atlas_api_version,
							   "",
							   PGC_SUSET, 0,
							   atlas_check_api_version, NULL, NULL);
}

/* Define how calls run: timeouts, concurrency, retries and pacing. */
static void
define_call_settings(void)
{
	DefineCustomIntVariable("atlas_users.timeout_ms",
							"Time limit of one HTTP request, connection included.",
							NULL,
							&atlas_timeout_ms,
							30000, 100, 3600000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.connect_timeout_ms",
							"Time limit to connect to Atlas, TLS handshake included.",
							NULL,
							&atlas_connect_timeout_ms,
							10000, 100, 600000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.max_concurrency",
							"Most Atlas requests in flight at once for bulk removal and the queue worker.",
							NULL,
							&atlas_max_concurrency,
							8, 1, ATLAS_MAX_CONCURRENCY,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.max_retries",
							"How often a synchronous, bulk or offboarding call retries a 429, a 503 or a transport failure.",
							"Each retry waits the backoff of atlas_users.retry_base_ms, never less than Retry-After.",
							&atlas_max_retries,
							2, 0, 10,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.rate_limit_max_wait",
							"The longest a call waits for Atlas's rate limit before it fails without being sent.",
							NULL,
							&atlas_rate_limit_max_wait_s,
							120, 0, 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.rate_limit_sets_ttl",
							"How long what Atlas's listRateLimits said of a host is used before it is read again; 0: never read it.",
							NULL,
							&atlas_rate_limit_sets_ttl_s,
							3600, 0, 7 * 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
}

/* Define how listings read their pages, in a session and in the worker. */
static void
define_listing_settings(void)
{
	DefineCustomIntVariable("atlas_users.max_invitation_reads",
							"Projects whose legacy invitations one statement reads, at most (one request each); 0: none.",
							NULL,
							&atlas_max_invitation_reads,
							250, 0, 10000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.page_size",
							"Items per page when reading Atlas lists (itemsPerPage).",
							NULL,
							&atlas_page_size,
							500, 1, 500,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.max_pages",
							"Most pages one Atlas list may have (a bound against a server that never stops).",
							"At 500 entries a page, the default reads lists of up to 500,000 entries.",
							&atlas_max_pages,
							1000, 1, 100000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.listing_timeout",
							"Longest time reading one Atlas list may take in a session.",
							NULL,
							&atlas_listing_timeout_ms,
							10 * 60 * 1000, 1000, 24 * 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.worker_lookup_timeout",
							"Longest time the queue may spend looking up the username of one row.",
							"Past it the row fails; other rows keep running meanwhile.",
							&atlas_worker_lookup_timeout_ms,
							60 * 1000, 1000, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/* Define the queue, the worker and the audit's retention. */
static void
define_queue_settings(void)
{
	DefineCustomIntVariable("atlas_users.audit_min_retention",
							"The youngest audit rows atlas_purge_audit() may delete; younger ones are always kept.",
							"A purge with a shorter older_than is refused. 0 sets no minimum.",
							&atlas_audit_min_retention_min,
							7 * 24 * 60, 0, 100 * 365 * 24 * 60,
							PGC_SUSET, GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.max_attempts",
							"How many times the queue tries a removal before marking it failed.",
							"Only 429, 5xx and transport failures are retried.",
							&atlas_max_attempts,
							5, 1, 100,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.retry_base_ms",
							"First delay of the queue's exponential backoff; never shorter than Retry-After.",
							NULL,
							&atlas_retry_base_ms,
							1000, 10, 3600000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.queue_retention",
							"How long finished queue rows are kept before the worker deletes them; 0 keeps them forever.",
							NULL,
							&atlas_queue_retention_s,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
}

/* Define the removal budget and approvals, and the worker's database. */
static void
define_guard_settings(void)
{
	DefineCustomIntVariable("atlas_users.guard_max_removals",
							"Removal budget: people an organization may lose in guard_window without a person's approval.",
							"Queued rows past it are held; bulk calls past it fail unless force.",
							&atlas_guard_max_removals,
							20, 0, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.guard_window",
							"The sliding window of the removal budget.",
							NULL,
							&atlas_guard_window_s,
							3600, 1, 7 * 24 * 3600,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.guard_max_share",
							"Removal budget as a percentage of an organization whose size a listing showed.",
							"The smaller of this share and guard_max_removals applies; 100 turns the share off.",
							&atlas_guard_max_share,
							50, 1, 100,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("atlas_users.require_approval",
							 "Queued removals wait for atlas_approve_removal() by another role.",
							 NULL,
							 &atlas_require_approval,
							 false,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.offboarding_target",
							"Target time from a removal's request to its completion; atlas_offboarding_report flags longer ones.",
							NULL,
							&atlas_offboarding_target_s,
							24 * 3600, 1, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("atlas_users.database",
							   "Database the background worker connects to.",
							   "Only with shared_preload_libraries = 'atlas_users'.",
							   &atlas_database,
							   "postgres",
	/* only the postmaster's value matters; it can be defined so only then */
							   process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
}

/* Define every atlas_users.* setting and reserve the prefix. */
void
atlas_define_settings(void)
{
	atlas_settings_before_define();
	define_where_settings();
	define_credential_settings();
	define_call_settings();
	define_listing_settings();
	define_queue_settings();
	define_guard_settings();
	atlas_settings_after_define();
	MarkGUCPrefixReserved("atlas_users");
}

/*
 * Loaded on demand, not preloaded: a secret set inline in the
 * configuration was readable by any role with SHOW until this moment,
 * as a placeholder setting.  Say so, once per backend.
 */
void
atlas_settings_warn_inline_secrets(void)
{
	const char *which = NULL;

	if (atlas_private_key && atlas_private_key[0])
		which = "atlas_users.private_key";
	else if (atlas_client_secret && atlas_client_secret[0])
		which = "atlas_users.client_secret";
	if (which)
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("%s is set inline while atlas_users is not in shared_preload_libraries", which),
				 errdetail("Backends that have not loaded atlas_users show the value to any role that runs SHOW."),
				 errhint("Use atlas_users.private_key_file or atlas_users.client_secret_file, and preload atlas_users.")));
}
