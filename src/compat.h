/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every difference between the PostgreSQL majors atlas_users builds on
 *	  (15, 16, 17 and 18), in one place.
 *
 * The rest of the code is written against the names below, never against
 * PG_VERSION_NUM.  Included by atlas_users.h right after postgres.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_COMPAT_H
#define ATLAS_COMPAT_H

#if PG_VERSION_NUM < 150000
#error "atlas_users needs PostgreSQL 15 or later"
#endif

/*
 * All GUC records, and their number in *n.  16 made get_guc_variables()
 * return a palloc'd copy (and dropped GetNumConfigOptions()); free it with
 * atlas_guc_variables_free().  15 returns its own sorted array.
 */
#if PG_VERSION_NUM >= 160000
#define atlas_guc_variables(n) get_guc_variables(n)
#define atlas_guc_variables_free(vars) pfree(vars)
#else
#define atlas_guc_variables(n) (*(n) = GetNumConfigOptions(), get_guc_variables())
#define atlas_guc_variables_free(vars) ((void) (vars))
#endif

/* May a role use a foreign server?  16 folded the per-kind checks into one. */
#if PG_VERSION_NUM >= 160000
#define atlas_server_aclcheck(serverid, role, mode) \
	object_aclcheck(ForeignServerRelationId, (serverid), (role), (mode))
#else
#define atlas_server_aclcheck(serverid, role, mode) \
	pg_foreign_server_aclcheck((serverid), (role), (mode))
#endif

/* This backend's local transaction id (17 moved it into PGPROC.vxid). */
#if PG_VERSION_NUM >= 170000
#define ATLAS_MY_LXID (MyProc->vxid.lxid)
#else
#define ATLAS_MY_LXID (MyProc->lxid)
#endif

/*
 * 18 replaced pg_attribute_noreturn(), written after a declaration, by
 * pg_noreturn written before it.  Our declarations keep the older form;
 * with gcc and clang the attribute may stand after the declarator.
 */
#if PG_VERSION_NUM >= 180000 && !defined(pg_attribute_noreturn)
#if defined(__GNUC__) || defined(__clang__)
#define pg_attribute_noreturn() __attribute__((noreturn))
#else
#define pg_attribute_noreturn()
#endif
#endif

/* Base64 of bytes: 18 made pg_b64_encode() take them as uint8. */
#if PG_VERSION_NUM >= 180000
#define atlas_b64_encode(src, len, dst, dstlen) \
	pg_b64_encode((const uint8 *) (src), (len), (dst), (dstlen))
#else
#define atlas_b64_encode(src, len, dst, dstlen) \
	pg_b64_encode((const char *) (src), (len), (dst), (dstlen))
#endif

/*
 * The wait event to pass to WaitLatch() and ConditionVariableSleep(): from
 * 17 an extension names its own (shown in pg_stat_activity.wait_event and
 * pg_wait_events); before, every wait is "Extension".  Call it once per
 * process and keep the result: on 17+ it takes a lock and looks up shared
 * memory.  Needs utils/wait_event.h.  wait_events.c is its one user.
 */
#if PG_VERSION_NUM >= 170000
#define ATLAS_WAIT_EVENT_NEW(name) WaitEventExtensionNew(name)
#else
#define ATLAS_WAIT_EVENT_NEW(name) ((void) (name), (uint32) PG_WAIT_EXTENSION)
#endif

#endif							/* ATLAS_COMPAT_H */
