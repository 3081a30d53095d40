EXTENSION = atlas_users
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)
MODULE_big = atlas_users
OBJS = src/atlas_users.o src/guc.o src/settings_load.o src/settings_value.o src/settings_check.o src/keyfile.o src/validate.o \
	src/http.o src/http_answer.o src/http_url.o \
	src/endpoints.o src/credentials.o src/servers.o src/fdw.o src/token.o src/executor.o src/prepare.o src/dispatch.o src/answer.o src/pacing.o \
	src/errors.o src/owner.o src/audit.o src/audit_sql.o src/shmem.o \
	src/remove.o src/bulk.o src/listing.o src/listing_rows.o src/listings.o src/lookup.o src/offboard.o src/offboard_facts.o src/reconcile.o \
	src/queue_sql.o src/trigger.o src/queue_run.o src/queue_upkeep.o src/worker.o src/parse.o

DATA = $(wildcard sql/atlas_users--*.sql)

REGRESS = setup validation remove errors auth audit privileges lookup servers listings
REGRESS_OPTS = --dbname=atlas_users_regression

# the User-Agent names the version of the control file, never a hand-kept copy
PG_CPPFLAGS = -DEXTVERSION=\"$(EXTVERSION)\"
PG_CFLAGS = -Wall -Wextra -Werror=implicit-function-declaration
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

# every object depends on the shared headers
$(OBJS): src/atlas_users.h src/compat.h src/settings.h src/parse.h src/http.h src/executor.h src/offboard.h src/listings.h $(EXTENSION).control

# PostgreSQL's headers are not -Wextra clean; treat them as system headers
# so that -Wall -Wextra report only this project's code.
override CPPFLAGS := -isystem $(includedir_server) -isystem $(includedir_internal) $(CPPFLAGS)

# make dist: the PGXN release, a zip of the files git tracks at HEAD
DISTVERSION = $(shell sed -n 's/^   "version": "\(.*\)",$$/\1/p' META.json | head -n 1)
.PHONY: dist
dist:
	git archive --format zip --prefix=$(EXTENSION)-$(DISTVERSION)/ -o $(EXTENSION)-$(DISTVERSION).zip HEAD
