/*-------------------------------------------------------------------------
 *
 * shared.h
 *	  A struct kept in shared memory when atlas_users is preloaded, and in
 *	  the backend's own memory when it is not (shared.c).
 *
 * The audit hand-off ring, the token cache, the rate-limit buckets, the
 * removal budget and the request statistics are such structs: each
 * module names its own in an AtlasSharedSpec, which init.c's
 * shared-memory hooks request and attach.  Each struct begins with its
 * lock, an LWLock * that is NULL in a backend-local struct, where no lock
 * is needed.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_SHARED_H
#define ATLAS_SHARED_H

#include "atlas_users.h"

#include "storage/lwlock.h"

/* how every such struct begins */
typedef struct AtlasSharedHead
{
	LWLock	   *lock;			/* NULL: backend-local */
} AtlasSharedHead;

/* a module's shared struct */
typedef struct AtlasSharedSpec
{
	const char *name;			/* of the shared memory struct */
	Size		size;
	void	  **ptr;			/* the module's pointer to it */
	void		(*made) (void *s);	/* fills a new, zeroed one; or NULL */
} AtlasSharedSpec;

extern void atlas_shared_attach(const AtlasSharedSpec *spec, LWLock *lock);
extern void *atlas_shared_get(const AtlasSharedSpec *spec);
extern void atlas_shared_lock(void *s, LWLockMode mode);
extern void atlas_shared_unlock(void *s);

#endif							/* ATLAS_SHARED_H */
