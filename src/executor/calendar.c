/*-------------------------------------------------------------------------
 *
 * calendar.c
 *	  Atlas's calendar: which endpoints are deprecated and when they
 *	  retire, the WARNING before that day, and what a retired endpoint
 *	  means for the rest of a statement.
 *
 * The endpoint table (endpoints.c) has each endpoint's sunset as the spec
 * announces it, and what replaces it; a Sunset header overrides the date.
 * "Today" is Atlas's: the Date header of its last answer, else this
 * server's clock.  An answer of a deprecated endpoint raises a WARNING
 * once per session and endpoint when its sunset is at most
 * SUNSET_WARN_DAYS days away (a pinned old version always warns), and
 * goes to the server log once before then.
 *
 * After its sunset a version answers 410 VERSION_GONE (or 404
 * RESOURCE_NOT_FOUND when the route itself is gone).  Within a statement,
 * a deprecated endpoint not yet seen answering gets one request at a time
 * (the others wait); once it answered as retired, its other calls of the
 * statement end unsent with that answer: a retired endpoint costs one
 * request per statement.  atlas_call_retired() tells callers that a
 * failure is this, so that plans say so instead of failing, and errors.c
 * says when the endpoint retired and what replaces it.
 *
 *-------------------------------------------------------------------------
 */
#include "executor/executor_int.h"

#include <time.h>

#include "datatype/timestamp.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "access/xact.h"

/* the WARNING comes this many days before a sunset */
#define SUNSET_WARN_DAYS 180

/* what this process knows of an endpoint */
typedef struct EndpointDay
{
	bool		logged;			/* its deprecation went to the log (session) */
	bool		warned;			/* the WARNING was raised (session) */
	long		header_sunset;	/* day of a Sunset header it sent; -1: none */
	bool		alive;			/* answered, not as retired, in this statement */
	bool		retired;		/* answered as retired in this statement */
	long		retired_status;
	char		retired_code[64];
} EndpointDay;

static EndpointDay *endpoint_days = NULL;
static TimestampTz days_statement = 0;	/* of the per-statement fields */
static bool clock_known = false;
static time_t clock_offset = 0;	/* Atlas's Date less our clock, seconds */

/* An endpoint's state; the per-statement part is reset for a new statement. */
static EndpointDay *
day_of(const AtlasEndpoint *ep)
{
	TimestampTz stmt = GetCurrentStatementStartTimestamp();
	int			n = atlas_endpoint_count();
	int			i;

	if (endpoint_days == NULL)
	{
		endpoint_days = MemoryContextAllocZero(TopMemoryContext, sizeof(EndpointDay) * n);
		for (i = 0; i < n; i++)
			endpoint_days[i].header_sunset = -1;
	}
	if (stmt != days_statement)
	{
		for (i = 0; i < n; i++)
			endpoint_days[i].alive = endpoint_days[i].retired = false;
		days_statement = stmt;
	}
	return &endpoint_days[atlas_endpoint_index(ep)];
}

/* The day (since 1970-01-01) of a YYYY-MM-DD date; -1 when it is not one. */
static long
iso_day(const char *s)
{
	long		y,
				m,
				d;
	char	   *end;

	if (s == NULL || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return -1;
	y = strtol(s, &end, 10);
	m = (end == s + 4) ? strtol(s + 5, &end, 10) : 0;
	d = (end == s + 7) ? strtol(s + 8, &end, 10) : 0;
	if (end != s + 10 || m < 1 || m > 12 || d < 1 || d > 31)
		return -1;
	return (long) date2j((int) y, (int) m, (int) d) - UNIX_EPOCH_JDATE;
}

/* A day as YYYY-MM-DD. */
static char *
day_text(long day)
{
	int			y,
				m,
				d;

	j2date((int) (day + UNIX_EPOCH_JDATE), &y, &m, &d);
	return psprintf("%04d-%02d-%02d", y, m, d);
}

/* Today by Atlas's clock (the Date of its last answer), else by ours. */
static long
atlas_today(void)
{
	return (long) ((time(NULL) + (clock_known ? clock_offset : 0)) / 86400);
}

/* Is the endpoint, at the version the call uses, deprecated by the table? */
static bool
table_deprecated(const AtlasEndpoint *ep, const char *version)
{
	if (ep->sunset == NULL)
		return false;
	/* a pinnable endpoint's sunset is that of its versions before the current one */
	return !ep->pinnable || (version != NULL && strcmp(version, ATLAS_DEFAULT_API_VERSION) < 0);
}

/* The sunset day of an endpoint as a call uses it; -1: none known. */
static long
sunset_day(const AtlasEndpoint *ep, const char *version, EndpointDay *day)
{
	if (day != NULL && day->header_sunset >= 0)
		return day->header_sunset;
	return table_deprecated(ep, version) ? iso_day(ep->sunset) : -1;
}

/*
 * May a call go, as far as the calendar knows?  A call to an endpoint
 * that retired in this statement gets that answer and is not sent
 * (ATLAS_CALENDAR_RETIRED: the caller finishes it).
 */
AtlasCalendarGate
atlas_calendar_gate(AtlasRun *run, AtlasCall *call)
{
	const AtlasEndpoint *ep = call->state->endpoint;
	EndpointDay *day;
	int			i;

	if (!table_deprecated(ep, call->api_version))
		return ATLAS_CALENDAR_GO;
	day = day_of(ep);
	if (day->retired)
	{
		AtlasAnswer *a = &call->answer;

		memset(a, 0, sizeof(AtlasAnswer));
		a->retry_after = -1;
		a->rate_capacity = a->rate_refill = a->rate_period_ms = -1;
		a->http_status = day->retired_status;
		a->error_code = pstrdup(day->retired_code);
		a->detail = psprintf("Not sent: %s %s answered %ld %s earlier in this statement.",
							 ep->method, ep->route, day->retired_status, day->retired_code);
		return ATLAS_CALENDAR_RETIRED;
	}
	if (day->alive)
		return ATLAS_CALENDAR_GO;
	/* retired or not: one request finds out, the others wait for it */
	for (i = 0; i < run->nflight; i++)
		if (run->flight[i]->state->endpoint == ep)
			return ATLAS_CALENDAR_WAIT;
	return ATLAS_CALENDAR_GO;
}

/* Is an answer an endpoint's saying that it retired? */
static bool
retired_answer(const AtlasEndpoint *ep, long status, const char *code, long sunset)
{
	if (status == 410)
		return true;
	/* a route that is gone altogether: only past a known sunset */
	return status == 404 && !ep->pinnable && code != NULL &&
		strcmp(code, "RESOURCE_NOT_FOUND") == 0 && sunset >= 0 && atlas_today() >= sunset;
}

/* The WARNING (or LOG) of a deprecated endpoint, once per session. */
static void
warn_deprecated(AtlasCall *call, const AtlasEndpoint *ep, EndpointDay *day,
				HttpRequest *req, long sunset)
{
	long		left = sunset - atlas_today();
	bool		warn = ep->pinnable || (sunset >= 0 && left <= SUNSET_WARN_DAYS);
	char	   *when = NULL;

	if (req->deprecation[0] == '\0' && req->sunset[0] == '\0' && sunset < 0)
		return;
	if (day->warned || (!warn && day->logged))
		return;
	day->warned |= warn;
	day->logged = true;
	if (req->sunset[0])
		when = atlas_clean_text(req->sunset, strlen(req->sunset), 60);
	else if (sunset >= 0)
		when = day_text(sunset);
	ereport(warn ? WARNING : LOG,
			(errcode(ERRCODE_WARNING_DEPRECATED_FEATURE),
			 errmsg("Atlas endpoint %s %s is deprecated%s%s", ep->method, ep->route,
					when ? " and will be removed on " : "", when ? when : ""),
			 req->deprecation[0]
			 ? errdetail("Atlas sent Deprecation: %s, at resource version %s.%s",
						 atlas_clean_text(req->deprecation, strlen(req->deprecation), 60),
						 call->api_version,
						 (sunset >= 0 && left <= SUNSET_WARN_DAYS)
						 ? psprintf(" %ld days are left by Atlas's clock.", Max(left, 0)) : "")
			 : (sunset >= 0 && left <= SUNSET_WARN_DAYS)
			 ? errdetail("%ld days are left by Atlas's clock.", Max(left, 0)) : 0,
			 ep->pinnable
			 ? errhint("Reset atlas_users.api_version to use the current version of this endpoint.")
			 : ep->successor
			 ? errhint("%s", ep->successor)
			 : errhint("Atlas offers no newer version of this endpoint; a later atlas_users will use its successor.")));
}

/*
 * Learn from an answer: Atlas's clock (Date), the endpoint's sunset
 * (Sunset), whether it retired; and warn of a sunset that is near.
 */
void
atlas_calendar_answer(AtlasCall *call, HttpRequest *req)
{
	const AtlasEndpoint *ep = call->state->endpoint;
	EndpointDay *day = day_of(ep);
	const char *code = req->error_code_header[0] ? req->error_code_header : NULL;
	long		sunset;
	time_t		t;

	if (req->date[0] && (t = http_date(req->date)) > 0)
	{
		clock_offset = t - time(NULL);
		clock_known = true;
	}
	if (req->sunset[0] && (t = http_date(req->sunset)) > 0)
		day->header_sunset = (long) (t / 86400);
	sunset = sunset_day(ep, call->api_version, day);
	if (retired_answer(ep, req->status, code, sunset))
	{
		day->retired = true;
		day->retired_status = req->status;
		strlcpy(day->retired_code, code ? code : (req->status == 410 ? "VERSION_GONE" : ""),
				sizeof(day->retired_code));
		return;
	}
	if (req->status != 429 && req->status < 500)
		day->alive = true;
	warn_deprecated(call, ep, day, req, sunset);
}

/* The endpoint a call used (or would use). */
static const AtlasEndpoint *
call_endpoint(AtlasCall *call)
{
	return atlas_endpoint_for(call->op, call->api_version);
}

/* Did a failed call meet an endpoint that Atlas retired? */
bool
atlas_call_retired(AtlasCall *call)
{
	const AtlasEndpoint *ep = call_endpoint(call);
	AtlasAnswer *a = &call->answer;

	if (a->transport_failed || a->token_failed || a->rate_wait || a->config_failed)
		return false;
	return retired_answer(ep, a->http_status, a->error_code,
						  sunset_day(ep, call->api_version, NULL));
}

/* What a retired call's error says: the endpoint and when it retired. */
char *
atlas_call_retired_message(AtlasCall *call)
{
	const AtlasEndpoint *ep = call_endpoint(call);
	long		sunset = sunset_day(ep, call->api_version, endpoint_days ? day_of(ep) : NULL);

	return psprintf("Atlas retired %s %s%s%s%s (%ld %s)", ep->method, ep->route,
					ep->pinnable ? " at resource version " : "",
					ep->pinnable ? call->api_version : "",
					sunset >= 0 ? psprintf(" on %s", day_text(sunset)) : "",
					call->answer.http_status,
					call->answer.error_code ? call->answer.error_code : "");
}

/* What to use instead of an endpoint that retired, for a hint. */
const char *
atlas_call_successor(AtlasCall *call)
{
	const AtlasEndpoint *ep = call_endpoint(call);

	if (table_deprecated(ep, call->api_version) && ep->pinnable && !ep->legacy)
		return "Reset atlas_users.api_version to use the current resource version.";
	if (ep->successor)
		return ep->successor;
	return "Atlas no longer serves this version of the endpoint; a later atlas_users uses its successor.";
}
