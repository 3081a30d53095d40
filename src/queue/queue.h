/*-------------------------------------------------------------------------
 *
 * queue.h
 *	  The removal queue: enqueueing (queue_sql.c) and the HR trigger
 *	  (trigger.c), rows the removal budget holds (queue_guard.c), claiming
 *	  and draining rows (queue_claim.c, queue_run.c), upkeep
 *	  (queue_upkeep.c) and the background worker (worker.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_QUEUE_H
#define ATLAS_QUEUE_H

#include "functions/functions.h"

extern int64 atlas_enqueue(AtlasOperation op, char **ids, const char *username,
						   const char *reason, const char *ticket);
extern Datum atlas_enqueued_here(void);
extern void atlas_queue_wake_at_commit(void);

/* queue_guard.c: rows the removal budget holds, and approvals */
typedef struct AtlasHeldRow
{
	int64		id;
	char	   *org_id;
	char	   *group_id;
} AtlasHeldRow;

extern bool atlas_queue_admit(AtlasCall *r, int64 id, List **held);
extern void atlas_queue_hold(List *held);
extern int	atlas_queue_drain(bool worker, int max_items);
extern uint64 atlas_queue_recover(void);
extern uint64 atlas_queue_purge(void);
extern TimestampTz atlas_queue_next_due(void);

/* worker.c */
extern void atlas_worker_register(void);

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

/* a step of a row, run by atlas_queue_row_try() */
typedef void (*RowStep) (Drain *d, QueueRow *row, void *arg);

/* queue_claim.c */
extern ErrorData *atlas_queue_row_try(Drain *d, QueueRow *row, RowStep step,
									  void *arg, MemoryContext cxt);
extern void atlas_queue_claim(Drain *d, int n);
extern void atlas_queue_row_target(Drain *d, QueueRow *row);
extern bool atlas_queue_row_done(Drain *d, QueueRow *row);
extern void atlas_queue_wipe_targets(Drain *d);

#endif							/* ATLAS_QUEUE_H */
