/*-------------------------------------------------------------------------
 *
 * audit_call.c
 *	  Where a finished call's audit record goes.
 *
 * Every failed call is written to the server log at once (audit.c).
 * Then the record goes:
 *	  - from a session: to the worker through shared memory (handoff.c),
 *		so that it survives the caller's rollback, or, when the worker
 *		does not serve this database or the library is not preloaded,
 *		into the table in the caller's transaction;
 *	  - from the worker: into the table in the transaction that also
 *		records the queue row's new state.
 *
 *-------------------------------------------------------------------------
 */
#include "audit/audit.h"
#include "settings/settings.h"

#include "utils/timestamp.h"

/* Say once per session that the audit is transactional here, and why. */
static void
notice_transactional_audit(void)
{
	static bool noticed = false;

	if (noticed)
		return;
	noticed = true;
	if (!atlas_shmem_preloaded())
		ereport(NOTICE,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("atlas_users is not preloaded: audit rows are written in the calling transaction"),
				 errdetail("A rollback of this transaction also removes its audit rows; failures are always in the server log."),
				 errhint("Add atlas_users to shared_preload_libraries to make the audit durable and start the queue worker.")));
	else
		ereport(NOTICE,
				(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
				 errmsg("the atlas_users worker does not serve this database: audit rows are written in the calling transaction"),
				 errdetail("The worker connects to atlas_users.database = \"%s\".", atlas_database),
				 errhint("Run offboarding in that database for a durable audit.")));
}

/*
 * Record a finished removal in the audit trail: every failure in the
 * server log at once; then the record to the worker (a session, when the
 * worker serves this database) or into the table in this transaction.
 */
void
atlas_audit_call(AtlasCall *call, AtlasAuditMode mode)
{
	AuditRecord rec;
	bool		failed = (call->outcome == ATLAS_OUTCOME_FAILED);

	atlas_audit_record_from_call(call, &rec);
	if (failed)
		atlas_audit_log(&rec, "failed call");
	if (mode == ATLAS_AUDIT_SESSION && atlas_shmem_audit_available())
	{
		if (!atlas_shmem_hand_audit(&rec) && !failed)
			atlas_audit_log(&rec, "audit buffer full");
		return;
	}
	if (mode == ATLAS_AUDIT_SESSION)
		notice_transactional_audit();
	atlas_audit_insert(&rec);
}

/*
 * Audit a removal that an error (query cancel, statement_timeout,
 * shutdown) interrupted: one that finished keeps its outcome, one still
 * waiting for its answer is failed.  This runs in error cleanup, before
 * the transaction aborts, so it only logs and hands over; no SPI.
 */
void
atlas_audit_interrupted(AtlasCall *call)
{
	AuditRecord rec;
	bool		finished = (call->outcome != ATLAS_OUTCOME_NONE);
	bool		durable = atlas_shmem_audit_available();

	if (!finished)
	{
		call->outcome = ATLAS_OUTCOME_FAILED;
		call->answer.http_status = 0;
		call->attempts = Max(call->attempts, 1);
		call->duration_ms = (double) (GetCurrentTimestamp() - call->started_at) / 1000.0;
		call->answer.error_code = NULL;
		call->answer.excerpt = NULL;
		call->answer.detail = "The call was interrupted (query cancel, statement_timeout or shutdown) before Atlas answered; Atlas may or may not have removed the user.";
	}
	atlas_audit_record_from_call(call, &rec);
	if (!durable || call->outcome == ATLAS_OUTCOME_FAILED)
		atlas_audit_log(&rec, finished ? "call in an interrupted statement" : "interrupted call");
	if (durable)
		(void) atlas_shmem_hand_audit(&rec);
}
