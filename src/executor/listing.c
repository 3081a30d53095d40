/*-------------------------------------------------------------------------
 *
 * listing.c
 *	  Reading every page of an Atlas list, through the executor.
 *
 * A listing is a chain of calls: the first page, then, while Atlas links
 * a "next" page (and the page was not empty), the next one, each built
 * from the configured base URL (itemsPerPage, pageNum), never taken from
 * the answer.  Each page's results go to the listing's item function as
 * soon as the page arrives, and the page's body is freed then, so a
 * listing holds one page at a time.  Some lists (invitations) are one
 * JSON array with no pages.
 *
 * A listing run on its own (atlas_list_all) whose first page states the
 * total (totalCount) asks pages 2 to the last side by side, up to
 * atlas_users.max_concurrency at once within the executor's pacing, and
 * builds each page's rows as it arrives.  A last page that still links a
 * next one, or no total, goes on one page after another.
 *
 * A page may hold no more entries than the itemsPerPage it asked for:
 * they are counted in its text before it is parsed, and a page of more
 * ends the listing as an answer that is not Atlas's.  Duplicate keys are
 * read one way (untrusted.c) before the page's entries are handed on.
 *
 * Every listing is bounded, against a server that always says "next" or
 * answers slowly: at most atlas_users.max_pages pages and
 * atlas_users.listing_timeout of time (the worker's username lookups use
 * atlas_users.worker_lookup_timeout).  Past either it ends with a clear
 * error.  Long listings print a progress NOTICE every few seconds.
 *
 * A listing runs on its own (atlas_list_all(), which raises on failure)
 * or inside another run (the queue's username lookups, offboarding),
 * where a failure is a value: listing->end, with the last page read in
 * listing->failed.
 *
 *-------------------------------------------------------------------------
 */
#include "executor/executor_int.h"

#include <math.h>

#include "utils/timestamp.h"

/* how often a long listing says how far it is */
#define LISTING_NOTICE_MS 5000

/* The call that reads page n of a listing. */
static AtlasCall *
page_call(AtlasListing *l, int n)
{
	AtlasCall  *call = atlas_call_new(l->op);

	call->target = l->target;
	call->org_id = l->org_id;
	call->group_id = l->group_id;
	call->team_id = l->team_id;
	if (l->unpaged)
		call->query = (l->query && l->query[0]) ? pnstrdup(l->query, strlen(l->query) - 1) : NULL;
	else
		call->query = psprintf("%sitemsPerPage=%d&pageNum=%d", l->query ? l->query : "",
							   atlas_page_size, n);
	call->keep_body = true;
	call->owner = l->owner;
	return call;
}

/* The call that reads a listing's first page; starts its clock. */
AtlasCall *
atlas_listing_first(AtlasListing *listing)
{
	listing->pages = 0;
	listing->items = 0;
	listing->started = listing->last_notice = GetCurrentTimestamp();
	listing->end = ATLAS_LISTING_OK;
	listing->failed = NULL;
	listing->problem = NULL;
	if (listing->max_pages <= 0)
		listing->max_pages = atlas_max_pages;
	if (listing->timeout_ms <= 0)
		listing->timeout_ms = atlas_listing_timeout_ms;
	return page_call(listing, 1);
}

/* Item function of every listing: count, then hand on. */
static void
count_item(const cJSON *item, void *arg)
{
	AtlasListing *l = (AtlasListing *) arg;

	l->items++;
	l->item(item, l->arg);
}

/* Item function that does nothing: to check a page's shape. */
static void
skip_item(const cJSON *item pg_attribute_unused(), void *arg pg_attribute_unused())
{
}

/* Walk a parsed page's results (or only check it, with fn NULL). */
static bool
walk_json(AtlasListing *l, const cJSON *json, AtlasItemFn fn, bool *next)
{
	const cJSON *item;
	const cJSON *arr;

	if (!l->unpaged)
		return atlas_list_page_items(json, fn ? fn : skip_item, l, next);
	*next = false;
	arr = cJSON_IsArray(json) ? json : NULL;
	cJSON_ArrayForEach(item, arr)
	{
		if (fn)
			fn(item, l);
	}
	return arr != NULL;
}

/* Hand a parsed page's results to the item function, and free it. */
static void
walk_and_free(AtlasListing *l, cJSON *json)
{
	cJSON	   *volatile j = json;
	bool		next;

	PG_TRY();
	{
		(void) walk_json(l, j, count_item, &next);
	}
	PG_CATCH();
	{
		cJSON_Delete(j);
		PG_RE_THROW();
	}
	PG_END_TRY();
	cJSON_Delete(j);
}

/*
 * Walk the page held back, if there is one.  A listing run on its own
 * holds a page back while the next one is on its way, so that building
 * its rows overlaps the wait for the next: one page beyond the rows
 * already produced, never more.
 */
static void
walk_held(AtlasListing *l)
{
	cJSON	   *json;

	if (l->holder == NULL || l->holder->json == NULL)
		return;
	json = l->holder->json;
	l->holder->json = NULL;
	walk_and_free(l, json);
}

/* Memory context callback: free a page still held (after an error). */
static void
free_held(void *arg)
{
	AtlasListingHolder *h = (AtlasListingHolder *) arg;

	if (h->json)
		cJSON_Delete(h->json);
	h->json = NULL;
}

/* Free a page's body (parsed, or refused). */
static void
forget_body(AtlasCall *page)
{
	pfree(page->body);
	page->body = NULL;
	page->body_len = 0;
}

/* Parse a page's body, its duplicate keys read one way; frees the body. */
static cJSON *
parse_page(AtlasCall *page)
{
	cJSON	   *volatile json = cJSON_ParseWithLength(page->body, page->body_len);

	forget_body(page);
	PG_TRY();
	{
		atlas_json_first_keys(json);
	}
	PG_CATCH();
	{
		cJSON_Delete(json);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return json;
}

/* End a listing that went wrong; returns NULL (no next page). */
static AtlasCall *
listing_ends(AtlasListing *l, AtlasCall *page, AtlasListingEnd end, const char *problem)
{
	l->end = end;
	l->failed = page;
	l->problem = problem;
	return NULL;
}

/* A NOTICE on a long listing, every few seconds. */
static void
listing_progress(AtlasListing *l, TimestampTz now)
{
	if (l->label == NULL ||
		!TimestampDifferenceExceeds(l->last_notice, now, LISTING_NOTICE_MS))
		return;
	l->last_notice = now;
	ereport(NOTICE,
			(errcode(ERRCODE_SUCCESSFUL_COMPLETION),
			 errmsg("%s: %d pages, " INT64_FORMAT " entries read so far",
					l->label, l->pages, l->items)));
}

/*
 * Take a finished page: hand its results to the item function (or hold
 * them back, see walk_held()), and return the call of the next page, or
 * NULL when the listing is over (failed, if listing->end is not
 * ATLAS_LISTING_OK).
 */
AtlasCall *
atlas_listing_page_done(AtlasListing *listing, AtlasCall *page)
{
	bool		next = false;
	TimestampTz now;
	cJSON	   *json;

	walk_held(listing);
	if (page->outcome != ATLAS_OUTCOME_SUCCEEDED)
		return listing_ends(listing, page, ATLAS_LISTING_FAILED, NULL);
	listing->pages++;
	if (!listing->unpaged &&
		atlas_json_count_results(page->body, page->body_len, atlas_page_size) > atlas_page_size)
	{
		forget_body(page);
		return listing_ends(listing, page, ATLAS_LISTING_NOT_A_LIST,
							psprintf("a page of more than %d entries, the itemsPerPage asked for",
									 atlas_page_size));
	}
	json = parse_page(page);
	if (!walk_json(listing, json, NULL, &next))
	{
		cJSON_Delete(json);
		return listing_ends(listing, page, ATLAS_LISTING_NOT_A_LIST,
							listing->unpaged ? "a list that is not a JSON array"
							: "a list without \"results\"");
	}
	now = GetCurrentTimestamp();
	if (next && listing->pages < listing->max_pages &&
		!TimestampDifferenceExceeds(listing->started, now, listing->timeout_ms) &&
		listing->holder != NULL)
	{
		listing->holder->json = json;
		listing->holder->fresh = true;
		listing_progress(listing, now);
		return page_call(listing, listing->pages + 1);
	}
	walk_and_free(listing, json);
	if (!next)
		return NULL;
	if (listing->pages >= listing->max_pages)
		return listing_ends(listing, page, ATLAS_LISTING_TOO_MANY_PAGES,
							psprintf("the list has more than %d pages (atlas_users.max_pages)",
									 listing->max_pages));
	if (TimestampDifferenceExceeds(listing->started, now, listing->timeout_ms))
		return listing_ends(listing, page, ATLAS_LISTING_TOO_SLOW,
							psprintf("reading the list took longer than %d ms",
									 listing->timeout_ms));
	listing_progress(listing, now);
	return page_call(listing, listing->pages + 1);
}

/* The page number a page's call asks for. */
static int
page_number(AtlasCall *call)
{
	const char *p = call->query;
	const char *last = NULL;

	while (p != NULL && (p = strstr(p, "pageNum=")) != NULL)
		last = p++;
	return last ? (int) strtol(last + strlen("pageNum="), NULL, 10) : 0;
}

/* After a first page linking a next one: side by side if it states a total. */
static bool
side_start(AtlasListing *l)
{
	AtlasListingHolder *h = l->holder;
	const cJSON *total = cJSON_GetObjectItemCaseSensitive(h->json, "totalCount");
	int			per = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(h->json, "results"));
	double		pages;

	if (total == NULL || !cJSON_IsNumber(total) || total->valuedouble < 0 || per <= 0)
		return false;
	pages = ceil(total->valuedouble / per);	/* pages of the server's size */
	if (pages < 2)
		return false;
	h->side_last = (int) Min(pages, (double) l->max_pages);
	h->side_next = 2;			/* the holder's other fields are zero */
	walk_held(l);
	return true;
}

/* Has a listing side by side run past its time? Ends it if so. */
static bool
side_too_slow(AtlasListing *l, AtlasCall *page, TimestampTz now)
{
	if (!TimestampDifferenceExceeds(l->started, now, l->timeout_ms))
		return false;
	(void) listing_ends(l, page, ATLAS_LISTING_TOO_SLOW,
						psprintf("reading the list took longer than %d ms", l->timeout_ms));
	return true;
}

/* All pages side by side are in: go on one by one, or end. */
static void
side_over(AtlasRun *run, AtlasListing *l, AtlasCall *page)
{
	AtlasListingHolder *h = l->holder;

	if (l->end == ATLAS_LISTING_OK && h->side_more)
	{
		h->side_last = 0;
		if (l->pages >= l->max_pages)
			(void) listing_ends(l, page, ATLAS_LISTING_TOO_MANY_PAGES,
								psprintf("the list has more than %d pages (atlas_users.max_pages)",
										 l->max_pages));
		else if (!side_too_slow(l, page, GetCurrentTimestamp()))
		{
			atlas_run_add(run, page_call(l, l->pages + 1));
			return;
		}
	}
	h->over = true;
}

/* Build the rows of a page read side by side, and free it. */
static void
side_walk(AtlasListing *l, AtlasCall *page)
{
	cJSON	   *json;
	bool		next = false;

	if (page->outcome != ATLAS_OUTCOME_SUCCEEDED)
	{
		(void) listing_ends(l, page, ATLAS_LISTING_FAILED, NULL);
		return;
	}
	l->pages++;
	json = cJSON_ParseWithLength(page->body, page->body_len);
	pfree(page->body);
	page->body = NULL;
	page->body_len = 0;
	if (!walk_json(l, json, NULL, &next))
	{
		cJSON_Delete(json);
		(void) listing_ends(l, page, ATLAS_LISTING_NOT_A_LIST, "a list without \"results\"");
		return;
	}
	walk_and_free(l, json);
	l->holder->side_more |= (next && page_number(page) == l->holder->side_last);
	if (l->holder->side_next <= l->holder->side_last || l->holder->side_pending > 0)
		(void) side_too_slow(l, page, GetCurrentTimestamp());
	listing_progress(l, GetCurrentTimestamp());
}

/* Run hook's part for a page read side by side (a failed listing drops it). */
static void
side_page_done(AtlasRun *run, AtlasListing *l, AtlasCall *page)
{
	AtlasListingHolder *h = l->holder;

	h->side_pending--;
	if (l->end == ATLAS_LISTING_OK)
		side_walk(l, page);
	if (h->side_pending == 0 && (h->side_next > h->side_last || l->end != ATLAS_LISTING_OK))
		side_over(run, l, page);
}

/* Run hook: a page finished; ask for the next. */
static void
page_finished(AtlasRun *run, AtlasCall *call, void *arg)
{
	AtlasListing *l = (AtlasListing *) arg;
	AtlasCall  *next;

	if (l->holder->side_last > 0)
	{
		side_page_done(run, l, call);
		return;
	}
	next = atlas_listing_page_done(l, call);
	if (next != NULL && l->pages == 1 && !l->unpaged && side_start(l))
		return;
	if (next != NULL)
		atlas_run_add(run, next);
	else
		l->holder->over = true;
}

/*
 * Run hook between transfers: walk the page held back once the next one
 * is on its way (one step after it was held: the step that holds it comes
 * before the next request starts).
 */
static bool
page_feed(AtlasRun *run, void *arg, int free_slots, long *wait_ms)
{
	AtlasListing *l = (AtlasListing *) arg;
	AtlasListingHolder *h = l->holder;

	if (h->side_last > 0)
	{
		/* side by side: ask pages while there are free slots */
		while (free_slots-- > 0 && h->side_next <= h->side_last && l->end == ATLAS_LISTING_OK)
		{
			atlas_run_add(run, page_call(l, h->side_next++));
			h->side_pending++;
		}
		return !h->over;
	}
	if (l->holder->json != NULL && l->holder->fresh)
	{
		l->holder->fresh = false;
		*wait_ms = 1;
	}
	else
		walk_held(l);
	return !l->holder->over;
}

/* Run hook of atlas_list_many(): a page of the listing its call names. */
static void
many_page_finished(AtlasRun *run, AtlasCall *call, void *arg pg_attribute_unused())
{
	AtlasCall  *next = atlas_listing_page_done((AtlasListing *) call->owner, call);

	if (next != NULL)
		atlas_run_add(run, next);
}

/*
 * Read several listings in this session, side by side (up to
 * atlas_users.max_concurrency pages at once).  A failure is left in each
 * listing's end, for the caller to raise or report.
 */
void
atlas_list_many(AtlasListing **listings, int n)
{
	AtlasRunSpec spec = atlas_session_spec(NULL);
	AtlasRun   *run;
	int			i;

	if (n == 0)
		return;
	spec.finished = many_page_finished;
	run = atlas_run_create(&spec);
	for (i = 0; i < n; i++)
	{
		listings[i]->owner = listings[i];
		atlas_run_add(run, atlas_listing_first(listings[i]));
	}
	atlas_run_execute(run);
}

/* Read every page of a listing in this session; raise if one fails. */
void
atlas_list_all(AtlasListing *listing)
{
	AtlasRunSpec spec = atlas_session_spec(NULL);
	AtlasRun   *run;
	AtlasListingHolder *h = palloc0(sizeof(AtlasListingHolder));

	h->cb.func = free_held;
	h->cb.arg = h;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &h->cb);
	listing->holder = h;
	/* one page at a time, unless the pages go side by side */
	spec.concurrency = atlas_max_concurrency;
	spec.finished = page_finished;
	spec.feed = page_feed;
	spec.arg = listing;
	run = atlas_run_create(&spec);
	atlas_run_add(run, atlas_listing_first(listing));
	atlas_run_execute(run);
	walk_held(listing);
	listing->holder = NULL;
	if (listing->end != ATLAS_LISTING_OK)
		atlas_raise_listing_error(listing);
}
