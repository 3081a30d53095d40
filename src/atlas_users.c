/*-------------------------------------------------------------------------
 *
 * atlas_users.c
 *	  Module entry point: library initialisation and the module magic.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas_users.h"

#include "miscadmin.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Initialise libcurl and define the settings. */
void
_PG_init(void)
{
	CURLcode	rc = curl_global_init(CURL_GLOBAL_ALL);

	if (rc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl: %s", curl_easy_strerror(rc))));
	atlas_define_settings();

	if (process_shared_preload_libraries_in_progress)
	{
		atlas_shmem_init();
		atlas_worker_register();
	}
}
