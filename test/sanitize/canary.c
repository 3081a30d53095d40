/*
 * canary.c: two deliberately broken SQL functions that prove the sanitizer
 * run can see a bug.  test/sanitize/run builds this module with the same
 * flags as atlas_users.so, loads it into the same wrapped server after the
 * suites, and requires one AddressSanitizer report (a use after free) and
 * one UndefinedBehaviorSanitizer report (a signed overflow).  A run whose
 * canaries stay silent has not checked anything, and fails.  Never
 * installed: it lives only in the test's run directory.
 */
#include "postgres.h"

#include <stdlib.h>

#include "fmgr.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(sanitize_canary_use_after_free);
PG_FUNCTION_INFO_V1(sanitize_canary_signed_overflow);

/* Read a byte of a malloc'ed block after freeing it. */
Datum
sanitize_canary_use_after_free(PG_FUNCTION_ARGS)
{
	int32		offset = PG_GETARG_INT32(0);
	char	   *block = malloc(16);
	volatile char c;

	if (block == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	memset(block, 'x', 16);
	free(block);
	c = block[offset & 15];
	PG_RETURN_INT32(c);
}

/* Add one to the argument in int arithmetic, overflowing at INT_MAX. */
Datum
sanitize_canary_signed_overflow(PG_FUNCTION_ARGS)
{
	int32		value = PG_GETARG_INT32(0);

	PG_RETURN_INT32(value + 1);
}
