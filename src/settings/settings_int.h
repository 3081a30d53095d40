/*-------------------------------------------------------------------------
 *
 * settings_int.h
 *	  The fail-safe settings machinery, shared by guc.c and the
 *	  settings_*.c files only: placeholders, values as text, refusals.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_SETTINGS_SETTINGS_INT_H
#define ATLAS_SETTINGS_SETTINGS_INT_H

#include "settings/settings.h"
#include "utils/guc_tables.h"

#define ATLAS_SETTINGS_PREFIX "atlas_users."

/* when a refusal happened, for its message */
#define ATLAS_REFUSED_AT_LOAD "when atlas_users loaded in this session"
#define ATLAS_REFUSED_AT_START "when the server loaded atlas_users at start"
#define ATLAS_REFUSED_AT_LOGIN "when this session started"

/* settings_load.c: placeholders */
extern void atlas_settings_before_define(void);
extern void atlas_settings_after_define(void);

/* settings_value.c: a setting's value as text */
extern struct config_generic *atlas_setting_record(const char *name);
extern char *atlas_setting_value_text(struct config_generic *rec, const union config_var_val *val);
extern char *atlas_setting_text(struct config_generic *rec, bool reset);
extern bool atlas_setting_canonical(struct config_generic *rec, const char *raw, char **out);

/* settings_check.c: refusals; atlas_settings_check() is in settings.h */
typedef struct AtlasRefusal AtlasRefusal;

extern AtlasRefusal *atlas_refusal_add(struct config_generic *rec, const char *name,
									   const char *value, GucSource origin,
									   const char *kept, const char *when);
extern void atlas_refusal_fallback(AtlasRefusal *r, char *text, GucSource source);
extern void atlas_refusal_until_xact_end(AtlasRefusal *r);
extern void atlas_settings_check_login_later(void);

/* settings_hooks.c: the check and show hooks of guc.c's definitions */
extern const char *atlas_show_private_key(void);
extern const char *atlas_show_client_secret(void);
extern bool atlas_check_base_url(char **newval, void **extra, GucSource source);
extern bool atlas_check_proxy(char **newval, void **extra, GucSource source);
extern bool atlas_check_api_version(char **newval, void **extra, GucSource source);
extern bool atlas_check_role_list(char **newval, void **extra, GucSource source);

#endif							/* ATLAS_SETTINGS_SETTINGS_INT_H */
