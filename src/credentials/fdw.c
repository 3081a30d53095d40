/*-------------------------------------------------------------------------
 *
 * fdw.c
 *	  Credentials as foreign servers and user mappings: the validator of
 *	  FOREIGN DATA WRAPPER atlas_users, and the reading of a server's and a
 *	  user mapping's options.
 *
 * A server says where Atlas is and how to reach it (base_url, ca_file,
 * api_version, org_id, auth_method, timeout_ms, connect_timeout_ms,
 * proxy); a user mapping holds a role's credentials (public_key with
 * private_key or private_key_file, client_id with client_secret or
 * client_secret_file, and proxy_user with proxy_password or
 * proxy_password_file for a proxy that wants them).
 * Their options are hidden by the catalog's own rules (pg_user_mappings
 * shows a mapping's options only to its role, the server's owner and
 * superusers), and change with ALTER, without a restart or a reload.  As
 * with postgres_fdw's file options, only a superuser may set an option
 * that names a file of the server, or a time limit above
 * atlas_users.server_timeout_max_ms.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas/parse.h"
#include "credentials/credentials.h"
#include "transport/http.h"

#include <ctype.h>

#include "access/reloptions.h"
#include "catalog/pg_foreign_data_wrapper.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(atlas_users_fdw_validator);

typedef struct FdwOption
{
	const char *name;
	Oid			catalog;		/* where it may be given */
	bool		superuser_only; /* names a file of the server */
} FdwOption;

static const FdwOption fdw_options[] = {
	{"base_url", ForeignServerRelationId, false},
	{"ca_file", ForeignServerRelationId, true},
	{"api_version", ForeignServerRelationId, false},
	{"org_id", ForeignServerRelationId, false},
	{"auth_method", ForeignServerRelationId, false},
	{"timeout_ms", ForeignServerRelationId, false},
	{"connect_timeout_ms", ForeignServerRelationId, false},
	{"proxy", ForeignServerRelationId, false},
	{"public_key", UserMappingRelationId, false},
	{"private_key", UserMappingRelationId, false},
	{"private_key_file", UserMappingRelationId, true},
	{"client_id", UserMappingRelationId, false},
	{"client_secret", UserMappingRelationId, false},
	{"client_secret_file", UserMappingRelationId, true},
	{"proxy_user", UserMappingRelationId, false},
	{"proxy_password", UserMappingRelationId, false},
	{"proxy_password_file", UserMappingRelationId, true},
};

/* The option of a name in a catalog, or NULL. */
static const FdwOption *
find_option(const char *name, Oid catalog)
{
	int			i;

	for (i = 0; i < (int) lengthof(fdw_options); i++)
		if (fdw_options[i].catalog == catalog && strcmp(fdw_options[i].name, name) == 0)
			return &fdw_options[i];
	return NULL;
}

/* Raise for an option that is not valid where it was given. */
static void
invalid_option(const char *name, Oid catalog) pg_attribute_noreturn();

static void
invalid_option(const char *name, Oid catalog)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < (int) lengthof(fdw_options); i++)
		if (fdw_options[i].catalog == catalog)
			appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "", fdw_options[i].name);
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
			 errmsg("invalid option \"%s\"", name),
			 buf.len > 0
			 ? errhint("Valid options in this context are: %s.", buf.data)
			 : errhint("The foreign data wrapper atlas_users takes no options; give them to a server or a user mapping.")));
}

/* Raise 22023 for a malformed option value. */
static void
bad_value(const char *name, const char *value, const char *why) pg_attribute_noreturn();

static void
bad_value(const char *name, const char *value, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
			 errmsg("invalid value for option \"%s\": \"%s\"", name, value),
			 errdetail("%s", why)));
}

/* An integer option's value within [min, max], or raise. */
static int
int_value(const char *name, const char *value, int min, int max)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(value, &end, 10);
	if (end == value || *end != '\0' || errno != 0 || v < min || v > max)
		bad_value(name, value, psprintf("It must be an integer from %d to %d.", min, max));
	return (int) v;
}

/*
 * Check a time limit option.  A role that is not a superuser may set it
 * up to atlas_users.server_timeout_max_ms: a server's calls hold a slot of
 * the worker, and a shared connection, for as long as it allows.
 */
static void
check_timeout(const char *name, const char *value)
{
	int			max = strcmp(name, "timeout_ms") == 0 ? 3600000 : 600000;
	int			v = int_value(name, value, 100, max);

	if (!superuser() && v > atlas_server_timeout_max_ms)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a superuser can set option \"%s\" above %d ms", name,
						atlas_server_timeout_max_ms),
				 errdetail("A server's time limit holds a slot of the queue's worker while its calls wait."),
				 errhint("Use at most %d, or ask a superuser to raise atlas_users.server_timeout_max_ms.",
						 atlas_server_timeout_max_ms)));
}

/* Check one option's value; secrets are never shown in a message. */
static void
check_value(const char *name, const char *value)
{
	char	   *why = NULL;

	if (strcmp(name, "base_url") == 0 && !http_base_url_ok(value, "base_url", &why))
		bad_value(name, value, why);
	else if (strcmp(name, "proxy") == 0 && !http_proxy_url_ok(value, "proxy", &why))
		bad_value(name, strchr(value, '@') ? "(not shown: it holds credentials)" : value, why);
	else if (strcmp(name, "api_version") == 0 && !atlas_api_version_ok(value, &why))
		bad_value(name, value, why);
	else if (strcmp(name, "org_id") == 0 && !atlas_is_id(value))
		bad_value(name, value, "An Atlas organization id is 24 lowercase hexadecimal characters.");
	else if (strcmp(name, "auth_method") == 0 && strcmp(value, "auto") != 0 &&
			 strcmp(value, "digest") != 0 && strcmp(value, "service_account") != 0)
		bad_value(name, value, "It must be auto, digest or service_account.");
	else if (strcmp(name, "timeout_ms") == 0 || strcmp(name, "connect_timeout_ms") == 0)
		check_timeout(name, value);
	else if ((strcmp(name, "private_key") == 0 || strcmp(name, "client_secret") == 0 ||
			  strcmp(name, "proxy_password") == 0) && value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("option \"%s\" must not be empty", name)));
}

/* A secret may be given inline or in a file, not both. */
static void
check_not_both(List *options, const char *inline_name, const char *file_name)
{
	bool		has_inline = false;
	bool		has_file = false;
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		has_inline |= (strcmp(def->defname, inline_name) == 0);
		has_file |= (strcmp(def->defname, file_name) == 0);
	}
	if (has_inline && has_file)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
				 errmsg("options \"%s\" and \"%s\" cannot both be set", inline_name, file_name),
				 errhint("Keep %s (a file only the server's OS user can read), and drop %s.",
						 file_name, inline_name)));
}

/*
 * atlas_users_fdw_validator(options, catalog): refuse unknown options,
 * malformed values, a secret given both inline and as a file, and a file
 * option set by a role that is not a superuser
 */
Datum
atlas_users_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options;
	Oid			catalog;
	ListCell   *lc;

	/* not STRICT, so that a call with NULLs meets the EXECUTE check */
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_VOID();
	options = untransformRelOptions(PG_GETARG_DATUM(0));
	catalog = PG_GETARG_OID(1);

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);
		const FdwOption *opt = find_option(def->defname, catalog);

		if (opt == NULL)
			invalid_option(def->defname, catalog);
		else if (opt->superuser_only && !superuser())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("only a superuser can set option \"%s\"", def->defname),
					 errdetail("It names a file the database server reads.")));
		check_value(def->defname, defGetString(def));
	}
	check_not_both(options, "private_key", "private_key_file");
	check_not_both(options, "client_secret", "client_secret_file");
	check_not_both(options, "proxy_password", "proxy_password_file");
	PG_RETURN_VOID();
}

/* The value of an option in a list of DefElems, or NULL. */
char *
atlas_fdw_option(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, name) == 0)
			return defGetString(def);
	}
	return NULL;
}

/* An integer option (checked by the validator), or dflt when absent. */
int
atlas_fdw_int_option(List *options, const char *name, int dflt)
{
	char	   *v = atlas_fdw_option(options, name);

	return v ? (int) strtol(v, NULL, 10) : dflt;
}
