/*-------------------------------------------------------------------------
 *
 * http_url.c
 *	  URLs, through libcurl's URL API: checking a base URL, naming its host
 *	  for messages, comparing origins (where a "next" link may lead), and
 *	  escaping query values.
 *
 * Part of the transport: with http.c, the only file that includes
 * libcurl.  The SQL-facing files reach these helpers through
 * atlas_users.h, which names no libcurl type.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <strings.h>

#include <curl/curl.h>

#include "transport/http.h"

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

/* The parts of a URL, parsed by libcurl; palloc'd, NULL where absent. */
typedef struct UrlParts
{
	bool		valid;
	char	   *scheme;
	char	   *host;
	char	   *port;
	char	   *path;
	bool		has_user;
	bool		has_query_or_fragment;
} UrlParts;

/* Copy a libcurl string into palloc'd memory and free it. */
static char *
take_curl_string(char *s)
{
	char	   *r = s ? pstrdup(s) : NULL;

	curl_free(s);
	return r;
}

/* Parse a URL into its parts. */
static UrlParts
url_parts(const char *url)
{
	UrlParts	p;
	CURLU	   *u = curl_url();
	char	   *part = NULL;

	memset(&p, 0, sizeof(p));
	if (u == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_SCHEME, &part, 0) == CURLUE_OK)
	{
		p.scheme = take_curl_string(part);
		part = NULL;
		if (curl_url_get(u, CURLUPART_HOST, &part, 0) == CURLUE_OK)
		{
			p.valid = true;
			p.host = take_curl_string(part);
		}
		part = NULL;
		if (curl_url_get(u, CURLUPART_PORT, &part, 0) == CURLUE_OK)
			p.port = take_curl_string(part);
		part = NULL;
		if (curl_url_get(u, CURLUPART_PATH, &part, 0) == CURLUE_OK)
			p.path = take_curl_string(part);
		part = NULL;
		if (curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK)
			p.has_user = true;
		curl_free(part);
		part = NULL;
		if (curl_url_get(u, CURLUPART_QUERY, &part, 0) == CURLUE_OK ||
			curl_url_get(u, CURLUPART_FRAGMENT, &part, 0) == CURLUE_OK)
			p.has_query_or_fragment = true;
		curl_free(part);
	}
	curl_url_cleanup(u);
	return p;
}

/*
 * Is url acceptable as the base URL of Atlas: https, or http to a
 * loopback host only, with no credentials, query or fragment?  On failure
 * *why says why, palloc'd, naming the URL as what (e.g. the setting).
 */
bool
http_base_url_ok(const char *url, const char *what, char **why)
{
	UrlParts	p = url_parts(url);

	if (!p.valid)
		*why = psprintf("%s is not a valid URL.", what);
	else if (p.has_user)
		*why = psprintf("%s must not hold credentials.", what);
	else if (p.has_query_or_fragment)
		*why = psprintf("%s must not have a query or a fragment.", what);
	else if (strcmp(p.scheme, "https") == 0)
		return true;
	else if (strcmp(p.scheme, "http") == 0 && host_is_loopback(p.host))
		return true;
	else if (strcmp(p.scheme, "http") == 0)
		*why = psprintf("%s must use https; http is allowed only for loopback hosts (127.0.0.0/8, ::1, localhost).", what);
	else
		*why = psprintf("%s must use https.", what);
	return false;
}

/*
 * Is url acceptable as a proxy: "" (none), or an http:// or https:// URL
 * of a host, with no credentials (they go in proxy_user and
 * proxy_password_file), path, query or fragment?  On failure *why says
 * why, palloc'd, naming the URL as what.
 */
bool
http_proxy_url_ok(const char *url, const char *what, char **why)
{
	UrlParts	p;

	if (url[0] == '\0')
		return true;
	p = url_parts(url);
	if (!p.valid || (strcmp(p.scheme, "http") != 0 && strcmp(p.scheme, "https") != 0) ||
		(pg_strncasecmp(url, "http://", 7) != 0 && pg_strncasecmp(url, "https://", 8) != 0))
		*why = psprintf("%s must be an http:// or https:// URL of the proxy, such as http://proxy.example:3128.", what);
	else if (p.has_user)
		*why = psprintf("%s must not hold credentials: give them as the user mapping options proxy_user and proxy_password_file.", what);
	else if (p.has_query_or_fragment || (p.path != NULL && strcmp(p.path, "/") != 0))
		*why = psprintf("%s must not have a path, a query or a fragment.", what);
	else
		return true;
	return false;
}

/* host[:port] of a URL, for messages (never credentials); palloc'd. */
char *
http_url_host(const char *url)
{
	UrlParts	p = url_parts(url);

	if (!p.valid)
		return pstrdup("the configured base URL");
	return p.port ? psprintf("%s:%s", p.host, p.port) : pstrdup(p.host);
}

/* The time an HTTP date header (Date, Sunset) names; -1 when it names none. */
time_t
http_date(const char *value)
{
	return curl_getdate(value, NULL);
}

/* The port of a URL, its scheme's default when none is written. */
static const char *
port_of(const UrlParts *p)
{
	if (p->port)
		return p->port;
	return pg_strcasecmp(p->scheme, "https") == 0 ? "443" : "80";
}

/*
 * Does url point at the same scheme, host and port as base, with a path
 * under base's path?  (Where a server's "next" link may lead.)
 */
bool
http_url_same_origin(const char *url, const char *base)
{
	UrlParts	a = url_parts(url);
	UrlParts	b = url_parts(base);
	size_t		blen;

	if (!a.valid || !b.valid || a.has_user ||
		pg_strcasecmp(a.scheme, b.scheme) != 0 || pg_strcasecmp(a.host, b.host) != 0 ||
		strcmp(port_of(&a), port_of(&b)) != 0 || a.path == NULL || b.path == NULL)
		return false;
	blen = strlen(b.path);
	while (blen > 0 && b.path[blen - 1] == '/')
		blen--;
	return strncmp(a.path, b.path, blen) == 0 && (a.path[blen] == '/' || a.path[blen] == '\0');
}
