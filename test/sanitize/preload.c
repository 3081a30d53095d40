/*
 * preload.c: a one-symbol library preloaded after libasan by test/sanitize/run.
 *
 * Debian's postgres links libraries (libgpg-error, gnutls) whose
 * constructors call bindtextdomain() before AddressSanitizer has
 * initialised.  The first malloc() inside bindtextdomain(), which holds
 * glibc's _nl_state_lock, then runs ASan's start-up, and that looks up the
 * optional symbol swift_demangle with dlsym(); the failed lookup makes
 * dlerror() translate its message, which takes and releases the same lock
 * and leaves it corrupt, so the next bindtextdomain() waits forever.
 * Defining swift_demangle makes the lookup succeed, so nothing is
 * translated.  Returning NULL tells ASan "not a Swift name", and it falls
 * back to its C++ demangler.
 */
#include <stddef.h>

extern char *swift_demangle(const char *mangled, size_t mangled_len,
							char *out, size_t *out_len, unsigned flags);

/* Not a Swift symbol: let ASan demangle it another way. */
char *
swift_demangle(const char *mangled, size_t mangled_len, char *out,
			   size_t *out_len, unsigned flags)
{
	(void) mangled;
	(void) mangled_len;
	(void) out;
	(void) out_len;
	(void) flags;
	return NULL;
}
