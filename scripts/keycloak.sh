#!/usr/bin/env bash
# A real OpenID provider for the workbench's OIDC sign-in tests: Keycloak in dev mode.
#
#   scripts/keycloak.sh up      download the distribution (first time), unpack it (first time),
#                               start it with the realm file imported, wait until the realm's
#                               discovery document answers
#   scripts/keycloak.sh down    SIGTERM, then SIGKILL after 30 s
#   scripts/keycloak.sh status  exit 0 when running, 3 when not
#
# The distribution comes from Maven Central once per version into $LEDGERLINE_CACHE (default
# /var/cache/ledgerline)/keycloak-<version>/, checked against Maven Central's SHA-1, so a fresh
# clone on the same machine reuses it. It is unpacked into the state folder
# ($LEDGERLINE_STATE_DIR, default .local)/keycloak/, which keeps Keycloak's build (its first start
# "augments" the distribution: a minute or two; later starts skip it).
# Dev mode, in-memory database: every start imports the realm anew ($LEDGERLINE_KEYCLOAK_REALM,
# default tests/workbench/keycloak-realm.json) and forgets everything at stop. Never production.
#
# Settings: LEDGERLINE_KEYCLOAK_PORT (default 28380; loopback only, below the ephemeral range),
# LEDGERLINE_KEYCLOAK_VERSION (26.4.0), LEDGERLINE_KEYCLOAK_HEAP (-Xms128m -Xmx512m), JAVA_HOME.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="${LEDGERLINE_KEYCLOAK_VERSION:-26.4.0}"
PORT="${LEDGERLINE_KEYCLOAK_PORT:-28380}"
REALM_FILE="$(realpath -m "${LEDGERLINE_KEYCLOAK_REALM:-$REPO_ROOT/tests/workbench/keycloak-realm.json}")"
CACHE="${LEDGERLINE_CACHE:-/var/cache/ledgerline}"
ZIP_DIR="$CACHE/keycloak-$VERSION"
ZIP="$ZIP_DIR/keycloak-quarkus-dist-$VERSION.zip"
URL="https://repo1.maven.org/maven2/org/keycloak/keycloak-quarkus-dist/$VERSION/keycloak-quarkus-dist-$VERSION.zip"
LOCAL_DIR="$(realpath -m "${LEDGERLINE_STATE_DIR:-$REPO_ROOT/.local}")"
KC_DIR="$LOCAL_DIR/keycloak"
HOME_DIR="$KC_DIR/keycloak-$VERSION"
PID_FILE="$KC_DIR/keycloak.pid"
LOG_FILE="$KC_DIR/keycloak.log"
READY_TIMEOUT="${LEDGERLINE_KEYCLOAK_READY_TIMEOUT:-600}"
STOP_TIMEOUT=30

log() { printf '[keycloak] %s\n' "$*" >&2; }
die() { printf '[keycloak] ERROR: %s\n' "$*" >&2; exit 1; }

java_home() {
    # Keycloak 26.4 runs on Java 17 or 21+: JAVA_HOME when it is one, else the machine's.
    local candidate
    for candidate in "${JAVA_HOME:-}" /usr/lib/jvm/java-21-openjdk-amd64 /usr/lib/jvm/java-17-openjdk-amd64 \
                     /usr/lib/jvm/temurin-25-jdk-amd64; do
        [[ -n "$candidate" && -x "$candidate/bin/java" ]] && { echo "$candidate"; return; }
    done
    local java
    java="$(command -v java)" || die "no Java found: run scripts/bootstrap.sh (make setup)"
    dirname "$(dirname "$(readlink -f "$java")")"
}

running() {
    [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null
}

download() {
    [[ -f "$ZIP" ]] && return
    mkdir -p "$ZIP_DIR"
    exec 9>"$ZIP_DIR/.lock"
    flock 9
    if [[ ! -f "$ZIP" ]]; then
        log "downloading Keycloak $VERSION from Maven Central (160 MB, once)"
        local expected actual
        expected="$(curl -fsSL --retry 3 "$URL.sha1" | cut -c1-40)"
        curl -fsSL --retry 3 -o "$ZIP.partial" "$URL"
        actual="$(sha1sum "$ZIP.partial" | cut -c1-40)"
        [[ "$expected" == "$actual" ]] || { rm -f "$ZIP.partial"; die "SHA-1 mismatch: $actual, Maven Central says $expected"; }
        mv "$ZIP.partial" "$ZIP"
    fi
    exec 9>&-
}

unpack() {
    [[ -x "$HOME_DIR/bin/kc.sh" ]] && return
    mkdir -p "$KC_DIR"
    rm -rf "$HOME_DIR.partial"
    mkdir -p "$HOME_DIR.partial"
    # Python's zipfile (no unzip needed); it drops the modes, so the scripts get theirs back.
    python3 -m zipfile -e "$ZIP" "$HOME_DIR.partial"
    chmod +x "$HOME_DIR.partial/keycloak-$VERSION"/bin/*.sh
    mv "$HOME_DIR.partial/keycloak-$VERSION" "$HOME_DIR"
    rmdir "$HOME_DIR.partial"
}

realm_name() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["realm"])' "$REALM_FILE"
}

up() {
    [[ -f "$REALM_FILE" ]] || die "no realm file $REALM_FILE"
    if running; then log "already running (pid $(cat "$PID_FILE"))"; return; fi
    (( PORT < 32768 || PORT > 60999 )) || die "port $PORT is in the ephemeral range 32768-60999"
    download
    unpack
    rm -rf "$HOME_DIR/data/import"
    mkdir -p "$HOME_DIR/data/import"
    local started=$SECONDS url realm
    realm="$(realm_name)"
    # Keycloak imports <realm>-realm.json files only.
    cp "$REALM_FILE" "$HOME_DIR/data/import/$realm-realm.json"
    url="http://127.0.0.1:$PORT/realms/$realm/.well-known/openid-configuration"
    log "starting Keycloak $VERSION on http://127.0.0.1:$PORT (log: $LOG_FILE)"
    JAVA_HOME="$(java_home)" JAVA_OPTS_KC_HEAP="${LEDGERLINE_KEYCLOAK_HEAP:--Xms128m -Xmx512m}" \
        setsid "$HOME_DIR/bin/kc.sh" start-dev --db=dev-mem --http-host=127.0.0.1 --http-port="$PORT" \
        --import-realm --health-enabled=false --metrics-enabled=false </dev/null >"$LOG_FILE" 2>&1 &
    echo $! >"$PID_FILE"
    until curl -fsS -o /dev/null "$url" 2>/dev/null; do
        running || { tail -40 "$LOG_FILE" >&2; die "Keycloak exited"; }
        (( SECONDS - started < READY_TIMEOUT )) || { tail -40 "$LOG_FILE" >&2; down; die "not ready after $READY_TIMEOUT s"; }
        sleep 1
    done
    log "ready in $((SECONDS - started)) s: $url"
}

down() {
    running || { rm -f "$PID_FILE"; return 0; }
    local pid waited=0
    pid="$(cat "$PID_FILE")"
    # setsid made Keycloak the leader of its own process group: the group goes (kc.sh runs the
    # first start's build as a child before it execs the server).
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && (( waited < STOP_TIMEOUT )); do sleep 1; waited=$((waited + 1)); done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$PID_FILE"
    log "stopped (pid $pid)"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) if running; then log "running (pid $(cat "$PID_FILE"))"; else log "not running"; exit 3; fi ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
