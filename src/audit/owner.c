/*-------------------------------------------------------------------------
 *
 * owner.c
 *	  Running the extension's own SQL as the owner of its tables.
 *
 * Audit and queue rows are written by the extension, never by the
 * caller: the SQL runs with SPI as the owner of the table it touches, in
 * a restricted security context, and with search_path pinned to
 * pg_catalog, pg_temp, so that callers need no privilege on the tables
 * and no object of theirs (an operator, a function) can stand in for a
 * built-in one.
 *
 *-------------------------------------------------------------------------
 */
#include "audit/audit.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

/* The schema atlas_users is installed in. */
Oid
atlas_extension_namespace(void)
{
	Oid			extoid = get_extension_oid("atlas_users", false);
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nsp = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		nsp = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"atlas_users\" has no schema")));
	return nsp;
}

/* The owner of a relation of the extension's schema. */
static Oid
relation_owner(Oid nsp, const char *relname)
{
	Oid			relid = get_relname_relid(relname, nsp);
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" does not exist", get_namespace_name(nsp), relname),
				 errhint("Reinstall the atlas_users extension.")));
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Run the extension's own SQL with search_path = pg_catalog, pg_temp, so
 * that no object of the caller's search_path (an operator, a function)
 * can stand in for a built-in one.  Returns the level for
 * unpin_search_path(); an error restores it by itself.
 */
static int
pin_search_path(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

/* Restore the search_path pinned by pin_search_path(). */
static void
unpin_search_path(int level)
{
	AtEOXact_GUC(true, level);
}

/*
 * Run fn(nsp, arg) with SPI connected, as the owner of one of the
 * extension's tables and with search_path pinned.  Callers need no
 * privilege on the table, and their search_path cannot reach our SQL.
 */
void
atlas_as_table_owner(const char *relname, AtlasOwnerFn fn, void *arg)
{
	Oid			nsp = atlas_extension_namespace();
	Oid			owner = relation_owner(nsp, relname);
	Oid			save_userid;
	int			save_sec;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		int			level = pin_search_path();

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		fn(nsp, arg);
		SPI_finish();
		unpin_search_path(level);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
}

/* The schema-qualified name of a relation of the extension. */
char *
atlas_ext_rel(Oid nsp, const char *relname)
{
	return psprintf("%s.%s", quote_identifier(get_namespace_name(nsp)), relname);
}

/* A text Datum for an SPI argument, or a NULL one (nulls[i] = 'n'). */
Datum
atlas_text_or_null(const char *s, char *nulls, int i)
{
	if (s == NULL || s[0] == '\0')
	{
		nulls[i] = 'n';
		return (Datum) 0;
	}
	nulls[i] = ' ';
	return CStringGetTextDatum(s);
}
