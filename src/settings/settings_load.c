/*-------------------------------------------------------------------------
 *
 * settings_load.c
 *	  What became of the atlas_users.* values given before the library
 *	  loaded.
 *
 * Until the library defines its settings, PostgreSQL keeps every
 * atlas_users.* value as a placeholder string: from a session SET, the
 * connection options, ALTER ROLE/DATABASE ... SET, postgresql.conf.
 * Defining a setting applies the placeholder's reset value, then its
 * stacked and current values, and for a value it refuses it only warns and
 * keeps the default or an earlier value.  A warning can be hidden
 * (client_min_messages, log_min_messages), so atlas_settings_before_define()
 * copies each placeholder and atlas_settings_after_define() compares it
 * with what the defined setting ended up with.  A value that is not in
 * effect is recorded as refused (settings_check.c), with the states the
 * setting fell back to.  Values are compared as the setting's type reads
 * them: integers with their units, enums by name in any case.  Values
 * stacked by the transaction or function in which the library loads
 * cannot be compared; they are validated the way PostgreSQL applied them.
 *
 * This reads PostgreSQL's GUC tables (utils/guc_tables.h): the public API
 * shows neither sources nor stacked values, and
 * GetConfigOptionResetString() checks the caller's privileges on
 * GUC_SUPERUSER_ONLY settings, which fails when a role without them
 * loads the library.
 *
 *-------------------------------------------------------------------------
 */
#include "settings/settings_int.h"

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

/* a value stacked by the transaction or function that loads the library */
typedef struct StackedValue
{
	char	   *value;
	GucSource	source;
	GucContext	scontext;
	Oid			srole;
} StackedValue;

/* a copy of a placeholder, taken before its setting is defined */
typedef struct Placeholder
{
	char	   *name;
	char	   *current;		/* NULL: none */
	GucSource	source;
	char	   *reset;			/* NULL: none */
	GucSource	reset_source;
	bool		stacked;		/* changed in the loading transaction or function */
	bool		set_persists;	/* a plain SET on top: it would outlive the transaction */
	List	   *stack_values;	/* StackedValue * */
} Placeholder;

static MemoryContext snapshot_cxt = NULL;
static List *placeholders = NIL;

/* Copy one stacked value of a placeholder, if it has one. */
static void
copy_stacked(Placeholder *ph, const char *value, GucSource source,
			 GucContext scontext, Oid srole)
{
	StackedValue *sv;

	if (value == NULL)
		return;
	sv = palloc(sizeof(StackedValue));
	sv->value = pstrdup(value);
	sv->source = source;
	sv->scontext = scontext;
	sv->srole = srole;
	ph->stack_values = lappend(ph->stack_values, sv);
}

/* Copy a placeholder: its current, reset and stacked values. */
static Placeholder *
copy_placeholder(struct config_string *conf)
{
	Placeholder *ph = palloc0(sizeof(Placeholder));
	GucStack   *st;

	ph->name = pstrdup(conf->gen.name);
	ph->current = *conf->variable ? pstrdup(*conf->variable) : NULL;
	ph->source = conf->gen.source;
	ph->reset = conf->reset_val ? pstrdup(conf->reset_val) : NULL;
	ph->reset_source = conf->gen.reset_source;
	ph->stacked = conf->gen.stack != NULL;
	ph->set_persists = conf->gen.stack != NULL && conf->gen.stack->state == GUC_SET;
	for (st = conf->gen.stack; st != NULL; st = st->prev)
	{
		copy_stacked(ph, st->prior.val.stringval, st->source, st->scontext, st->srole);
		if (st->state == GUC_SET_LOCAL)
			copy_stacked(ph, st->masked.val.stringval, PGC_S_SESSION,
						 st->masked_scontext, st->masked_srole);
	}
	return ph;
}

/* Copy every atlas_users.* placeholder; called before the settings are defined. */
void
atlas_settings_before_define(void)
{
	int			n;
	struct config_generic **vars = atlas_guc_variables(&n);
	int			i;
	MemoryContext old;

	snapshot_cxt = AllocSetContextCreate(TopMemoryContext, "atlas_users placeholders",
										 ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(snapshot_cxt);
	for (i = 0; i < n; i++)
		if ((vars[i]->flags & GUC_CUSTOM_PLACEHOLDER) &&
			pg_strncasecmp(vars[i]->name, ATLAS_SETTINGS_PREFIX,
						   strlen(ATLAS_SETTINGS_PREFIX)) == 0)
			placeholders = lappend(placeholders,
								   copy_placeholder((struct config_string *) vars[i]));
	MemoryContextSwitchTo(old);
	atlas_guc_variables_free(vars);
}

/* Is a value given as text the one in effect (current or reset)? */
static bool
in_effect(struct config_generic *rec, const char *raw, bool reset)
{
	char	   *canon;

	return atlas_setting_canonical(rec, raw, &canon) &&
		strcmp(canon, atlas_setting_text(rec, reset)) == 0;
}

/* Would PostgreSQL have applied a stacked value?  Asked without applying it. */
static bool
stacked_valid(struct config_generic *rec, const StackedValue *sv)
{
	return set_config_option_ext(rec->name, sv->value, sv->scontext, sv->source,
								 sv->srole, GUC_ACTION_SET, false, DEBUG5, false) != 0;
}

/*
 * Fall back to the setting's session-level state: what is left once the
 * loading transaction's stacked values are gone.
 */
static void
fallback_session_level(AtlasRefusal *r, struct config_generic *rec)
{
	GucStack   *st = rec->stack;

	if (st == NULL)
	{
		atlas_refusal_fallback(r, atlas_setting_text(rec, false), rec->source);
		return;
	}
	while (st->prev != NULL)
		st = st->prev;
	atlas_refusal_fallback(r, atlas_setting_value_text(rec, &st->prior.val), st->source);
}

/* Compare a placeholder with its defined setting; record what was refused. */
static void
compare_placeholder(const Placeholder *ph, const char *when)
{
	struct config_generic *rec = atlas_setting_record(ph->name);
	AtlasRefusal *r = NULL;
	ListCell   *lc;

	if (rec == NULL || (rec->flags & GUC_CUSTOM_PLACEHOLDER))
	{
		/* not a setting of ours: PostgreSQL removes it with a WARNING */
		(void) atlas_refusal_add(NULL, ph->name, ph->current, ph->source, NULL, when);
		return;
	}
	if (ph->current != NULL && !in_effect(rec, ph->current, false))
	{
		r = atlas_refusal_add(rec, rec->name, ph->current, ph->source,
							  atlas_setting_text(rec, false), when);
		if (!ph->stacked)
			atlas_refusal_fallback(r, atlas_setting_text(rec, false), rec->source);
		else
		{
			atlas_refusal_until_xact_end(r);
			if (ph->set_persists)
				fallback_session_level(r, rec);
		}
	}
	foreach(lc, ph->stack_values)
	{
		StackedValue *sv = (StackedValue *) lfirst(lc);

		if (stacked_valid(rec, sv))
			continue;
		if (r == NULL)
			r = atlas_refusal_add(rec, rec->name, sv->value, sv->source,
								  atlas_setting_text(rec, false), when);
		atlas_refusal_until_xact_end(r);
		fallback_session_level(r, rec);
		atlas_refusal_fallback(r, atlas_setting_text(rec, true), rec->reset_source);
	}
	if (ph->reset != NULL && !in_effect(rec, ph->reset, true))
	{
		if (r == NULL)
			r = atlas_refusal_add(rec, rec->name, ph->reset, ph->reset_source,
								  atlas_setting_text(rec, true), when);
		atlas_refusal_fallback(r, atlas_setting_text(rec, true), rec->reset_source);
	}
}

/* Overwrite a copied value, which may be a secret. */
static void
wipe(char *s)
{
	if (s != NULL)
		explicit_bzero(s, strlen(s));
}

/*
 * Compare every placeholder copied before the settings were defined with
 * what they became, then forget the copies.
 */
void
atlas_settings_after_define(void)
{
	const char *when = ATLAS_REFUSED_AT_LOAD;
	MemoryContext old = MemoryContextSwitchTo(snapshot_cxt);
	ListCell   *lc;
	ListCell   *sc;

	if (process_shared_preload_libraries_in_progress)
	{
		when = ATLAS_REFUSED_AT_START;
		/* values of roles and databases are applied at login, after this */
		atlas_settings_check_login_later();
	}
	foreach(lc, placeholders)
		compare_placeholder((Placeholder *) lfirst(lc), when);
	foreach(lc, placeholders)
	{
		Placeholder *ph = (Placeholder *) lfirst(lc);

		wipe(ph->current);
		wipe(ph->reset);
		foreach(sc, ph->stack_values)
			wipe(((StackedValue *) lfirst(sc))->value);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(snapshot_cxt);
	snapshot_cxt = NULL;
	placeholders = NIL;
}
