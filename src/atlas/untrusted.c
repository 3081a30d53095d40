/*-------------------------------------------------------------------------
 *
 * untrusted.c
 *	  What an answer that may come from a hostile server needs before we
 *	  keep or compare any of it: text made valid in the database encoding
 *	  (whole, or cleaned and capped for messages), sets of strings
 *	  compared over their full length, and one reading of duplicate JSON
 *	  keys.  Also the List helpers any file may use (a string listed, an
 *	  entry by key).
 *
 * Text: in a UTF-8 (or SQL_ASCII) database each byte that does not begin
 * a valid UTF-8 sequence becomes U+FFFD, the replacement character; in a
 * database of another encoding every non-ASCII character becomes '?'
 * (answers are UTF-8, and nothing in a listing may fail on one field).
 * Nothing is cut: the text keeps its full length.
 *
 * Duplicate keys: cJSON finds the first member of a name, jsonb keeps the
 * last.  atlas_json_first_keys() deletes every later duplicate from a
 * parsed answer, so typed columns, the raw column and every check read
 * the same (the first) value.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas/atlas.h"

#include "common/hashfn.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "lib/stringinfo.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

/* objects with more members than this are checked through a hash table */
#define FIRST_KEYS_LINEAR 16

/*
 * A palloc'd copy of len bytes of untrusted text, valid in the database
 * encoding (see the file comment); never shorter than it was.
 */
char *
atlas_valid_text(const char *s, size_t len)
{
	StringInfoData buf;
	int			enc = GetDatabaseEncoding();
	bool		utf8 = (enc == PG_UTF8 || enc == PG_SQL_ASCII);
	size_t		i = 0;

	initStringInfo(&buf);
	while (i < len)
	{
		unsigned char c = (unsigned char) s[i];
		int			l;

		if (c < 0x80)
		{
			appendStringInfoChar(&buf, c == 0 ? '?' : (char) c);
			i++;
			continue;
		}
		l = pg_utf_mblen((const unsigned char *) s + i);
		if (i + l <= len && pg_utf8_islegal((const unsigned char *) s + i, l))
		{
			if (utf8)
				appendBinaryStringInfo(&buf, s + i, l);
			else
				appendStringInfoChar(&buf, '?');
			i += l;
		}
		else
		{
			appendStringInfoString(&buf, utf8 ? "\xEF\xBF\xBD" : "?");
			i++;
		}
	}
	return buf.data;
}

/* Is s valid UTF-8 (in full)? */
bool
atlas_is_valid_utf8(const char *s, size_t len)
{
	return pg_encoding_verifymbstr(PG_UTF8, s, (int) len) == (int) len;
}

/* hash of a string set's key (a char *): its full length */
static uint32
strset_hash(const void *key, Size keysize pg_attribute_unused())
{
	const char *s = *(const char *const *) key;

	return hash_bytes((const unsigned char *) s, (int) strlen(s));
}

/* match of a string set's keys: the whole strings */
static int
strset_match(const void *a, const void *b, Size keysize pg_attribute_unused())
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* A set of strings of any length, in the current memory context. */
HTAB *
atlas_strset_create(const char *name, long size)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(char *);
	ctl.hash = strset_hash;
	ctl.match = strset_match;
	ctl.hcxt = CurrentMemoryContext;
	return hash_create(name, size, &ctl, HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

/*
 * Is s in a set (adding a copy of it, if add)?  The whole string is
 * compared, whatever its length.
 */
bool
atlas_strset_in(HTAB *set, const char *s, bool add)
{
	bool		found;
	char	  **entry;

	entry = (char **) hash_search(set, &s, add ? HASH_ENTER : HASH_FIND, &found);
	/* the copy lives in the table's own context (where dynahash put it) */
	if (add && !found)
		*entry = MemoryContextStrdup(GetMemoryChunkContext(set), s);
	return found;
}

/* Delete the later duplicate members of one object (names compared in full). */
static void
first_keys_of(cJSON *obj)
{
	cJSON	   *m = obj->child;
	HTAB	   *seen = NULL;

	if (cJSON_GetArraySize(obj) > FIRST_KEYS_LINEAR)
		seen = atlas_strset_create("atlas_users JSON keys", 64);
	while (m != NULL)
	{
		cJSON	   *next = m->next;
		bool		dup = false;
		const char *name = m->string ? m->string : "";

		if (seen != NULL)
			dup = atlas_strset_in(seen, name, true);
		else
		{
			const cJSON *p;

			for (p = obj->child; p != m && !dup; p = p->next)
				dup = (strcmp(p->string ? p->string : "", name) == 0);
		}
		if (dup)
			cJSON_Delete(cJSON_DetachItemViaPointer(obj, m));
		m = next;
	}
	if (seen != NULL)
		hash_destroy(seen);
}

/*
 * Read duplicate keys one way: in every object of a parsed answer, keep
 * the first member of each name and delete the others.
 */
void
atlas_json_first_keys(cJSON *json)
{
	cJSON	   *c;

	if (json == NULL)
		return;
	check_stack_depth();
	if (cJSON_IsObject(json))
		first_keys_of(json);
	for (c = json->child; c != NULL; c = c->next)
		if (cJSON_IsObject(c) || cJSON_IsArray(c))
			atlas_json_first_keys(c);
}

/*
 * Copy at most maxlen bytes of untrusted text, valid in the database
 * encoding: control characters become spaces, and bytes that are not
 * valid UTF-8 (or, in other encodings, any non-ASCII byte) become '?'.
 */
char *
atlas_clean_text(const char *s, size_t len, size_t maxlen)
{
	StringInfoData buf;
	bool		utf8 = (GetDatabaseEncoding() == PG_UTF8);
	size_t		i = 0;

	initStringInfo(&buf);
	while (i < len && (size_t) buf.len < maxlen)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x80)
		{
			appendStringInfoChar(&buf, (c < 0x20 || c == 0x7f) ? ' ' : (char) c);
			i++;
		}
		else if (utf8)
		{
			int			l = pg_utf_mblen((const unsigned char *) s + i);

			if (i + l <= len && pg_utf8_islegal((const unsigned char *) s + i, l))
			{
				if ((size_t) buf.len + (size_t) l > maxlen)
					break;
				appendBinaryStringInfo(&buf, s + i, l);
				i += l;
			}
			else
			{
				appendStringInfoChar(&buf, '?');
				i++;
			}
		}
		else
		{
			appendStringInfoChar(&buf, '?');
			i++;
		}
	}
	if (i < len)
		appendStringInfoString(&buf, "...");
	return buf.data;
}

/*
 * The entry of *list whose key (key_size bytes at key_offset: a pointer,
 * an Oid) equals *key; on first use a new one of size bytes, zeroed but
 * for its key, made in cxt and appended to *list.
 */
void *
atlas_list_entry(List **list, MemoryContext cxt, Size size,
				 Size key_offset, const void *key, Size key_size)
{
	ListCell   *lc;
	char	   *e;
	MemoryContext old;

	foreach(lc, *list)
	{
		e = (char *) lfirst(lc);
		if (memcmp(e + key_offset, key, key_size) == 0)
			return e;
	}
	old = MemoryContextSwitchTo(cxt);
	e = palloc0(size);
	memcpy(e + key_offset, key, key_size);
	*list = lappend(*list, e);
	MemoryContextSwitchTo(old);
	return e;
}

/* Is a string in a List of strings (compared whole)? */
bool
atlas_string_listed(List *l, const char *s)
{
	ListCell   *lc;

	foreach(lc, l)
		if (strcmp((char *) lfirst(lc), s) == 0)
		return true;
	return false;
}
