/*-------------------------------------------------------------------------
 *
 * shared.c
 *	  A struct in shared memory when preloaded, else in this backend.
 *
 * init.c's startup hook attaches each module's struct with its lock; a
 * backend of a library that was not preloaded makes its own on first
 * use, zeroed, without a lock.  The struct's code locks and unlocks it the
 * same way in both cases.
 *
 *-------------------------------------------------------------------------
 */
#include "shared/shared.h"

#include "storage/shmem.h"
#include "utils/memutils.h"

/* Create or attach to a module's shared struct; under AddinShmemInitLock. */
void
atlas_shared_attach(const AtlasSharedSpec *spec, LWLock *lock)
{
	bool		found;
	AtlasSharedHead *s = ShmemInitStruct(spec->name, spec->size, &found);

	if (!found)
	{
		memset(s, 0, spec->size);
		s->lock = lock;
		if (spec->made)
			spec->made(s);
	}
	*spec->ptr = s;
}

/* A module's struct: the shared one, or one made in this backend now. */
void *
atlas_shared_get(const AtlasSharedSpec *spec)
{
	if (*spec->ptr == NULL)
	{
		*spec->ptr = MemoryContextAllocZero(TopMemoryContext, spec->size);
		if (spec->made)
			spec->made(*spec->ptr);
	}
	return *spec->ptr;
}

/* Lock a struct, if it is shared. */
void
atlas_shared_lock(void *s, LWLockMode mode)
{
	AtlasSharedHead *h = (AtlasSharedHead *) s;

	if (h->lock)
		LWLockAcquire(h->lock, mode);
}

/* Unlock a struct, if it is shared. */
void
atlas_shared_unlock(void *s)
{
	AtlasSharedHead *h = (AtlasSharedHead *) s;

	if (h->lock)
		LWLockRelease(h->lock);
}
