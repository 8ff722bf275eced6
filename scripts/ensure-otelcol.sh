#!/usr/bin/env bash
# Builds the compose stack's OpenTelemetry Collector (deploy/otelcol/builder.yaml) with the
# collector builder (ocb) from the Go module proxy, once per version, and prints the binary's
# path. Cached outside the clone in $LEDGERLINE_CACHE/otelcol/<version>-<manifest hash>/. Logs
# go to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OCB_VERSION="v0.165.0"
CACHE="${LEDGERLINE_CACHE:-/var/cache/ledgerline}"
MANIFEST="$ROOT/deploy/otelcol/builder.yaml"
KEY="$OCB_VERSION-$(sha256sum "$MANIFEST" | cut -c1-12)"
DIR="$CACHE/otelcol/$KEY"
BIN="$DIR/otelcol-ledgerline"

log() { printf '[ensure-otelcol] %s\n' "$*" >&2; }

if [[ -x "$BIN" ]]; then echo "$BIN"; exit 0; fi
command -v go >/dev/null || { log "Go is needed to build the collector"; exit 1; }
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9
if [[ -x "$BIN" ]]; then echo "$BIN"; exit 0; fi

started=$SECONDS
OCB="$CACHE/otelcol/ocb-$OCB_VERSION/builder"
if [[ ! -x "$OCB" ]]; then
    log "go install the collector builder $OCB_VERSION"
    GOBIN="$(dirname "$OCB")" CGO_ENABLED=0 go install "go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION" >&2
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$MANIFEST" "$work/builder.yaml"
log "building the collector (a few minutes, once)"
(cd "$work" && CGO_ENABLED=0 "$OCB" --config builder.yaml --ldflags="-s -w") >&2
mv "$work/dist/otelcol-ledgerline" "$BIN"
log "built $BIN in $((SECONDS - started)) s"
echo "$BIN"
