/*-------------------------------------------------------------------------
 *
 * settings.h
 *	  The atlas_users.* settings: their variables (guc.c), defined once at
 *	  load, and the fail-safe check of what a role or database set.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_SETTINGS_H
#define ATLAS_SETTINGS_H

#include "atlas_users.h"

typedef enum AtlasAuthMethod
{
	ATLAS_AUTH_AUTO,
	ATLAS_AUTH_DIGEST,
	ATLAS_AUTH_SERVICE_ACCOUNT
} AtlasAuthMethod;

extern char *atlas_base_url;
extern char *atlas_ca_file;
extern char *atlas_proxy;
extern char *atlas_public_key;
extern char *atlas_private_key;
extern char *atlas_private_key_file;
extern char *atlas_client_id;
extern char *atlas_client_secret;
extern char *atlas_client_secret_file;
extern int	atlas_auth_method;
extern char *atlas_api_version;
extern int	atlas_timeout_ms;
extern int	atlas_connect_timeout_ms;
extern int	atlas_max_concurrency;
extern int	atlas_max_retries;
extern int	atlas_rate_limit_max_wait_s;
extern int	atlas_rate_limit_sets_ttl_s;
extern int	atlas_max_attempts;
extern int	atlas_page_size;
extern int	atlas_max_pages;
extern int	atlas_max_invitation_reads;
extern int	atlas_listing_timeout_ms;
extern int	atlas_worker_lookup_timeout_ms;
extern int	atlas_retry_base_ms;
extern int	atlas_queue_retention_s;
extern int	atlas_audit_min_retention_min;
extern char *atlas_database;
extern char *atlas_server;
extern char *atlas_trusted_server_owners;
extern int	atlas_server_timeout_max_ms;
extern int	atlas_guard_max_removals;
extern int	atlas_guard_window_s;
extern int	atlas_guard_max_share;
extern bool atlas_require_approval;
extern int	atlas_offboarding_target_s;

extern void atlas_define_settings(void);
extern bool atlas_api_version_ok(const char *v, char **why);
extern void atlas_settings_check(void);
extern void atlas_settings_warn_inline_secrets(void);

#endif							/* ATLAS_SETTINGS_H */
