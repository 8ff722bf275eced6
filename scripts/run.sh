#!/usr/bin/env bash
# Start (or stop) the five Ledgerline services as background processes against the local
# infrastructure. Logs and pid files live in .local/run/.
#
#   scripts/run.sh up [--open]
#                          migrate and start every service, wait for /readyz, print the URLs.
#                          Services are closed by default: without --open each needs its
#                          LEDGERLINE_<CONTEXT>_API_KEYS, or it refuses to start. --open (what
#                          `make run` passes) asks for open mode: no keys, anyone may call,
#                          and loads the demo book once (scripts/demo_book.py;
#                          LEDGERLINE_DEMO_BOOK=0 skips it).
#   scripts/run.sh down    stop them (SIGTERM, then SIGKILL after 20 s)
#   scripts/run.sh status  show which run
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="${LEDGERLINE_RUN_DIR:-$ROOT/.local/run}"
PY="${LEDGERLINE_RUN_PYTHON:-$ROOT/.venv/bin/python}"
mkdir -p "$RUN"

declare -A PORTS=([invoicing]=8101 [cash_application]=8102 [collections]=8103 [disputes]=8104 [reporting]=8105 [workbench]=8106)
# The workbench (the AR team's web app) starts last: it calls the five services.
ORDER=(invoicing cash_application collections disputes reporting workbench)

running() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# A (re)started process appends to its log after a marker line: the output of the run that
# crashed stays there to be read.
start_marker() {  # $1: log file
    printf '===== [run] started %s =====\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$1"
}

up() {
    if [[ "${1:-}" == "--open" ]]; then
        export LEDGERLINE_OPEN_MODE=true
        # Local development: the workbench gets one demo user per role (README lists them).
        export LEDGERLINE_WORKBENCH_SEED_DEMO_USERS="${LEDGERLINE_WORKBENCH_SEED_DEMO_USERS:-true}"
        export LEDGERLINE_WORKBENCH_DASHBOARD_URL="${LEDGERLINE_WORKBENCH_DASHBOARD_URL:-http://127.0.0.1:8105/dashboard}"
        echo "[run] OPEN MODE: the five APIs accept requests without an API key (local development only;"
        echo "[run]            set LEDGERLINE_<CONTEXT>_API_KEYS and run 'scripts/run.sh up' without --open to close them)"
    fi
    for ctx in "${ORDER[@]}"; do
        "$PY" -m "services.$ctx" migrate
    done
    # Local SMTP sink for collections' dunning emails (scripts/mail_sink.py, port 8025).
    if ! running mail_sink; then
        start_marker "$RUN/mail_sink.log"
        setsid nohup "$PY" "$ROOT/scripts/mail_sink.py" --dir "$RUN/mail" >>"$RUN/mail_sink.log" 2>&1 < /dev/null &
        echo $! >"$RUN/mail_sink.pid"
    fi
    for ctx in "${ORDER[@]}"; do
        if running "$ctx"; then
            echo "[run] $ctx already running (pid $(cat "$RUN/$ctx.pid"))"
            continue
        fi
        prefix="LEDGERLINE_${ctx^^}_"
        start_marker "$RUN/$ctx.log"
        env "${prefix}PORT=${PORTS[$ctx]}" "${prefix}MIGRATE_ON_START=false" \
            setsid nohup "$PY" -m "services.$ctx" serve >>"$RUN/$ctx.log" 2>&1 < /dev/null &
        echo $! >"$RUN/$ctx.pid"
    done
    for ctx in "${ORDER[@]}"; do
        url="http://127.0.0.1:${PORTS[$ctx]}"
        for _ in $(seq 1 120); do
            if curl -fsS "$url/readyz" >/dev/null 2>&1; then break; fi
            if ! running "$ctx"; then
                echo "[run] $ctx exited; last lines of $RUN/$ctx.log:" >&2
                tail -n 40 "$RUN/$ctx.log" >&2
                exit 1
            fi
            sleep 0.5
        done
        curl -fsS "$url/readyz" >/dev/null || { echo "[run] $ctx not ready; see $RUN/$ctx.log" >&2; exit 1; }
    done
    # A demo book for the demo users (open mode only, once): the AR sample moved to end today.
    # LEDGERLINE_DEMO_BOOK=0 starts with an empty book.
    if [[ "${LEDGERLINE_OPEN_MODE:-}" == true && "${LEDGERLINE_DEMO_BOOK:-1}" != 0 ]]; then
        "$PY" "$ROOT/scripts/demo_book.py" \
            || echo "[run] the demo book did not load (see above); the platform runs with what it has" >&2
    fi
    echo
    echo "Ledgerline is running:"
    for ctx in "${ORDER[@]}"; do
        [[ "$ctx" == workbench ]] && continue
        printf '  %-17s http://127.0.0.1:%s   (API docs: /docs, OpenAPI: /v1/openapi.json)\n' "$ctx" "${PORTS[$ctx]}"
    done
    printf '  %-17s http://127.0.0.1:%s   (sign in: see README, e.g. alice / alice-pass-2026)\n' workbench "${PORTS[workbench]}"
    echo "  PostgreSQL        postgresql://ledgerline:ledgerline@127.0.0.1:${LEDGERLINE_PG_PORT:-25432}/ledgerline_<context>"
    echo "  Kafka             127.0.0.1:${LEDGERLINE_KAFKA_PORT:-29092} (topics ledgerline.<context>.events)"
    echo "  SMTP sink         127.0.0.1:8025 (collections' emails in $RUN/mail/)"
    echo "Logs: $RUN/<service>.log   Stop: make stop"
}

down() {
    for ctx in "${ORDER[@]}" mail_sink; do
        if running "$ctx"; then
            pid="$(cat "$RUN/$ctx.pid")"
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -KILL "$pid" 2>/dev/null || true
            echo "[run] stopped $ctx"
        fi
        rm -f "$RUN/$ctx.pid"
    done
}

status() {
    for ctx in "${ORDER[@]}"; do
        if running "$ctx"; then echo "[run] $ctx running on :${PORTS[$ctx]}"; else echo "[run] $ctx stopped"; fi
    done
}

case "${1:-}" in
    up) up "${2:-}" ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 {up [--open]|down|status}" >&2; exit 2 ;;
esac
