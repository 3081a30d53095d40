/*-------------------------------------------------------------------------
 *
 * init.c
 *	  The library's entry point: _PG_init calls each module's init, and,
 *	  when preloaded, asks for and attaches each module's shared memory.
 *
 * Nothing else lives here; each module's header says what its init does.
 *
 *-------------------------------------------------------------------------
 */
#include "audit/audit.h"
#include "executor/run.h"
#include "queue/queue.h"
#include "settings/settings.h"
#include "shared/shared.h"
#include "stats/stats.h"
#include "transport/http.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* the modules' shared structs, each with a lock of its own */
static const AtlasSharedSpec *const shared_modules[] = {
	&atlas_handoff_shared,
	&atlas_token_shared,
	&atlas_pace_shared,
	&atlas_guard_shared,
	&atlas_stat_shared,
	&atlas_rate_sets_shared,
};

#define SHARED_MODULES ((int) lengthof(shared_modules))

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Ask for each module's shared memory and lock. */
static void
request_shared_memory(void)
{
	int			i;

	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	for (i = 0; i < SHARED_MODULES; i++)
		RequestAddinShmemSpace(MAXALIGN(shared_modules[i]->size));
	RequestNamedLWLockTranche("atlas_users", SHARED_MODULES);
}

/* Create or attach to each module's shared memory. */
static void
attach_shared_memory(void)
{
	LWLockPadded *locks;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	locks = GetNamedLWLockTranche("atlas_users");
	for (i = 0; i < SHARED_MODULES; i++)
		atlas_shared_attach(shared_modules[i], &locks[i].lock);
	LWLockRelease(AddinShmemInitLock);
}

/* Start the transport, define the settings, and, when preloaded, the rest. */
void
_PG_init(void)
{
	http_init();
	atlas_define_settings();
	atlas_rate_sets_read_init();

	if (process_shared_preload_libraries_in_progress)
	{
		prev_shmem_request_hook = shmem_request_hook;
		shmem_request_hook = request_shared_memory;
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = attach_shared_memory;
		atlas_worker_register();
	}
	else
		atlas_settings_warn_inline_secrets();
}
