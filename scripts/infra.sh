#!/usr/bin/env bash
# Local infrastructure for Ledgerline: PostgreSQL (scripts/pg.sh) and Kafka (scripts/kafka.sh).
#
#   scripts/infra.sh up       start both (idempotent) and wait until each is ready
#   scripts/infra.sh down     stop both (Kafka first); tries both even when one fails
#   scripts/infra.sh status   print both; exit 0 only when both run
set -euo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

case "${1:-}" in
    up)
        bash "$SCRIPTS/pg.sh" up
        bash "$SCRIPTS/kafka.sh" up
        ;;
    down)
        rc=0
        bash "$SCRIPTS/kafka.sh" down || rc=$?
        bash "$SCRIPTS/pg.sh" down || rc=$?
        exit "$rc"
        ;;
    status)
        rc=0
        bash "$SCRIPTS/pg.sh" status || rc=$?
        bash "$SCRIPTS/kafka.sh" status || rc=$?
        exit "$rc"
        ;;
    *)
        echo "usage: $0 {up|down|status}" >&2
        exit 2
        ;;
esac
