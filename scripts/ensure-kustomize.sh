#!/usr/bin/env bash
# Prints the command that renders a kustomization (one line, words separated by spaces), for
# example `/usr/bin/kubectl kustomize` or `/repo/.local/bin/kustomize build`.
#
# Order of preference:
#   1. kubectl on PATH whose built-in kustomize is v5 or newer (kubectl 1.27+);
#   2. kustomize v5+ on PATH;
#   3. kustomize v5.5.0 built from the Go module proxy into .local/bin (git-ignored), once.
# Everything it logs goes to stderr, so `$(scripts/ensure-kustomize.sh) deploy/k8s/base` works.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUSTOMIZE_VERSION="v5.5.0"
LOCAL_BIN="$REPO_ROOT/.local/bin"

log() { printf '[ensure-kustomize] %s\n' "$*" >&2; }

major_of() {  # "v5.5.0" or "kustomize/v5.5.0" -> 5
    sed -E 's/.*v([0-9]+)\..*/\1/' <<<"$1"
}

if command -v kubectl >/dev/null 2>&1; then
    version="$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p')"
    if [[ -n "$version" && "$(major_of "$version")" -ge 5 ]]; then
        echo "$(command -v kubectl) kustomize"
        exit 0
    fi
    log "kubectl found but its kustomize is '${version:-unknown}', need v5+"
fi

for candidate in "$(command -v kustomize 2>/dev/null || true)" "$LOCAL_BIN/kustomize"; do
    [[ -n "$candidate" && -x "$candidate" ]] || continue
    version="$("$candidate" version 2>/dev/null || true)"
    if [[ -n "$version" && "$(major_of "$version")" -ge 5 ]]; then
        echo "$candidate build"
        exit 0
    fi
done

command -v go >/dev/null 2>&1 || {
    log "neither kubectl (kustomize v5+) nor kustomize nor go is installed; install one of them"
    exit 1
}
log "installing kustomize $KUSTOMIZE_VERSION into $LOCAL_BIN (go install, about 30 s cold)"
mkdir -p "$LOCAL_BIN"
# The ldflag stamps the version that `kustomize version` prints (a plain go install says "(devel)").
GOBIN="$LOCAL_BIN" go install \
    -ldflags "-X sigs.k8s.io/kustomize/api/provenance.version=kustomize/$KUSTOMIZE_VERSION" \
    "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2
echo "$LOCAL_BIN/kustomize build"
