/*-------------------------------------------------------------------------
 *
 * listing_rows.c
 *	  The rows of the listing functions: typed columns read from Atlas
 *	  entries, put into a set-returning function's result one at a time.
 *
 * A column says where its value is in an entry ("a.b" follows objects;
 * sub names a field of each element of an array of objects) or that the
 * caller supplies it (an extra: the server, how a user reaches a project).
 * A row is built in a memory context that is reset after each row, and the
 * result is a tuplestore (spilling to disk past work_mem), so a listing of
 * any length holds one page in memory.
 *
 *-------------------------------------------------------------------------
 */
#include "listings.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

/* The member at a dotted path, or NULL. */
static const cJSON *
member_at(const cJSON *obj, const char *path)
{
	char		name[64];
	const char *dot;

	while (obj != NULL && (dot = strchr(path, '.')) != NULL)
	{
		strlcpy(name, path, Min((size_t) (dot - path) + 1, sizeof(name)));
		obj = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;
		path = dot + 1;
	}
	return cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, path) : NULL;
}

/* A text[] of an array's strings (or of each object's sub); NULL if none. */
bool
atlas_rows_text_array(const cJSON *arr, const char *sub, Datum *result)
{
	const cJSON *v;
	Datum	   *elems;
	int			n = 0;

	if (!cJSON_IsArray(arr))
		return false;
	elems = palloc(sizeof(Datum) * Max(cJSON_GetArraySize(arr), 1));
	cJSON_ArrayForEach(v, arr)
	{
		const cJSON *s = sub ? member_at(v, sub) : v;

		if (cJSON_IsString(s))
			elems[n++] = CStringGetTextDatum(s->valuestring);
	}
	*result = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
	return true;
}

/*
 * A timestamptz from Atlas's ISO 8601 text; false for what does not look
 * like one (a server that is not Atlas must not make the listing fail).
 */
static bool
timestamp_value(const char *s, Datum *result)
{
	int			i;

	if (strlen(s) < 19 || s[4] != '-' || s[7] != '-' || s[10] != 'T')
		return false;
	for (i = 0; s[i]; i++)
		if (!strchr("0123456789-:.TZ+", s[i]))
			return false;
	*result = DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
								  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	return true;
}

/* The value of one column of an entry; false for NULL. */
static bool
column_value(Sink *sink, const Column *col, const cJSON *entry, Datum *value)
{
	const cJSON *m = col->path ? member_at(entry, col->path) : NULL;

	if (m == NULL && col->kind != COL_RAW && col->kind != COL_EXTRA)
		return false;
	switch (col->kind)
	{
		case COL_TEXT:
			if (!cJSON_IsString(m))
				return false;
			*value = CStringGetTextDatum(m->valuestring);
			return true;
		case COL_TEXT_ARRAY:
			return atlas_rows_text_array(m, col->sub, value);
		case COL_TIMESTAMPTZ:
			return cJSON_IsString(m) && timestamp_value(m->valuestring, value);
		case COL_INT:
			if (!cJSON_IsNumber(m) || m->valuedouble < PG_INT32_MIN || m->valuedouble > PG_INT32_MAX)
				return false;
			*value = Int32GetDatum((int32) m->valuedouble);
			return true;
		case COL_BOOL:
			if (!cJSON_IsBool(m))
				return false;
			*value = BoolGetDatum(cJSON_IsTrue(m));
			return true;
		case COL_RAW:
			{
				char	   *s = cJSON_PrintUnformatted(entry);

				if (s == NULL)
					return false;
				PG_TRY();
				{
					*value = DirectFunctionCall1(jsonb_in, CStringGetDatum(s));
				}
				PG_FINALLY();
				{
					free(s);
				}
				PG_END_TRY();
				return true;
			}
		case COL_EXTRA:
			*value = sink->extra[col->extra];
			return !sink->extra_null[col->extra];
	}
	return false;
}

/* A string-keyed set of Atlas ids. */
HTAB *
atlas_rows_id_set(const char *name)
{
	HASHCTL		ctl;

	ctl.keysize = ATLAS_ID_LEN + 1;
	ctl.entrysize = ATLAS_ID_LEN + 1;
	ctl.hcxt = CurrentMemoryContext;
	return hash_create(name, 256, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/* Is the entry's id in a set (adding it, if add)? */
static bool
id_in(HTAB *set, const char *id, bool add)
{
	char		key[ATLAS_ID_LEN + 1];
	bool		found;

	if (set == NULL || id == NULL || strlen(id) != ATLAS_ID_LEN)
		return false;
	strlcpy(key, id, sizeof(key));
	(void) hash_search(set, key, add ? HASH_ENTER : HASH_FIND, &found);
	return found;
}

/* Item function: put one entry as a row. */
void
atlas_rows_sink_item(const cJSON *entry, void *arg)
{
	Sink	   *sink = (Sink *) arg;
	const char *id = atlas_json_string(entry, "id");
	MemoryContext old;
	Datum		values[16];
	bool		nulls[16];
	int			i;

	if (id_in(sink->skip_ids, id, false))
		return;
	if (sink->seen_ids != NULL)
		(void) id_in(sink->seen_ids, id, true);
	old = MemoryContextSwitchTo(sink->rowcxt);
	for (i = 0; i < sink->ncols; i++)
		nulls[i] = !column_value(sink, &sink->cols[i], entry, &values[i]);
	tuplestore_putvalues(sink->rsinfo->setResult, sink->rsinfo->setDesc, values, nulls);
	MemoryContextSwitchTo(old);
	MemoryContextReset(sink->rowcxt);
}

/* Item function: keep an entry's id and a text[] (a team's roles). */
void
atlas_rows_keep_item(const cJSON *entry, void *arg)
{
	Sink	   *sink = (Sink *) arg;
	const char *id = atlas_json_string(entry, sink->cols[0].path);
	Kept	   *k;

	if (id == NULL)
		return;
	k = palloc0(sizeof(Kept));
	k->id = pstrdup(id);
	k->roles_null = !atlas_rows_text_array(member_at(entry, sink->cols[1].path), NULL, &k->roles);
	sink->seen = lappend(sink->seen, k);
}

/* Start a materialized result whose rows are built from cols. */
Sink *
atlas_rows_start(FunctionCallInfo fcinfo, const Column *cols, int ncols)
{
	Sink	   *sink = palloc0(sizeof(Sink));

	InitMaterializedSRF(fcinfo, 0);
	sink->rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	if (sink->rsinfo->setDesc->natts != ncols)
		elog(ERROR, "atlas_users: result of %d columns expected, the function has %d",
			 ncols, sink->rsinfo->setDesc->natts);
	sink->cols = cols;
	sink->ncols = ncols;
	sink->rowcxt = AllocSetContextCreate(CurrentMemoryContext, "atlas_users listing row",
										 ALLOCSET_DEFAULT_SIZES);
	return sink;
}

/* Read every page of one list into the sink (or keep, with atlas_rows_keep_item). */
void
atlas_rows_list_into(Sink *sink, AtlasOperation op, AtlasTarget *target, const char *org_id,
					 const char *group_id, const char *team_id, const char *query,
					 AtlasItemFn fn, const char *label)
{
	AtlasListing listing;

	memset(&listing, 0, sizeof(listing));
	listing.op = op;
	listing.target = target;
	listing.org_id = (char *) org_id;
	listing.group_id = (char *) group_id;
	listing.team_id = (char *) team_id;
	listing.query = (char *) query;
	listing.unpaged = (op == ATLAS_OP_LIST_ORG_INVITES || op == ATLAS_OP_LIST_GROUP_INVITES);
	listing.item = fn ? fn : atlas_rows_sink_item;
	listing.arg = sink;
	listing.label = label;
	atlas_list_all(&listing);
}
