/*-------------------------------------------------------------------------
 *
 * http.c
 *	  The HTTP transport: libcurl's multi interface driven by a wait loop
 *	  that checks for interrupts.
 *
 * While it sleeps in curl_multi_poll it reports the driver's wait event.
 *
 * With http_url.c, the only file that includes libcurl.  One multi handle and up
 * to HTTP_MAX_CONCURRENCY easy handles live for the whole backend.
 * Keeping them is what makes steady state cheap: the multi handle's
 * connection cache keeps the TCP and TLS connection open, and each easy
 * handle keeps libcurl's digest nonce, so a session pays one 401 challenge
 * and one connection, not one per request.  A handle serves requests of
 * one handle key (credentials), CA file and proxy only, so digest state
 * never carries over to other credentials.  A handle uses the proxy its
 * requests name, or none: never one from the server's environment.
 *
 * http_run() runs the requests a driver hands it, up to the driver's
 * concurrency at once.  libcurl allocates with malloc, so everything of
 * libcurl's that a transfer owns is released on every path: a query
 * cancel, statement_timeout or any error thrown while transfers are in
 * flight removes them from the multi handle (which closes their
 * connections) and frees their buffers before the error goes on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "atlas_users.h"
#include "transport/http.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

/* the longest we sleep in curl_multi_poll before checking for interrupts */
#define HTTP_POLL_MS 50

static CURLM *multi = NULL;
static CURL *slot_handle[HTTP_MAX_CONCURRENCY];
static uint32 slot_key[HTTP_MAX_CONCURRENCY];	/* handle_key and CA file */
static HttpRequest *slot_req[HTTP_MAX_CONCURRENCY];
static char slot_error[HTTP_MAX_CONCURRENCY][CURL_ERROR_SIZE];

/* Create the multi handle on first use. */
static void
ensure_multi(void)
{
	if (multi != NULL)
		return;
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) (HTTP_MAX_CONCURRENCY + 4));
}

/* A string's hash, NULL as "". */
static uint32
hash_text(const char *s)
{
	return s ? hash_bytes((const unsigned char *) s, strlen(s)) : 0;
}

/* The key of the handle a request needs: its own key, CA file and proxy. */
static uint32
request_handle_key(const HttpRequest *req)
{
	uint32		key = hash_combine(req->handle_key, hash_text(req->ca_file));

	key = hash_combine(key, hash_text(req->proxy));
	key = hash_combine(key, hash_text(req->proxy_user));
	return hash_combine(key, hash_text(req->proxy_password));
}

/*
 * The proxy of a handle: the request's, through a CONNECT tunnel (TLS to
 * Atlas is still verified end to end), or none.  libcurl would otherwise
 * follow http_proxy, https_proxy, all_proxy and no_proxy from the
 * server's environment: an empty CURLOPT_PROXY turns that off, and an
 * empty CURLOPT_NOPROXY sends every host through a configured proxy.
 */
static void
set_proxy(CURL *h, const HttpRequest *req)
{
	bool		with = (req->proxy != NULL && req->proxy[0] != '\0');

	curl_easy_setopt(h, CURLOPT_PROXY, with ? req->proxy : "");
	if (!with)
		return;
	curl_easy_setopt(h, CURLOPT_NOPROXY, "");
	curl_easy_setopt(h, CURLOPT_HTTPPROXYTUNNEL, 1L);
	if (req->ca_file && req->ca_file[0])
		curl_easy_setopt(h, CURLOPT_PROXY_CAINFO, req->ca_file);
	if (req->proxy_user != NULL)
	{
		curl_easy_setopt(h, CURLOPT_PROXYAUTH, (long) CURLAUTH_ANY);
		curl_easy_setopt(h, CURLOPT_PROXYUSERNAME, req->proxy_user);
		curl_easy_setopt(h, CURLOPT_PROXYPASSWORD, req->proxy_password ? req->proxy_password : "");
	}
}

/*
 * Return the easy handle of a slot for a request, creating it when missing
 * or made for another key: another CA file (libcurl has no way back to
 * its default store) or other credentials (whose digest state must not
 * carry over).
 */
static CURL *
slot_easy(int slot, const HttpRequest *req)
{
	uint32		key = request_handle_key(req);

	if (slot_handle[slot] != NULL && slot_key[slot] != key)
	{
		curl_easy_cleanup(slot_handle[slot]);
		slot_handle[slot] = NULL;
	}
	if (slot_handle[slot] == NULL)
	{
		CURL	   *h = curl_easy_init();

		if (h == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl handle")));
		/* the options that never change for a handle */
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "https");
		curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
		if (req->ca_file && req->ca_file[0])
			curl_easy_setopt(h, CURLOPT_CAINFO, req->ca_file);
		set_proxy(h, req);
		curl_easy_setopt(h, CURLOPT_USERAGENT, ATLAS_USER_AGENT);
		curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, http_body_cb);
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, http_header_cb);
		slot_handle[slot] = h;
		slot_key[slot] = key;
	}
	return slot_handle[slot];
}

/*
 * Drop every idle easy handle, and with them the digest state of the
 * credentials they were used with.  Connections stay in the multi
 * handle's cache.
 */
void
http_forget_handles(void)
{
	int			slot;

	for (slot = 0; slot < HTTP_MAX_CONCURRENCY; slot++)
	{
		if (slot_handle[slot] != NULL && slot_req[slot] == NULL)
		{
			curl_easy_cleanup(slot_handle[slot]);
			slot_handle[slot] = NULL;
		}
	}
}

/* A free slot for a request, preferring one whose handle fits it. */
static int
free_slot(const HttpRequest *req, int concurrency)
{
	uint32		key = request_handle_key(req);
	int			any = -1;
	int			slot;

	for (slot = 0; slot < concurrency; slot++)
	{
		if (slot_req[slot] != NULL)
			continue;
		if (slot_handle[slot] != NULL && slot_key[slot] == key)
			return slot;
		if (any < 0)
			any = slot;
	}
	Assert(any >= 0);
	return any;
}

/* Append a header line, raising on allocation failure. */
static void
add_header(HttpRequest *req, const char *name, const char *value)
{
	char		line[256];
	struct curl_slist *l;

	snprintf(line, sizeof(line), "%s: %s", name, value);
	l = curl_slist_append((struct curl_slist *) req->priv, line);
	if (l == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	req->priv = l;
}

/* Set every per-request option on the slot's handle and start it. */
static void
start_request(int slot, HttpRequest *req)
{
	static const long auth_mask[] = {CURLAUTH_NONE, CURLAUTH_DIGEST, CURLAUTH_BASIC, CURLAUTH_BEARER};
	CURL	   *h = slot_easy(slot, req);
	bool		with_password = (req->auth == HTTP_AUTH_DIGEST || req->auth == HTTP_AUTH_BASIC);
	CURLMcode	mc;

	http_prepare(req);
	req->slot = slot;
	slot_req[slot] = req;

	if (req->accept)
		add_header(req, "Accept", req->accept);
	if (req->body)
		add_header(req, "Content-Type", req->content_type ? req->content_type : "application/json");
	add_header(req, "Expect", "");

	curl_easy_setopt(h, CURLOPT_URL, req->url);
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) http_response_cap(req));
	curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);	/* resets the method */
	if (strcmp(req->method, "POST") == 0)
	{
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long) strlen(req->body ? req->body : ""));
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
	}
	else if (strcmp(req->method, "GET") == 0)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
	else
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, (struct curl_slist *) req->priv);

	/* libcurl does digest and Basic itself; a bearer token is a header of its own */
	curl_easy_setopt(h, CURLOPT_HTTPAUTH, auth_mask[req->auth]);
	curl_easy_setopt(h, CURLOPT_USERNAME, with_password ? req->username : NULL);
	curl_easy_setopt(h, CURLOPT_PASSWORD, with_password ? req->password : NULL);
	curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, req->auth == HTTP_AUTH_BEARER ? req->bearer : NULL);

	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long) req->timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long) req->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, req);
	slot_error[slot][0] = '\0';
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, slot_error[slot]);
	curl_easy_setopt(h, CURLOPT_PRIVATE, req);

	mc = curl_multi_add_handle(multi, h);
	if (mc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not start an HTTP transfer: %s", curl_multi_strerror(mc))));
}

/* Detach a slot's transfer and free what libcurl allocated for it. */
static void
release_slot(int slot)
{
	HttpRequest *req = slot_req[slot];

	if (slot_handle[slot] != NULL)
	{
		curl_multi_remove_handle(multi, slot_handle[slot]);
		/* drop pointers into memory that is about to go away */
		curl_easy_setopt(slot_handle[slot], CURLOPT_HTTPHEADER, NULL);
		curl_easy_setopt(slot_handle[slot], CURLOPT_ERRORBUFFER, NULL);
		curl_easy_setopt(slot_handle[slot], CURLOPT_POSTFIELDS, NULL);
		curl_easy_setopt(slot_handle[slot], CURLOPT_XOAUTH2_BEARER, NULL);
	}
	if (req != NULL)
	{
		curl_slist_free_all((struct curl_slist *) req->priv);
		req->priv = NULL;
		free(req->rbuf);
		req->rbuf = NULL;
		req->rbuf_len = req->rbuf_cap = 0;
		req->slot = -1;
	}
	slot_req[slot] = NULL;
}

/* Did the transfer fail before the request could reach the server? */
static bool
failed_before_sending(CURLcode result)
{
	switch (result)
	{
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_COULDNT_CONNECT:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_UNSUPPORTED_PROTOCOL:
		case CURLE_URL_MALFORMAT:
			return true;
		default:
			return false;
	}
}

/*
 * Record a finished transfer's results in palloc'd memory.
 *
 * Did the server answer?  libcurl keeps the last status line it saw (a
 * digest challenge's 401, say) even when the transfer then failed, so a
 * status counts only if the transfer completed, or its body was cut at
 * our cap.  A 2xx to a request other than GET counts even when the body
 * broke off: the server acted.
 */
static void
finish_request(int slot, CURLcode result, MemoryContext cxt)
{
	HttpRequest *req = slot_req[slot];
	CURL	   *h = slot_handle[slot];
	long		code = 0;
	long		proxy_code = 0;
	double		total = 0;
	MemoryContext old;

	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(h, CURLINFO_HTTP_CONNECTCODE, &proxy_code);
	curl_easy_getinfo(h, CURLINFO_TOTAL_TIME, &total);

	req->status = code;
	/* libcurl refused the body by its Content-Length: the same cap as ours */
	if (result == CURLE_FILESIZE_EXCEEDED)
		req->response_truncated = true;
	req->answered = code >= 100 &&
		(result == CURLE_OK || req->response_truncated ||
		 (code >= 200 && code < 300 && strcmp(req->method, "GET") != 0));
	/* a proxy that refused the tunnel passed nothing on */
	req->not_sent = !req->answered && (failed_before_sending(result) || proxy_code >= 300);
	req->elapsed_ms = total * 1000.0;
	if (result != CURLE_OK)
		strlcpy(req->error, slot_error[slot][0] ? slot_error[slot] : curl_easy_strerror(result),
				sizeof(req->error));

	old = MemoryContextSwitchTo(cxt);
	req->response_len = req->rbuf_len;
	req->response = palloc(req->rbuf_len + 1);
	if (req->rbuf_len > 0)
		memcpy(req->response, req->rbuf, req->rbuf_len);
	req->response[req->rbuf_len] = '\0';
	MemoryContextSwitchTo(old);

	release_slot(slot);
}

/* Start as many of the driver's requests as there are free slots. */
static int
start_ready(HttpDriver *driver, int concurrency, int in_flight, long *wait_ms)
{
	*wait_ms = -1;
	while (in_flight < concurrency)
	{
		HttpRequest *req = driver->next(driver->arg, wait_ms);

		if (req == NULL)
			break;
		start_request(free_slot(req, concurrency), req);
		in_flight++;
	}
	return in_flight;
}

/* Hand every transfer that finished to the driver; returns how many. */
static int
collect_finished(HttpDriver *driver, MemoryContext cxt)
{
	CURLMsg    *msg;
	int			left;
	int			finished = 0;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		HttpRequest *req = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		if (req == NULL || req->slot < 0)
			continue;
		finish_request(req->slot, msg->data.result, cxt);
		driver->done(driver->arg, req);
		finished++;
	}
	return finished;
}

/* Raise for a failure to drive libcurl itself. */
static void
check_multi(CURLMcode mc)
{
	if (mc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("HTTP transport failure: %s", curl_multi_strerror(mc))));
}

/*
 * Run a driver's requests to completion, at most driver->concurrency at a
 * time.  Raises only for interrupts, for failures to drive libcurl and for
 * the driver's own errors; every HTTP answer or transfer failure is
 * reported through done().  On any error, every transfer in flight is
 * removed (which closes its connection) and its buffers freed before the
 * error goes on.
 */
void
http_run(HttpDriver *driver)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int concurrency = Max(1, Min(driver->concurrency, HTTP_MAX_CONCURRENCY));

	ensure_multi();

	PG_TRY();
	{
		int			in_flight = 0;

		for (;;)
		{
			bool		more = driver->step(driver->arg, in_flight);
			long		wait_ms;
			int			running = 0;
			int			finished;

			in_flight = start_ready(driver, concurrency, in_flight, &wait_ms);
			if (in_flight == 0 && !more)
				break;

			check_multi(curl_multi_perform(multi, &running));
			finished = collect_finished(driver, cxt);
			in_flight -= finished;

			/* nothing finished: sleep until a socket stirs, or a retry is due */
			if (finished == 0)
			{
				long		timeout = HTTP_POLL_MS;
				CURLMcode	mc;

				if (wait_ms >= 0)
					timeout = Min(Max(wait_ms, 1), HTTP_POLL_MS);
				pgstat_report_wait_start(driver->wait_event
										 ? driver->wait_event(driver->arg, in_flight)
										 : PG_WAIT_EXTENSION);
				mc = curl_multi_poll(multi, NULL, 0, (int) timeout, NULL);
				pgstat_report_wait_end();
				check_multi(mc);
			}
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		int			slot;

		for (slot = 0; slot < HTTP_MAX_CONCURRENCY; slot++)
			if (slot_req[slot] != NULL)
				release_slot(slot);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* Initialise libcurl; once per process, from _PG_init. */
void
http_init(void)
{
	CURLcode	rc = curl_global_init(CURL_GLOBAL_ALL);

	if (rc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl: %s", curl_easy_strerror(rc))));
}
