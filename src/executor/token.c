/*-------------------------------------------------------------------------
 *
 * token.c
 *	  Service-account tokens: the request that trades a client id and
 *	  secret for a bearer token, and the cache that shares the token.
 *
 * Atlas allows each service account 100 active tokens, each valid an
 * hour, and 50 token requests a minute per address and client.  So a
 * token is fetched once and reused until shortly before it expires
 * (expires_in minus a minute, or a tenth of a short lifetime).  With
 * shared_preload_libraries the cache lives in shared memory and serves
 * every backend and the worker: one token per cluster and credentials.
 * Without it, each backend keeps its own.
 *
 * A slot is keyed by the credentials' whole identity: the SHA-256 of the
 * base URL (of any length), the client id and the SHA-256 of the secret,
 * never the secret itself.  Credentials with another secret (a role's own
 * user mapping with the same client id, say) have a slot of their own, so
 * their failures never wipe or evict a slot that holds a token: a new
 * identity takes a free slot, or one holding no token, and only when every
 * slot holds a valid token the least recently used one.  Exactly one fetch
 * runs per identity, in the cluster and within a process: the other calls
 * wait for it (the executor asks again every 20 ms, so a cancel works
 * while it waits), then take its token, or its failure instead of fetching
 * again.  A final refusal of the credentials (400, 401, 403) also backs
 * that identity off (1 s, doubling to a minute): its calls meanwhile fail
 * at once with the same failure, so that a wrong secret cannot spend the
 * client id's token requests.  A token
 * Atlas rejects with a 401 is dropped once, for everyone.  Tokens are
 * wiped from memory when replaced, and are never logged, shown, or written
 * to a table.
 *
 *-------------------------------------------------------------------------
 */
#include "executor/executor_int.h"
#include "shared/shared.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* identities served at once; see find_slot() for which slot is reused */
#define TOKEN_SLOTS 32
/* the longest back-off after failed fetches of one identity */
#define FETCH_BACKOFF_MAX_MS 60000
/* a fetch not finished after its time limit and this margin is abandoned */
#define FETCH_GRACE_MS 5000

typedef struct TokenSlot
{
	bool		used;
	uint8		identity[32];	/* the target's identity: the key */
	char		token[ATLAS_TOKEN_MAX + 1];
	TimestampTz valid_until;	/* 0: no token */
	uint64		generation;		/* of the token held */
	pid_t		fetcher;		/* the process fetching one, or 0 */
	TimestampTz fetch_deadline; /* after which its fetch is abandoned */
	TimestampTz last_used;
	/* the last fetch that failed, for the processes that waited for it */
	TimestampTz failed_at;
	TimestampTz retry_not_before;
	int			failures;		/* final failures in a row */
	TimestampTz backoff_until;	/* calls fail at once until then */
	AtlasTokenFailure failure;
} TokenSlot;

typedef struct TokenCache
{
	LWLock	   *lock;			/* NULL in a backend-local cache */
	uint64		generation;		/* the last generation handed out */
	uint64		grants;			/* tokens fetched */
	TokenSlot	slots[TOKEN_SLOTS];
} TokenCache;

static TokenCache *cache = NULL;
static bool exit_callback_registered = false;

/* The token cache's shared memory, for init.c. */
const AtlasSharedSpec atlas_token_shared = {
	"atlas_users tokens", sizeof(TokenCache), (void **) &cache, NULL
};

/* The cache: the shared one, or a backend-local one made on first use. */
static TokenCache *
token_cache(void)
{
	return atlas_shared_get(&atlas_token_shared);
}

/* Wipe a slot's token. */
static void
wipe_token(TokenSlot *slot)
{
	explicit_bzero(slot->token, sizeof(slot->token));
	slot->valid_until = 0;
}

/* Does the slot hold a token that is still valid? */
static bool
holds_token(const TokenSlot *slot, TimestampTz now)
{
	return slot->valid_until > now;
}

/*
 * The slot of a target's identity, under the lock; or a new one for it:
 * a free slot, else the least recently used one that holds no valid token
 * and is not being fetched, else the least recently used one.  So
 * credentials that never get a token (a wrong secret) cannot push out one
 * that has, unless every slot holds a valid token.
 */
static TokenSlot *
find_slot(TokenCache *c, const AtlasTarget *target)
{
	TimestampTz now = GetCurrentTimestamp();
	TokenSlot  *free_slot = NULL;
	TokenSlot  *idle = NULL;		/* LRU of the slots holding no token */
	TokenSlot  *lru = NULL;
	TokenSlot  *victim;
	int			i;

	for (i = 0; i < TOKEN_SLOTS; i++)
	{
		TokenSlot  *slot = &c->slots[i];

		if (!slot->used)
		{
			if (free_slot == NULL)
				free_slot = slot;
			continue;
		}
		if (memcmp(slot->identity, target->identity, sizeof(slot->identity)) == 0)
			return slot;
		if (lru == NULL || slot->last_used < lru->last_used)
			lru = slot;
		if (!holds_token(slot, now) && !(slot->fetcher != 0 && slot->fetch_deadline > now) &&
			(idle == NULL || slot->last_used < idle->last_used))
			idle = slot;
	}
	victim = free_slot ? free_slot : (idle ? idle : lru);
	wipe_token(victim);
	memset(victim, 0, sizeof(TokenSlot));
	victim->used = true;
	memcpy(victim->identity, target->identity, sizeof(victim->identity));
	return victim;
}

/* Give up every fetch this process holds (error cleanup, exit). */
void
atlas_token_release_fetches(void)
{
	TokenCache *c = cache;
	int			i;

	if (c == NULL)
		return;
	atlas_shared_lock(c, LW_EXCLUSIVE);
	for (i = 0; i < TOKEN_SLOTS; i++)
		if (c->slots[i].fetcher == MyProcPid)
			c->slots[i].fetcher = 0;
	atlas_shared_unlock(c);
}

/* At exit, give up the fetches this process held. */
static void
release_at_exit(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	atlas_token_release_fetches();
}

/* Make this process the slot's fetcher. */
static void
claim_fetch(TokenSlot *slot, const AtlasTarget *target, TimestampTz now)
{
	if (!exit_callback_registered)
	{
		before_shmem_exit(release_at_exit, (Datum) 0);
		exit_callback_registered = true;
	}
	slot->fetcher = MyProcPid;
	slot->fetch_deadline = TimestampTzPlusMilliseconds(now, target->timeout_ms + FETCH_GRACE_MS);
}

/*
 * The token for a target.  READY copies it into buf (ATLAS_TOKEN_MAX + 1
 * bytes) unless *generation already names it.  FETCH makes the caller the
 * one process that fetches it.  WAIT: another process is fetching, or the
 * last fetch asked to wait (*wait_ms).  FAILED: a fetch that failed after
 * the caller began to wait (waiting_since), described in *failure.
 */
AtlasTokenState
atlas_token_get(const AtlasTarget *target, char *buf, uint64 *generation,
				TimestampTz waiting_since, AtlasTokenFailure *failure, long *wait_ms)
{
	TokenCache *c = token_cache();
	TimestampTz now = GetCurrentTimestamp();
	AtlasTokenState state = ATLAS_TOKEN_WAIT;
	TokenSlot  *slot;

	atlas_shared_lock(c, LW_EXCLUSIVE);
	slot = find_slot(c, target);
	slot->last_used = now;
	if (slot->valid_until > now)
	{
		if (*generation != slot->generation)
		{
			strlcpy(buf, slot->token, ATLAS_TOKEN_MAX + 1);
			*generation = slot->generation;
		}
		state = ATLAS_TOKEN_READY;
	}
	else if (slot->failed_at != 0 && waiting_since != 0 && slot->failed_at >= waiting_since)
	{
		*failure = slot->failure;
		state = ATLAS_TOKEN_FAILED;
	}
	else if (slot->fetcher != 0 && slot->fetch_deadline > now)
		*wait_ms = 20;			/* one fetch at a time, in this process too */
	else if (slot->failed_at != 0 && slot->backoff_until > now)
	{
		*failure = slot->failure;
		state = ATLAS_TOKEN_FAILED;
	}
	else if (slot->retry_not_before > now && slot->failed_at != 0)
	{
		/* the last fetch failed for good and asked everyone to wait */
		*failure = slot->failure;
		state = ATLAS_TOKEN_FAILED;
	}
	else if (slot->retry_not_before > now)
		*wait_ms = Max(1, (long) ((slot->retry_not_before - now) / 1000));
	else
	{
		claim_fetch(slot, target, now);
		state = ATLAS_TOKEN_FETCH;
	}
	atlas_shared_unlock(c);
	return state;
}

/* Forget the token if it is the one Atlas just rejected: once, for everyone. */
void
atlas_token_reject(const AtlasTarget *target, uint64 generation)
{
	TokenCache *c = token_cache();
	TokenSlot  *slot;

	atlas_shared_lock(c, LW_EXCLUSIVE);
	slot = find_slot(c, target);
	if (slot->generation == generation)
		wipe_token(slot);
	atlas_shared_unlock(c);
}

/*
 * Did the token endpoint refuse the credentials themselves (400, 401,
 * 403: a wrong secret, a disabled account, the token cap)?  Asking again
 * at once would only spend the client id's 50 requests a minute, which
 * its other holders need; a corrected secret is another identity.
 */
static bool
credentials_refused(const AtlasTokenFailure *failure)
{
	return !failure->transport_failed &&
		(failure->http_status == 400 || failure->http_status == 401 || failure->http_status == 403);
}

/*
 * The fetch this process made failed.  Nobody fetches again before
 * retry_not_before (the token endpoint's Retry-After, while this process
 * retries); a final failure is also handed to the processes that waited,
 * and to every call of this identity during its back-off or before that
 * retry_not_before, so that no call waits out a long Retry-After.
 */
void
atlas_token_fetch_failed(const AtlasTarget *target, const AtlasTokenFailure *failure,
						 bool final, TimestampTz retry_not_before)
{
	TokenCache *c = token_cache();
	TokenSlot  *slot;

	atlas_shared_lock(c, LW_EXCLUSIVE);
	slot = find_slot(c, target);
	if (slot->fetcher == MyProcPid)
		slot->fetcher = 0;
	if (!final)
		slot->failed_at = 0;	/* its fetcher retries: wait for that */
	else
	{
		int			shift = Min(slot->failures, 16);

		slot->failure = *failure;
		slot->failed_at = GetCurrentTimestamp();
		if (credentials_refused(failure))
		{
			slot->failures++;
			slot->backoff_until = TimestampTzPlusMilliseconds(slot->failed_at,
															  Min((int64) 1000 << shift, FETCH_BACKOFF_MAX_MS));
		}
	}
	slot->retry_not_before = retry_not_before;
	atlas_shared_unlock(c);
}

/* Fill in the token request: POST /api/oauth/token with Basic auth. */
void
atlas_token_request(const AtlasTarget *target, HttpRequest *req)
{
	memset(req, 0, sizeof(HttpRequest));
	req->method = "POST";
	req->url = psprintf("%s/api/oauth/token", target->base_url);
	req->body = "grant_type=client_credentials";
	req->content_type = "application/x-www-form-urlencoded";
	req->accept = "application/json";
	req->auth = HTTP_AUTH_BASIC;
	req->username = target->username;
	req->password = target->secret;
	req->ca_file = target->ca_file;
	atlas_target_proxy_request(target, req);
	req->timeout_ms = target->timeout_ms;
	req->connect_timeout_ms = target->connect_timeout_ms;
	req->handle_key = target->credentials_key;
	http_prepare(req);
}

/* Keep a fetched token for everyone: store it and end the fetch. */
static void
store_token(const AtlasTarget *target, const char *token, double expires_in)
{
	TokenCache *c = token_cache();
	/* renew a minute early, or a tenth early for short tokens */
	double		margin = Min(60.0, expires_in / 10.0);
	TimestampTz now = GetCurrentTimestamp();
	TokenSlot  *slot;

	atlas_shared_lock(c, LW_EXCLUSIVE);
	slot = find_slot(c, target);
	wipe_token(slot);
	strlcpy(slot->token, token, sizeof(slot->token));
	slot->generation = ++c->generation;
	slot->valid_until = TimestampTzPlusMilliseconds(now, (int64) ((expires_in - margin) * 1000));
	if (slot->fetcher == MyProcPid)
		slot->fetcher = 0;
	slot->failed_at = slot->retry_not_before = slot->backoff_until = 0;
	slot->failures = 0;
	c->grants++;
	atlas_shared_unlock(c);
}

/*
 * Take the token from a token endpoint answer.  Returns false if there is
 * none, with *problem set when the answer was a 200 but unusable.
 */
bool
atlas_token_accept(const AtlasTarget *target, HttpRequest *req, const char **problem)
{
	AtlasTokenAnswer answer;

	*problem = NULL;
	if (req->status != 200 || !req->answered || req->response_truncated)
		return false;
	if (!atlas_parse_token_answer(req->response, req->response_len, &answer))
	{
		*problem = answer.problem;
		atlas_free_token_answer(&answer);
		return false;
	}
	store_token(target, answer.token, answer.expires_in);
	atlas_free_token_answer(&answer);
	return true;
}

/* Tokens fetched since the cache was made (shared: since the server started). */
uint64
atlas_token_grants(void)
{
	TokenCache *c = token_cache();
	uint64		n;

	atlas_shared_lock(c, LW_EXCLUSIVE);
	n = c->grants;
	atlas_shared_unlock(c);
	return n;
}

PG_FUNCTION_INFO_V1(atlas_forget_tokens);

/*
 * atlas_forget_tokens(): drop every cached service-account token (after
 * revoking tokens at Atlas, say); the next call fetches a new one.
 * Returns how many were dropped.
 */
Datum
atlas_forget_tokens(PG_FUNCTION_ARGS)
{
	TokenCache *c = token_cache();
	int			n = 0;
	int			i;

	atlas_shared_lock(c, LW_EXCLUSIVE);
	for (i = 0; i < TOKEN_SLOTS; i++)
	{
		TokenSlot  *slot = &c->slots[i];

		if (slot->valid_until != 0)
			n++;
		wipe_token(slot);
		slot->failed_at = slot->retry_not_before = slot->backoff_until = 0;
		slot->failures = 0;
	}
	atlas_shared_unlock(c);
	PG_RETURN_INT32(n);
}

/*
 * Read only, for atlas_health(): until when the cached token of a
 * target's identity is valid (0: none), and its last failure's time (0:
 * none).  Never the token itself.
 */
void
atlas_token_state(const AtlasTarget *target, TimestampTz *valid_until, TimestampTz *failed_at)
{
	TokenCache *c = token_cache();
	int			i;

	*valid_until = 0;
	*failed_at = 0;
	atlas_shared_lock(c, LW_EXCLUSIVE);
	for (i = 0; i < TOKEN_SLOTS; i++)
	{
		TokenSlot  *slot = &c->slots[i];

		if (slot->used && memcmp(slot->identity, target->identity, sizeof(slot->identity)) == 0)
		{
			*valid_until = slot->valid_until;
			*failed_at = slot->failed_at;
			break;
		}
	}
	atlas_shared_unlock(c);
}
