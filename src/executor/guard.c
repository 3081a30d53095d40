/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  The removal budget: the one accidental-deletion guard that every
 *	  removal path consults.
 *
 * The budget counts distinct people removed from an organization (or,
 * for a project removal that names no organization, from the project) in
 * a sliding window of atlas_users.guard_window: at most
 * atlas_users.guard_max_removals of them, and at most
 * atlas_users.guard_max_share percent of the organization when a listing
 * showed its size.  One person counts once per scope and window, however
 * many requests their removal takes.
 *
 * The executor counts every removal it sends (atlas_guard_count_call),
 * so synchronous removals typed by a person use the budget without being
 * limited by it.  The queue asks atlas_guard_admit() before it sends
 * anything for a row; a row past the budget is held.  Bulk functions,
 * offboarding and reconciliation reserve all their people at once with
 * atlas_guard_reserve() before their first request, and fail with 55000
 * past the budget unless forced.  Admitting and reserving check and count
 * under one lock, so a burst split across sessions, transactions or the
 * worker still meets one budget.
 *
 * With shared_preload_libraries the counts live in shared memory, shared
 * by every session and the worker; after a restart the worker counts
 * again the removals the audit shows in the window (atlas_guard_recall),
 * and held rows are rows, so they stay held.  Without preloading each
 * backend keeps its own counts.
 *
 *-------------------------------------------------------------------------
 */
#include "executor/run.h"
#include "shared/shared.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "storage/lwlock.h"
#include "utils/lsyscache.h"
#include "storage/shmem.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* people counted at once over every scope: the oldest are forgotten first */
#define GUARD_ENTRIES 4096
/* scopes whose size and last warning are kept */
#define GUARD_SCOPES 256

typedef struct GuardEntry
{
	TimestampTz at;				/* 0: free */
	uint64		scope;
	uint64		person;
} GuardEntry;

typedef struct GuardScope
{
	uint64		scope;			/* 0: free */
	int			size;			/* people a listing showed, or 0 */
	TimestampTz warned_at;		/* last held-burst warning */
} GuardScope;

typedef struct GuardState
{
	LWLock	   *lock;			/* NULL in a backend of its own */
	int			next;			/* the entry written next (the oldest) */
	GuardEntry	entries[GUARD_ENTRIES];
	GuardScope	scopes[GUARD_SCOPES];
} GuardState;

static GuardState *guard = NULL;

/* The removal budget's shared memory, for init.c. */
const AtlasSharedSpec atlas_guard_shared = {
	"atlas_users guard", sizeof(GuardState), (void **) &guard, NULL
};

/* The guard's state, in this backend's memory when not preloaded. */
static GuardState *
state(void)
{
	return atlas_shared_get(&atlas_guard_shared);
}

/* A string's 64-bit hash, never 0; case-folded (usernames are e-mails). */
static uint64
hash_text(const char *prefix, const char *s)
{
	char	   *t = psprintf("%s%s", prefix, s ? s : "");
	char	   *p;
	uint64		h;

	for (p = t; *p; p++)
		*p = pg_ascii_tolower((unsigned char) *p);
	h = hash_bytes_extended((const unsigned char *) t, strlen(t), 0x61746c6173);
	pfree(t);
	return h ? h : 1;
}

/* The scope a removal counts in: its organization, else its project. */
static uint64
scope_of(const char *org_id, const char *group_id)
{
	return org_id ? hash_text("org:", org_id) : hash_text("project:", group_id);
}

/* The scope's kept record, created when asked; NULL when the table is full. */
static GuardScope *
scope_record(GuardState *g, uint64 scope, bool create)
{
	int			i;
	GuardScope *oldest = NULL;

	for (i = 0; i < GUARD_SCOPES; i++)
		if (g->scopes[i].scope == scope)
			return &g->scopes[i];
	if (!create)
		return NULL;
	for (i = 0; i < GUARD_SCOPES; i++)
		if (oldest == NULL || g->scopes[i].warned_at < oldest->warned_at)
			oldest = &g->scopes[i];
	memset(oldest, 0, sizeof(GuardScope));
	oldest->scope = scope;
	return oldest;
}

/* The budget of a scope: the setting, or its share of a known size. */
static int
budget_of(GuardState *g, uint64 scope)
{
	GuardScope *s = scope_record(g, scope, false);
	int			budget = atlas_guard_max_removals;

	if (s && s->size > 0 && atlas_guard_max_share < 100)
		budget = Min(budget, Max(1, (int) ((int64) s->size * atlas_guard_max_share / 100)));
	return budget;
}

/* The people counted in a scope within the window; *counted: is person one? */
static int
used_in(GuardState *g, uint64 scope, uint64 person, bool *counted)
{
	TimestampTz since = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													-(int64) atlas_guard_window_s * 1000);
	int			n = 0;
	int			i;

	*counted = false;
	for (i = 0; i < GUARD_ENTRIES; i++)
	{
		GuardEntry *e = &g->entries[i];

		if (e->at == 0 || e->at < since || e->scope != scope)
			continue;
		n++;
		if (e->person == person)
			*counted = true;
	}
	return n;
}

/* Count a person at a time: take the oldest entry, unless counted already. */
static void
count_person_at(GuardState *g, uint64 scope, uint64 person, bool counted, TimestampTz at)
{
	GuardEntry *e;

	if (counted)
		return;
	e = &g->entries[g->next];
	g->next = (g->next + 1) % GUARD_ENTRIES;
	e->at = at;
	e->scope = scope;
	e->person = person;
}

/* Count a person now. */
static void
count_person(GuardState *g, uint64 scope, uint64 person, bool counted)
{
	count_person_at(g, scope, person, counted, GetCurrentTimestamp());
}

/* Count again the removals the audit shows in the window; as its owner. */
static void
recall_spi(Oid nsp, void *arg pg_attribute_unused())
{
	GuardState *g = state();
	bool		named = get_attnum(get_relname_relid("atlas_removal_audit", nsp), "username") != InvalidAttrNumber;
	uint64		r;

	/* an install older than 1.2 has no username column */
	if (SPI_execute(psprintf("SELECT org_id, group_id, %s, max(at)"
							 " FROM %s WHERE at > clock_timestamp() - make_interval(secs => %d)"
							 " AND operation IN ('remove_project_user', 'remove_org_user',"
							 "  'remove_team_user', 'remove_project_user_v1') AND outcome <> 'cancelled'"
							 " GROUP BY 1, 2, 3",
							 named ? "coalesce(user_id, username)" : "user_id",
							 atlas_ext_rel(nsp, "atlas_removal_audit"), atlas_guard_window_s),
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the audit for the removal budget");
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *org_id = SPI_getvalue(tup, desc, 1);
		uint64		scope = scope_of(org_id, SPI_getvalue(tup, desc, 2));
		uint64		who = hash_text("", SPI_getvalue(tup, desc, 3));
		bool		isnull;
		TimestampTz at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
		bool		counted;

		atlas_shared_lock(g, LW_EXCLUSIVE);
		(void) used_in(g, scope, who, &counted);
		count_person_at(g, scope, who, counted, at);
		atlas_shared_unlock(g);
	}
}

/*
 * The worker, when it starts: count again the removals of the window from
 * the audit, so that a restart does not refill the budget.  In a
 * transaction.
 */
void
atlas_guard_recall(void)
{
	atlas_as_table_owner("atlas_removal_audit", recall_spi, NULL);
}

/*
 * Admit one person's removal: true when it fits the budget (or the
 * person counts already), and it is counted; with limited false it is
 * always admitted and counted.
 */
bool
atlas_guard_admit(const char *org_id, const char *group_id, const char *person, bool limited)
{
	GuardState *g = state();
	uint64		scope = scope_of(org_id, group_id);
	uint64		who = hash_text("", person);
	bool		counted;
	bool		ok;

	atlas_shared_lock(g, LW_EXCLUSIVE);
	ok = (used_in(g, scope, who, &counted) < budget_of(g, scope)) || counted || !limited;
	if (ok)
		count_person(g, scope, who, counted);
	atlas_shared_unlock(g);
	return ok;
}

/* Count a removal the executor is about to send, when nobody counted it. */
void
atlas_guard_count_call(AtlasCall *call)
{
	switch (call->op)
	{
		case ATLAS_OP_REMOVE_PROJECT_USER:
		case ATLAS_OP_REMOVE_ORG_USER:
		case ATLAS_OP_REMOVE_TEAM_USER:
		case ATLAS_OP_REMOVE_PROJECT_USER_V1:
			if (!call->guard_counted)
				(void) atlas_guard_admit(call->org_id, call->group_id,
										 call->user_id ? call->user_id : call->username, false);
			call->guard_counted = true;
			break;
		default:
			break;
	}
}

/*
 * Reserve the removal of n people in one scope, before the first
 * request: all counted, or, past the budget and without force, none
 * counted and 55000 raised.  what names the caller, for the message.
 * Returns whether force was needed: the removals are then audited as
 * forced.
 */
bool
atlas_guard_reserve(const char *org_id, const char *group_id, char **people, int n,
					bool force, const char *what)
{
	GuardState *g = state();
	uint64		scope = scope_of(org_id, group_id);
	uint64	   *who = palloc(sizeof(uint64) * Max(n, 1));
	bool	   *counted = palloc(sizeof(bool) * Max(n, 1));
	int			used = 0;
	int			fresh = 0;
	int			budget;
	bool		over;
	int			i;
	int			j;

	for (i = 0; i < n; i++)
		who[i] = hash_text("", people[i]);
	atlas_shared_lock(g, LW_EXCLUSIVE);
	budget = budget_of(g, scope);
	for (i = 0; i < n; i++)
	{
		used = used_in(g, scope, who[i], &counted[i]);
		/* the same person twice in one call counts once */
		for (j = 0; j < i && !counted[i]; j++)
			counted[i] = (who[j] == who[i]);
		fresh += counted[i] ? 0 : 1;
	}
	over = (used + fresh > budget);
	if (over && !force)
	{
		atlas_shared_unlock(g);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s would remove %d people from %s %s, past the removal budget",
						what, fresh, org_id ? "organization" : "project", org_id ? org_id : group_id),
				 errdetail("%d people were removed there in the last %d s; the budget is %d (atlas_users.guard_max_removals, atlas_users.guard_max_share). Nothing was sent to Atlas.",
						   used, atlas_guard_window_s, budget),
				 errhint("If these removals are intended, call it again with force => true (audited as forced), or have a superuser raise atlas_users.guard_max_removals.")));
	}
	for (i = 0; i < n; i++)
		count_person(g, scope, who[i], counted[i]);
	atlas_shared_unlock(g);
	pfree(who);
	pfree(counted);
	return over;
}

/*
 * Should a held burst in this scope be announced?  True once per window
 * per scope (the first held row of a burst).
 */
bool
atlas_guard_should_warn(const char *org_id, const char *group_id)
{
	GuardState *g = state();
	GuardScope *s;
	TimestampTz now = GetCurrentTimestamp();
	bool		warn;

	atlas_shared_lock(g, LW_EXCLUSIVE);
	s = scope_record(g, scope_of(org_id, group_id), true);
	warn = (s->warned_at == 0 ||
			s->warned_at < TimestampTzPlusMilliseconds(now, -(int64) atlas_guard_window_s * 1000));
	if (warn)
		s->warned_at = now;
	atlas_shared_unlock(g);
	return warn;
}

/* A new burst may be announced again: its held rows were released or cancelled. */
void
atlas_guard_burst_over(const char *org_id)
{
	GuardState *g = state();
	GuardScope *s;

	atlas_shared_lock(g, LW_EXCLUSIVE);
	s = scope_record(g, scope_of(org_id, NULL), false);
	if (s)
		s->warned_at = 0;
	atlas_shared_unlock(g);
}

/* A listing showed an organization's size: the share of it applies. */
void
atlas_guard_note_size(const char *org_id, int64 size)
{
	GuardState *g = state();
	GuardScope *s;

	atlas_shared_lock(g, LW_EXCLUSIVE);
	s = scope_record(g, scope_of(org_id, NULL), true);
	s->size = (int) Min(size, INT_MAX);
	atlas_shared_unlock(g);
}

/* The budget of an organization or project now, and how much of it is used. */
int
atlas_guard_budget(const char *org_id, const char *group_id, int *used)
{
	GuardState *g = state();
	uint64		scope = scope_of(org_id, group_id);
	bool		counted;
	int			budget;

	atlas_shared_lock(g, LW_EXCLUSIVE);
	budget = budget_of(g, scope);
	*used = used_in(g, scope, 0, &counted);
	atlas_shared_unlock(g);
	return budget;
}
