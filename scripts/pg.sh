#!/usr/bin/env bash
# Local PostgreSQL for Ledgerline: a cluster in .local/pg/ run with the machine's server binaries.
#
#   scripts/pg.sh up       init (first time), start, wait until ready, ensure role and databases
#   scripts/pg.sh down     stop (fast shutdown)
#   scripts/pg.sh status   print state; exit 0 when running, 3 when not
#   scripts/pg.sh psql ... psql over TCP as ledgerline (extra arguments are passed on)
#
# Listens on 127.0.0.1:${LEDGERLINE_PG_PORT:-25432}; role ledgerline / password ledgerline
# (scram over TCP, trust on the unix socket in .local/pg/run). LEDGERLINE_STATE_DIR moves the
# state (.local by default) elsewhere: a second, independent cluster on another port (the fault
# suite runs one, which it may stop and start, beside the developer's). initdb refuses to run as root, so
# as root the cluster belongs to, and runs as, the unprivileged system user "ledgerline".
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_PORT="${LEDGERLINE_PG_PORT:-25432}"
PG_HOST=127.0.0.1
PG_ROLE=ledgerline
PG_PASSWORD=ledgerline
OS_USER=ledgerline           # the owner of the cluster when this script runs as root
READY_TIMEOUT=60
DATABASES=(
    ledgerline_invoicing
    ledgerline_cash_application
    ledgerline_collections
    ledgerline_disputes
    ledgerline_reporting
    ledgerline_workbench
    ledgerline_test
)

LOCAL_DIR="$(realpath -m "${LEDGERLINE_STATE_DIR:-$REPO_ROOT/.local}")"
PG_DIR="$LOCAL_DIR/pg"
# Names the fallback folder below: the repository's path, or the state folder when overridden.
FALLBACK_KEY="$REPO_ROOT"
if [[ -n "${LEDGERLINE_STATE_DIR:-}" ]]; then FALLBACK_KEY="$LOCAL_DIR"; fi

log() { printf '[pg] %s\n' "$*"; }
die() { printf '[pg] ERROR: %s\n' "$*" >&2; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

source "$(dirname "${BASH_SOURCE[0]}")/lib-pg.sh"

BINDIR="$(find_pg_bindir)" || die "PostgreSQL server binaries not found: run scripts/bootstrap.sh (make setup)"
for tool in initdb pg_ctl postgres pg_isready psql; do
    [[ -x "$BINDIR/$tool" ]] || die "$BINDIR/$tool is missing"
done

set_paths() {
    DATA_DIR="$PG_DIR/data"
    RUN_DIR="$PG_DIR/run"
    LOG_DIR="$PG_DIR/log"
    LOG_FILE="$LOG_DIR/postgres.log"
}
set_paths

# --- running as the cluster's owner ---------------------------------------------------------

as_owner() {  # runs a command as the user that owns the cluster
    if is_root; then
        # From a folder the owner can enter: the caller's may be closed to it (pg_ctl warns).
        (cd / && runuser -u "$OS_USER" -- "$@")
    else
        "$@"
    fi
}

ensure_os_user() {
    is_root || return 0
    if ! id -u "$OS_USER" >/dev/null 2>&1; then
        log "creating system user $OS_USER to own the cluster (initdb refuses root)"
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$OS_USER"
    fi
}

# The cluster's user must be able to reach $PG_DIR. Only .local is ours to loosen; when a
# folder above the repository is closed to other users (a clone under /root, say), the cluster
# lives in /var/lib/ledgerline-pg/ instead, one folder per repository path.
ensure_reachable() {
    is_root || return 0
    mkdir -p "$PG_DIR"
    chmod 755 "$LOCAL_DIR"
    chown "$OS_USER:$OS_USER" "$PG_DIR"
    chmod 750 "$PG_DIR"
    if ! runuser -u "$OS_USER" -- test -x "$PG_DIR"; then
        local fallback
        fallback="/var/lib/ledgerline-pg/$(printf '%s' "$FALLBACK_KEY" | sha256sum | cut -c1-12)"
        log "user $OS_USER cannot reach $PG_DIR (a parent folder is closed); using $fallback"
        mkdir -p "$fallback"
        chmod 755 /var/lib/ledgerline-pg
        chown "$OS_USER:$OS_USER" "$fallback"
        chmod 750 "$fallback"
        PG_DIR="$fallback"
        set_paths
    fi
}

# Resolves PG_DIR without changing anything (status, down, psql).
resolve_existing_dir() {
    if [[ ! -d "$DATA_DIR" ]]; then
        local fallback
        fallback="/var/lib/ledgerline-pg/$(printf '%s' "$FALLBACK_KEY" | sha256sum | cut -c1-12)"
        if [[ -d "$fallback/data" ]]; then
            PG_DIR="$fallback"
            set_paths
        fi
    fi
}

# A unix socket path is limited to 107 bytes; a deep checkout moves the socket to /tmp.
socket_dir() {
    local socket="$RUN_DIR/.s.PGSQL.$PG_PORT"
    if (( ${#socket} > 100 )); then
        echo "/tmp/ledgerline-pg-$(printf '%s' "$PG_DIR" | sha256sum | cut -c1-12)"
    else
        echo "$RUN_DIR"
    fi
}

# --- state ---------------------------------------------------------------------------------

is_initialised() { [[ -f "$DATA_DIR/PG_VERSION" ]]; }

is_running() {  # pg_ctl status exits 0 when the postmaster in DATA_DIR is alive
    is_initialised && as_owner "$BINDIR/pg_ctl" status -D "$DATA_DIR" >/dev/null 2>&1
}

answers() {
    "$BINDIR/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT" -d postgres -t 2 >/dev/null 2>&1
}

log_tail() {
    if [[ -f "$LOG_FILE" ]]; then
        echo "----- last lines of $LOG_FILE -----" >&2
        tail -n 40 "$LOG_FILE" >&2
        echo "-----" >&2
    fi
}

# --- commands ------------------------------------------------------------------------------

init_cluster() {
    local locale=C
    locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$' && locale=C.UTF-8
    local pwfile="$PG_DIR/.initdb-pw"
    printf '%s\n' "$PG_PASSWORD" >"$pwfile"
    is_root && chown "$OS_USER:$OS_USER" "$pwfile"
    chmod 600 "$pwfile"
    log "initdb $DATA_DIR (superuser $PG_ROLE, encoding UTF8, locale $locale)"
    if ! as_owner "$BINDIR/initdb" -D "$DATA_DIR" -U "$PG_ROLE" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale="$locale" \
        >"$LOG_DIR/initdb.log" 2>&1; then
        rm -f "$pwfile"
        cat "$LOG_DIR/initdb.log" >&2
        die "initdb failed"
    fi
    rm -f "$pwfile"
    printf "\n# Ledgerline local settings, rewritten by scripts/pg.sh on every start.\ninclude = 'ledgerline.conf'\n" \
        | as_owner tee -a "$DATA_DIR/postgresql.conf" >/dev/null
}

write_settings() {
    local sockdir="$1"
    as_owner tee "$DATA_DIR/ledgerline.conf" >/dev/null <<EOF
# Written by scripts/pg.sh: edits here are lost on the next 'up'.
listen_addresses = '$PG_HOST'
port = $PG_PORT
unix_socket_directories = '$sockdir'
max_connections = 300
shared_buffers = 256MB
password_encryption = scram-sha-256
EOF
}

local_psql() {  # psql over the unix socket as the superuser (trust)
    "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$(socket_dir)" -p "$PG_PORT" -U "$PG_ROLE" "$@"
}

ensure_role_and_databases() {
    local db sql=""
    # The role is initdb's superuser; setting the password again keeps it right on old clusters.
    local_psql -d postgres -c "ALTER ROLE $PG_ROLE WITH SUPERUSER LOGIN PASSWORD '$PG_PASSWORD'" \
        >/dev/null
    for db in "${DATABASES[@]}"; do
        sql+="SELECT 'CREATE DATABASE $db OWNER $PG_ROLE' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$db')\\gexec
"
    done
    local_psql -d postgres >/dev/null <<<"$sql"
}

cmd_up() {
    ensure_os_user
    mkdir -p "$PG_DIR"
    ensure_reachable
    mkdir -p "$RUN_DIR" "$LOG_DIR"
    local sockdir
    sockdir="$(socket_dir)"
    mkdir -p "$sockdir"
    if is_root; then
        chown "$OS_USER:$OS_USER" "$RUN_DIR" "$LOG_DIR" "$sockdir"
    fi

    is_initialised || init_cluster

    if is_running; then
        if answers; then
            log "already running on $PG_HOST:$PG_PORT"
        else
            wait_ready
        fi
    else
        write_settings "$sockdir"
        log "starting PostgreSQL $("$BINDIR/postgres" --version | awk '{print $3}') on $PG_HOST:$PG_PORT (log: $LOG_FILE)"
        if ! as_owner "$BINDIR/pg_ctl" start -D "$DATA_DIR" -l "$LOG_FILE" -W >/dev/null 9>&-; then
            log_tail
            die "pg_ctl start failed"
        fi
        wait_ready
    fi

    ensure_role_and_databases
    log "ready: postgresql://$PG_ROLE:$PG_PASSWORD@$PG_HOST:$PG_PORT/{$(IFS=,; echo "${DATABASES[*]}")}"
}

wait_ready() {
    local started=$SECONDS
    local deadline=$((started + READY_TIMEOUT))
    while ! answers; do
        if (( SECONDS >= deadline )); then
            log_tail
            die "PostgreSQL did not answer on $PG_HOST:$PG_PORT within ${READY_TIMEOUT}s"
        fi
        if (( SECONDS - started > 3 )) && ! is_running; then
            # The postmaster exited (port taken, bad setting, ...): no point waiting.
            sleep 1
            if ! is_running; then
                log_tail
                die "PostgreSQL exited during startup"
            fi
        fi
        sleep 0.5
    done
}

cmd_down() {
    resolve_existing_dir
    if ! is_running; then
        log "not running"
        return 0
    fi
    log "stopping (fast)"
    if ! as_owner "$BINDIR/pg_ctl" stop -D "$DATA_DIR" -m fast -w -t 60 >/dev/null; then
        log_tail
        die "pg_ctl stop failed"
    fi
    log "stopped"
}

cmd_status() {
    resolve_existing_dir
    if ! is_initialised; then
        log "not initialised ($DATA_DIR absent): run 'scripts/pg.sh up'"
        return 3
    fi
    if ! is_running; then
        log "stopped (data: $DATA_DIR)"
        return 3
    fi
    local pid
    pid="$(head -n1 "$DATA_DIR/postmaster.pid" 2>/dev/null || echo '?')"
    if answers; then
        log "running, pid $pid, accepting connections on $PG_HOST:$PG_PORT (data: $DATA_DIR)"
    else
        log "running, pid $pid, but NOT accepting connections on $PG_HOST:$PG_PORT (see $LOG_FILE)"
        return 1
    fi
}

cmd_psql() {
    PGPASSWORD="$PG_PASSWORD" exec "$BINDIR/psql" -h "$PG_HOST" -p "$PG_PORT" -U "$PG_ROLE" \
        -d "${LEDGERLINE_PG_DATABASE:-ledgerline_test}" "$@"
}

# One up/down at a time: two concurrent 'make infra-up' must not both run initdb.
with_lock() {
    mkdir -p "$LOCAL_DIR"
    exec 9>"$LOCAL_DIR/.pg.lock"
    flock -w 120 9 || die "another scripts/pg.sh is still running (lock $LOCAL_DIR/.pg.lock)"
    "$@"
}

case "${1:-}" in
    up) with_lock cmd_up ;;
    down) with_lock cmd_down ;;
    status) cmd_status ;;
    psql) shift; cmd_psql "$@" ;;
    *)
        echo "usage: $0 {up|down|status|psql [psql args]}" >&2
        exit 2
        ;;
esac
