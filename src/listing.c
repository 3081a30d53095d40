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
 * listing holds one page at a time.  A listing runs on its own
 * (atlas_list_all(), which raises on failure) or inside another run (the
 * queue's username lookups), where a failure is a value: the failed page
 * in listing->failed, and listing->problem when the answer was not a list.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas_users.h"

/* a bound on pages, against a server that always says "next" */
#define MAX_PAGES 10000

/* The call that reads page n of a listing. */
static AtlasCall *
page_call(AtlasListing *l, int n)
{
	AtlasCall  *call = atlas_call_new(l->op);

	call->target = l->target;
	call->org_id = l->org_id;
	call->group_id = l->group_id;
	call->team_id = l->team_id;
	call->query = psprintf("%sitemsPerPage=%d&pageNum=%d", l->query ? l->query : "",
						   atlas_page_size, n);
	call->keep_body = true;
	call->owner = l->owner;
	return call;
}

/* The call that reads a listing's first page. */
AtlasCall *
atlas_listing_first(AtlasListing *listing)
{
	listing->pages = 0;
	listing->failed = NULL;
	listing->problem = NULL;
	return page_call(listing, 1);
}

/* Walk a page's results; false if the answer is not a list. */
static bool
walk_page(AtlasListing *l, AtlasCall *page, bool *next)
{
	cJSON	   *volatile json = cJSON_ParseWithLength(page->body, page->body_len);
	volatile bool ok = false;

	PG_TRY();
	{
		ok = atlas_list_page_items(json, l->item, l->arg, next);
	}
	PG_FINALLY();
	{
		cJSON_Delete(json);
		pfree(page->body);
		page->body = NULL;
		page->body_len = 0;
	}
	PG_END_TRY();
	return ok;
}

/*
 * Take a finished page: hand its results to the item function, and return
 * the call of the next page, or NULL when the listing is over (failed, if
 * listing->failed is set).
 */
AtlasCall *
atlas_listing_page_done(AtlasListing *listing, AtlasCall *page)
{
	bool		next = false;

	if (page->outcome != ATLAS_OUTCOME_SUCCEEDED)
	{
		listing->failed = page;
		return NULL;
	}
	listing->pages++;
	if (!walk_page(listing, page, &next))
	{
		listing->failed = page;
		listing->problem = "a list without \"results\"";
		return NULL;
	}
	if (!next)
		return NULL;
	if (listing->pages >= MAX_PAGES)
	{
		listing->failed = page;
		listing->problem = "more pages than the limit";
		return NULL;
	}
	return page_call(listing, listing->pages + 1);
}

/* Run hook: a page finished; ask for the next. */
static void
page_finished(AtlasRun *run, AtlasCall *call, void *arg)
{
	AtlasCall  *next = atlas_listing_page_done((AtlasListing *) arg, call);

	if (next != NULL)
		atlas_run_add(run, next);
}

/* Raise for a listing that failed. */
static void
raise_listing_error(AtlasListing *l) pg_attribute_noreturn();

static void
raise_listing_error(AtlasListing *l)
{
	AtlasCall  *page = l->failed;

	if (l->problem == NULL)
		atlas_raise_call_error(page);
	if (l->pages >= MAX_PAGES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("Atlas list has more than %d pages", MAX_PAGES)));
	ereport(ERROR,
			(errcode(ERRCODE_PROTOCOL_VIOLATION),
			 errmsg("unexpected answer from Atlas: %s", l->problem),
			 errcontext("Atlas API request %s %s", page->method, page->path)));
}

/* Read every page of a listing in this session; raise if one fails. */
void
atlas_list_all(AtlasListing *listing)
{
	AtlasRunSpec spec = atlas_session_spec(NULL);
	AtlasRun   *run;

	spec.concurrency = 1;
	spec.finished = page_finished;
	spec.arg = listing;
	run = atlas_run_create(&spec);
	atlas_run_add(run, atlas_listing_first(listing));
	atlas_run_execute(run);
	if (listing->failed)
		raise_listing_error(listing);
}
