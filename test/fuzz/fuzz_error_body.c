/*
 * fuzz_error_body.c: libFuzzer target for atlas_parse_error_body(), the
 * parser of Atlas ApiError bodies, plain or enveloped ({status, content}).
 */
#include <stdint.h>
#include <string.h>

#include "atlas/parse.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	AtlasErrorBody body;

	atlas_parse_error_body((const char *) data, size, "65f0d0000000000000000001", &body);
	/* the fixed buffers are always terminated */
	if (strlen(body.error_code) >= sizeof(body.error_code) ||
		strlen(body.detail) >= sizeof(body.detail))
		__builtin_trap();
	atlas_parse_error_body((const char *) data, size, NULL, &body);
	if (body.names_user)
		__builtin_trap();
	return 0;
}
