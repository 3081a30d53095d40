/*-------------------------------------------------------------------------
 *
 * credentials.h
 *	  Where a call goes, and with which credentials: targets (credentials.c),
 *	  foreign servers and user mappings (servers.c), the wrapper's options
 *	  (fdw.c) and secrets in key files (keyfile.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_CREDENTIALS_H
#define ATLAS_CREDENTIALS_H

#include "settings/settings.h"
#include "nodes/pg_list.h"

typedef struct AtlasTarget
{
	char	   *base_url;		/* without a trailing slash */
	char	   *host;			/* host[:port] of base_url, for messages */
	char	   *ca_file;		/* "" for the system store */
	char	   *api_version;	/* pinned resource version, or NULL */
	int			timeout_ms;
	int			connect_timeout_ms;
	AtlasAuthMethod method;		/* DIGEST or SERVICE_ACCOUNT, never AUTO */
	char	   *username;		/* public key or client id */
	char	   *secret;			/* private key or client secret */
	uint8		secret_hash[32];	/* SHA-256 of the secret, its identity */
	uint8		identity[32];	/* SHA-256 of base_url, username and secret_hash */
	uint32		credentials_key;	/* identity of the method, username and secret */
	uint32		key;			/* and of base_url and the CA file too */
	char	   *server;			/* the foreign server, or NULL: the settings */
	Oid			server_oid;
	Oid			role;			/* whose user mapping */
	char	   *org_id;			/* the organization the server is for, or NULL */
	char	   *proxy;			/* proxy URL, "" for none (issue 21) */
	char	   *proxy_user;		/* proxy credentials, or NULL */
	char	   *proxy_password;
} AtlasTarget;

extern AtlasTarget *atlas_target_from_settings(bool digest_only);
extern AtlasTarget *atlas_target_new(const char *base_url, const char *ca_file,
									 const char *api_version, int timeout_ms,
									 int connect_timeout_ms);
extern void atlas_target_seal(AtlasTarget *t);
extern void atlas_target_proxy(AtlasTarget *t, const char *proxy, const char *user,
							   char *password, const char *where);
struct HttpRequest;
extern void atlas_target_proxy_request(const AtlasTarget *t, struct HttpRequest *req);
extern void atlas_target_wipe(AtlasTarget *target);

/* servers.c: which server a call uses, and its target */
extern AtlasTarget *atlas_target_for(const char *org_id, Oid role, bool digest_only);
extern List *atlas_usable_servers(Oid role);
extern List *atlas_targets_everywhere(void);
extern AtlasTarget *atlas_target_of_server(Oid server_oid, Oid role, bool digest_only);

/* fdw.c: the wrapper's options */
extern char *atlas_fdw_option(List *options, const char *name);
extern int	atlas_fdw_int_option(List *options, const char *name, int dflt);

/* keyfile.c: a secret set inline or in a key file */
extern char *atlas_secret_value(const char *inline_name, const char *inline_value,
								const char *file_name, const char *file_path);

#endif							/* ATLAS_CREDENTIALS_H */
