/*-------------------------------------------------------------------------
 *
 * wait_events.c
 *	  The wait events a process reports while it waits on Atlas: for an
 *	  answer (AtlasRequest), for the rate-limit pacing (AtlasRateLimit),
 *	  or for another process fetching the token (AtlasToken).
 *
 * From 17 on, each name is an event of its own (WaitEventExtensionNew(),
 * behind compat.h's ATLAS_WAIT_EVENT_NEW), shown as wait_event in
 * pg_stat_activity with wait_event_type 'Extension'; it needs shared
 * memory, so each process asks for its events lazily, on its first wait.
 * Before 17 every wait is PG_WAIT_EXTENSION (shown as 'Extension').
 *
 *-------------------------------------------------------------------------
 */
#include "stats/stats.h"

#include "utils/wait_event.h"

static const char *const wait_names[] = {
	[ATLAS_WAIT_REQUEST] = "AtlasRequest",
	[ATLAS_WAIT_RATE_LIMIT] = "AtlasRateLimit",
	[ATLAS_WAIT_TOKEN] = "AtlasToken",
};

/* this process's events, 0 until first asked for */
static uint32 wait_ids[lengthof(wait_names)];

/* The wait event of a kind of wait (named from 17 on). */
uint32
atlas_wait_event(AtlasWaitKind kind)
{
	if ((int) kind < 0 || (int) kind >= (int) lengthof(wait_names))
		return PG_WAIT_EXTENSION;
	if (wait_ids[kind] == 0)
		wait_ids[kind] = ATLAS_WAIT_EVENT_NEW(wait_names[kind]);
	return wait_ids[kind];
}
