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
 * A field that is not what its column holds (a malformed createdAt, a
 * number where text belongs) is NULL in its row, never a failed listing;
 * text is made valid in the database encoding first (untrusted.c).
 *
 *-------------------------------------------------------------------------
 */
#include "executor/run.h"
#include "functions/listings.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

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

/* A text Datum of untrusted text: valid in the database encoding (untrusted.c). */
static Datum
valid_text_datum(const char *s)
{
	return CStringGetTextDatum(atlas_valid_text(s, strlen(s)));
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
			elems[n++] = valid_text_datum(s->valuestring);
	}
	*result = PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
	return true;
}

/* The number written by n digits, or -1 when one is not a digit. */
static int
digits(const char *s, int n)
{
	int			v = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* A fraction of a second (".123"), as fsec_t; *p moves past it; -1 if none. */
static int
fraction(const char **p)
{
	int			usec = 0;
	int			n = 0;

	if (**p != '.')
		return 0;
	for ((*p)++; **p >= '0' && **p <= '9'; (*p)++, n++)
		if (n < 6)
			usec = usec * 10 + (**p - '0');
	if (n == 0)
		return -1;
	for (; n < 6; n++)
		usec *= 10;
	return usec;
}

/*
 * The zone of an ISO 8601 time: Z, +HH:MM, +HHMM or +HH (seconds west of
 * UTC, as PostgreSQL counts), or the session's time zone when there is
 * none; false for anything else.
 */
static bool
zone(const char *p, struct pg_tm *tm, int *tz)
{
	int			h;
	int			m = 0;

	if (*p == '\0')
		*tz = DetermineTimeZoneOffset(tm, session_timezone);
	else if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
		*tz = 0;
	else if (*p == '+' || *p == '-')
	{
		h = digits(p + 1, 2);
		if (p[3] == ':' && strlen(p) == 6)
			m = digits(p + 4, 2);
		else if (strlen(p) == 5)
			m = digits(p + 3, 2);
		else if (strlen(p) != 3)
			return false;
		if (h < 0 || h > MAX_TZDISP_HOUR || m < 0 || m > 59)
			return false;
		*tz = (h * SECS_PER_HOUR + m * SECS_PER_MINUTE) * (*p == '+' ? -1 : 1);
	}
	else
		return false;
	return true;
}

/*
 * A timestamptz from Atlas's ISO 8601 text (2024-05-01T12:00:00Z, with a
 * fraction or an offset); false, never an error, for what is not one: a
 * server that is not Atlas makes the field NULL, not the listing fail.
 */
static bool
timestamp_value(const char *s, Datum *result)
{
	struct pg_tm tm;
	int			fsec;
	int			tz;
	const char *p = s + 19;
	TimestampTz ts;

	if (strlen(s) < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
		s[13] != ':' || s[16] != ':')
		return false;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = digits(s, 4);
	tm.tm_mon = digits(s + 5, 2);
	tm.tm_mday = digits(s + 8, 2);
	tm.tm_hour = digits(s + 11, 2);
	tm.tm_min = digits(s + 14, 2);
	tm.tm_sec = digits(s + 17, 2);
	if (tm.tm_year < 1 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
		tm.tm_mday > day_tab[isleap(tm.tm_year)][tm.tm_mon - 1] ||
		tm.tm_hour < 0 || tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 ||
		tm.tm_sec < 0 || tm.tm_sec > 59)
		return false;
	fsec = fraction(&p);
	if (fsec < 0 || !zone(p, &tm, &tz) || tm2timestamp(&tm, fsec, &tz, &ts) != 0 ||
		!IS_VALID_TIMESTAMP(ts))
		return false;
	*result = TimestampTzGetDatum(ts);
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
			*value = valid_text_datum(m->valuestring);
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
					*value = DirectFunctionCall1(jsonb_in,
												 CStringGetDatum(atlas_valid_text(s, strlen(s))));
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
