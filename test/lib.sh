#!/usr/bin/env bash
# test/lib.sh: shared setup for test/check (every test) and test/demo.
#
# Installs the Debian packages, builds and installs the extension, makes a
# test CA and key files, starts the Atlas emulator on loopback and a
# throwaway PostgreSQL 15 cluster run by the unprivileged "postgres" OS
# user, and stops both again on exit.  Must run as root (apt-get, make
# install); initdb refuses root, so the cluster runs as postgres.
#
# Environment (all optional): ATLAS_RUN_DIR, ATLAS_PGPORT, ATLAS_EMU_HTTP_PORT
# and ATLAS_EMU_HTTPS_PORT move the run elsewhere; ATLAS_PG_PREFIX=DIR makes
# a private copy of Debian's PostgreSQL 15 under DIR and builds, installs and
# tests there, so that two checkouts can run their suites side by side
# without installing over each other's atlas_users.so.  ATLAS_PG_MAJOR
# (default 15) names the Debian PostgreSQL major to use (test/matrix runs
# test/quick with 17 and 18 in chroots).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=${ATLAS_PG_MAJOR:-15}
SYS_PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_PREFIX=${ATLAS_PG_PREFIX:-}
PGBIN=${PG_PREFIX:+$PG_PREFIX$SYS_PGBIN}
PGBIN=${PGBIN:-$SYS_PGBIN}
PGXS_DIR=$(dirname "$PGBIN")/lib/pgxs
RUN_DIR=${ATLAS_RUN_DIR:-/tmp/atlas_users_run}
PGPORT=${ATLAS_PGPORT:-54329}
EMU_HTTP_PORT=${ATLAS_EMU_HTTP_PORT:-18080}
EMU_HTTPS_PORT=${ATLAS_EMU_HTTPS_PORT:-18443}
export PGHOST=$RUN_DIR PGPORT PGUSER=postgres
export ATLAS_EMULATOR_URL=http://127.0.0.1:$EMU_HTTP_PORT
export ATLAS_EMULATOR_HTTPS_URL=https://localhost:$EMU_HTTPS_PORT
export ATLAS_TEST_CA=$RUN_DIR/certs/ca.crt
export ATLAS_SECRETS=$RUN_DIR/secrets
export PATH=$PGBIN:$PATH

# The credentials of test/emulator/seed.json.
ATLAS_TEST_PUBLIC_KEY=${ATLAS_TEST_PUBLIC_KEY:-}
EMU_PID=

log() { printf '== %s\n' "$*" >&2; }

# Install what the build and the tests need, from Debian's packages.
install_packages() {
	if [ "$(id -u)" != 0 ]; then
		echo "run this as root: it installs Debian packages and the extension" >&2
		exit 1
	fi
	log "installing Debian packages"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
	apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
		postgresql-15 postgresql-server-dev-15 postgresql-15-cron \
		libcurl4-openssl-dev libcjson-dev libipc-run-perl \
		make gcc libc6-dev build-essential python3 curl openssl ca-certificates \
		clang-14 libclang-rt-14-dev cppcheck clang-tidy-14 \
		debhelper dpkg-dev postgresql-server-dev-all debootstrap >/dev/null
}

# With ATLAS_PG_PREFIX: a fresh private copy of PostgreSQL 15 under it.
# PostgreSQL finds its lib and share directories relative to its binaries,
# so the copy installs and loads extensions from under the prefix.
make_private_pg() {
	[ -n "$PG_PREFIX" ] || return 0
	log "copying PostgreSQL $PG_MAJOR to $PG_PREFIX"
	rm -rf "$PG_PREFIX"
	mkdir -p "$PG_PREFIX/usr/lib/postgresql" "$PG_PREFIX/usr/share/postgresql" "$PG_PREFIX/usr"
	cp -a "/usr/lib/postgresql/$PG_MAJOR" "$PG_PREFIX/usr/lib/postgresql/"
	cp -a "/usr/share/postgresql/$PG_MAJOR" "$PG_PREFIX/usr/share/postgresql/"
	ln -s /usr/include "$PG_PREFIX/usr/include"
}

# Build and install the extension.
build_install() {
	log "building and installing atlas_users"
	make -C "$ROOT" -s clean >/dev/null
	make -C "$ROOT" -s 2>&1 | tee "$RUN_DIR/build.log" >&2
	if grep -q 'warning:' "$RUN_DIR/build.log"; then
		echo "the build printed warnings" >&2
		exit 1
	fi
	make -C "$ROOT" -s install >/dev/null
}

# A test CA, a server certificate for localhost/127.0.0.1, and key files.
make_certs_and_secrets() {
	local d=$RUN_DIR/certs
	mkdir -p "$d" "$ATLAS_SECRETS"
	log "making a test CA and server certificate"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=atlas_users test CA" \
		-keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
		-keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$d/san.ext"
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
		-CAcreateserial -days 2 -extfile "$d/san.ext" -out "$d/server.crt" 2>/dev/null
	# a certificate for another host name, signed by the same CA
	openssl req -newkey rsa:2048 -nodes -subj "/CN=wrong.example" \
		-keyout "$d/wronghost.key" -out "$d/wronghost.csr" 2>/dev/null
	printf 'subjectAltName=DNS:wrong.example\n' >"$d/wrong.ext"
	openssl x509 -req -in "$d/wronghost.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
		-CAcreateserial -days 2 -extfile "$d/wrong.ext" -out "$d/wronghost.crt" 2>/dev/null

	# an expired certificate for localhost, signed by the same CA
	openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
		-keyout "$d/expired.key" -out "$d/expired.csr" 2>/dev/null
	mkdir -p "$d/db" && : >"$d/db/index.txt" && echo 01 >"$d/db/serial"
	printf '%s\n' '[ ca ]' 'default_ca = test_ca' '[ test_ca ]' "dir = $d" \
		"database = $d/db/index.txt" "serial = $d/db/serial" "new_certs_dir = $d/db" \
		'default_md = sha256' 'policy = any' '[ any ]' 'commonName = supplied' \
		'[ ext ]' 'subjectAltName = DNS:localhost,IP:127.0.0.1' >"$d/ca.cnf"
	openssl ca -batch -config "$d/ca.cnf" -cert "$d/ca.crt" -keyfile "$d/ca.key" \
		-in "$d/expired.csr" -out "$d/expired.crt" -extensions ext \
		-startdate 20200101000000Z -enddate 20200102000000Z >/dev/null 2>&1

	python3 - "$ROOT/test/emulator/seed.json" "$ATLAS_SECRETS" <<'EOF'
import json, sys, os
seed = json.load(open(sys.argv[1]))
d = sys.argv[2]
k = seed["api_keys"][0]
sa = seed["service_accounts"][0]
for name, value in (("public_key", k["public_key"]), ("private_key", k["private_key"]),
                    ("client_id", sa["client_id"]), ("client_secret", sa["client_secret"])):
    with open(os.path.join(d, name), "w") as f:
        f.write(value + "\n")
EOF
	# the settings that point a cluster at the emulator with these keys:
	# start_cluster and AtlasTest::atlas_conf both read them from here
	cat >"$ATLAS_SECRETS/settings.conf" <<EOF
atlas_users.base_url = '$ATLAS_EMULATOR_HTTPS_URL'
atlas_users.ca_file = '$ATLAS_TEST_CA'
atlas_users.public_key = '$(cat "$ATLAS_SECRETS/public_key")'
atlas_users.private_key_file = '$ATLAS_SECRETS/private_key'
atlas_users.client_id = '$(cat "$ATLAS_SECRETS/client_id")'
atlas_users.client_secret_file = '$ATLAS_SECRETS/client_secret'
EOF
	chown -R postgres:postgres "$RUN_DIR"
	chmod 0600 "$ATLAS_SECRETS"/*
	chmod 0644 "$d/ca.crt"
}

# Start the Atlas emulator on loopback.
start_emulator() {
	log "starting the Atlas emulator on 127.0.0.1:$EMU_HTTP_PORT (http) and :$EMU_HTTPS_PORT (https)"
	rm -f "$RUN_DIR/emulator.ports"
	python3 "$ROOT/test/emulator/atlas_emulator.py" --host 127.0.0.1 \
		--http-port "$EMU_HTTP_PORT" --https-port "$EMU_HTTPS_PORT" \
		--cert "$RUN_DIR/certs/server.crt" --key "$RUN_DIR/certs/server.key" \
		--seed "$ROOT/test/emulator/seed.json" \
		--port-file "$RUN_DIR/emulator.ports" 2>"$RUN_DIR/emulator.log" &
	EMU_PID=$!
	for _ in $(seq 1 100); do
		[ -s "$RUN_DIR/emulator.ports" ] && return 0
		sleep 0.1
	done
	echo "the emulator did not start; see $RUN_DIR/emulator.log" >&2
	cat "$RUN_DIR/emulator.log" >&2
	exit 1
}

# initdb and start a throwaway cluster as the postgres OS user.
start_cluster() {
	log "starting a throwaway PostgreSQL $PG_MAJOR cluster on port $PGPORT"
	runuser -u postgres -- initdb -D "$RUN_DIR/data" -U postgres --auth=trust \
		--no-sync -E UTF8 --locale=C.UTF-8 >"$RUN_DIR/initdb.log"
	cat >>"$RUN_DIR/data/postgresql.conf" <<EOF
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$RUN_DIR'
fsync = off
log_line_prefix = '%m [%p] %q%u@%d '
shared_preload_libraries = 'atlas_users'
EOF
	cat "$ATLAS_SECRETS/settings.conf" >>"$RUN_DIR/data/postgresql.conf"
	cat >>"$RUN_DIR/data/postgresql.conf" <<EOF
atlas_users.auth_method = 'digest'
atlas_users.timeout_ms = 5000
# the counted figures of the suite leave out the listRateLimits read (t/092 tests it)
atlas_users.rate_limit_sets_ttl = 0
${ATLAS_EXTRA_CONF:-}
EOF
	runuser -u postgres -- pg_ctl -D "$RUN_DIR/data" -l "$RUN_DIR/postgres.log" -w start >/dev/null
}

# Stop the cluster and the emulator; runs on exit.
stop_all() {
	if [ -f "$RUN_DIR/data/postmaster.pid" ]; then
		runuser -u postgres -- pg_ctl -D "$RUN_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
	fi
	if [ -n "$EMU_PID" ]; then
		kill "$EMU_PID" 2>/dev/null || true
		wait "$EMU_PID" 2>/dev/null || true
	elif [ -s "$RUN_DIR/emulator.ports" ]; then
		# an emulator left over by an earlier run that was killed
		kill "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' \
			"$RUN_DIR/emulator.ports")" 2>/dev/null || true
		sleep 0.5
	fi
}

# Everything a run needs, from packages to a running cluster.
setup_all() {
	install_packages
	make_private_pg
	stop_all
	rm -rf "$RUN_DIR"
	mkdir -p "$RUN_DIR"
	build_install
	make_certs_and_secrets
	trap stop_all EXIT
	start_emulator
	start_cluster
}

# Run the pg_regress suite against the running cluster; print "PASSED FAILED"
# on stdout, the suite's output and any diffs on stderr.
run_regress() {
	local out=$RUN_DIR/regress${1:+-$1}.log p f
	make -C "$ROOT" -s installcheck >"$out" 2>&1 || true
	cat "$out" >&2
	p=$(grep -cE '^(ok|test) .*\.\.\. ok|^ok [0-9]+ ' "$out" || true)
	f=$(grep -cE 'FAILED|failed \(ignored\)|^not ok [0-9]+ ' "$out" || true)
	if [ -f "$ROOT/regression.diffs" ]; then head -c 20000 "$ROOT/regression.diffs" >&2; fi
	[ "$p" -gt 0 ] || f=$((f + 1))
	echo "$p $f"
}

# Run the TAP tests (test/t/*.pl, or the files given) with prove, as the
# postgres OS user, with the binaries first on PATH; print "PASSED FAILED"
# (every assertion counts; a file that died counts as one failure) on
# stdout and prove's output on stderr.  ATLAS_TAP_TAG names the log.
run_tap() {
	local tapdir=$RUN_DIR/tap${ATLAS_TAP_TAG:+-$ATLAS_TAP_TAG} out p f
	local files=${*:-t/*.pl}
	out=$tapdir.log
	rm -rf "$tapdir" && mkdir -p "$tapdir"
	cp -r "$ROOT/test" "$tapdir/src"
	chown -R postgres:postgres "$tapdir"
	# shellcheck disable=SC2086
	# TESTDIR places tmp_check on 15; 17 reads TESTDATADIR and TESTLOGDIR
	(cd "$tapdir/src" && runuser -u postgres -- env PATH="$PATH" TESTDIR="$tapdir" \
		TESTDATADIR="$tapdir/tmp_check" TESTLOGDIR="$tapdir/tmp_check/log" \
		PG_REGRESS=$PGXS_DIR/src/test/regress/pg_regress \
		ATLAS_EMULATOR_URL="$ATLAS_EMULATOR_URL" ATLAS_EMULATOR_HTTPS_URL="$ATLAS_EMULATOR_HTTPS_URL" \
		ATLAS_TEST_CA="$ATLAS_TEST_CA" ATLAS_SECRETS="$ATLAS_SECRETS" ATLAS_TEST_ROOT="$tapdir/src" \
		prove -I $PGXS_DIR/src/test/perl -I perl $files) >"$out" 2>&1 || true
	cat "$out" >&2
	read -r p f < <(perl -ne '
		$t += $1 if /^Files=\d+, Tests=(\d+)/;
		$fs += $1 if /Failed (\d+)\/\d+ subtests/;
		$died++ if /(Wstat: [1-9]|No plan found|Bad plan)/ && !/Failed:? \d+/;
		END { printf "%d %d\n", ($t // 0) - ($fs // 0), ($fs // 0) + ($died // 0) }' "$out")
	grep -q '^Result: PASS' "$out" || [ "$f" -gt 0 ] || f=1
	echo "$p $f"
}

# make_server_wrapper DIR PREFIX...: a directory of PostgreSQL's binaries in
# which "postgres" runs the real server under PREFIX (valgrind, or env with
# LD_PRELOAD); pg_ctl and initdb are copies, so they find it beside them.
# Version checks and initdb's bootstrap and single-user runs are not
# wrapped.  Put DIR first on PATH to use it, for the TAP tests too.
make_server_wrapper() {
	local dir=$1 b
	shift
	rm -rf "$dir" && mkdir -p "$dir"
	for b in "$PGBIN"/*; do
		case ${b##*/} in
		postgres | postmaster) ;;
		pg_ctl | initdb) cp "$b" "$dir/" ;;
		*) ln -s "$b" "$dir/" ;;
		esac
	done
	{
		echo '#!/bin/sh'
		echo "case \"\${1:-}\" in -V | --version | --boot | --single | -C | --describe-config | --check)"
		echo "	exec $PGBIN/postgres \"\$@\" ;;"
		echo 'esac'
		echo "exec $* $PGBIN/postgres \"\$@\""
	} >"$dir/postgres"
	chmod 755 "$dir/postgres"
	ln -s postgres "$dir/postmaster"
	chmod -R a+rX "$dir"
}

# make_canary_db DB SO: create database DB on the running cluster with the
# two broken functions of test/sanitize/canary.c, built as SO:
# use_after_free(int) and signed_overflow(int).
make_canary_db() {
	runuser -u postgres -- psql -Xq -v ON_ERROR_STOP=1 postgres >/dev/null <<SQL
CREATE DATABASE $1;
\\c $1
CREATE FUNCTION use_after_free(int) RETURNS int AS '$2', 'sanitize_canary_use_after_free' LANGUAGE C STRICT;
CREATE FUNCTION signed_overflow(int) RETURNS int AS '$2', 'sanitize_canary_signed_overflow' LANGUAGE C STRICT;
SQL
}

# Restart the running cluster with the binaries of the directory $1 first on
# PATH (a make_server_wrapper directory), or with the plain ones.
restart_cluster_with() {
	runuser -u postgres -- pg_ctl -D "$RUN_DIR/data" -m fast -w stop >/dev/null
	runuser -u postgres -- env PATH="${1:+$1:}$PATH" \
		pg_ctl -D "$RUN_DIR/data" -l "$RUN_DIR/postgres.log" -w -t 300 start >/dev/null
}

# The pg_regress and TAP suites again, against atlas_users.so built with
# AddressSanitizer and UndefinedBehaviorSanitizer (gcc), in Debian's
# PostgreSQL with libasan preloaded into every server process (see
# test/sanitize/preload.c for the second preloaded library).  PostgreSQL
# itself is not instrumented: ASan checks our code's stack, globals and
# heap, and every malloc'ed block (libcurl's and cJSON's too) through its
# allocator; palloc'ed chunks are checked only as whole memory contexts.
# Reports are read from ASan's log files and from every server log (UBSan
# writes to the server's stderr).  Then test/sanitize/canary.c proves that
# a use after free and a signed overflow are seen.  Prints "PASSED FAILED"
# on stdout: both suites' counts plus four checks (libasan in a backend, no
# report from the suites, each canary seen).  Installs the plain build
# again at the end.
sanitize_suites() {
	local sdir=$RUN_DIR/sanitize p1 f1 p2 f2 libasan reports maps logs cp=0 cf=0
	local flags='-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer'
	rm -rf "$sdir" && mkdir -p "$sdir/reports"
	chmod 1777 "$sdir/reports"
	log "building atlas_users with $flags"
	make -C "$ROOT" -s clean >/dev/null
	make -C "$ROOT" -s COPT="$flags" >"$sdir/build.log" 2>&1 || { cat "$sdir/build.log" >&2; echo "0 1"; return; }
	make -C "$ROOT" -s install >/dev/null
	libasan=$(ldd "$ROOT/atlas_users.so" | awk '/libasan\.so/ { print $3 }')
	gcc -shared -fPIC -O2 -o "$sdir/preload.so" "$ROOT/test/sanitize/preload.c"
	# shellcheck disable=SC2086
	gcc -shared -fPIC -O1 -w $flags -I "$(pg_config --includedir-server)" \
		-o "$sdir/canary.so" "$ROOT/test/sanitize/canary.c"
	chmod a+rx "$sdir" "$sdir"/*.so
	make_server_wrapper "$sdir/bin" env LD_PRELOAD="$libasan:$sdir/preload.so" \
		ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:log_path=$sdir/reports/asan" \
		UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
	restart_cluster_with "$sdir/bin"
	maps=$(runuser -u postgres -- psql -XAtqc "SELECT pg_read_file('/proc/' || pg_backend_pid() || '/maps')" postgres || true)
	if grep -q libasan <<<"$maps"; then cp=$((cp + 1)); else
		echo "libasan is not mapped in a backend: the run would check nothing" >&2
		cf=$((cf + 1))
	fi
	log "pg_regress with ASan and UBSan"
	read -r p1 f1 < <(run_regress sanitize)
	log "TAP tests with ASan and UBSan"
	read -r p2 f2 < <(PATH="$sdir/bin:$PATH" ATLAS_TAP_TAG=sanitize run_tap)
	logs=("$sdir"/reports/* "$RUN_DIR/postgres.log" "$RUN_DIR"/tap-sanitize/tmp_check/log/*.log)
	reports=$(cat "${logs[@]}" 2>/dev/null | grep -cE 'ERROR: AddressSanitizer|runtime error:' || true)
	if [ "$reports" -eq 0 ]; then cp=$((cp + 1)); else
		cf=$((cf + 1))
		grep -h -A30 -E 'ERROR: AddressSanitizer|runtime error:' "${logs[@]}" 2>/dev/null | head -c 30000 >&2 || true
	fi
	log "sanitizers: $reports reports over the pg_regress suite ($p1 passed, $f1 failed) and the TAP suite ($p2 passed, $f2 failed)"

	log "canaries: a use after free and a signed overflow must be reported"
	make_canary_db sanitize_canary "$sdir/canary.so"
	runuser -u postgres -- psql -XAtqc "SELECT use_after_free(3)" sanitize_canary >/dev/null 2>&1 || true
	runuser -u postgres -- pg_isready -q -t 60 || true
	sleep 2
	runuser -u postgres -- psql -XAtqc "SELECT signed_overflow(2147483647)" sanitize_canary >/dev/null 2>&1 || true
	runuser -u postgres -- pg_isready -q -t 60 || true
	if cat "$sdir"/reports/* 2>/dev/null | grep -q 'heap-use-after-free'; then cp=$((cp + 1)); else
		echo "the use-after-free canary was not reported" >&2
		cf=$((cf + 1))
	fi
	if grep -q 'runtime error: signed integer overflow' "$RUN_DIR/postgres.log"; then cp=$((cp + 1)); else
		echo "the signed-overflow canary was not reported" >&2
		cf=$((cf + 1))
	fi
	log "canaries: $cp of 4 checks passed"

	build_install
	restart_cluster_with ""
	echo "$((p1 + p2 + cp)) $((f1 + f2 + cf))"
}
