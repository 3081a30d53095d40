/*-------------------------------------------------------------------------
 *
 * run.h
 *	  The one way Atlas calls are run: a run of calls (executor.c, with
 *	  prepare.c, dispatch.c, answer.c, calendar.c, token.c and pacing.c
 *	  beneath it), failed calls as SQL errors (errors.c), the listing engine
 *	  that reads every page of a list (listing.c), the removal budget
 *	  (guard.c) and the shared state the executor keeps.  Its own files
 *	  share executor_int.h besides.
 *
 * The executor module's header is run.h, not executor.h: PostgreSQL's own
 * executor/executor.h has that include path, and its headers include it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_EXECUTOR_RUN_H
#define ATLAS_EXECUTOR_RUN_H

#include "atlas/atlas.h"
#include "audit/audit.h"
#include "credentials/credentials.h"
#include "storage/lwlock.h"

/* executor.c: a run of calls */
typedef struct AtlasRun AtlasRun;

typedef struct AtlasRunSpec
{
	int			concurrency;
	int			max_retries;	/* retries of a retryable failure within the run */
	const char *progress_label; /* NOTICE progress lines under this name */
	AtlasAuditMode audit;
	bool		forget_calls;	/* free a call's memory once it is reported */

	/*
	 * finished() sees each call once it is done for good, after its audit
	 * (in the same transaction, with ATLAS_AUDIT_WORKER); it may add calls.
	 * feed() runs between transfers and may add calls; it returns false
	 * once it will add no more, with *wait_ms how soon to ask again.
	 */
	void		(*finished) (AtlasRun *run, AtlasCall *call, void *arg);
	bool		(*feed) (AtlasRun *run, void *arg, int free_slots, long *wait_ms);
	void	   *arg;
} AtlasRunSpec;

extern AtlasRunSpec atlas_session_spec(const char *progress_label);
extern AtlasRun *atlas_run_create(const AtlasRunSpec *spec);
extern void atlas_run_add(AtlasRun *run, AtlasCall *call);
extern void atlas_run_finish_unsent(AtlasRun *run, AtlasCall *call, AtlasOutcome outcome);
extern void atlas_run_execute(AtlasRun *run);
extern void atlas_execute(AtlasCall **calls, int ncalls, const AtlasRunSpec *spec);
extern bool atlas_retry_due(const AtlasAnswer *answer, int attempt, bool queued, int64 *delay_ms);

/* errors.c: failed calls as SQL errors */
extern int	atlas_status_sqlstate(long status);
extern void atlas_raise_call_error(AtlasCall *call) pg_attribute_noreturn();
extern void atlas_answer_copy(AtlasAnswer *dst, const AtlasAnswer *src);
extern char *atlas_call_detail(AtlasCall *call);
extern char *atlas_call_message(AtlasCall *call);
extern ErrorData *atlas_try_subxact(void (*fn) (void *arg), void *arg, MemoryContext run_cxt,
									MemoryContext err_cxt);

/* calendar.c: calls to endpoints past their sunset */
extern bool atlas_call_retired(AtlasCall *call);
extern char *atlas_call_retired_message(AtlasCall *call);
extern const char *atlas_call_successor(AtlasCall *call);

/* listing.c: reading every page of an Atlas list */
typedef enum AtlasListingEnd
{
	ATLAS_LISTING_OK,
	ATLAS_LISTING_FAILED,		/* a page's call failed: failed says how */
	ATLAS_LISTING_NOT_A_LIST,	/* an answer was not a list */
	ATLAS_LISTING_TOO_MANY_PAGES,	/* more than max_pages */
	ATLAS_LISTING_TOO_SLOW		/* longer than timeout_ms */
} AtlasListingEnd;

/* a page held back by a listing run on its own (listing.c) */
typedef struct AtlasListingHolder
{
	MemoryContextCallback cb;	/* frees json if an error ends the listing */
	cJSON	   *json;			/* the parsed page whose rows are not built yet */
	bool		fresh;			/* held in this very step */
	bool		over;			/* no next page will come */
	/* pages side by side (the first page stated the total): 0 when not */
	int			side_last;		/* the last page asked side by side */
	int			side_next;		/* the next page to ask */
	int			side_pending;	/* pages asked and not finished */
	bool		side_more;		/* the last page still links a next one */
} AtlasListingHolder;

typedef struct AtlasListing
{
	AtlasOperation op;
	AtlasTarget *target;
	char	   *org_id;
	char	   *group_id;
	char	   *team_id;
	char	   *query;			/* extra query text, "" or "name=value&" */
	bool		unpaged;		/* the answer is one JSON array, not pages */
	AtlasItemFn item;			/* called for each result */
	void	   *arg;
	void	   *owner;			/* passed on to each page's call */
	const char *label;			/* progress NOTICEs under this name; NULL: none */
	int			max_pages;		/* 0: atlas_users.max_pages */
	int			timeout_ms;		/* 0: atlas_users.listing_timeout */
	AtlasListingHolder *holder; /* set by atlas_list_all() only */
	/* progress */
	int			pages;
	int64		items;
	TimestampTz started;
	TimestampTz last_notice;
	AtlasListingEnd end;
	AtlasCall  *failed;			/* the last page read, when the listing failed */
	const char *problem;		/* why, when it was not the page's call */
} AtlasListing;

extern AtlasCall *atlas_listing_first(AtlasListing *listing);
extern AtlasCall *atlas_listing_page_done(AtlasListing *listing, AtlasCall *page);
extern void atlas_list_all(AtlasListing *listing);
extern void atlas_list_many(AtlasListing **listings, int n);
extern void atlas_raise_listing_error(AtlasListing *listing) pg_attribute_noreturn();

/* guard.c: the removal budget */
extern bool atlas_guard_admit(const char *org_id, const char *group_id,
							  const char *person, bool limited);
extern void atlas_guard_count_call(AtlasCall *call);
extern void atlas_guard_recall(void);
extern bool atlas_guard_reserve(const char *org_id, const char *group_id, char **people,
								int n, bool force, const char *what);
extern bool atlas_guard_should_warn(const char *org_id, const char *group_id);
extern void atlas_guard_burst_over(const char *org_id);
extern void atlas_guard_note_size(const char *org_id, int64 size);
extern int	atlas_guard_budget(const char *org_id, const char *group_id, int *used);

/* rate_sets.c, rate_sets_read.c: Atlas's rate-limit sets, read between runs */
extern bool atlas_rate_sets_due(const AtlasTarget *target);
extern void atlas_rate_sets_refresh(AtlasTarget *target);
extern void atlas_rate_sets_read_init(void);

/* the shared state of token.c, pacing.c, rate_sets.c and guard.c (shared.h) */
extern const struct AtlasSharedSpec atlas_token_shared;
extern const struct AtlasSharedSpec atlas_pace_shared;
extern const struct AtlasSharedSpec atlas_rate_sets_shared;
extern const struct AtlasSharedSpec atlas_guard_shared;
extern uint64 atlas_token_grants(void);
extern void atlas_token_state(const AtlasTarget *target, TimestampTz *valid_until,
							  TimestampTz *failed_at);

#endif							/* ATLAS_EXECUTOR_RUN_H */
