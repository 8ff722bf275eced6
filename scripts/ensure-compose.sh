#!/usr/bin/env bash
# Builds Docker Compose v2 from the Go module proxy once per version and prints the binary's path.
# The binary is cached outside the clone (LEDGERLINE_CACHE, default /var/cache/ledgerline), keyed
# by version, so a fresh clone on the same machine reuses it. A `docker compose` plugin that is
# already installed is used as is. `go install` refuses the module's exclude directives; `go
# build` inside the downloaded module copy honours them. Logs go to stderr.
set -euo pipefail

COMPOSE_VERSION="${LEDGERLINE_COMPOSE_VERSION:-v2.40.3}"
CACHE="${LEDGERLINE_CACHE:-/var/cache/ledgerline}"
BIN="$CACHE/compose/$COMPOSE_VERSION/docker-compose"

log() { printf '[ensure-compose] %s\n' "$*" >&2; }

if [[ -x "$BIN" ]]; then echo "$BIN"; exit 0; fi
if docker compose version >/dev/null 2>&1; then echo "docker compose"; exit 0; fi

command -v go >/dev/null || { log "Go is needed to build Docker Compose $COMPOSE_VERSION"; exit 1; }
mkdir -p "$(dirname "$BIN")"
exec 9>"$(dirname "$BIN")/.lock"
flock 9
if [[ -x "$BIN" ]]; then echo "$BIN"; exit 0; fi

log "building Docker Compose $COMPOSE_VERSION from the Go module proxy (a few minutes, once)"
started=$SECONDS
workdir="$(mktemp -d)"
trap 'chmod -R u+w "$workdir" 2>/dev/null; rm -rf "$workdir"' EXIT
dir="$(GOFLAGS=-mod=mod go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
cp -r "$dir" "$workdir/src"
chmod -R u+w "$workdir/src"
(cd "$workdir/src" && CGO_ENABLED=0 go build -trimpath -o "$BIN.partial" \
    -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" ./cmd) >&2
mv "$BIN.partial" "$BIN"
log "built $BIN in $((SECONDS - started)) s"
echo "$BIN"
