/*-------------------------------------------------------------------------
 *
 * atlas.h
 *	  The Atlas API as data: the operations and their endpoints (endpoints.c),
 *	  one call and its answer, and the checks of what a server may have
 *	  sent (untrusted.c).  Nothing here sends a request: the executor does.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_ATLAS_H
#define ATLAS_ATLAS_H

#include "atlas_users.h"
#include "atlas/parse.h"
#include "datatype/timestamp.h"
#include "nodes/pg_list.h"

/* endpoints.c: the operations, and the endpoints that serve them */
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

/* one Atlas operation with its result; the executor runs it */
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
	struct AtlasTarget *target;	/* NULL: the atlas_users.* settings */
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

typedef struct AtlasEndpoint
{
	AtlasOperation op;
	const char *name;			/* operation name in the audit and the queue */
	const char *alias;			/* the trigger's short name; NULL: not a queued removal */
	const char *method;
	const char *route;			/* path template */
	const char *version;		/* resource version; NULL for v1.0 */
	bool		pinnable;		/* follows atlas_users.api_version */
	bool		legacy;			/* used only with a pinned old version */
	const char *rate_set;		/* the endpoint set whose rate limit it shares */
	AtlasIdKind rate_scope;		/* the id that scopes the limit (ATLAS_ID_USER: none) */
	const char *sunset;			/* YYYY-MM-DD the spec announces, or NULL (calendar.c) */
	const char *successor;		/* what replaces it after the sunset, or NULL */
} AtlasEndpoint;

extern bool atlas_operation_lookup(const char *name, bool trigger_alias, AtlasOperation *op);
extern const AtlasEndpoint *atlas_endpoint_for(AtlasOperation op, const char *pinned);
extern int	atlas_endpoint_index(const AtlasEndpoint *ep);
extern int	atlas_endpoint_count(void);
extern const AtlasEndpoint *atlas_endpoint_at(int i);
extern char *atlas_endpoint_path(const AtlasEndpoint *ep, AtlasCall *call);
extern char *atlas_call_id(AtlasCall *call, AtlasIdKind kind);

extern AtlasCall *atlas_call_new(AtlasOperation op);
extern void atlas_call_set_ids(AtlasCall *call, char **ids);
extern const char *atlas_outcome_name(AtlasOutcome outcome);

/* untrusted.c: answers that may come from a hostile server */
extern char *atlas_valid_text(const char *s, size_t len);
extern char *atlas_clean_text(const char *s, size_t len, size_t maxlen);
extern bool atlas_is_valid_utf8(const char *s, size_t len);
extern struct HTAB *atlas_strset_create(const char *name, long size);
extern bool atlas_strset_in(struct HTAB *set, const char *s, bool add);
extern void atlas_json_first_keys(cJSON *json);
extern bool atlas_string_listed(List *l, const char *s);
extern void *atlas_list_entry(List **list, MemoryContext cxt, Size size,
							  Size key_offset, const void *key, Size key_size);

#endif							/* ATLAS_ATLAS_H */
