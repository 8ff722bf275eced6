#!/usr/bin/env bash
# Builds the Ledgerline images with Docker and prints what it built (KEY=image lines on stdout;
# logs on stderr), so `eval "$(scripts/images.sh service)"` sets LEDGERLINE_IMAGE.
#
#   scripts/images.sh docker      make sure a Docker daemon answers (installs Debian's docker.io
#                                 and starts dockerd when none runs; PID 1 need not be systemd)
#   scripts/images.sh prepare     the slow cold-start work in parallel (Compose and collector
#                                 Go builds, the rootfs, the Python base); cached afterwards
#   scripts/images.sh base        the Python base image: the official python:3.11-slim when a
#                                 registry answers, else one made here (mmdebstrap bookworm
#                                 minbase + `docker import`, then Debian's python3 on it)
#   scripts/images.sh service     the service image from the Dockerfile     -> LEDGERLINE_IMAGE
#   scripts/images.sh infra       only the compose stack's local stand-ins (below)
#   scripts/images.sh platform    service + the compose stack's local stand-ins where no registry
#                                 answers (PostgreSQL, Kafka, OpenTelemetry Collector) -> the
#                                 LEDGERLINE_*_IMAGE overrides docker-compose.yml reads
#
# Images are tagged by the hash of everything that determines them (Dockerfile, lock file,
# source tree, base image id), so a second run with nothing changed builds nothing. Slow
# downloads and builds (the rootfs, Maven jars, Go binaries) are cached outside the clone in
# $LEDGERLINE_CACHE (default /var/cache/ledgerline), keyed by version.
#
# Outbound HTTPS from a build may pass a TLS-intercepting proxy: the CA certificates in
# /usr/local/share/ca-certificates are copied into the build context as build-ca.pem
# (git-ignored, never committed, only in the discarded build stage) and HTTP(S)_PROXY/NO_PROXY
# are passed as build arguments when set.
#
# Environment: PYTHON_IMAGE (force a base), LEDGERLINE_BASE=official|local (skip the registry
# probe), LEDGERLINE_CACHE.
set -euo pipefail
shopt -s inherit_errexit   # a failed build inside $(...) fails the script

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${LEDGERLINE_CACHE:-/var/cache/ledgerline}"
OFFICIAL_PYTHON="python:3.11-slim"
LOCAL_PREFIX="ledgerline-local"
SUITE="bookworm"
export DOCKER_BUILDKIT=0   # the classic builder: no BuildKit frontend image to fetch

log() { printf '[images] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
hash_of() { sha256sum | cut -c1-16; }
has_image() { docker image inspect "$1" >/dev/null 2>&1; }

# --- the Docker daemon --------------------------------------------------------------------------

ensure_docker() {
    if docker info >/dev/null 2>&1; then return; fi
    if ! command -v dockerd >/dev/null; then
        [[ $EUID -eq 0 ]] || die "no Docker daemon and not root: install Docker first"
        log "installing Debian's docker.io"
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends \
            docker.io >&2
    fi
    if ! command -v docker >/dev/null; then die "no docker CLI"; fi
    exec 8>"/run/ledgerline-dockerd.lock"
    flock 8
    if docker info >/dev/null 2>&1; then return; fi
    if [[ ! -S /var/run/docker.sock ]] || ! pgrep -x dockerd >/dev/null; then
        log "starting dockerd (log in /var/log/ledgerline-dockerd.log)"
        # Started by hand: PID 1 is not systemd here. It outlives this script on purpose (other
        # checkouts and helpers share it); stop it with `kill $(cat /run/ledgerline-dockerd.pid)`.
        setsid nohup dockerd --storage-driver=overlay2 >/var/log/ledgerline-dockerd.log 2>&1 </dev/null &
        echo $! >/run/ledgerline-dockerd.pid
    fi
    for _ in $(seq 1 120); do
        docker info >/dev/null 2>&1 && return
        sleep 0.5
    done
    tail -n 30 /var/log/ledgerline-dockerd.log >&2 || true
    die "dockerd did not answer within 60 s"
}

# --- the registry probe -------------------------------------------------------------------------

registry_answers() {
    case "${LEDGERLINE_BASE:-}" in
        official) return 0 ;;
        local) return 1 ;;
    esac
    # Docker Hub answers 401 to an anonymous /v2/ when it is reachable at all.
    local code
    code="$(curl -s -o /dev/null -m 8 -w '%{http_code}' https://registry-1.docker.io/v2/ || true)"
    [[ "$code" == 401 || "$code" == 200 ]]
}

# pull IMAGE if a registry answers; succeed if it is then present locally
official_image() {
    local image="$1"
    has_image "$image" && return 0
    registry_answers || return 1
    log "pulling $image"
    docker pull -q "$image" >&2
}

# --- the locally made base ----------------------------------------------------------------------

minbase() {
    # Debian bookworm minbase, made by mmdebstrap and imported: the root of every local image.
    local tag="$LOCAL_PREFIX/debian:$SUITE-minbase-v2"
    if has_image "$tag"; then echo "$tag"; return; fi
    local tar="$CACHE/base/debian-$SUITE-minbase-v2.tar"
    if [[ ! -s "$tar" ]]; then
        command -v mmdebstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get \
            -o DPkg::Lock::Timeout=600 install -y --no-install-recommends mmdebstrap >&2
        mkdir -p "$CACHE/base"
        log "mmdebstrap --variant=minbase $SUITE (once; cached in $tar)"
        # merged-usr hook: merged /usr without the usrmerge package (and the perl it pulls in)
        mmdebstrap --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
            --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
            "$SUITE" "${tar%.tar}.partial.tar" http://deb.debian.org/debian >&2
        mv "${tar%.tar}.partial.tar" "$tar"
    fi
    docker import --change 'CMD ["/bin/bash"]' "$tar" "$tag" >/dev/null
    echo "$tag"
}

# build_local NAME DOCKERFILE [BUILD-ARG...]: a local image from deploy/images/<DOCKERFILE>,
# tagged by the hash of the Dockerfile, its context files and its arguments.
build_local() {
    local name="$1" dockerfile="$ROOT/deploy/images/$2" context="$3"
    shift 3
    local key tag
    key="$( { cat "$dockerfile"; printf '%s\n' "$@"; (cd "$context" && find . -type f ! -name '*.jar' -print0 | sort -z | xargs -0r sha256sum); } | hash_of)"
    tag="$LOCAL_PREFIX/$name:$key"
    if ! has_image "$tag"; then
        log "building $tag"
        local args=()
        for a in "$@"; do args+=(--build-arg "$a"); done
        local started=$SECONDS
        docker build -q -f "$dockerfile" "${args[@]}" -t "$tag" "$context" >&2
        log "built $tag in $((SECONDS - started)) s"
    fi
    echo "$tag"
}

python_base() {
    if [[ -n "${PYTHON_IMAGE:-}" ]]; then echo "$PYTHON_IMAGE"; return; fi
    if official_image "$OFFICIAL_PYTHON"; then echo "$OFFICIAL_PYTHON"; return; fi
    log "no registry answers: making a local Python base on Debian $SUITE"
    local base
    base="$(minbase)"
    build_local python "python-base.Dockerfile" "$ROOT/deploy/images/empty" "BASE_IMAGE=$base"
}

# --- build-time trust and proxy -----------------------------------------------------------------

proxy_args() {
    local v
    for v in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
        [[ -n "${!v:-}" ]] && printf -- '--build-arg\n%s\n' "$v"
    done
    return 0
}

stage_build_ca() {
    # The build stage's pip trusts the system bundle plus the machine's extra CAs (a proxy's).
    local out="$ROOT/build-ca.pem"
    rm -f "$out"
    shopt -s nullglob
    local extra=(/usr/local/share/ca-certificates/*.crt)
    shopt -u nullglob
    if ((${#extra[@]})); then
        cat /etc/ssl/certs/ca-certificates.crt "${extra[@]}" >"$out" 2>/dev/null || cat "${extra[@]}" >"$out"
    fi
}

# --- the service image --------------------------------------------------------------------------

service_image() {
    local base base_id key tag
    base="$(python_base)"
    base_id="$(docker image inspect -f '{{.Id}}' "$base")"
    key="$( {
        echo "$base_id"
        cd "$ROOT"
        cat Dockerfile .dockerignore pyproject.toml requirements-runtime.lock
        find shared services -type f ! -path '*/__pycache__/*' ! -name '*.py[cod]' -print0 | sort -z | xargs -0 sha256sum
    } | hash_of)"
    tag="ledgerline:$key"
    if has_image "$tag"; then
        log "$tag is up to date (cached)"
    else
        stage_build_ca
        trap 'rm -f "$ROOT/build-ca.pem"' RETURN
        local started=$SECONDS proxies=()
        mapfile -t proxies < <(proxy_args)
        log "building $tag on $base"
        docker build -q --build-arg "PYTHON_IMAGE=$base" "${proxies[@]}" \
            --label "org.opencontainers.image.revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" \
            --label dev.ledgerline.built-by=images.sh \
            -t "$tag" "$ROOT" >&2
        log "built $tag in $((SECONDS - started)) s, $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
        prune_service_images
    fi
    echo "LEDGERLINE_IMAGE=$tag"
}

prune_service_images() {
    # Only images this script built (by label), keeping the newest three: caches stay warm for a
    # few trees without filling the disk. Images in use by a container are left alone.
    docker images --filter label=dev.ledgerline.built-by=images.sh --format '{{.CreatedAt}}\t{{.Repository}}:{{.Tag}}' \
        | sort -r | tail -n +4 | cut -f2 | while read -r old; do
            docker rmi "$old" >/dev/null 2>&1 && log "removed the older $old" || true
        done
}

# --- the compose stack's infrastructure where no registry answers -------------------------------

platform_images() {
    service_image
    infra_images
}

infra_images() {
    if registry_answers; then
        return  # docker-compose.yml's defaults: the official postgres, apache/kafka, otel images
    fi
    local base postgres kafka otelcol
    base="$(minbase)"
    postgres="$(build_local postgres postgres.Dockerfile "$ROOT/deploy/images/postgres" "BASE_IMAGE=$base")"
    kafka="$(kafka_image "$base")"
    otelcol="$(otelcol_image "$base")"
    echo "LEDGERLINE_POSTGRES_IMAGE=$postgres"
    echo "LEDGERLINE_KAFKA_IMAGE=$kafka"
    echo "LEDGERLINE_OTELCOL_IMAGE=$otelcol"
}

kafka_image() {
    # Debian's JRE + the Kafka jars Maven resolves from deploy/kafka/pom.xml (+ kafka-tools).
    local base="$1" version ctx
    version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/deploy/kafka/pom.xml" | head -1)"
    [[ -n "$version" ]] || die "no kafka.version in deploy/kafka/pom.xml"
    ctx="$CACHE/kafka-image/$version"
    if [[ ! -f "$ctx/.complete" ]]; then
        command -v mvn >/dev/null || die "Maven is needed (make setup installs it)"
        log "resolving Kafka $version jars with Maven (once; cached in $ctx)"
        rm -rf "$ctx" && mkdir -p "$ctx/libs"
        mvn -q -B -f "$ROOT/deploy/kafka/pom.xml" dependency:copy-dependencies \
            -DoutputDirectory="$ctx/libs" -DincludeScope=runtime >&2
        mvn -q -B -f "$ROOT/deploy/images/kafka/tools-pom.xml" dependency:copy-dependencies \
            -Dkafka.version="$version" -DoutputDirectory="$ctx/libs" -DincludeScope=runtime >&2
        touch "$ctx/.complete"
    fi
    cp "$ROOT/deploy/images/kafka/"*.sh "$ROOT/deploy/images/kafka/"*.properties "$ctx/"
    build_local kafka kafka.Dockerfile "$ctx" "BASE_IMAGE=$base" "KAFKA_VERSION=$version"
}

otelcol_image() {
    local base="$1" bin
    bin="$(bash "$ROOT/scripts/ensure-otelcol.sh")"
    local ctx="$CACHE/otelcol-image/$(basename "$(dirname "$bin")")"
    mkdir -p "$ctx"
    cp "$bin" "$ctx/otelcol"
    build_local otelcol otelcol.Dockerfile "$ctx" "BASE_IMAGE=$base"
}

prepare() {
    # The slow, independent cold-start work at once: Docker Compose and the collector (Go
    # builds) beside the rootfs and the Python base (downloads). Each is cached, so a warm run
    # returns at once. Fails if any part failed.
    local pids=() failed=0
    bash "$ROOT/scripts/ensure-compose.sh" >/dev/null & pids+=($!)
    if ! registry_answers; then
        bash "$ROOT/scripts/ensure-otelcol.sh" >/dev/null & pids+=($!)
    fi
    python_base >/dev/null & pids+=($!)
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    ((failed == 0)) || die "preparing the platform tools failed (see above)"
}

case "${1:-}" in
    docker) ensure_docker ;;
    prepare) ensure_docker; prepare ;;
    base) ensure_docker; image="$(python_base)"; echo "PYTHON_IMAGE=$image" ;;
    service) ensure_docker; service_image ;;
    platform) ensure_docker; platform_images ;;
    infra) ensure_docker; infra_images ;;
    *) echo "usage: $0 {docker|prepare|base|service|infra|platform}" >&2; exit 2 ;;
esac
