/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  What monitoring reads: request statistics (stats.c) and the wait
 *	  events of waits on Atlas (wait_events.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_STATS_H
#define ATLAS_STATS_H

#include "atlas_users.h"

#include "datatype/timestamp.h"
#include "storage/lwlock.h"

/* one finished request, as stats.c counts it: never a secret or a user id */
typedef struct AtlasStatSample
{
	const char *server;			/* the foreign server, or NULL: the settings */
	const char *host;			/* host[:port] of the base URL */
	const char *endpoint;		/* the operation's name, or "token" */
	long		http_status;	/* 0: no answer (a transport failure) */
	double		elapsed_ms;
	bool		retry;			/* a second or later attempt */
	int			rate_limit_waits;	/* times the request waited for pacing */
	double		rate_limit_wait_ms; /* and for how long */
	int64		bytes;			/* of the answer's body */
} AtlasStatSample;

extern const struct AtlasSharedSpec atlas_stat_shared;
extern void atlas_stat_count(const AtlasStatSample *s);
extern TimestampTz atlas_stat_last_call(int http_status);

/* what a process waits for, as a wait event */
typedef enum AtlasWaitKind
{
	ATLAS_WAIT_REQUEST,			/* an answer from Atlas */
	ATLAS_WAIT_RATE_LIMIT,		/* the rate-limit pacing */
	ATLAS_WAIT_TOKEN			/* another process fetching the token */
} AtlasWaitKind;

extern uint32 atlas_wait_event(AtlasWaitKind kind);

#endif							/* ATLAS_STATS_H */
