/*-------------------------------------------------------------------------
 *
 * servers.c
 *	  Which foreign server a call uses, and the target (URL, credentials)
 *	  its options and the role's user mapping make.
 *
 * A call on organization X uses the server named by atlas_users.server
 * when its org_id option is X; else the trusted server of the atlas_users
 * wrapper whose org_id is X, when exactly one is; otherwise the server
 * named by atlas_users.server; otherwise the atlas_users.* settings.  A
 * server is trusted, that is chosen without being named, when its owner
 * is a superuser or a member of a role atlas_users.trusted_server_owners
 * names: a server any role with USAGE on the wrapper can create never
 * takes another team's calls (nor those "in every organization") unless
 * a caller names it.  A server owned by another role is also held to
 * atlas_users.server_timeout_max_ms, so that it cannot hold the worker's
 * slots for long.  The
 * role must have USAGE on the server and a user mapping on it: its own,
 * else PUBLIC's, as postgres_fdw finds one.  Otherwise the call raises
 * 42501 or 55000, naming the GRANT or CREATE USER MAPPING to run, before
 * any request.  A server's options that are not given default to the
 * atlas_users.* settings' values.  Everything is read from the catalogs
 * when a run resolves its calls' targets, so an ALTER SERVER or ALTER USER
 * MAPPING applies at the next call; a callback on their catalog caches
 * also drops the transport's idle handles, and with them the digest state
 * of the old credentials (tokens of old credentials are wiped by
 * token.c when the new ones are first used).
 *
 *-------------------------------------------------------------------------
 */
#include "credentials/credentials.h"
#include "transport/http.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_user_mapping.h"
#include "foreign/foreign.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

static bool callbacks_registered = false;

/* A server or user mapping changed: forget the digest state of old credentials. */
static void
catalog_changed(Datum arg pg_attribute_unused(), int cacheid pg_attribute_unused(),
				uint32 hashvalue pg_attribute_unused())
{
	http_forget_handles();
}

/* Watch servers and user mappings, once per backend. */
static void
register_callbacks(void)
{
	if (callbacks_registered)
		return;
	CacheRegisterSyscacheCallback(FOREIGNSERVEROID, catalog_changed, (Datum) 0);
	CacheRegisterSyscacheCallback(USERMAPPINGOID, catalog_changed, (Datum) 0);
	callbacks_registered = true;
}

/* The oid of the atlas_users foreign data wrapper (InvalidOid if missing). */
static Oid
our_fdw(void)
{
	ForeignDataWrapper *fdw = GetForeignDataWrapperByName("atlas_users", true);

	return fdw ? fdw->fdwid : InvalidOid;
}

/* Every server of the atlas_users wrapper. */
static List *
our_servers(void)
{
	Oid			fdw = our_fdw();
	List	   *result = NIL;
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;

	if (!OidIsValid(fdw))
		return NIL;
	rel = table_open(ForeignServerRelationId, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_foreign_server srv = (Form_pg_foreign_server) GETSTRUCT(tup);

		if (srv->srvfdw == fdw)
			result = lappend(result, GetForeignServer(srv->oid));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return result;
}

/* The server named by atlas_users.server, checked, or NULL when unset. */
static ForeignServer *
named_server(void)
{
	ForeignServer *srv;

	if (atlas_server == NULL || atlas_server[0] == '\0')
		return NULL;
	srv = GetForeignServerByName(atlas_server, true);
	if (srv == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("server \"%s\" does not exist", atlas_server),
				 errdetail("atlas_users.server names it."),
				 errhint("CREATE SERVER %s FOREIGN DATA WRAPPER atlas_users, or RESET atlas_users.server.",
						 quote_identifier(atlas_server))));
	if (srv->fdwid != our_fdw())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("server \"%s\" is not a server of the atlas_users foreign data wrapper",
						atlas_server)));
	return srv;
}

/*
 * May a server be chosen without being named?  Yes when its owner is a
 * superuser or has the privileges of a role that
 * atlas_users.trusted_server_owners names (roles that do not exist are
 * skipped).
 */
static bool
server_trusted(ForeignServer *srv)
{
	char	   *copy;
	List	   *names;
	ListCell   *lc;
	bool		trusted = false;

	if (superuser_arg(srv->owner))
		return true;
	if (atlas_trusted_server_owners == NULL || atlas_trusted_server_owners[0] == '\0')
		return false;
	copy = pstrdup(atlas_trusted_server_owners);
	if (!SplitIdentifierString(copy, ',', &names))
		names = NIL;			/* the check hook refused it already */
	foreach(lc, names)
	{
		Oid			role = get_role_oid((char *) lfirst(lc), true);

		if (OidIsValid(role) && has_privs_of_role(srv->owner, role))
		{
			trusted = true;
			break;
		}
	}
	list_free(names);
	pfree(copy);
	return trusted;
}

/* Raise for two or more trusted servers of one organization, naming them. */
static void
too_many_servers(const char *org_id, List *matches) pg_attribute_noreturn();

static void
too_many_servers(const char *org_id, List *matches)
{
	StringInfoData names;
	ListCell   *lc;

	initStringInfo(&names);
	foreach(lc, matches)
		appendStringInfo(&names, "%s\"%s\"", names.len > 0 ? ", " : "",
						 ((ForeignServer *) lfirst(lc))->servername);
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("%d servers are for organization %s", list_length(matches), org_id),
			 errdetail("Servers %s all have org_id %s; no request was sent.", names.data, org_id),
			 errhint("SET atlas_users.server to the one to use, or ALTER SERVER ... OPTIONS (DROP org_id) on the others.")));
}

/*
 * The server a call on org_id (NULL: no organization) uses, or NULL for
 * the settings: atlas_users.server if it is for that organization; else
 * the one trusted server for it; else atlas_users.server, which must not
 * be for another organization.
 */
static ForeignServer *
choose_server(const char *org_id)
{
	ForeignServer *named = named_server();
	char	   *named_org = named ? atlas_fdw_option(named->options, "org_id") : NULL;
	List	   *matches = NIL;
	ListCell   *lc;

	if (org_id != NULL)
	{
		if (named_org != NULL && strcmp(named_org, org_id) == 0)
			return named;
		foreach(lc, our_servers())
		{
			ForeignServer *srv = (ForeignServer *) lfirst(lc);
			char	   *srv_org = atlas_fdw_option(srv->options, "org_id");

			if (srv_org && strcmp(srv_org, org_id) == 0 && server_trusted(srv))
				matches = lappend(matches, srv);
		}
		if (list_length(matches) == 1)
			return (ForeignServer *) linitial(matches);
		if (list_length(matches) > 1)
			too_many_servers(org_id, matches);
	}
	if (named == NULL)
		return NULL;
	if (org_id != NULL && named_org != NULL && strcmp(named_org, org_id) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("server \"%s\" is for organization %s, not %s",
						named->servername, named_org, org_id),
				 errhint("Create a server for organization %s, or SET atlas_users.server to one.",
						 org_id)));
	return named;
}

/* A server's time limit option, no longer than an untrusted owner may set. */
static int
server_timeout(ForeignServer *srv, const char *name, int dflt)
{
	int			v = atlas_fdw_int_option(srv->options, name, dflt);

	return superuser_arg(srv->owner) ? v : Min(v, atlas_server_timeout_max_ms);
}

/* The name of a role, for messages (PUBLIC for InvalidOid). */
static const char *
role_name(Oid role)
{
	return OidIsValid(role) ? quote_identifier(GetUserNameFromId(role, false)) : "PUBLIC";
}

/* The user mapping a role uses on a server: its own, else PUBLIC's; or raise. */
static UserMapping *
role_mapping(ForeignServer *srv, Oid role)
{
	HeapTuple	tup = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(role),
									  ObjectIdGetDatum(srv->serverid));

	if (!HeapTupleIsValid(tup))
		tup = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(InvalidOid),
							  ObjectIdGetDatum(srv->serverid));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("role %s has no user mapping on server \"%s\"", role_name(role), srv->servername),
				 errdetail("The user mapping holds the Atlas credentials; no request was sent."),
				 errhint("CREATE USER MAPPING FOR %s SERVER %s OPTIONS (client_id '...', client_secret_file '...'), or with public_key and private_key_file.",
						 role_name(role), quote_identifier(srv->servername))));
	ReleaseSysCache(tup);
	return GetUserMapping(role, srv->serverid);
}

/* Check that a role may use a server. */
static void
check_usage(ForeignServer *srv, Oid role)
{
	if (atlas_server_aclcheck(srv->serverid, role, ACL_USAGE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for foreign server %s", srv->servername),
				 errdetail("Role %s has no USAGE on it; no request was sent.", role_name(role)),
				 errhint("GRANT USAGE ON FOREIGN SERVER %s TO %s;",
						 quote_identifier(srv->servername), role_name(role))));
}

/* The secret of a user mapping: inline or in its file (the validator forbids both). */
static char *
mapping_secret(List *options, const char *inline_name, const char *file_name,
			   const char *where)
{
	return atlas_secret_value(psprintf("option %s of %s", inline_name, where),
							  atlas_fdw_option(options, inline_name),
							  psprintf("option %s of %s", file_name, where),
							  atlas_fdw_option(options, file_name));
}

/* Fill in the credentials of a user mapping, or raise 55000. */
static void
mapping_credentials(AtlasTarget *t, ForeignServer *srv, UserMapping *um, bool digest_only)
{
	char	   *method = atlas_fdw_option(srv->options, "auth_method");
	char	   *public_key = atlas_fdw_option(um->options, "public_key");
	char	   *client_id = atlas_fdw_option(um->options, "client_id");
	char	   *where = psprintf("the user mapping for %s on server %s",
								 role_name(um->userid), quote_identifier(srv->servername));
	bool		digest;

	if (method == NULL || strcmp(method, "auto") == 0)
		digest = (client_id == NULL || (digest_only && public_key != NULL));
	else
		digest = (strcmp(method, "digest") == 0);
	if (digest_only && !digest)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the legacy v1.0 API accepts only digest API keys"),
				 errdetail("Server \"%s\" uses a service account.", srv->servername)));
	t->method = digest ? ATLAS_AUTH_DIGEST : ATLAS_AUTH_SERVICE_ACCOUNT;
	t->username = pstrdup(digest ? (public_key ? public_key : "") : (client_id ? client_id : ""));
	t->secret = digest ? mapping_secret(um->options, "private_key", "private_key_file", where)
		: mapping_secret(um->options, "client_secret", "client_secret_file", where);
	if (t->username[0] == '\0' || t->secret == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no usable Atlas credentials in %s", where),
				 errhint(digest ? "Give it public_key and private_key_file (or private_key)."
						 : "Give it client_id and client_secret_file (or client_secret).")));
	atlas_target_proxy(t, atlas_fdw_option(srv->options, "proxy"),
					   atlas_fdw_option(um->options, "proxy_user"),
					   mapping_secret(um->options, "proxy_password", "proxy_password_file", where),
					   where);
}

/* The target of a server for a role: its options and the role's user mapping. */
static AtlasTarget *
server_target(ForeignServer *srv, Oid role, bool digest_only)
{
	List	   *o = srv->options;
	char	   *api_version = atlas_fdw_option(o, "api_version");
	AtlasTarget *t;

	check_usage(srv, role);
	t = atlas_target_new(atlas_fdw_option(o, "base_url") ? atlas_fdw_option(o, "base_url") : atlas_base_url,
						 atlas_fdw_option(o, "ca_file") ? atlas_fdw_option(o, "ca_file") : atlas_ca_file,
						 api_version ? api_version : atlas_api_version,
						 server_timeout(srv, "timeout_ms", atlas_timeout_ms),
						 server_timeout(srv, "connect_timeout_ms", atlas_connect_timeout_ms));
	mapping_credentials(t, srv, role_mapping(srv, role), digest_only);
	t->server = pstrdup(srv->servername);
	t->server_oid = srv->serverid;
	t->role = role;
	t->org_id = atlas_fdw_option(o, "org_id");
	atlas_target_seal(t);
	return t;
}

/*
 * The target of a call on org_id (NULL: none) made with role's
 * credentials: a server's, or the settings'.  Raises before any request
 * when the role may not use it or has no usable credentials there.
 */
AtlasTarget *
atlas_target_for(const char *org_id, Oid role, bool digest_only)
{
	ForeignServer *srv;

	register_callbacks();
	srv = choose_server(org_id);
	if (srv == NULL)
		return atlas_target_from_settings(digest_only);
	return server_target(srv, role, digest_only);
}

/* The target of a given server for a role. */
AtlasTarget *
atlas_target_of_server(Oid server_oid, Oid role, bool digest_only)
{
	register_callbacks();
	return server_target(GetForeignServer(server_oid), role, digest_only);
}

/*
 * The oids of the servers of the atlas_users wrapper that a role may use
 * (USAGE and a user mapping) and that may be chosen without being named,
 * in name order.
 */
List *
atlas_usable_servers(Oid role)
{
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, our_servers())
	{
		ForeignServer *srv = (ForeignServer *) lfirst(lc);

		if (!server_trusted(srv) ||
			atlas_server_aclcheck(srv->serverid, role, ACL_USAGE) != ACLCHECK_OK)
			continue;
		if (!SearchSysCacheExists2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(role),
								   ObjectIdGetDatum(srv->serverid)) &&
			!SearchSysCacheExists2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(InvalidOid),
								   ObjectIdGetDatum(srv->serverid)))
			continue;
		result = lappend_oid(result, srv->serverid);
	}
	return result;
}

/*
 * The credentials a call "in every organization" uses, one target each:
 * the server atlas_users.server names; else every trusted server the
 * current user may use; else, when there is none, the settings.
 */
List *
atlas_targets_everywhere(void)
{
	ForeignServer *named;
	List	   *result = NIL;
	ListCell   *lc;

	register_callbacks();
	named = named_server();
	if (named != NULL)
		return list_make1(server_target(named, GetUserId(), false));
	foreach(lc, atlas_usable_servers(GetUserId()))
		result = lappend(result, server_target(GetForeignServer(lfirst_oid(lc)),
											   GetUserId(), false));
	if (result == NIL)
		result = list_make1(atlas_target_from_settings(false));
	return result;
}
