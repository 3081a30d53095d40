/*
 * fuzz_pagination.c: libFuzzer target for the pagination of list pages:
 * atlas_parse_list_page() must say "next" only for a non-empty page of a
 * real list with a link of rel "next"; and atlas_json_count_results(),
 * which counts a page's entries in its text before it is parsed, must
 * never count fewer than the parse finds, and must stop just past max.
 */
#include <stdint.h>
#include <string.h>

#include "atlas/parse.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
count_item(const cJSON *item, void *arg)
{
	(void) item;
	(*(int *) arg)++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int			items = 0;
	bool		next = false;
	bool		list = atlas_parse_list_page((const char *) data, size, count_item, &items, &next);

	if (next && (!list || items == 0))
		__builtin_trap();
	long		all = atlas_json_count_results((const char *) data, size, 1L << 40);
	long		upto3 = atlas_json_count_results((const char *) data, size, 3);

	if (!list && items != 0)
		__builtin_trap();
	if (list && all < items)
		__builtin_trap();
	if (upto3 != (all < 4 ? all : 4))
		__builtin_trap();
	return 0;
}
