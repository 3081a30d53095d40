EXTENSION = atlas_users
MODULE_big = atlas_users
OBJS = src/atlas_users.o src/guc.o src/validate.o src/http.o src/auth.o \
	src/atlas_api.o src/errors.o src/audit.o src/remove.o \
	src/shmem.o src/queue.o src/worker.o src/lookup.o src/offboard.o src/bulk.o src/parse.o
HEADERS = src/atlas_users.h

DATA = $(wildcard sql/atlas_users--*.sql)

REGRESS = setup validation remove errors auth audit privileges lookup
REGRESS_OPTS = --dbname=atlas_users_regression

PG_CFLAGS = -Wall -Wextra -Werror=implicit-function-declaration
SHLIB_LINK = -lcurl -lcjson

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every object depends on the shared header
$(OBJS): src/atlas_users.h src/parse.h

# PostgreSQL's headers are not -Wextra clean; treat them as system headers
# so that -Wall -Wextra report only this project's code.
override CPPFLAGS := -isystem $(includedir_server) -isystem $(includedir_internal) $(CPPFLAGS)
