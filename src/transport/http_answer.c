/*-------------------------------------------------------------------------
 *
 * http_answer.c
 *	  Reading an answer as it arrives: the body, up to the cap, and the few
 *	  response headers that the executor acts on; and clearing a request's
 *	  answer before it (re)starts.
 *
 * These are the transport's write and header callbacks (http.c hands
 * them to libcurl).  They run inside libcurl, so they never palloc or
 * raise: the body grows in a malloc'd buffer that http.c copies out and
 * frees, and header values are copied, trimmed, into fixed buffers of
 * the HttpRequest.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <strings.h>

#include "transport/http.h"

/* Forget what an answer said: its headers and its body so far. */
void
http_forget_answer(HttpRequest *req)
{
	req->content_type_in[0] = '\0';
	req->deprecation[0] = '\0';
	req->sunset[0] = '\0';
	req->date[0] = '\0';
	req->error_code_header[0] = '\0';
	req->retry_after = -1;
	req->ratelimit_limit = -1;
	req->ratelimit_remaining = -1;
	req->rbuf_len = 0;
	req->response_truncated = false;
}

/* The most bytes of the request's response body that are read. */
size_t
http_response_cap(const HttpRequest *req)
{
	return req->large_response ? HTTP_MAX_READ_RESPONSE_BYTES : HTTP_MAX_RESPONSE_BYTES;
}

/* Append received body bytes, up to the cap; runs inside libcurl. */
size_t
http_body_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	HttpRequest *req = (HttpRequest *) arg;
	size_t		n = size * nmemb;

	if (req->rbuf_len + n > http_response_cap(req))
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

/* A header's value as a non-negative number, or -1 if it is not one. */
static long
header_number(const char *value, size_t vlen)
{
	char		tmp[32];
	char	   *end;
	long		n;

	copy_header_value(tmp, sizeof(tmp), value, vlen);
	errno = 0;
	n = strtol(tmp, &end, 10);
	if (end == tmp || *end != '\0' || n < 0 || errno != 0)
		return -1;
	return n;
}

/* Capture the few response headers we act on; runs inside libcurl. */
size_t
http_header_cb(char *data, size_t size, size_t nmemb, void *arg)
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
		http_forget_answer(req);
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
	else if (HEADER_IS("Date"))
		copy_header_value(req->date, sizeof(req->date), value, vlen);
	else if (HEADER_IS("X-Error-Code"))
		copy_header_value(req->error_code_header, sizeof(req->error_code_header), value, vlen);
	else if (HEADER_IS("Retry-After"))
	{
		/* only the delta-seconds form; an HTTP-date is treated as absent */
		long		secs = header_number(value, vlen);

		if (secs >= 0)
			req->retry_after = (int) Min(secs, 86400);
	}
	else if (HEADER_IS("RateLimit-Limit"))
		req->ratelimit_limit = header_number(value, vlen);
	else if (HEADER_IS("RateLimit-Remaining"))
		req->ratelimit_remaining = header_number(value, vlen);
#undef HEADER_IS
	return n;
}

/* Clear a request's results before it (re)starts. */
void
http_prepare(HttpRequest *req)
{
	req->status = 0;
	req->answered = false;
	req->not_sent = false;
	req->error[0] = '\0';
	req->response = "";
	req->response_len = 0;
	req->elapsed_ms = 0;
	req->slot = -1;
	req->priv = NULL;
	req->rbuf = NULL;
	req->rbuf_cap = 0;
	http_forget_answer(req);
}
