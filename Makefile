EXTENSION = atlas_users
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)
MODULE_big = atlas_users
OBJS = src/atlas_users.o src/guc.o src/settings_load.o src/settings_value.o src/settings_check.o src/keyfile.o src/validate.o \
	src/http.o src/http_answer.o src/http_url.o \
	src/endpoints.o src/credentials.o src/servers.o src/fdw.o src/token.o src/executor.o src/prepare.o src/dispatch.o src/answer.o src/pacing.o \
	src/errors.o src/owner.o src/audit.o src/audit_sql.o src/shmem.o \
	src/remove.o src/bulk.o src/listing.o src/listing_rows.o src/listings.o src/lookup.o src/offboard.o src/offboard_facts.o src/reconcile.o \
	src/queue_sql.o src/trigger.o src/queue_run.o src/queue_upkeep.o src/worker.o src/parse.o \
	src/stats.o src/wait_events.o src/health.o

DATA = $(wildcard sql/atlas_users--*.sql)

REGRESS = setup validation remove errors auth audit privileges lookup servers listings
REGRESS_OPTS = --dbname=atlas_users_regression

# the User-Agent names the version of the control file, never a hand-kept copy
PG_CPPFLAGS = -DEXTVERSION=\"$(EXTVERSION)\"
PG_CFLAGS = -Wall -Wextra -Werror=implicit-function-declaration
SHLIB_LINK = -lcurl -lcjson

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every object depends on the shared headers
$(OBJS): src/atlas_users.h src/settings.h src/parse.h src/http.h src/executor.h src/offboard.h src/listings.h src/stats.h $(EXTENSION).control

# PostgreSQL's headers are not -Wextra clean; treat them as system headers
# so that -Wall -Wextra report only this project's code.
override CPPFLAGS := -isystem $(includedir_server) -isystem $(includedir_internal) $(CPPFLAGS)
