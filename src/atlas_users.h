/*-------------------------------------------------------------------------
 *
 * atlas_users.h
 *	  Declarations shared by the atlas_users source files.
 *
 * Each .c file owns one concern; this header only names what crosses
 * file boundaries.  See the header comment of each file for details.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_USERS_H
#define ATLAS_USERS_H

#include "postgres.h"

#include <curl/curl.h>

#include "datatype/timestamp.h"
#include "fmgr.h"
#include "nodes/pg_list.h"

#define ATLAS_USERS_VERSION "1.0"
#define ATLAS_USER_AGENT "atlas_users/" ATLAS_USERS_VERSION

/* the resource version every v2 operation uses unless one is pinned */
#define ATLAS_DEFAULT_API_VERSION "2025-02-19"

/* the most bytes of any response body that we read */
#define ATLAS_MAX_RESPONSE_BYTES (1024 * 1024)

/* upper bound of atlas_users.max_concurrency */
#define ATLAS_MAX_CONCURRENCY 64

/* ----------------------------------------------------------------
 * guc.c: settings
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
extern int	atlas_max_attempts;
extern int	atlas_page_size;
extern int	atlas_retry_base_ms;
extern int	atlas_queue_retention_s;
extern char *atlas_database;

extern void atlas_define_settings(void);
extern char *atlas_secret_value(const char *inline_name, const char *inline_value,
								const char *file_name, const char *file_path);

/* ----------------------------------------------------------------
 * validate.c: input checks done before any network traffic
 * ----------------------------------------------------------------
 */
extern char *atlas_id_arg(FunctionCallInfo fcinfo, int argno, const char *param);
extern bool atlas_is_atlas_id(const char *s);
extern char *atlas_username_arg(FunctionCallInfo fcinfo, int argno, const char *param);
extern bool atlas_is_username(const char *s);

/* ----------------------------------------------------------------
 * http.c: the curl_multi transport
 * ----------------------------------------------------------------
 */
typedef enum HttpAuthKind
{
	HTTP_AUTH_NONE,
	HTTP_AUTH_DIGEST,
	HTTP_AUTH_BASIC,
	HTTP_AUTH_BEARER
} HttpAuthKind;

typedef struct HttpRequest
{
	/* what to send; all strings stay owned by the caller */
	const char *method;			/* "GET", "POST" or "DELETE" */
	char	   *url;
	const char *path;			/* method-less path, for messages */
	const char *body;			/* NULL for none */
	const char *accept;
	const char *content_type;	/* of the body */
	HttpAuthKind auth;
	const char *username;		/* digest or basic */
	const char *password;		/* digest or basic */
	const char *bearer;			/* bearer token */

	/* what came back; palloc'd in the caller's memory context */
	long		status;			/* HTTP status, 0 when none was received */
	CURLcode	curl_code;		/* CURLE_OK unless the transfer failed */
	char		curl_error[CURL_ERROR_SIZE];
	char	   *response;		/* NUL-terminated body, never NULL */
	size_t		response_len;
	bool		response_truncated; /* the body exceeded the cap */
	char		content_type_in[128];
	char		deprecation[64];	/* Deprecation header, if any */
	char		sunset[64];		/* Sunset header, if any */
	char		error_code_header[64];	/* X-Error-Code header, if any */
	int			retry_after;	/* Retry-After seconds, -1 when absent */
	double		elapsed_ms;

	/* transport-private state */
	int			slot;
	struct curl_slist *headers;
	char	   *rbuf;			/* malloc'd while the transfer runs */
	size_t		rbuf_len;
	size_t		rbuf_cap;
} HttpRequest;

/*
 * A driver feeds requests to http_run() and learns of their completion.
 * next() returns a request to start now, or NULL with *wait_ms set to how
 * long to wait before asking again (-1: only when a transfer finishes).
 * done() is called once for each finished request, outside any libcurl
 * callback, so it may palloc; it must not raise errors for API answers.
 */
typedef struct HttpDriver
{
	HttpRequest *(*next) (void *arg, int in_flight, long *wait_ms);
	void		(*done) (void *arg, HttpRequest *req);
	void	   *arg;
	int			concurrency;
} HttpDriver;

extern void http_run(HttpDriver *driver);
extern void http_reset_request(HttpRequest *req);
extern char *http_escape(const char *s);
extern bool http_base_url_ok(const char *url, char **why);

/* ----------------------------------------------------------------
 * atlas_api.c: the endpoint table and the call engine
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
	ATLAS_OP_LIST_TEAMS
} AtlasOperation;

typedef enum AtlasOutcome
{
	ATLAS_OUTCOME_NONE,
	ATLAS_OUTCOME_REMOVED,
	ATLAS_OUTCOME_ALREADY_ABSENT,
	ATLAS_OUTCOME_FAILED
} AtlasOutcome;

/* one Atlas operation on one user, with its retries and its result */
typedef struct AtlasCall
{
	AtlasOperation op;
	char	   *org_id;
	char	   *group_id;
	char	   *team_id;
	char	   *user_id;
	char	   *username;		/* for the audit, when the user was named so */
	char	   *query;			/* URL query string without '?', or NULL */
	bool		missing_ok;

	/* resolved when the call is prepared */
	const char *operation;		/* audit name, e.g. "remove_project_user" */
	const char *endpoint;		/* e.g. "DELETE /api/atlas/v2/groups/{groupId}/users/{userId}" */
	const char *api_version;	/* date, or "v1.0" */
	const char *auth_method;	/* "digest" or "service_account" */

	/* the outcome */
	AtlasOutcome outcome;
	long		http_status;	/* last answer; 0 for transport failures */
	char	   *error_code;		/* Atlas errorCode, or NULL */
	char	   *detail;			/* Atlas detail, or a transport message */
	char	   *excerpt;		/* short excerpt of a non-JSON body */
	bool		transport_failed;
	bool		names_user;		/* the error names the call's user id */
	bool		retry_lookup;	/* a username lookup failed transiently */
	bool		token_failed;	/* the failure came from the token endpoint */
	int			retry_after;	/* from the last answer, -1 if none */
	int			attempts;
	TimestampTz started_at;
	double		duration_ms;

	/* engine-private */
	HttpRequest req;
	int			endpoint_index;
	TimestampTz not_before;
	uint64		token_generation;	/* of the bearer token sent */
	bool		reauthed;
	bool		finished;
} AtlasCall;

extern AtlasCall *atlas_call_new(AtlasOperation op);
extern void atlas_run_calls(AtlasCall **calls, int ncalls, int concurrency,
							int max_retries, const char *progress_label);
extern const char *atlas_base_url_trimmed(void);
extern const char *atlas_base_host(void);
extern const char *atlas_outcome_name(AtlasOutcome outcome);
extern const char *atlas_operation_name(AtlasOperation op);

/* ----------------------------------------------------------------
 * auth.c: digest keys and service-account tokens
 * ----------------------------------------------------------------
 */
typedef struct AtlasAuth
{
	AtlasAuthMethod method;		/* DIGEST or SERVICE_ACCOUNT, never AUTO */
	char	   *username;		/* public key or client id */
	char	   *secret;			/* private key or client secret */
} AtlasAuth;

extern AtlasAuth *atlas_auth_resolve(bool digest_only);
extern const char *atlas_auth_cached_token(AtlasAuth *auth, uint64 *generation);
extern void atlas_auth_forget_token(uint64 generation);
extern void atlas_auth_prepare_token_request(AtlasAuth *auth, HttpRequest *req);
extern bool atlas_auth_accept_token(AtlasAuth *auth, HttpRequest *req, char **problem);

/* ----------------------------------------------------------------
 * errors.c: Atlas answers to SQL errors
 * ----------------------------------------------------------------
 */
extern void atlas_parse_api_error(AtlasCall *call, HttpRequest *req);
extern int	atlas_status_sqlstate(long status);
extern bool atlas_is_user_absent(AtlasCall *call);
extern void atlas_raise_call_error(AtlasCall *call) pg_attribute_noreturn();
extern char *atlas_clean_text(const char *s, size_t len, size_t maxlen);
extern char *atlas_call_detail(AtlasCall *call);

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
} AuditRecord;

extern void atlas_audit_record_from_call(AtlasCall *call, AuditRecord *rec);
extern Oid	atlas_extension_namespace(void);
extern Oid	atlas_relation_owner(Oid nsp, const char *relname);
typedef void (*AtlasOwnerFn) (Oid nsp, void *arg);
extern void atlas_as_table_owner(const char *relname, AtlasOwnerFn fn, void *arg);
extern void atlas_audit_insert(AuditRecord *rec);
extern int	atlas_pin_search_path(void);
extern void atlas_unpin_search_path(int level);
extern void atlas_audit_log(AuditRecord *rec, const char *why);
extern void atlas_audit_call(AtlasCall *call);
extern void atlas_audit_after_error(AtlasCall **calls, int ncalls);

/* bulk.c */
extern void atlas_run_audited(AtlasCall **calls, int n, const char *progress_label);

/* ----------------------------------------------------------------
 * lookup.c: reading users and memberships
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

extern AtlasOrgUser *atlas_fetch_org_user(const char *org_id, const char *username_or_id);
extern char *atlas_find_group_user_id(const char *group_id, const char *username);
extern AtlasCall *atlas_lookup_last_failure(bool reset);
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
extern void atlas_shmem_worker_info(pid_t *pid, TimestampTz *activity, uint64 *logged_instead);

/* ----------------------------------------------------------------
 * queue.c: the removal queue
 * ----------------------------------------------------------------
 */
extern int	atlas_queue_worker_batch(int max_items);
extern uint64 atlas_queue_recover(void);
extern uint64 atlas_queue_purge(void);
extern TimestampTz atlas_queue_next_due(void);

/* ----------------------------------------------------------------
 * worker.c: the background worker
 * ----------------------------------------------------------------
 */
extern void atlas_worker_register(void);

#endif							/* ATLAS_USERS_H */
