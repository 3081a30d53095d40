EXTENSION = atlas_users
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)
MODULE_big = atlas_users
OBJS = src/atlas_users.o src/guc.o src/settings_load.o src/settings_value.o src/settings_check.o src/keyfile.o src/validate.o \
	src/http.o src/http_answer.o src/http_url.o \
	src/endpoints.o src/credentials.o src/servers.o src/fdw.o src/token.o src/executor.o src/prepare.o src/dispatch.o src/answer.o src/calendar.o src/pacing.o src/pacing_sql.o src/rate_sets.o src/rate_sets_read.o \
	src/errors.o src/owner.o src/audit.o src/audit_sql.o src/shmem.o \
	src/remove.o src/bulk.o src/listing.o src/listing_rows.o src/listings.o src/lookup.o src/offboard.o src/offboard_facts.o src/offboard_names.o src/federation.o src/reconcile.o src/invitations.o src/guard.o \
	src/queue_sql.o src/trigger.o src/queue_claim.o src/queue_run.o src/queue_guard.o src/queue_upkeep.o src/worker.o src/parse.o \
	src/parse_count.o src/untrusted.o \
	src/stats.o src/wait_events.o src/health.o

DATA = $(wildcard sql/atlas_users--*.sql)

REGRESS = setup validation remove errors auth audit privileges lookup servers listings
REGRESS_OPTS = --dbname=atlas_users_regression

# the User-Agent names the version of the control file, never a hand-kept copy
PG_CPPFLAGS = -DEXTVERSION=\"$(EXTVERSION)\"
PG_CFLAGS = -Wall -Wextra -Werror=implicit-function-declaration -MMD -MP
EXTRA_CLEAN = $(OBJS:.o=.d)
# clang, unlike gcc, reports the fcinfo parameter that PG_FUNCTION_ARGS (a
# macro of PostgreSQL's headers, which are system headers here) declares
# in a function that reads no argument; gcc still checks our own parameters
ifneq (,$(findstring clang,$(CC)))
PG_CFLAGS += -Wno-unused-parameter
endif
SHLIB_LINK = -lcurl -lcjson

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# each object depends on the headers it really includes (-MMD, above,
# writes them to src/*.d), and on the control file (EXTVERSION)
-include $(OBJS:.o=.d)
$(OBJS): $(EXTENSION).control

# The TAP tests (test/t/*.pl) against the installed extension, as pgvector
# runs its own: needs the Atlas emulator and the environment test/lib.sh
# sets up (bash test/quick t/NNN_name.pl does both); PROVE_TESTS picks files.
prove_installcheck:
	rm -rf $(CURDIR)/tmp_check
	cd $(srcdir)/test && TESTDIR='$(CURDIR)' PATH="$(bindir):$$PATH" \
		PG_REGRESS='$(top_builddir)/src/test/regress/pg_regress' ATLAS_TEST_ROOT='$(CURDIR)/test' \
		$(PROVE) $(PG_PROVE_FLAGS) -I perl $(PROVE_FLAGS) $(if $(PROVE_TESTS),$(PROVE_TESTS),t/*.pl)
.PHONY: prove_installcheck

# PostgreSQL's headers are not -Wextra clean; treat them as system headers
# so that -Wall -Wextra report only this project's code.
override CPPFLAGS := -isystem $(includedir_server) -isystem $(includedir_internal) $(CPPFLAGS)

# make dist: the PGXN release, a zip of the files git tracks at HEAD
DISTVERSION = $(shell sed -n 's/^   "version": "\(.*\)",$$/\1/p' META.json | head -n 1)
.PHONY: dist
dist:
	git archive --format zip --prefix=$(EXTENSION)-$(DISTVERSION)/ -o $(EXTENSION)-$(DISTVERSION).zip HEAD
