/*-------------------------------------------------------------------------
 *
 * queue.h
 *	  What the files that run queued removals share: a claimed row, and a
 *	  drain of the queue.
 *
 * Included by queue_run.c (the drain: starting rows, recording them)
 * and queue_claim.c (claiming rows and resolving the credentials each
 * row runs with) only.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_QUEUE_H
#define ATLAS_QUEUE_H

#include "atlas_users.h"

/* one claimed queue row */
typedef struct QueueRow
{
	int64		id;
	int			attempts;		/* this one included */
	MemoryContext cxt;			/* the row's memory */
	AtlasCall  *removal;
	AtlasListing listing;		/* the username lookup, for rows by username */
	AtlasOrgUser *found;
	char	   *server;			/* the server's name when enqueued, or NULL */
	Oid			server_oid;		/* the server (InvalidOid: none, or a 1.4 row) */
	char	   *enqueued_as;	/* the role whose user mapping it uses */
	Oid			enqueued_as_oid;	/* and its OID (InvalidOid: a 1.4 row) */
	bool		by_oid;			/* the row names server and role by OID (1.5) */
	char	   *unusable;		/* why its credentials cannot be used, or NULL */
	bool		unusable_for_good;	/* its server or role is gone: not retried */
	TimestampTz requeued_for;	/* recorded as queued again, due then */
} QueueRow;

typedef struct Drain
{
	bool		worker;
	int			max_items;		/* atlas_process_queue(): rows to claim */
	int			concurrency;	/* the run's */
	int			claimed;
	int			active;			/* claimed and not yet recorded */
	bool		claim_again;	/* more may be due */
	TimestampTz next_due;		/* the worker: when a row it requeued is due */
	MemoryContext cxt;
	List	   *finished_rows;	/* the worker: memory of recorded rows, to free */
	List	   *claimed_rows;	/* the rows the last claim took */
	int			nclaim;			/* how many to claim */
	List	   *shares;			/* of QueueShare *: active rows per server */
	List	   *targets;		/* of QueueTarget *: targets rows share */
	List	   *deferred;		/* of QueueRow *: claimed, waiting for their
								 * host's rate-limit sets (next run) */
	AtlasRun   *run;
} Drain;

/* queue_claim.c */
extern void atlas_queue_claim(Drain *d, int n);
extern void atlas_queue_row_target(Drain *d, QueueRow *row);
extern bool atlas_queue_row_done(Drain *d, QueueRow *row);
extern void atlas_queue_wipe_targets(Drain *d);

#endif							/* ATLAS_QUEUE_H */
