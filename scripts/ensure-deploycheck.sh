#!/usr/bin/env bash
# Builds tools/deploycheck (Docker Compose's loader, compose-go, and Docker's .dockerignore
# matcher, both pinned in tools/deploycheck/go.mod) into .local/bin once, rebuilds it when its
# sources change, and prints the binary's path. Needs Go; the modules come from the Go module
# proxy. Logs go to stderr, so `$(scripts/ensure-deploycheck.sh) compose docker-compose.yml` works.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$REPO_ROOT/tools/deploycheck"
LOCAL_BIN="$REPO_ROOT/.local/bin"
BIN="$LOCAL_BIN/deploycheck"
STAMP="$LOCAL_BIN/.deploycheck.sha256"

log() { printf '[ensure-deploycheck] %s\n' "$*" >&2; }

sources_sha="$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC"/*.go | sha256sum | cut -d' ' -f1)"
if [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$sources_sha" ]]; then
    echo "$BIN"
    exit 0
fi

command -v go >/dev/null 2>&1 || { log "go is not installed (needed to build tools/deploycheck)"; exit 1; }
log "building tools/deploycheck into $BIN"
mkdir -p "$LOCAL_BIN"
(cd "$SRC" && go build -mod=readonly -trimpath -o "$BIN" .) >&2
printf '%s\n' "$sources_sha" >"$STAMP"
echo "$BIN"
