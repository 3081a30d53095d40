/*
 * fuzz_user_list.c: libFuzzer target for a page of org users: the list
 * walk of atlas_list_page_items() with atlas_parse_org_user() on each
 * result, as lookup.c does.
 */
#include <stdint.h>
#include <string.h>

#include "atlas/parse.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
each_user(const cJSON *item, void *arg)
{
	AtlasParsedUser *u = atlas_parse_org_user(item);
	int			i;

	if (u == NULL)
		return;
	if (!atlas_is_id(u->id))
		__builtin_trap();
	for (i = 0; i < u->ngroups; i++)
		if (!atlas_is_id(u->groups[i].group_id))
			__builtin_trap();
	(*(int *) arg)++;
	atlas_free_parsed_user(u);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int			users = 0;
	bool		next;

	(void) atlas_parse_list_page((const char *) data, size, each_user, &users, &next);
	return 0;
}
