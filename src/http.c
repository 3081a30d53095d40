/*-------------------------------------------------------------------------
 *
 * http.c
 *	  The HTTP transport: libcurl's multi interface driven by a wait loop
 *	  that checks for interrupts.
 *
 * One multi handle and up to ATLAS_MAX_CONCURRENCY easy handles live for
 * the whole backend.  Keeping them is what makes steady state cheap: the
 * multi handle's connection cache keeps the TCP and TLS connection open,
 * and each easy handle keeps libcurl's digest nonce, so a session pays one
 * 401 challenge and one connection, not one per request.
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
#include "atlas_users.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "miscadmin.h"
#include "utils/memutils.h"

/* the longest we sleep in curl_multi_poll before checking for interrupts */
#define HTTP_POLL_MS 50

static CURLM *multi = NULL;
static CURL *slot_handle[ATLAS_MAX_CONCURRENCY];
static char *slot_ca_file[ATLAS_MAX_CONCURRENCY];	/* malloc'd */
static HttpRequest *slot_req[ATLAS_MAX_CONCURRENCY];

/* Append received body bytes, up to the cap; runs inside libcurl. */
static size_t
write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	HttpRequest *req = (HttpRequest *) arg;
	size_t		n = size * nmemb;

	if (req->rbuf_len + n > (size_t) ATLAS_MAX_RESPONSE_BYTES)
	{
		req->response_truncated = true;
		return 0;				/* makes libcurl end the transfer */
	}
	if (req->rbuf_len + n + 1 > req->rbuf_cap)
	{
		size_t		cap = Max(req->rbuf_cap * 2, 4096);
		char	   *p;

		while (cap < req->rbuf_len + n + 1)
			cap *= 2;
		p = realloc(req->rbuf, cap);
		if (p == NULL)
			return 0;
		req->rbuf = p;
		req->rbuf_cap = cap;
	}
	memcpy(req->rbuf + req->rbuf_len, data, n);
	req->rbuf_len += n;
	req->rbuf[req->rbuf_len] = '\0';
	return n;
}

/* Copy a header value, trimmed, into a fixed buffer. */
static void
copy_header_value(char *dst, size_t dstlen, const char *v, size_t len)
{
	while (len > 0 && isspace((unsigned char) *v))
	{
		v++;
		len--;
	}
	while (len > 0 && isspace((unsigned char) v[len - 1]))
		len--;
	if (len >= dstlen)
		len = dstlen - 1;
	memcpy(dst, v, len);
	dst[len] = '\0';
}

/* Capture the few response headers we act on; runs inside libcurl. */
static size_t
header_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	HttpRequest *req = (HttpRequest *) arg;
	size_t		n = size * nmemb;
	const char *colon;
	size_t		namelen;
	const char *value;
	size_t		vlen;

	/* a new status line: forget what an earlier (e.g. 401) answer said */
	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
	{
		req->content_type_in[0] = '\0';
		req->deprecation[0] = '\0';
		req->sunset[0] = '\0';
		req->error_code_header[0] = '\0';
		req->retry_after = -1;
		req->rbuf_len = 0;
		req->response_truncated = false;
		return n;
	}
	colon = memchr(data, ':', n);
	if (colon == NULL)
		return n;
	namelen = colon - data;
	value = colon + 1;
	vlen = n - namelen - 1;

#define HEADER_IS(name) (namelen == strlen(name) && strncasecmp(data, name, namelen) == 0)
	if (HEADER_IS("Content-Type"))
		copy_header_value(req->content_type_in, sizeof(req->content_type_in), value, vlen);
	else if (HEADER_IS("Deprecation"))
		copy_header_value(req->deprecation, sizeof(req->deprecation), value, vlen);
	else if (HEADER_IS("Sunset"))
		copy_header_value(req->sunset, sizeof(req->sunset), value, vlen);
	else if (HEADER_IS("X-Error-Code"))
		copy_header_value(req->error_code_header, sizeof(req->error_code_header), value, vlen);
	else if (HEADER_IS("Retry-After"))
	{
		char		tmp[32];
		char	   *end;
		long		secs;

		copy_header_value(tmp, sizeof(tmp), value, vlen);
		secs = strtol(tmp, &end, 10);
		/* only the delta-seconds form; an HTTP-date is treated as absent */
		if (end != tmp && *end == '\0' && secs >= 0)
			req->retry_after = (int) Min(secs, 86400);
	}
#undef HEADER_IS
	return n;
}

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
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) (ATLAS_MAX_CONCURRENCY + 4));
}

/*
 * Return the easy handle of a slot, creating it when missing or when the
 * CA file changed (libcurl has no way to go back to its default store).
 */
static CURL *
slot_easy(int slot)
{
	const char *ca = atlas_ca_file ? atlas_ca_file : "";

	if (slot_handle[slot] != NULL &&
		strcmp(slot_ca_file[slot] ? slot_ca_file[slot] : "", ca) != 0)
	{
		curl_easy_cleanup(slot_handle[slot]);
		slot_handle[slot] = NULL;
		free(slot_ca_file[slot]);
		slot_ca_file[slot] = NULL;
	}
	if (slot_handle[slot] == NULL)
	{
		CURL	   *h = curl_easy_init();

		if (h == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl handle")));
		slot_ca_file[slot] = strdup(ca);
		if (slot_ca_file[slot] == NULL)
		{
			curl_easy_cleanup(h);
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		}
		/* the options that never change for a handle */
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "https");
		curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
		if (ca[0])
			curl_easy_setopt(h, CURLOPT_CAINFO, ca);
		curl_easy_setopt(h, CURLOPT_USERAGENT, ATLAS_USER_AGENT);
		curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
		curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) ATLAS_MAX_RESPONSE_BYTES);
		slot_handle[slot] = h;
	}
	return slot_handle[slot];
}

/* Prepare a request's results before it (re)starts. */
void
http_reset_request(HttpRequest *req)
{
	req->status = 0;
	req->curl_code = CURLE_OK;
	req->curl_error[0] = '\0';
	req->response = "";
	req->response_len = 0;
	req->response_truncated = false;
	req->content_type_in[0] = '\0';
	req->deprecation[0] = '\0';
	req->sunset[0] = '\0';
	req->error_code_header[0] = '\0';
	req->retry_after = -1;
	req->elapsed_ms = 0;
	req->slot = -1;
	req->headers = NULL;
	req->rbuf = NULL;
	req->rbuf_len = 0;
	req->rbuf_cap = 0;
}

/* Append a header line, raising on allocation failure. */
static void
add_header(HttpRequest *req, const char *name, const char *value)
{
	char		line[256];
	struct curl_slist *l;

	snprintf(line, sizeof(line), "%s: %s", name, value);
	l = curl_slist_append(req->headers, line);
	if (l == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	req->headers = l;
}

/* Set every per-request option on the slot's handle and start it. */
static void
start_request(int slot, HttpRequest *req)
{
	CURL	   *h = slot_easy(slot);
	CURLMcode	mc;

	http_reset_request(req);
	req->slot = slot;
	slot_req[slot] = req;

	if (req->accept)
		add_header(req, "Accept", req->accept);
	if (req->body)
		add_header(req, "Content-Type", req->content_type ? req->content_type : "application/json");
	add_header(req, "Expect", "");

	curl_easy_setopt(h, CURLOPT_URL, req->url);
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
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, req->headers);

	switch (req->auth)
	{
		case HTTP_AUTH_DIGEST:
			curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long) CURLAUTH_DIGEST);
			curl_easy_setopt(h, CURLOPT_USERNAME, req->username);
			curl_easy_setopt(h, CURLOPT_PASSWORD, req->password);
			curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, NULL);
			break;
		case HTTP_AUTH_BASIC:
			curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
			curl_easy_setopt(h, CURLOPT_USERNAME, req->username);
			curl_easy_setopt(h, CURLOPT_PASSWORD, req->password);
			curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, NULL);
			break;
		case HTTP_AUTH_BEARER:
			curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long) CURLAUTH_BEARER);
			curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, req->bearer);
			curl_easy_setopt(h, CURLOPT_USERNAME, NULL);
			curl_easy_setopt(h, CURLOPT_PASSWORD, NULL);
			break;
		case HTTP_AUTH_NONE:
			curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long) CURLAUTH_NONE);
			curl_easy_setopt(h, CURLOPT_USERNAME, NULL);
			curl_easy_setopt(h, CURLOPT_PASSWORD, NULL);
			curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, NULL);
			break;
	}

	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long) atlas_timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long) atlas_connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, req->curl_error);
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
		curl_slist_free_all(req->headers);
		req->headers = NULL;
		free(req->rbuf);
		req->rbuf = NULL;
		req->rbuf_len = req->rbuf_cap = 0;
		req->slot = -1;
	}
	slot_req[slot] = NULL;
}

/* Record a finished transfer's results in palloc'd memory. */
static void
finish_request(int slot, CURLcode result, MemoryContext cxt)
{
	HttpRequest *req = slot_req[slot];
	CURL	   *h = slot_handle[slot];
	long		code = 0;
	double		total = 0;
	MemoryContext old;

	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(h, CURLINFO_TOTAL_TIME, &total);

	req->curl_code = result;
	req->status = code;
	/* libcurl refused the body by its Content-Length: the same cap as ours */
	if (result == CURLE_FILESIZE_EXCEEDED)
		req->response_truncated = true;
	req->elapsed_ms = total * 1000.0;
	if (req->curl_error[0] == '\0' && result != CURLE_OK)
		strlcpy(req->curl_error, curl_easy_strerror(result), sizeof(req->curl_error));

	old = MemoryContextSwitchTo(cxt);
	req->response_len = req->rbuf_len;
	req->response = palloc(req->rbuf_len + 1);
	if (req->rbuf_len > 0)
		memcpy(req->response, req->rbuf, req->rbuf_len);
	req->response[req->rbuf_len] = '\0';
	MemoryContextSwitchTo(old);

	release_slot(slot);
}

/*
 * Run a driver's requests to completion, at most driver->concurrency at a
 * time.  Raises only for interrupts and for failures to drive libcurl;
 * every HTTP answer or transfer failure is reported through done().
 */
void
http_run(HttpDriver *driver)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			concurrency = Max(1, Min(driver->concurrency, ATLAS_MAX_CONCURRENCY));

	ensure_multi();

	PG_TRY();
	{
		for (;;)
		{
			int			in_flight = 0;
			int			running = 0;
			int			slot;
			long		wait_ms = -1;
			bool		more = true;
			CURLMsg    *msg;
			int			left;
			int			finished = 0;
			CURLMcode	mc;

			for (slot = 0; slot < concurrency; slot++)
				if (slot_req[slot] != NULL)
					in_flight++;

			/* start as many requests as the driver has ready */
			while (in_flight < concurrency)
			{
				HttpRequest *req;

				wait_ms = -1;
				req = driver->next(driver->arg, in_flight, &wait_ms);
				if (req == NULL)
				{
					more = (wait_ms >= 0);
					break;
				}
				for (slot = 0; slot < concurrency; slot++)
					if (slot_req[slot] == NULL)
						break;
				start_request(slot, req);
				in_flight++;
			}

			if (in_flight == 0 && !more)
				break;

			mc = curl_multi_perform(multi, &running);
			if (mc != CURLM_OK)
				ereport(ERROR,
						(errcode(ERRCODE_SYSTEM_ERROR),
						 errmsg("HTTP transport failure: %s", curl_multi_strerror(mc))));

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

			/* a slot came free: ask the driver for more before sleeping */
			if (finished == 0)
			{
				long		timeout = HTTP_POLL_MS;

				if (in_flight == 0)
					timeout = Min(wait_ms, HTTP_POLL_MS);
				mc = curl_multi_poll(multi, NULL, 0, (int) timeout, NULL);
				if (mc != CURLM_OK)
					ereport(ERROR,
							(errcode(ERRCODE_SYSTEM_ERROR),
							 errmsg("HTTP transport failure: %s", curl_multi_strerror(mc))));
			}
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		int			slot;

		for (slot = 0; slot < ATLAS_MAX_CONCURRENCY; slot++)
			if (slot_req[slot] != NULL)
				release_slot(slot);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* URL-encode a string with libcurl; the result is palloc'd. */
char *
http_escape(const char *s)
{
	char	   *e = curl_easy_escape(NULL, s, (int) strlen(s));
	char	   *r;

	if (e == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	r = pstrdup(e);
	curl_free(e);
	return r;
}

/* Is host a loopback name or address (127.0.0.0/8, ::1, localhost)? */
static bool
host_is_loopback(const char *host)
{
	struct in_addr a4;

	if (strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0)
		return true;
	return inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

/*
 * Is url acceptable as atlas_users.base_url?  It is parsed by libcurl's
 * URL API.  On failure *why says why, in static storage.
 */
bool
http_base_url_ok(const char *url, char **why)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *part = NULL;
	bool		ok = false;

	if (u == NULL)
	{
		*why = "out of memory";
		return false;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		*why = "atlas_users.base_url is not a valid URL.";
	else if (curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK)
		*why = "atlas_users.base_url must not hold credentials.";
	else if (curl_url_get(u, CURLUPART_QUERY, &part, 0) == CURLUE_OK ||
			 curl_url_get(u, CURLUPART_FRAGMENT, &part, 0) == CURLUE_OK)
		*why = "atlas_users.base_url must not have a query or a fragment.";
	else if (strcmp(scheme, "https") == 0)
		ok = true;
	else if (strcmp(scheme, "http") == 0 && host_is_loopback(host))
		ok = true;
	else if (strcmp(scheme, "http") == 0)
		*why = "atlas_users.base_url must use https; http is allowed only for loopback hosts (127.0.0.0/8, ::1, localhost).";
	else
		*why = "atlas_users.base_url must use https.";

	curl_free(scheme);
	curl_free(host);
	curl_free(part);
	curl_url_cleanup(u);
	return ok;
}
