/*-------------------------------------------------------------------------
 *
 * queue_upkeep.c
 *	  The queue's upkeep, for the worker: putting back rows a dead claimer
 *	  left running, finding when the next row is due, and deleting finished
 *	  rows older than atlas_users.queue_retention.
 *
 *-------------------------------------------------------------------------
 */
#include "queue/queue.h"

#include "executor/spi.h"
#include "utils/timestamp.h"

/* one statement on the queue table, and what it gave */
typedef struct QueueStatement
{
	const char *sql;			/* "%s" stands for the table */
	int			expected;		/* SPI_OK_* */
	uint64		processed;
	Datum		value;			/* first column of the first row, if any */
	bool		isnull;
} QueueStatement;

/* Run a QueueStatement; runs as the queue table's owner. */
static void
statement_spi(Oid nsp, void *arg)
{
	QueueStatement *st = (QueueStatement *) arg;

	/* not read-only: a statement sees what an earlier one of the transaction did */
	if (SPI_execute(psprintf(st->sql, atlas_ext_rel(nsp, "atlas_removal_queue")),
					false, 0) != st->expected)
		elog(ERROR, "could not run a statement on the queue: %s", st->sql);
	st->processed = SPI_processed;
	st->isnull = true;
	if (SPI_processed > 0 && SPI_tuptable != NULL)
		st->value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &st->isnull);
}

/* Run one statement on the queue table, in the current transaction. */
static QueueStatement
queue_statement(const char *sql, int expected)
{
	QueueStatement st = {sql, expected, 0, (Datum) 0, true};

	atlas_as_table_owner("atlas_removal_queue", statement_spi, &st);
	return st;
}

/* Requeue rows left 'running' by a crashed or killed claimer; returns how many. */
uint64
atlas_queue_recover(void)
{
	return queue_statement("UPDATE %s q SET status = 'queued', next_attempt_at = clock_timestamp(),"
						   " claimed_by = NULL, claimed_at = NULL"
						   " WHERE status = 'running' AND NOT EXISTS ("
						   "  SELECT 1 FROM pg_catalog.pg_stat_activity a"
						   "  WHERE a.pid = q.claimed_by AND a.backend_start <= q.claimed_at)",
						   SPI_OK_UPDATE).processed;
}

/* When the next queued row is due (0: none), read in the current transaction. */
TimestampTz
atlas_queue_next_due(void)
{
	QueueStatement st = queue_statement("SELECT min(next_attempt_at) FROM %s WHERE status = 'queued'",
										SPI_OK_SELECT);

	return st.isnull ? 0 : DatumGetTimestampTz(st.value);
}

/* Delete finished rows older than atlas_users.queue_retention; returns how many. */
uint64
atlas_queue_purge(void)
{
	if (atlas_queue_retention_s <= 0)
		return 0;
	return queue_statement(psprintf("DELETE FROM %%s WHERE status IN ('done', 'failed', 'cancelled')"
									" AND finished_at < clock_timestamp() - make_interval(secs => %d)",
									atlas_queue_retention_s),
						   SPI_OK_DELETE).processed;
}
