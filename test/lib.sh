#!/usr/bin/env bash
# test/lib.sh: shared setup for test/check (every test) and test/demo.
#
# Installs the Debian packages, builds and installs the extension, makes a
# test CA and key files, starts the Atlas emulator on loopback and a
# throwaway PostgreSQL 15 cluster run by the unprivileged "postgres" OS
# user, and stops both again on exit.  Must run as root (apt-get, make
# install); initdb refuses root, so the cluster runs as postgres.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin
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
		make gcc libc6-dev python3 curl openssl ca-certificates \
		clang-14 libclang-rt-14-dev >/dev/null
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
	log "starting a throwaway PostgreSQL 15 cluster on port $PGPORT"
	runuser -u postgres -- initdb -D "$RUN_DIR/data" -U postgres --auth=trust \
		--no-sync -E UTF8 --locale=C.UTF-8 >"$RUN_DIR/initdb.log"
	cat >>"$RUN_DIR/data/postgresql.conf" <<EOF
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$RUN_DIR'
fsync = off
log_line_prefix = '%m [%p] %q%u@%d '
shared_preload_libraries = 'atlas_users'
atlas_users.base_url = '$ATLAS_EMULATOR_HTTPS_URL'
atlas_users.ca_file = '$ATLAS_TEST_CA'
atlas_users.public_key = '$(cat "$ATLAS_SECRETS/public_key")'
atlas_users.private_key_file = '$ATLAS_SECRETS/private_key'
atlas_users.client_id = '$(cat "$ATLAS_SECRETS/client_id")'
atlas_users.client_secret_file = '$ATLAS_SECRETS/client_secret'
atlas_users.auth_method = 'digest'
atlas_users.timeout_ms = 5000
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
	stop_all
	rm -rf "$RUN_DIR"
	mkdir -p "$RUN_DIR"
	build_install
	make_certs_and_secrets
	trap stop_all EXIT
	start_emulator
	start_cluster
}
