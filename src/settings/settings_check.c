/*-------------------------------------------------------------------------
 *
 * settings_check.c
 *	  No Atlas call while PostgreSQL has refused an atlas_users.* value.
 *
 * A value of a setting given before the library loads (session SET,
 * connection options, ALTER ROLE/DATABASE ... SET, postgresql.conf
 * without preloading) is checked only when the library defines the
 * setting; PostgreSQL then warns and keeps the default or an earlier
 * value.  Calling Atlas would then quietly use other settings than those
 * given: production Atlas instead of a proxy, say.  settings_load.c
 * records each such refusal here.  With shared_preload_libraries, the
 * values stored with ALTER ROLE/DATABASE ... SET are applied at login,
 * after the library loaded, and PostgreSQL skips a bad one (stored while
 * the library was not loaded) with a WARNING: the first check of each
 * session compares them with what is in effect.
 *
 * atlas_settings_check(), which every run passes before its first call
 * (atlas_target_new() in credentials.c makes the target of every call,
 * the settings' or a foreign server's), raises 22023 while a refusal holds, naming the setting
 * and the refused value (masked for secrets) and saying how to fix it.
 * A refusal holds while the setting is in a state it fell back to: the
 * same value from the same source.  A valid value given since (SET, or a
 * reload of a corrected postgresql.conf) lifts it; RESET, or the end of
 * a SET LOCAL, brings the fallback and the refusal back.  A value refused
 * in the transaction that loaded the library also holds it until that
 * transaction ends, and an unknown atlas_users.* name for the session.
 *
 *-------------------------------------------------------------------------
 */
#include "settings/settings_int.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_db_role_setting.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#define MAX_FALLBACKS 4
#define SHOWN_MAX 120			/* bytes of a refused value that messages show */

/* a state a setting fell back to: its value (hashed) and its source */
typedef struct FallbackState
{
	uint32		hash;
	GucSource	source;
} FallbackState;

struct AtlasRefusal
{
	char	   *name;
	char	   *shown;			/* the refused value, quoted, or masked */
	char	   *kept;			/* what PostgreSQL kept instead, likewise */
	GucSource	origin;			/* where the refused value came from */
	const char *when;
	bool		unknown;		/* not a setting of ours: holds for the session */
	LocalTransactionId lxid;	/* refused in this transaction: holds to its end */
	int			nfallbacks;
	FallbackState fallbacks[MAX_FALLBACKS];
	struct AtlasRefusal *next;
};

static AtlasRefusal *refusals = NULL;
static AtlasRefusal **refusals_tail = &refusals;

/* preloaded: compare the values of roles and databases once per session */
static bool login_check_pending = false;

/* A value as messages show it: quoted and clipped, or masked. */
static char *
shown_value(const char *value, bool secret)
{
	int			len;

	if (secret)
		return pstrdup("********");
	if (value == NULL)
		return pstrdup("''");
	len = strlen(value);
	if (len <= SHOWN_MAX)
		return quote_literal_cstr(value);
	len = pg_mbcliplen(value, len, SHOWN_MAX);
	return psprintf("%s...", quote_literal_cstr(pnstrdup(value, len)));
}

/*
 * Record a refused value of a setting (rec), or an unknown atlas_users.*
 * name (rec NULL), in memory that lasts as long as the process.
 */
AtlasRefusal *
atlas_refusal_add(struct config_generic *rec, const char *name, const char *value,
				  GucSource origin, const char *kept, const char *when)
{
	bool		secret = rec == NULL || (rec->flags & GUC_NO_SHOW_ALL) != 0;
	AtlasRefusal *r = MemoryContextAllocZero(TopMemoryContext, sizeof(AtlasRefusal));

	r->name = MemoryContextStrdup(TopMemoryContext, name);
	r->shown = MemoryContextStrdup(TopMemoryContext, shown_value(value, secret));
	r->kept = MemoryContextStrdup(TopMemoryContext, shown_value(kept, secret));
	r->origin = origin;
	r->when = when;
	r->unknown = rec == NULL;
	r->lxid = InvalidLocalTransactionId;
	*refusals_tail = r;
	refusals_tail = &r->next;
	return r;
}

/* Hash of a setting's value text; the text is wiped (it may be a secret). */
static uint32
text_hash(char *text)
{
	uint32		h = hash_bytes((const unsigned char *) text, strlen(text));

	explicit_bzero(text, strlen(text));
	return h;
}

/*
 * A state the refused setting fell back to: the refusal holds while it
 * lasts.  The text, palloc'd by the caller, is wiped.
 */
void
atlas_refusal_fallback(AtlasRefusal *r, char *text, GucSource source)
{
	uint32		h = text_hash(text);
	int			i;

	for (i = 0; i < r->nfallbacks; i++)
		if (r->fallbacks[i].hash == h && r->fallbacks[i].source == source)
			return;
	if (r->nfallbacks < MAX_FALLBACKS)
	{
		r->fallbacks[r->nfallbacks].hash = h;
		r->fallbacks[r->nfallbacks].source = source;
		r->nfallbacks++;
	}
}

/* The refusal also holds until the current transaction ends. */
void
atlas_refusal_until_xact_end(AtlasRefusal *r)
{
	if (MyProc != NULL)
		r->lxid = ATLAS_MY_LXID;
}

/* Compare the values of roles and databases at the first check. */
void
atlas_settings_check_login_later(void)
{
	login_check_pending = true;
}

/* Does a refusal hold now? */
static bool
refusal_holds(const AtlasRefusal *r)
{
	struct config_generic *rec;
	uint32		h;
	int			i;

	if (r->unknown)
		return true;
	if (r->lxid != InvalidLocalTransactionId && MyProc != NULL && ATLAS_MY_LXID == r->lxid)
		return true;
	rec = atlas_setting_record(r->name);
	if (rec == NULL)
		return true;
	h = text_hash(atlas_setting_text(rec, false));
	for (i = 0; i < r->nfallbacks; i++)
		if (r->fallbacks[i].hash == h && r->fallbacks[i].source == rec->source)
			return true;
	return false;
}

/* Where a refused value came from, for messages. */
static const char *
origin_text(GucSource source)
{
	switch (source)
	{
		case PGC_S_FILE:
			return "the configuration file (postgresql.conf, or ALTER SYSTEM)";
		case PGC_S_ARGV:
			return "the server's command line";
		case PGC_S_GLOBAL:
			return "ALTER ROLE ALL SET";
		case PGC_S_DATABASE:
			return "ALTER DATABASE ... SET";
		case PGC_S_USER:
			return "ALTER ROLE ... SET";
		case PGC_S_DATABASE_USER:
			return "ALTER ROLE ... IN DATABASE ... SET";
		case PGC_S_CLIENT:
			return "the connection options (PGOPTIONS, or options in the connection string)";
		case PGC_S_SESSION:
			return "SET or set_config() in this session (or a function's SET clause)";
		default:
			return GucSource_Names[source];
	}
}

/* The statement that removes a stored value, for hints; NULL for other sources. */
static const char *
reset_statement(GucSource source)
{
	switch (source)
	{
		case PGC_S_GLOBAL:
			return "ALTER ROLE ALL RESET";
		case PGC_S_DATABASE:
			return "ALTER DATABASE ... RESET";
		case PGC_S_USER:
			return "ALTER ROLE ... RESET";
		case PGC_S_DATABASE_USER:
			return "ALTER ROLE ... IN DATABASE ... RESET";
		default:
			return NULL;
	}
}

/* How to fix a refusal, for its hint. */
static char *
fix_hint(const AtlasRefusal *r)
{
	const char *where;
	const char *or_set = r->unknown ? "" : psprintf("; or SET %s to a valid value in this session", r->name);

	if (r->origin == PGC_S_SESSION)
		return r->unknown ? pstrdup("Start a new session without it.")
			: psprintf("SET %s to a valid value in this session (RESET does not lift the refusal), or start a new session.",
					   r->name);
	if (r->origin == PGC_S_CLIENT)
		where = "Connect without this option";
	else if (reset_statement(r->origin) != NULL)
		where = psprintf("As a superuser, correct it, or remove it with %s %s, then start a new session",
						 reset_statement(r->origin), r->name);
	else
		where = "Correct it in the server's configuration and reload (a value refused at server start and then removed needs a restart)";
	return psprintf("%s%s.", where, or_set);
}

/* Raise the error of a refusal that holds. */
static void
report_refusal(const AtlasRefusal *r) pg_attribute_noreturn();

static void
report_refusal(const AtlasRefusal *r)
{
	if (r->unknown)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not a setting of atlas_users; it was removed %s",
						r->name, r->when),
				 errdetail("It came from %s. It may be a misspelled setting, so atlas_users makes no Atlas call in this session.",
						   origin_text(r->origin)),
				 errhint("%s", fix_hint(r))));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s = %s was refused %s", r->name, r->shown, r->when),
			 errdetail("The value came from %s. PostgreSQL kept %s instead, so atlas_users makes no Atlas call: it calls Atlas only with the settings it was given.",
					   origin_text(r->origin), r->kept),
			 errhint("%s", fix_hint(r))));
}

/* Check the atlas_users.* value of one stored setting against what is in effect. */
static void
check_stored_value(const char *name, const char *value, GucSource source)
{
	struct config_generic *rec = atlas_setting_record(name);
	char	   *canon;
	char	   *reset;
	AtlasRefusal *r;

	if (rec == NULL || (rec->flags & GUC_CUSTOM_PLACEHOLDER))
	{
		(void) atlas_refusal_add(NULL, name, value, source, NULL, ATLAS_REFUSED_AT_LOGIN);
		return;
	}
	if (rec->reset_source > source)
		return;					/* a stronger source set it: nothing was lost */
	reset = atlas_setting_text(rec, true);
	if (rec->reset_source == source && atlas_setting_canonical(rec, value, &canon) &&
		strcmp(canon, reset) == 0)
		return;
	r = atlas_refusal_add(rec, rec->name, value, source, reset, ATLAS_REFUSED_AT_LOGIN);
	atlas_refusal_fallback(r, reset, rec->reset_source);
}

/* Check the atlas_users.* values of the pg_db_role_setting row of (db, role). */
static void
check_stored_row(Relation rel, Oid db, Oid role, GucSource source)
{
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;

	ScanKeyInit(&keys[0], Anum_pg_db_role_setting_setdatabase,
				BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(db));
	ScanKeyInit(&keys[1], Anum_pg_db_role_setting_setrole,
				BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(role));
	scan = systable_beginscan(rel, DbRoleSettingDatidRolidIndexId, true, NULL, 2, keys);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_db_role_setting_setconfig,
									 RelationGetDescr(rel), &isnull);
		Datum	   *items;
		bool	   *nulls;
		int			n;
		int			i;

		if (isnull)
			continue;
		deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
						  &items, &nulls, &n);
		for (i = 0; i < n; i++)
		{
			char	   *name;
			char	   *value;

			if (nulls[i])
				continue;
			ParseLongOption(TextDatumGetCString(items[i]), &name, &value);
			if (value != NULL && pg_strncasecmp(name, ATLAS_SETTINGS_PREFIX,
												strlen(ATLAS_SETTINGS_PREFIX)) == 0)
				check_stored_value(name, value, source);
		}
	}
	systable_endscan(scan);
}

/*
 * Preloaded: compare the values PostgreSQL applied at login (ALTER
 * ROLE/DATABASE ... SET of this session's role and database) with what
 * is in effect.  The worker checks outside a transaction; it gets one.
 */
static void
check_login_settings(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	bool		own_xact = !IsTransactionState();
	Oid			role = GetAuthenticatedUserId();

	if (own_xact)
		StartTransactionCommand();
	PG_TRY();
	{
		Relation	rel = table_open(DbRoleSettingRelationId, AccessShareLock);

		check_stored_row(rel, MyDatabaseId, role, PGC_S_DATABASE_USER);
		check_stored_row(rel, InvalidOid, role, PGC_S_USER);
		check_stored_row(rel, MyDatabaseId, InvalidOid, PGC_S_DATABASE);
		check_stored_row(rel, InvalidOid, InvalidOid, PGC_S_GLOBAL);
		table_close(rel, AccessShareLock);
	}
	PG_CATCH();
	{
		if (own_xact)
			AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (own_xact)
		CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	login_check_pending = false;
}

/*
 * Raise 22023 while an atlas_users.* value that PostgreSQL refused would
 * be replaced by another one.  Every run calls this before its first
 * call, so nothing is sent.
 */
void
atlas_settings_check(void)
{
	AtlasRefusal *r;

	if (login_check_pending)
		check_login_settings();
	for (r = refusals; r != NULL; r = r->next)
		if (refusal_holds(r))
			report_refusal(r);
}
