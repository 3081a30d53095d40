/*-------------------------------------------------------------------------
 *
 * http.h
 *	  The HTTP transport's interface: one request and its answer, the
 *	  driver that feeds requests to http_run(), and the URL helpers.
 *
 * Only the executor (src/executor/) sends requests; the credentials and
 * the settings use the URL helpers alone.  No libcurl type appears here:
 * libcurl is included by http.c and http_url.c alone, and what it keeps
 * for a transfer hides behind the opaque "priv" pointer.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_HTTP_H
#define ATLAS_HTTP_H

#include "postgres.h"

#include <time.h>

/* how a request authenticates */
typedef enum HttpAuthKind
{
	HTTP_AUTH_NONE,
	HTTP_AUTH_DIGEST,
	HTTP_AUTH_BASIC,
	HTTP_AUTH_BEARER
} HttpAuthKind;

#define HTTP_ERROR_SIZE 256

typedef struct HttpRequest
{
	/* what to send; every string stays owned by the caller */
	const char *method;			/* "GET", "POST" or "DELETE" */
	const char *url;
	const char *body;			/* NULL for none */
	const char *accept;
	const char *content_type;	/* of the body */
	HttpAuthKind auth;
	const char *username;		/* digest or basic */
	const char *password;		/* digest or basic */
	const char *bearer;			/* bearer token */
	const char *ca_file;		/* PEM CA file; NULL or "" for the system store */
	const char *proxy;			/* proxy URL; NULL or "" for none (never the environment) */
	const char *proxy_user;		/* proxy credentials, or NULL */
	const char *proxy_password;
	int			timeout_ms;
	int			connect_timeout_ms;
	uint32		handle_key;		/* requests of other keys never share a handle */
	bool		large_response; /* may read up to HTTP_MAX_READ_RESPONSE_BYTES */

	/* what came back; the body is palloc'd in http_run()'s memory context */
	long		status;			/* HTTP status, 0 when none was received */
	bool		answered;		/* the server answered (see http.c) */
	bool		not_sent;		/* failed before the request could reach the server */
	char		error[HTTP_ERROR_SIZE]; /* why the transfer failed, or "" */
	char	   *response;		/* NUL-terminated body, never NULL */
	size_t		response_len;
	bool		response_truncated; /* the body exceeded the cap */
	char		content_type_in[128];
	char		deprecation[64];	/* Deprecation header, if any */
	char		sunset[64];		/* Sunset header, if any */
	char		date[64];		/* Date header (the server's clock), if any */
	char		error_code_header[64];	/* X-Error-Code header, if any */
	int			retry_after;	/* Retry-After seconds, -1 when absent */
	long		ratelimit_limit;	/* RateLimit-Limit, -1 when absent */
	long		ratelimit_remaining;	/* RateLimit-Remaining, -1 when absent */
	double		elapsed_ms;

	/* transport-private */
	int			slot;
	void	   *priv;			/* libcurl's header list while running */
	char	   *rbuf;			/* malloc'd while the transfer runs */
	size_t		rbuf_len;
	size_t		rbuf_cap;
} HttpRequest;


/*
 * A driver feeds requests to http_run() and learns of their completion.
 * step() runs between transfers (it may palloc, raise and run SQL) and
 * returns false when the driver has nothing left to do; next() returns a
 * request to start now, or NULL with *wait_ms set to how long to wait
 * before asking again (-1: only when a transfer finishes); done() is
 * called once for each finished request, outside any libcurl callback;
 * wait_event() (NULL: PG_WAIT_EXTENSION) names what http_run() waits for
 * while it sleeps, as a wait event.
 */
typedef struct HttpDriver
{
	bool		(*step) (void *arg, int in_flight);
	HttpRequest *(*next) (void *arg, long *wait_ms);
	void		(*done) (void *arg, HttpRequest *req);
	uint32		(*wait_event) (void *arg, int in_flight);
	void	   *arg;
	int			concurrency;
} HttpDriver;

/* upper bound of any driver's concurrency */
#define HTTP_MAX_CONCURRENCY 64

/* the most bytes of a response body that we read; of a read (a list page) */
#define HTTP_MAX_RESPONSE_BYTES (1024 * 1024)
#define HTTP_MAX_READ_RESPONSE_BYTES (4 * 1024 * 1024)

/* http_answer.c: libcurl's write and header callbacks */
extern void http_forget_answer(HttpRequest *req);
extern size_t http_response_cap(const HttpRequest *req);
extern size_t http_body_cb(char *data, size_t size, size_t nmemb, void *arg);
extern size_t http_header_cb(char *data, size_t size, size_t nmemb, void *arg);

/* http.c */
extern void http_run(HttpDriver *driver);
extern void http_prepare(HttpRequest *req);

/* http.c, http_url.c: the transport's start, and URL helpers for the settings */
extern void http_init(void);
extern void http_forget_handles(void);
extern char *http_escape(const char *s);
extern bool http_base_url_ok(const char *url, const char *what, char **why);
extern bool http_proxy_url_ok(const char *url, const char *what, char **why);
extern char *http_url_host(const char *url);
extern time_t http_date(const char *value);
extern bool http_url_same_origin(const char *url, const char *base);

#endif							/* ATLAS_HTTP_H */
