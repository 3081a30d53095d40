/*
 * fuzz_pagination.c: libFuzzer target for the pagination of list pages:
 * atlas_parse_list_page() must say "next" only for a non-empty page of a
 * real list with a link of rel "next".
 */
#include <stdint.h>
#include <string.h>

#include "parse.h"

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
	if (!list && items != 0)
		__builtin_trap();
	return 0;
}
