/*
 * fuzz_token.c: libFuzzer target for atlas_parse_token_answer(), the
 * parser of the OAuth token endpoint's answer.
 */
#include <stdint.h>
#include <string.h>

#include "atlas/parse.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	AtlasTokenAnswer answer;
	bool		ok = atlas_parse_token_answer((const char *) data, size, &answer);

	/* a usable answer has a token and a lifetime in range, else a reason */
	if (ok && (answer.token == NULL || answer.token[0] == '\0' ||
			   !(answer.expires_in >= 1 && answer.expires_in <= 86400 * 7)))
		__builtin_trap();
	if (!ok && answer.problem == NULL)
		__builtin_trap();
	atlas_free_token_answer(&answer);
	return 0;
}
