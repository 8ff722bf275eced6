#!/usr/bin/env bash
# Prepares a machine for Ledgerline development and CI. Safe to run any number of times.
#
#   - .venv with Python 3.11+, the pinned requirements.lock and the project itself (editable)
#   - Java 17+ and Maven (Kafka's jars are resolved by Maven; see deploy/kafka/pom.xml)
#   - PostgreSQL server binaries (initdb, pg_ctl, postgres)
#   - Debian's chromium for the dashboard's browser test (LEDGERLINE_SKIP_CHROMIUM=1 skips it)
#
# Missing system packages are installed with apt-get when running as root; otherwise the
# script stops and says what to install. Works without a terminal (CI=true, no stdin).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
LOCK_FILE="$REPO_ROOT/requirements.lock"
LOCK_STAMP="$VENV/.lock-stamp"
PROJECT_STAMP="$VENV/.project-stamp"

export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

APT_UPDATED=0
apt_install() {
    is_root || die "missing system packages ($*) and not root: install them, then re-run"
    command -v apt-get >/dev/null || die "missing system packages ($*) and no apt-get on this machine"
    if [[ "$APT_UPDATED" -eq 0 ]]; then
        log "apt-get update"
        apt-get -o DPkg::Lock::Timeout=600 update -qq </dev/null
        APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    # Another installer may hold dpkg's lock (CI's platform preparation, unattended upgrades):
    # wait for it rather than fail.
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" </dev/null
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# --- Python ---------------------------------------------------------------------------------

python_ok() {  # $1: interpreter; true when it is Python 3.11 or newer
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

find_python() {
    local candidate
    for candidate in python3 python3.13 python3.12 python3.11; do
        if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

ensure_venv() {
    if [[ -x "$VENV/bin/python" ]] && python_ok "$VENV/bin/python"; then
        return 0
    fi
    [[ -e "$VENV" ]] && die ".venv exists but its python does not run or is older than 3.11; remove .venv and re-run"

    local python
    if ! python="$(find_python)"; then
        apt_install python3 python3-venv
        python="$(find_python)" || die "no Python 3.11+ found (python3 is $(python3 -V 2>&1))"
    fi
    log "creating .venv with $python ($("$python" -V 2>&1))"
    if ! "$python" -m venv "$VENV" 2>/dev/null; then
        # Debian's python3 ships venv without ensurepip until python3-venv is installed.
        rm -rf "$VENV"
        apt_install python3-venv
        "$python" -m venv "$VENV"
    fi
}

install_python_packages() {
    [[ -f "$LOCK_FILE" ]] || die "requirements.lock not found in $REPO_ROOT"
    local lock_sha
    lock_sha="$(sha256_of "$LOCK_FILE")"
    if [[ -f "$LOCK_STAMP" && "$(cat "$LOCK_STAMP")" == "$lock_sha" ]]; then
        log "python packages up to date (requirements.lock unchanged)"
    else
        log "pip install -r requirements.lock"
        "$VENV/bin/python" -m pip install -q -r "$LOCK_FILE"
        printf '%s\n' "$lock_sha" >"$LOCK_STAMP"
        # New pins may have replaced what the editable install relied on.
        rm -f "$PROJECT_STAMP"
    fi

    if [[ ! -f "$REPO_ROOT/pyproject.toml" ]]; then
        log "no pyproject.toml yet: skipping the editable install of the project"
        return 0
    fi
    local project_sha
    project_sha="$(sha256_of "$REPO_ROOT/pyproject.toml")"
    if [[ -f "$PROJECT_STAMP" && "$(cat "$PROJECT_STAMP")" == "$project_sha" ]]; then
        log "project already installed in .venv (pyproject.toml unchanged)"
    else
        log "pip install --no-deps -e ."
        "$VENV/bin/python" -m pip install -q --no-deps -e "$REPO_ROOT"
        printf '%s\n' "$project_sha" >"$PROJECT_STAMP"
    fi
}

# --- Java and Maven ---------------------------------------------------------------------------

java_major() {  # prints the major version of `java` in PATH, or nothing
    local line version
    line="$(java -version 2>&1 | grep -m1 -i 'version' || true)"
    version="$(sed -E 's/.*version "([^"]+)".*/\1/' <<<"$line")"
    [[ "$version" == "$line" ]] && return 0  # no quoted version in the output
    if [[ "$version" == 1.* ]]; then
        cut -d. -f2 <<<"$version"         # 1.8.0_392 -> 8
    else
        sed -E 's/^([0-9]+).*/\1/' <<<"$version"  # 17.0.15 -> 17
    fi
}

ensure_java_and_maven() {
    local major=""
    command -v java >/dev/null 2>&1 && major="$(java_major)"
    if [[ -z "$major" || "$major" -lt 17 ]]; then
        log "java 17+ not found (java -version: ${major:-none})"
        apt_install openjdk-17-jre-headless
        major="$(java_major)"
        [[ -n "$major" && "$major" -ge 17 ]] || die "java in PATH is still not 17+ after installing openjdk-17 (check update-alternatives --config java)"
    fi
    log "java $major OK ($(command -v java))"

    if ! command -v mvn >/dev/null 2>&1; then
        apt_install maven
    fi
    log "maven OK ($(mvn -v 2>/dev/null | head -n1 | sed -E 's/\x1b\[[0-9;]*m//g'))"
}

# --- PostgreSQL -------------------------------------------------------------------------------

source "$(dirname "${BASH_SOURCE[0]}")/lib-pg.sh"

ensure_postgres() {
    local bindir
    if ! bindir="$(find_pg_bindir)"; then
        log "PostgreSQL server binaries not found"
        apt_install postgresql
        bindir="$(find_pg_bindir)" || die "PostgreSQL installed but no /usr/lib/postgresql/*/bin with initdb/pg_ctl/postgres"
    fi
    log "postgresql OK ($("$bindir/postgres" --version) in $bindir)"
}

# --- Chromium (the dashboard's browser test drives Debian's chromium with Playwright) --------

find_chromium() {
    local candidate
    for candidate in "${LEDGERLINE_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
        [[ -n "$candidate" && -x "$candidate" ]] && { printf '%s\n' "$candidate"; return 0; }
    done
    return 1
}

ensure_chromium() {
    local chromium
    if ! chromium="$(find_chromium)"; then
        log "chromium not found"
        apt_install chromium fonts-dejavu-core
        chromium="$(find_chromium)" || die "chromium installed but /usr/bin/chromium is missing"
    fi
    log "chromium OK ($("$chromium" --version 2>/dev/null | head -n1))"
}

# --- The workbench's browser assets (npm: htmx served to browsers, axe-core for its tests) ----

WORKBENCH="$REPO_ROOT/services/workbench"

ensure_workbench_assets() {
    if ! command -v npm >/dev/null 2>&1; then
        apt_install nodejs npm
    fi
    local stamp="$WORKBENCH/node_modules/.lock-stamp" want
    want="$(sha256_of "$WORKBENCH/package-lock.json")"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
        log "npm ci (services/workbench: htmx, axe-core pinned by package-lock.json)"
        (cd "$WORKBENCH" && npm ci --no-audit --no-fund --loglevel=error </dev/null)
        echo "$want" >"$stamp"
    fi
    # htmx is served from static/ (git-ignored copies made here; the image build copies services/
    # as this left it, and the package data takes *.js from static/).
    cp "$WORKBENCH/node_modules/htmx.org/dist/htmx.min.js" "$WORKBENCH/static/htmx.min.js"
    cp "$WORKBENCH/node_modules/htmx.org/LICENSE" "$WORKBENCH/static/htmx.LICENSE.txt"
    log "workbench assets OK (htmx $(cd "$WORKBENCH" && node -p 'require("htmx.org/package.json").version'))"
}

main() {
    cd "$REPO_ROOT"
    ensure_venv
    install_python_packages
    ensure_java_and_maven
    ensure_postgres
    ensure_workbench_assets
    if [[ "${LEDGERLINE_SKIP_CHROMIUM:-0}" != "1" ]]; then
        ensure_chromium
    fi
    log "done"
}

main "$@"
