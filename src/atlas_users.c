/*-------------------------------------------------------------------------
 *
 * atlas_users.c
 *	  Module entry point: library initialisation and the module magic.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas_users.h"

#include "executor.h"
#include "miscadmin.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Loaded on demand, not preloaded: a secret set inline in the
 * configuration was readable by any role with SHOW until this moment,
 * as a placeholder setting.  Say so, once per backend.
 */
static void
warn_inline_secrets(void)
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

/* Initialise the transport and define the settings. */
void
_PG_init(void)
{
	http_init();
	atlas_define_settings();
	atlas_rate_sets_read_init();

	if (process_shared_preload_libraries_in_progress)
	{
		atlas_shmem_init();
		atlas_worker_register();
	}
	else
		warn_inline_secrets();
}
