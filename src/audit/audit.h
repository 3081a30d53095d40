/*-------------------------------------------------------------------------
 *
 * audit.h
 *	  The audit trail: records of calls (audit.c), the hand-off ring that
 *	  carries them to the worker and the worker's identity (handoff.c), the
 *	  audit SQL functions (audit_sql.c) and the extension's own SQL, run as
 *	  its tables' owner (owner.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_AUDIT_H
#define ATLAS_AUDIT_H

#include "atlas/atlas.h"
#include "storage/lwlock.h"

/* owner.c: the extension's own SQL, run as its tables' owner */
typedef void (*AtlasOwnerFn) (Oid nsp, void *arg);
extern Oid	atlas_extension_namespace(void);
extern void atlas_as_table_owner(const char *relname, AtlasOwnerFn fn, void *arg);
extern char *atlas_ext_rel(Oid nsp, const char *relname);
extern Datum atlas_text_or_null(const char *s, char *nulls, int i);

/* audit.c: the audit trail */
/* where a run's calls are audited */
typedef enum AtlasAuditMode
{
	ATLAS_AUDIT_SESSION,		/* handed to the worker, else in this transaction */
	ATLAS_AUDIT_WORKER			/* the worker: in a transaction with the hook's work */
} AtlasAuditMode;

typedef struct AuditRecord
{
	TimestampTz at;
	char		requested_by[NAMEDATALEN];
	char		executed_as[NAMEDATALEN];
	char		operation[32];
	char		org_id[25];
	char		group_id[25];
	char		team_id[25];
	char		user_id[25];
	char		username[256];
	char		api_version[16];
	char		auth_method[16];
	int			http_status;	/* 0: no answer */
	char		outcome[16];
	char		error_code[64];
	char		detail[1024];
	double		duration_ms;
	int			attempts;
	char		server[NAMEDATALEN];	/* "": the settings */
	int64		queue_id;		/* 0: none */
	Oid			server_oid;		/* InvalidOid: the settings */
	char		approved_by[NAMEDATALEN];	/* "": none */
	char		reason[256];
	char		ticket[128];
	bool		forced;
} AuditRecord;

extern void atlas_require_writable(const char *what);
extern void atlas_audit_record_from_call(AtlasCall *call, AuditRecord *rec);
extern void atlas_audit_insert(AuditRecord *rec);
extern void atlas_audit_log(AuditRecord *rec, const char *why);
extern void atlas_audit_call(AtlasCall *call, AtlasAuditMode mode);
extern void atlas_audit_interrupted(AtlasCall *call);

/* handoff.c: records handed to the worker (preloaded only) */
extern const struct AtlasSharedSpec atlas_handoff_shared;
extern bool atlas_shmem_preloaded(void);
extern bool atlas_shmem_audit_available(void);
extern void atlas_shmem_wake_worker(void);
extern bool atlas_shmem_hand_audit(AuditRecord *rec);
extern uint64 atlas_shmem_audit_handed(void);
extern bool atlas_shmem_wait_written(uint64 target, int timeout_ms);
extern int	atlas_shmem_peek_audit(AuditRecord *out, int max);
extern void atlas_shmem_audit_done(int n);
extern void atlas_shmem_worker_attach(void);
extern int	atlas_shmem_worker_starting(void);
extern void atlas_shmem_worker_activity(void);
typedef struct AtlasWorkerInfo
{
	pid_t		pid;			/* 0: no worker */
	TimestampTz activity;
	uint64		logged_instead;
	TimestampTz paced_until;	/* a rate limit holds a removal back until then */
	char		paced_bucket[96];
} AtlasWorkerInfo;

extern void atlas_shmem_worker_waiting(TimestampTz until, const char *bucket);
extern void atlas_shmem_worker_info(AtlasWorkerInfo *info);
extern void atlas_audit_drain_handed(void);

#endif							/* ATLAS_AUDIT_H */
