/*-------------------------------------------------------------------------
 *
 * atlas_users.h
 *	  What every file of atlas_users needs: PostgreSQL's own headers, the
 *	  version differences (compat.h) and a few constants and macros.
 *
 * Each module has a header of its own beside its code (src/atlas/atlas.h,
 * src/executor/run.h, ...), declaring that module's API and nothing
 * else; docs/architecture.md draws the modules and how calls flow down
 * through them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_USERS_H
#define ATLAS_USERS_H

#include "postgres.h"

#include "compat.h"
#include "fmgr.h"

#ifndef EXTVERSION
#error "EXTVERSION must be defined (the Makefile passes the control file's default_version)"
#endif
#define ATLAS_USER_AGENT "atlas_users/" EXTVERSION

/* the resource version every v2 operation uses unless one is pinned */
#define ATLAS_DEFAULT_API_VERSION "2025-02-19"

/* upper bound of atlas_users.max_concurrency (the transport's too) */
#define ATLAS_MAX_CONCURRENCY 64

/*
 * Define the SQL-callable C function "name" as impl(fcinfo, ...): for
 * families of SQL functions that differ only in the operation they pass.
 */
#define ATLAS_SQL_FUNCTION(name, impl, ...) \
	PG_FUNCTION_INFO_V1(name); \
	Datum name(PG_FUNCTION_ARGS) { return impl(fcinfo, __VA_ARGS__); }

#endif							/* ATLAS_USERS_H */
