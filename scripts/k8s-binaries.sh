#!/usr/bin/env bash
# Build (once) and cache the Kubernetes binaries the platform test's cluster runs, from the Go
# module k8s.io/kubernetes at a pinned version. The module's go.mod replaces its staging
# modules (k8s.io/api, k8s.io/client-go, ...) with ./staging directories that the published
# module zip does not contain, so the build works on a copy whose go.mod points those modules
# at their published v0.<minor>.<patch> versions instead (the same source, released together).
#
# Two more binaries the cluster's own pods run, since no image registry answers here:
#   - pause: the pod sandbox's process (sleeps, reaps children, exits on SIGTERM), a static Go
#     program of a few lines, so the sandbox image is made locally;
#   - coredns: the cluster DNS, CoreDNS built from its Go module at a pinned version with only
#     the plugins a cluster-local DNS needs (kubernetes, cache, errors, health, ready, log,
#     loadbalance): no forwarding plugin, so pods resolve cluster names and nothing else.
#
# Cache: ${LEDGERLINE_K8S_CACHE:-/var/cache/ledgerline/k8s}/<version>/bin (Kubernetes + pause)
# and .../coredns-<version>/coredns, keyed by version and reused across clones; a warm run only
# checks that every binary is there.
#
#   scripts/k8s-binaries.sh            # build what is missing, print the bin directory
#   scripts/k8s-binaries.sh coredns    # the same for CoreDNS, print the binary
#   LEDGERLINE_K8S_VERSION=v1.34.4 ...  # the pinned default (LEDGERLINE_COREDNS_VERSION too)
set -euo pipefail

VERSION="${LEDGERLINE_K8S_VERSION:-v1.34.4}"
COREDNS_VERSION="${LEDGERLINE_COREDNS_VERSION:-v1.14.7}"
CACHE_ROOT="${LEDGERLINE_K8S_CACHE:-/var/cache/ledgerline/k8s}"
DEST="$CACHE_ROOT/$VERSION"
BIN="$DEST/bin"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

log() { printf '[k8s-binaries] %s\n' "$*" >&2; }

export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0

build_pause() {
  [[ -x "$BIN/pause" ]] && return
  local dir
  dir="$(mktemp -d)"
  cat >"$dir/main.go" <<'GO'
// The pod sandbox process: holds the pod's namespaces, reaps orphans, exits on SIGINT/SIGTERM.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
GO
  mkdir -p "$BIN"
  (cd "$dir" && go mod init ledgerline.local/pause >/dev/null 2>&1 && go build -trimpath -ldflags '-s -w' -o "$BIN/pause" .)
  rm -rf "$dir"
}

build_coredns() {
  local out="$CACHE_ROOT/coredns-$COREDNS_VERSION"
  [[ -x "$out/coredns" ]] && return
  log "building CoreDNS $COREDNS_VERSION (cluster DNS; a few minutes cold)"
  mkdir -p "$out"
  local src="$out/src"
  rm -rf "$src" && mkdir -p "$src"
  cat >"$src/main.go" <<'GO'
// CoreDNS with only the plugins a cluster-local DNS needs (no forwarding).
package main

import (
	_ "github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() { coremain.Run() }
GO
  (cd "$src" && go mod init ledgerline.local/coredns >/dev/null 2>&1 \
    && GOFLAGS=-mod=mod go get "github.com/coredns/coredns@$COREDNS_VERSION" >&2 \
    && GOFLAGS=-mod=mod go build -trimpath -ldflags '-s -w' -o "$out/coredns.tmp" . >&2)
  mv "$out/coredns.tmp" "$out/coredns"
  rm -rf "$src"
}

if [[ "${1:-}" == "coredns" ]]; then
  build_coredns
  echo "$CACHE_ROOT/coredns-$COREDNS_VERSION/coredns"
  exit 0
fi

missing=()
for b in "${BINARIES[@]}"; do
  [[ -x "$BIN/$b" ]] || missing+=("$b")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  build_pause
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { log "go is required to build Kubernetes $VERSION"; exit 1; }
export GOFLAGS=-mod=mod
mkdir -p "$DEST"
exec 9>"$DEST/.build.lock"
flock 9
# Another run may have finished the build while this one waited for the lock.
missing=()
for b in "${BINARIES[@]}"; do [[ -x "$BIN/$b" ]] || missing+=("$b"); done
[[ ${#missing[@]} -eq 0 ]] && { build_pause; echo "$BIN"; exit 0; }

minor="${VERSION#v1.}"            # 34.4
staging_version="v0.${minor}"     # v0.34.4
log "downloading k8s.io/kubernetes@$VERSION from the Go module proxy"
moddir="$(go mod download -json "k8s.io/kubernetes@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -d "$moddir" ]] || { log "module download failed"; exit 1; }

src="$DEST/src"
rm -rf "$src"
cp -r "$moddir" "$src"
chmod -R u+w "$src"
cd "$src"
rm -rf vendor go.work go.work.sum
# Point every ./staging replacement at the published module of the same release.
for mod in $(go mod edit -json | sed -n 's/.*"Path": "\(k8s\.io\/[^"]*\)".*/\1/p' | sort -u); do
  if go mod edit -json | grep -q "\"Path\": \"./staging/src/$mod\""; then
    go mod edit -dropreplace="$mod" -require="$mod@$staging_version"
  fi
done
if grep -q './staging/' go.mod; then
  log "go.mod still refers to ./staging:"; grep './staging/' go.mod >&2; exit 1
fi

date_now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor%%.*}"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date_now"
done
mkdir -p "$DEST/bin.tmp"
log "building ${missing[*]} ($VERSION); cold this takes ~25 min on 2 cores"
pkgs=()
for b in "${missing[@]}"; do pkgs+=("./cmd/$b"); done
go build -trimpath -ldflags "$ldflags" -o "$DEST/bin.tmp/" "${pkgs[@]}"
mkdir -p "$BIN"
for b in "${missing[@]}"; do mv "$DEST/bin.tmp/$b" "$BIN/$b"; done
rm -rf "$DEST/bin.tmp" "$src"
build_pause
"$BIN/kubectl" version --client >&2 || true
echo "$BIN"
