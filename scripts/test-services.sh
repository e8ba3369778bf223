#!/usr/bin/env bash
# Starts the services the test suite needs (loopback only), creates a fresh PostgreSQL database for
# this run, and runs `cargo test --features postgres` with any extra arguments passed through.
# Everything this script creates or starts is removed or stopped on exit.
#
#   bash scripts/test-services.sh                 # whole suite
#   bash scripts/test-services.sh --test event_store_postgres
#
# Environment: PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres); DATABASE_URL is exported.
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

run_tests() {
    cargo test --features postgres "$@"
}

start_postgres
run_tests "$@"
