/*-------------------------------------------------------------------------
 *
 * settings_value.c
 *	  A setting's value as text: its GUC record, its current or reset
 *	  value, and a value given as text read as the setting's type reads it.
 *	  Shared by settings_load.c and settings_check.c.
 *
 * This reads PostgreSQL's GUC tables (utils/guc_tables.h): the public API
 * shows neither reset values of every type nor the records themselves.
 *
 *-------------------------------------------------------------------------
 */
#include "settings/settings_int.h"

#include "utils/builtins.h"

/* The GUC record of a setting or placeholder, or NULL. */
struct config_generic *
atlas_setting_record(const char *name)
{
	int			n;
	struct config_generic **vars = atlas_guc_variables(&n);
	struct config_generic *found = NULL;
	int			i;

	for (i = 0; i < n && found == NULL; i++)
		if (pg_strcasecmp(vars[i]->name, name) == 0)
			found = vars[i];
	atlas_guc_variables_free(vars);
	return found;
}

/* A value of a setting as text, as SHOW prints it without units; palloc'd. */
char *
atlas_setting_value_text(struct config_generic *rec, const union config_var_val *val)
{
	switch (rec->vartype)
	{
		case PGC_BOOL:
			return pstrdup(val->boolval ? "on" : "off");
		case PGC_INT:
			return psprintf("%d", val->intval);
		case PGC_REAL:
			return psprintf("%g", val->realval);
		case PGC_STRING:
			return pstrdup(val->stringval ? val->stringval : "");
		case PGC_ENUM:
			return pstrdup(config_enum_lookup_by_value((struct config_enum *) rec,
													   val->enumval));
	}
	return pstrdup("");
}

/* The current (or reset) value of a setting as text; palloc'd. */
char *
atlas_setting_text(struct config_generic *rec, bool reset)
{
	union config_var_val v;

	memset(&v, 0, sizeof(v));
	switch (rec->vartype)
	{
		case PGC_BOOL:
			v.boolval = reset ? ((struct config_bool *) rec)->reset_val
				: *((struct config_bool *) rec)->variable;
			break;
		case PGC_INT:
			v.intval = reset ? ((struct config_int *) rec)->reset_val
				: *((struct config_int *) rec)->variable;
			break;
		case PGC_REAL:
			v.realval = reset ? ((struct config_real *) rec)->reset_val
				: *((struct config_real *) rec)->variable;
			break;
		case PGC_STRING:
			v.stringval = reset ? ((struct config_string *) rec)->reset_val
				: *((struct config_string *) rec)->variable;
			break;
		case PGC_ENUM:
			v.enumval = reset ? ((struct config_enum *) rec)->reset_val
				: *((struct config_enum *) rec)->variable;
			break;
	}
	return atlas_setting_value_text(rec, &v);
}

/*
 * A value given as text, read as the setting's type reads it (integers
 * with units, enums by name in any case, booleans in every spelling), as
 * atlas_setting_value_text() prints it.  False when it does not parse.
 */
bool
atlas_setting_canonical(struct config_generic *rec, const char *raw, char **out)
{
	union config_var_val v;

	memset(&v, 0, sizeof(v));
	switch (rec->vartype)
	{
		case PGC_BOOL:
			if (!parse_bool(raw, &v.boolval))
				return false;
			break;
		case PGC_INT:
			if (!parse_int(raw, &v.intval, rec->flags, NULL))
				return false;
			break;
		case PGC_REAL:
			if (!parse_real(raw, &v.realval, rec->flags, NULL))
				return false;
			break;
		case PGC_STRING:
			v.stringval = unconstify(char *, raw);
			break;
		case PGC_ENUM:
			if (!config_enum_lookup_by_name((struct config_enum *) rec, raw, &v.enumval))
				return false;
			break;
	}
	*out = atlas_setting_value_text(rec, &v);
	return true;
}
