/*-------------------------------------------------------------------------
 *
 * listings.h
 *	  The listing functions' family: the row machinery (listing_rows.c),
 *	  shared with the functions themselves (listings.c) and federation.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_LISTINGS_H
#define ATLAS_LISTINGS_H

#include "functions/functions.h"

#include "nodes/execnodes.h"
#include "utils/hsearch.h"

typedef enum ColKind
{
	COL_TEXT,
	COL_TEXT_ARRAY,				/* strings, or sub of each object */
	COL_TIMESTAMPTZ,
	COL_INT,
	COL_BOOL,
	COL_RAW,					/* the entry as jsonb */
	COL_EXTRA					/* extra[sub index]: given by the caller */
} ColKind;

typedef struct Column
{
	const char *path;
	ColKind		kind;
	const char *sub;
	int			extra;
} Column;

#define MAX_EXTRAS 3
#define ATLAS_ID_LEN 24

/* where a listing's rows go */
typedef struct Sink
{
	ReturnSetInfo *rsinfo;
	const Column *cols;
	int			ncols;
	MemoryContext rowcxt;
	Datum		extra[MAX_EXTRAS];
	bool		extra_null[MAX_EXTRAS];
	HTAB	   *skip_ids;		/* entries whose id is here are left out */
	HTAB	   *seen_ids;		/* ids of the entries put, if wanted */
	List	   *seen;			/* and the entries' ids and roles, if wanted */
} Sink;

/* an entry of interest kept across listings (team ids, say) */
typedef struct Kept
{
	char	   *id;
	Datum		roles;			/* text[] */
	bool		roles_null;
} Kept;

extern bool atlas_rows_text_array(const cJSON *arr, const char *sub, Datum *result);
extern HTAB *atlas_rows_id_set(const char *name);
extern void atlas_rows_sink_item(const cJSON *entry, void *arg);
extern void atlas_rows_keep_item(const cJSON *entry, void *arg);
extern Sink *atlas_rows_start(FunctionCallInfo fcinfo, const Column *cols, int ncols);
extern void atlas_rows_list_into(Sink *sink, AtlasOperation op, AtlasTarget *target,
								 const char *org_id, const char *group_id,
								 const char *team_id, const char *query, AtlasItemFn fn,
								 const char *label);

#endif							/* ATLAS_LISTINGS_H */
