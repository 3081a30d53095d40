/*-------------------------------------------------------------------------
 *
 * atlas_users.h
 *	  Declarations shared by the atlas_users source files.
 *
 * Each .c file owns one concern; this header only names what crosses
 * file boundaries.  See the header comment of each file for details.
 * No libcurl type appears here: the transport (http.c, http_url.c)
 * keeps libcurl to itself, and only the executor sends requests.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_USERS_H
#define ATLAS_USERS_H

#include "postgres.h"

#include "compat.h"

#include "datatype/timestamp.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "parse.h"

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

/* ----------------------------------------------------------------
 * guc.c: settings; keyfile.c: secrets in key files
 * ----------------------------------------------------------------
 */
typedef enum AtlasAuthMethod
{
	ATLAS_AUTH_AUTO,
	ATLAS_AUTH_DIGEST,
	ATLAS_AUTH_SERVICE_ACCOUNT
} AtlasAuthMethod;

extern char *atlas_base_url;
extern char *atlas_ca_file;
extern char *atlas_proxy;
extern char *atlas_public_key;
extern char *atlas_private_key;
extern char *atlas_private_key_file;
extern char *atlas_client_id;
extern char *atlas_client_secret;
extern char *atlas_client_secret_file;
extern int	atlas_auth_method;
extern char *atlas_api_version;
extern int	atlas_timeout_ms;
extern int	atlas_connect_timeout_ms;
extern int	atlas_max_concurrency;
extern int	atlas_max_retries;
extern int	atlas_rate_limit_max_wait_s;
extern int	atlas_rate_limit_sets_ttl_s;
extern int	atlas_max_attempts;
extern int	atlas_page_size;
extern int	atlas_max_pages;
extern int	atlas_max_invitation_reads;
extern int	atlas_listing_timeout_ms;
extern int	atlas_worker_lookup_timeout_ms;
extern int	atlas_retry_base_ms;
extern int	atlas_queue_retention_s;
extern int	atlas_audit_min_retention_min;
extern char *atlas_database;
extern char *atlas_server;
extern char *atlas_trusted_server_owners;
extern int	atlas_server_timeout_max_ms;
extern int	atlas_guard_max_removals;
extern int	atlas_guard_window_s;
extern int	atlas_guard_max_share;
extern bool atlas_require_approval;
extern int	atlas_offboarding_target_s;

extern void atlas_define_settings(void);
extern bool atlas_api_version_ok(const char *v, char **why);
extern void atlas_settings_check(void);
extern char *atlas_secret_value(const char *inline_name, const char *inline_value,
								const char *file_name, const char *file_path);

/* ----------------------------------------------------------------
 * validate.c: input checks done before any network traffic
 * ----------------------------------------------------------------
 */
extern char *atlas_id_arg(FunctionCallInfo fcinfo, int argno, const char *param);
extern char *atlas_username_arg(FunctionCallInfo fcinfo, int argno, const char *param);
extern bool atlas_is_username(const char *s);
extern bool atlas_bool_arg(FunctionCallInfo fcinfo, int argno, const char *param);

/* the longest reason and ticket (bytes) kept in the queue and the audit */
#define ATLAS_REASON_MAX 255
#define ATLAS_TICKET_MAX 127
extern char *atlas_evidence_text(const char *value, const char *param, int maxlen);
extern void atlas_evidence_args(FunctionCallInfo fcinfo, int argno, char **reason,
								char **ticket);

/* ----------------------------------------------------------------
 * http.c, http_url.c: the transport's start and its URL helpers
 * ----------------------------------------------------------------
 */
extern void http_init(void);
extern void http_forget_handles(void);
extern char *http_escape(const char *s);
extern bool http_base_url_ok(const char *url, const char *what, char **why);
extern bool http_proxy_url_ok(const char *url, const char *what, char **why);
extern char *http_url_host(const char *url);
extern time_t http_date(const char *value);
extern bool http_url_same_origin(const char *url, const char *base);

/* ----------------------------------------------------------------
 * credentials.c: where calls go, and with which credentials
 * ----------------------------------------------------------------
 */
typedef struct AtlasTarget
{
	char	   *base_url;		/* without a trailing slash */
	char	   *host;			/* host[:port] of base_url, for messages */
	char	   *ca_file;		/* "" for the system store */
	char	   *api_version;	/* pinned resource version, or NULL */
	int			timeout_ms;
	int			connect_timeout_ms;
	AtlasAuthMethod method;		/* DIGEST or SERVICE_ACCOUNT, never AUTO */
	char	   *username;		/* public key or client id */
	char	   *secret;			/* private key or client secret */
	uint8		secret_hash[32];	/* SHA-256 of the secret, its identity */
	uint8		identity[32];	/* SHA-256 of base_url, username and secret_hash */
	uint32		credentials_key;	/* identity of the method, username and secret */
	uint32		key;			/* and of base_url and the CA file too */
	char	   *server;			/* the foreign server, or NULL: the settings */
	Oid			server_oid;
	Oid			role;			/* whose user mapping */
	char	   *org_id;			/* the organization the server is for, or NULL */
	char	   *proxy;			/* proxy URL, "" for none (issue 21) */
	char	   *proxy_user;		/* proxy credentials, or NULL */
	char	   *proxy_password;
} AtlasTarget;

extern AtlasTarget *atlas_target_from_settings(bool digest_only);
extern AtlasTarget *atlas_target_new(const char *base_url, const char *ca_file,
									 const char *api_version, int timeout_ms,
									 int connect_timeout_ms);
extern void atlas_target_seal(AtlasTarget *t);
extern void atlas_target_proxy(AtlasTarget *t, const char *proxy, const char *user,
							   char *password, const char *where);
struct HttpRequest;
extern void atlas_target_proxy_request(const AtlasTarget *t, struct HttpRequest *req);
extern void atlas_target_wipe(AtlasTarget *target);

/* servers.c: which server a call uses, and its target */
extern AtlasTarget *atlas_target_for(const char *org_id, Oid role, bool digest_only);
extern List *atlas_usable_servers(Oid role);
extern List *atlas_targets_everywhere(void);
extern AtlasTarget *atlas_target_of_server(Oid server_oid, Oid role, bool digest_only);

/* fdw.c: the wrapper's options */
extern char *atlas_fdw_option(List *options, const char *name);
extern int	atlas_fdw_int_option(List *options, const char *name, int dflt);

/* ----------------------------------------------------------------
 * endpoints.c: the operations and their endpoints
 * ----------------------------------------------------------------
 */
typedef enum AtlasOperation
{
	ATLAS_OP_REMOVE_PROJECT_USER,
	ATLAS_OP_REMOVE_ORG_USER,
	ATLAS_OP_REMOVE_TEAM_USER,
	ATLAS_OP_REMOVE_PROJECT_USER_V1,
	ATLAS_OP_LIST_ORG_USERS,
	ATLAS_OP_GET_ORG_USER,
	ATLAS_OP_LIST_GROUP_USERS,
	ATLAS_OP_GET_ORG,
	ATLAS_OP_GET_GROUP,
	ATLAS_OP_LIST_TEAMS,
	ATLAS_OP_LIST_ORGS,
	ATLAS_OP_LIST_ORG_GROUPS,
	ATLAS_OP_LIST_TEAM_USERS,
	ATLAS_OP_LIST_GROUP_TEAMS,
	ATLAS_OP_LIST_ORG_INVITES,
	ATLAS_OP_LIST_GROUP_INVITES,
	ATLAS_OP_GET_FEDERATION,
	ATLAS_OP_DELETE_ORG_INVITE,
	ATLAS_OP_DELETE_GROUP_INVITE,
	ATLAS_OP_GET_CONNECTED_ORG,
	ATLAS_OP_LIST_ROLE_MAPPINGS,
	ATLAS_OP_LIST_RATE_LIMITS
} AtlasOperation;

/* an id an operation takes, in the order of its SQL arguments */
typedef enum AtlasIdKind
{
	ATLAS_ID_ORG,
	ATLAS_ID_GROUP,
	ATLAS_ID_TEAM,
	ATLAS_ID_USER
} AtlasIdKind;

#define ATLAS_MAX_IDS 4

extern const char *atlas_operation_name(AtlasOperation op);
extern AtlasOperation atlas_operation_from_name(const char *name, bool trigger_alias);
extern bool atlas_operation_removes(AtlasOperation op);
extern bool atlas_operation_is_legacy(AtlasOperation op);
extern int	atlas_operation_ids(AtlasOperation op, AtlasIdKind *kinds);
extern const char *atlas_id_param_name(AtlasIdKind kind);

/* ----------------------------------------------------------------
 * executor.c: the one way Atlas calls are run
 * ----------------------------------------------------------------
 */
typedef enum AtlasOutcome
{
	ATLAS_OUTCOME_NONE,			/* not finished */
	ATLAS_OUTCOME_SUCCEEDED,	/* Atlas answered with a 2xx */
	ATLAS_OUTCOME_ALREADY_ABSENT,	/* the user or membership was already gone */
	ATLAS_OUTCOME_FAILED
} AtlasOutcome;

typedef struct AtlasCallState AtlasCallState;

/* what Atlas answered a call, or why it could not */
typedef struct AtlasAnswer
{
	long		http_status;	/* of the last answer; 0 when there was none */
	char	   *error_code;		/* Atlas errorCode, or NULL */
	char	   *detail;			/* Atlas detail, or why the call failed */
	char	   *excerpt;		/* an excerpt of a body that is not an Atlas error */
	bool		transport_failed;	/* no answer: Atlas could not be reached */
	bool		token_failed;	/* the failure came from the token endpoint */
	bool		rate_wait;		/* not sent: Atlas's rate limit asked too long a wait */
	bool		config_failed;	/* not sent: its credentials could not be used */
	int			retry_after;	/* seconds, from the last answer; -1 if none */
	int			rate_capacity;	/* a 429's bucket: capacity, or -1 */
	int			rate_refill;	/* tokens per period, or -1 */
	int			rate_period_ms; /* or -1 */
} AtlasAnswer;

/* one Atlas operation, with its retries and its result */
typedef struct AtlasCall
{
	/* what to do, set by the caller */
	AtlasOperation op;
	AtlasTarget *target;		/* NULL: the atlas_users.* settings */
	char	   *org_id;
	char	   *group_id;
	char	   *team_id;
	char	   *user_id;
	char	   *username;		/* for the audit, when the user was named so */
	char	   *query;			/* URL query string without '?', or NULL */
	bool		missing_ok;		/* an absent user is an outcome, not a failure */
	bool		keep_body;		/* keep a successful answer's body in body */
	int64		queue_id;		/* audit: the queue row this call runs, or 0 */
	Oid			role;			/* whose credentials; InvalidOid: the current user */
	const char *requested_by;	/* audit: who asked, when not this session's user */
	const char *approved_by;	/* audit: who approved or released it, or NULL */
	const char *reason;			/* audit: why, or NULL */
	const char *ticket;			/* audit: the change ticket, or NULL */
	bool		forced;			/* audit: sent past the removal budget by force */
	bool		guard_counted;	/* the removal budget counted it already */
	void	   *owner;			/* the caller's own data */

	/* set when the call is added to a run */
	const char *method;
	char	   *path;			/* for messages: the path, ids expanded */
	const char *api_version;	/* date, or "v1.0" */
	const char *auth_method;	/* "digest" or "service_account" */
	const char *server;			/* the foreign server used, or NULL: the settings */
	Oid			server_oid;		/* and its OID */
	const char *host;			/* the host the call goes to, for messages */

	/* the result, set by the executor */
	AtlasOutcome outcome;
	AtlasAnswer answer;
	int			attempts;		/* requests made, a renewed token's retry included */
	TimestampTz started_at;
	double		duration_ms;
	char	   *body;			/* with keep_body, a successful answer's body */
	size_t		body_len;

	AtlasCallState *state;		/* the executor's */
} AtlasCall;

typedef struct AtlasRun AtlasRun;

/* where a run's calls are audited */
typedef enum AtlasAuditMode
{
	ATLAS_AUDIT_SESSION,		/* handed to the worker, else in this transaction */
	ATLAS_AUDIT_WORKER			/* the worker: in a transaction with the hook's work */
} AtlasAuditMode;

typedef struct AtlasRunSpec
{
	int			concurrency;
	int			max_retries;	/* retries of a retryable failure within the run */
	const char *progress_label; /* NOTICE progress lines under this name */
	AtlasAuditMode audit;
	bool		forget_calls;	/* free a call's memory once it is reported */

	/*
	 * finished() sees each call once it is done for good, after its audit
	 * (in the same transaction, with ATLAS_AUDIT_WORKER); it may add calls.
	 * feed() runs between transfers and may add calls; it returns false
	 * once it will add no more, with *wait_ms how soon to ask again.
	 */
	void		(*finished) (AtlasRun *run, AtlasCall *call, void *arg);
	bool		(*feed) (AtlasRun *run, void *arg, int free_slots, long *wait_ms);
	void	   *arg;
} AtlasRunSpec;

extern AtlasCall *atlas_call_new(AtlasOperation op);
extern void atlas_call_set_ids(AtlasCall *call, char **ids);
extern int	atlas_ids_arg(FunctionCallInfo fcinfo, int argno, AtlasOperation op,
						  bool with_user, char **ids);
extern AtlasRunSpec atlas_session_spec(const char *progress_label);
extern AtlasRun *atlas_run_create(const AtlasRunSpec *spec);
extern void atlas_run_add(AtlasRun *run, AtlasCall *call);
extern void atlas_run_finish_unsent(AtlasRun *run, AtlasCall *call, AtlasOutcome outcome);
extern void atlas_run_execute(AtlasRun *run);
extern void atlas_execute(AtlasCall **calls, int ncalls, const AtlasRunSpec *spec);
extern bool atlas_retry_due(const AtlasAnswer *answer, int attempt, bool queued, int64 *delay_ms);

/* ----------------------------------------------------------------
 * errors.c: failed calls as SQL errors
 * ----------------------------------------------------------------
 */
extern int	atlas_status_sqlstate(long status);
extern void atlas_raise_call_error(AtlasCall *call) pg_attribute_noreturn();
extern void atlas_answer_copy(AtlasAnswer *dst, const AtlasAnswer *src);
extern char *atlas_call_detail(AtlasCall *call);
extern char *atlas_call_message(AtlasCall *call);
extern const char *atlas_outcome_name(AtlasOutcome outcome);

/* calendar.c */
extern bool atlas_call_retired(AtlasCall *call);
extern char *atlas_call_retired_message(AtlasCall *call);
extern const char *atlas_call_successor(AtlasCall *call);

/* ----------------------------------------------------------------
 * untrusted.c: answers that may come from a hostile server
 * ----------------------------------------------------------------
 */
extern char *atlas_valid_text(const char *s, size_t len);
extern char *atlas_clean_text(const char *s, size_t len, size_t maxlen);
extern bool atlas_is_valid_utf8(const char *s, size_t len);
extern struct HTAB *atlas_strset_create(const char *name, long size);
extern bool atlas_strset_in(struct HTAB *set, const char *s, bool add);
extern void atlas_json_first_keys(cJSON *json);
extern bool atlas_string_listed(List *l, const char *s);

/* ----------------------------------------------------------------
 * owner.c: the extension's own SQL, run as its tables' owner
 * ----------------------------------------------------------------
 */
typedef void (*AtlasOwnerFn) (Oid nsp, void *arg);
extern Oid	atlas_extension_namespace(void);
extern void atlas_as_table_owner(const char *relname, AtlasOwnerFn fn, void *arg);
extern char *atlas_ext_rel(Oid nsp, const char *relname);
extern Datum atlas_text_or_null(const char *s, char *nulls, int i);

/* ----------------------------------------------------------------
 * audit.c: the audit trail
 * ----------------------------------------------------------------
 */
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

/* ----------------------------------------------------------------
 * listing.c: reading every page of an Atlas list
 * ----------------------------------------------------------------
 */
typedef enum AtlasListingEnd
{
	ATLAS_LISTING_OK,
	ATLAS_LISTING_FAILED,		/* a page's call failed: failed says how */
	ATLAS_LISTING_NOT_A_LIST,	/* an answer was not a list */
	ATLAS_LISTING_TOO_MANY_PAGES,	/* more than max_pages */
	ATLAS_LISTING_TOO_SLOW		/* longer than timeout_ms */
} AtlasListingEnd;

/* a page held back by a listing run on its own (listing.c) */
typedef struct AtlasListingHolder
{
	MemoryContextCallback cb;	/* frees json if an error ends the listing */
	cJSON	   *json;			/* the parsed page whose rows are not built yet */
	bool		fresh;			/* held in this very step */
	bool		over;			/* no next page will come */
	/* pages side by side (the first page stated the total): 0 when not */
	int			side_last;		/* the last page asked side by side */
	int			side_next;		/* the next page to ask */
	int			side_pending;	/* pages asked and not finished */
	bool		side_more;		/* the last page still links a next one */
} AtlasListingHolder;

typedef struct AtlasListing
{
	AtlasOperation op;
	AtlasTarget *target;
	char	   *org_id;
	char	   *group_id;
	char	   *team_id;
	char	   *query;			/* extra query text, "" or "name=value&" */
	bool		unpaged;		/* the answer is one JSON array, not pages */
	AtlasItemFn item;			/* called for each result */
	void	   *arg;
	void	   *owner;			/* passed on to each page's call */
	const char *label;			/* progress NOTICEs under this name; NULL: none */
	int			max_pages;		/* 0: atlas_users.max_pages */
	int			timeout_ms;		/* 0: atlas_users.listing_timeout */
	AtlasListingHolder *holder; /* set by atlas_list_all() only */
	/* progress */
	int			pages;
	int64		items;
	TimestampTz started;
	TimestampTz last_notice;
	AtlasListingEnd end;
	AtlasCall  *failed;			/* the last page read, when the listing failed */
	const char *problem;		/* why, when it was not the page's call */
} AtlasListing;

extern AtlasCall *atlas_listing_first(AtlasListing *listing);
extern AtlasCall *atlas_listing_page_done(AtlasListing *listing, AtlasCall *page);
extern void atlas_list_all(AtlasListing *listing);
extern void atlas_list_many(AtlasListing **listings, int n);
extern void atlas_raise_listing_error(AtlasListing *listing) pg_attribute_noreturn();

/* ----------------------------------------------------------------
 * invitations.c: legacy project invitations, while they live
 * ----------------------------------------------------------------
 */
typedef struct AtlasLegacyInvite
{
	char	   *id;
	char	   *group_id;
	char	   *username;
} AtlasLegacyInvite;

extern List *atlas_read_project_invites(AtlasTarget *target, const char *org_id,
										const char *label, char **unseen);
extern char *atlas_invites_unseen_retired(AtlasCall *failed);
extern char *atlas_invites_unseen_bound(int nprojects);

/* ----------------------------------------------------------------
 * lookup.c: users and memberships
 * ----------------------------------------------------------------
 */
typedef struct AtlasGroupRoles
{
	char	   *group_id;
	List	   *roles;			/* of char * */
} AtlasGroupRoles;

typedef struct AtlasOrgUser
{
	char	   *id;
	char	   *username;
	char	   *status;			/* orgMembershipStatus */
	List	   *org_roles;		/* of char * */
	List	   *groups;			/* of AtlasGroupRoles * */
	List	   *team_ids;		/* of char * */
} AtlasOrgUser;

typedef struct AtlasMembership
{
	const char *scope;			/* "org", "project" or "team" */
	char	   *id;
	char	   *name;
	List	   *roles;
	char	   *status;
} AtlasMembership;

extern void atlas_read(AtlasCall *call);
extern AtlasOrgUser *atlas_org_user_from_json(const cJSON *obj);
extern void atlas_username_listing(AtlasListing *listing, AtlasOperation op,
								   const char *org_id, const char *group_id,
								   const char *username, AtlasOrgUser **found);
extern AtlasOrgUser *atlas_fetch_org_user(const char *org_id, const char *username_or_id,
										  AtlasTarget *target);
extern List *atlas_user_membership_list(const char *org_id, AtlasOrgUser *u, bool with_names);
extern AtlasOrgUser *atlas_org_user_arg(FunctionCallInfo fcinfo, int argno,
										const char *org_id, bool *found);

/* ----------------------------------------------------------------
 * shmem.c: shared state with the worker (preloaded only)
 * ----------------------------------------------------------------
 */
extern void atlas_shmem_init(void);
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

/* token.c, pacing.c: the token cache and the rate-limit buckets */
struct LWLock;
extern Size atlas_guard_shmem_size(void);
extern void atlas_guard_shmem_init(struct LWLock *lock);
extern Size atlas_token_shmem_size(void);
extern void atlas_token_shmem_init(struct LWLock *lock);
extern uint64 atlas_token_grants(void);
extern Size atlas_pace_shmem_size(void);
extern void atlas_pace_shmem_init(struct LWLock *lock);
extern Size atlas_rate_sets_shmem_size(void);	/* rate_sets.c */
extern void atlas_rate_sets_shmem_init(struct LWLock *lock);

/* ----------------------------------------------------------------
 * guard.c: the removal budget
 * ----------------------------------------------------------------
 */
extern bool atlas_guard_admit(const char *org_id, const char *group_id,
							  const char *person, bool limited);
extern void atlas_guard_count_call(AtlasCall *call);
extern void atlas_guard_recall(void);
extern bool atlas_guard_reserve(const char *org_id, const char *group_id, char **people,
								int n, bool force, const char *what);
extern bool atlas_guard_should_warn(const char *org_id, const char *group_id);
extern void atlas_guard_burst_over(const char *org_id);
extern void atlas_guard_note_size(const char *org_id, int64 size);
extern int	atlas_guard_budget(const char *org_id, const char *group_id, int *used);

/* ----------------------------------------------------------------
 * queue_sql.c, trigger.c, queue_run.c: the removal queue
 * ----------------------------------------------------------------
 */
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

/* ----------------------------------------------------------------
 * worker.c: the background worker
 * ----------------------------------------------------------------
 */
extern void atlas_worker_register(void);
extern void atlas_worker_drain_audit(void);

#endif							/* ATLAS_USERS_H */
