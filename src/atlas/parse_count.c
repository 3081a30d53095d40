/*-------------------------------------------------------------------------
 *
 * parse_count.c
 *	  Counting a list page's entries in its text, before it is parsed.
 *
 * No PostgreSQL here (see parse.h): the fuzz targets link this file as it
 * is.  A page of a million tiny entries takes many times its size once
 * parsed, so a listing counts first and parses only a page that holds no
 * more entries than it asked for.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas/parse.h"

#include <string.h>

/*
 * The entries of a list page, counted in its text before it is parsed
 * (the parse of a page of a million tiny entries takes many times the
 * page's size): the elements of the arrays of the top-level object's
 * "results" members, counting stops once more than max are seen.  A key
 * written with escapes or control bytes counts as "results" (it may read
 * so: a NUL ends a key for cJSON).  Strings and
 * nesting are followed; nothing is allocated.
 */
long
atlas_json_count_results(const char *s, size_t len, long max)
{
	int			depth = 0;
	bool		in_string = false;
	bool		escaped = false;
	bool		expect_key = false; /* at depth 1, the next string is a key */
	bool		in_key = false;
	bool		key_escaped = false;
	size_t		key_start = 0;
	bool		results_key = false;	/* the last key at depth 1 */
	bool		counting = false;	/* in a results array, at depth 2 */
	bool		want_entry = false; /* its next value is an entry */
	long		count = 0;
	size_t		i;

	for (i = 0; i < len && count <= max; i++)
	{
		char		c = s[i];

		if (in_string)
		{
			if ((unsigned char) c < 0x20)
				key_escaped = true; /* a NUL may end the key early */
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = key_escaped = true;
			else if (c == '"')
			{
				in_string = false;
				if (in_key)
					results_key = key_escaped ||
						(i - key_start == 7 && memcmp(s + key_start, "results", 7) == 0);
				in_key = false;
			}
			continue;
		}
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			continue;
		if (counting && depth == 2 && want_entry && c != ']')
		{
			count++;
			want_entry = false;
		}
		if (c == '"')
		{
			in_string = true;
			in_key = (depth == 1 && expect_key);
			key_escaped = false;
			key_start = i + 1;
			expect_key = false;
		}
		else if (c == '{' || c == '[')
		{
			depth++;
			if (depth == 1)
				expect_key = (c == '{');
			if (depth == 2)
				counting = want_entry = (c == '[' && results_key);
		}
		else if (c == '}' || c == ']')
		{
			counting = counting && depth != 2;
			depth--;
		}
		else if (c == ',')
		{
			expect_key = (depth == 1);
			want_entry = (depth == 2 && counting);
		}
	}
	return count;
}
