# Sourced by scripts/bootstrap.sh and scripts/pg.sh: where the PostgreSQL server binaries are.

# Prints the directory holding initdb, pg_ctl and postgres. LEDGERLINE_PG_BINDIR overrides the
# search; otherwise pg_ctl on PATH, then the newest /usr/lib/postgresql/*/bin.
find_pg_bindir() {
    local tool dir
    if [[ -n "${LEDGERLINE_PG_BINDIR:-}" ]]; then
        echo "$LEDGERLINE_PG_BINDIR"
        return 0
    fi
    if tool="$(command -v pg_ctl 2>/dev/null)"; then
        dir="$(dirname "$(readlink -f "$tool")")"
        if [[ -x "$dir/initdb" && -x "$dir/postgres" ]]; then
            echo "$dir"
            return 0
        fi
    fi
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -Vr); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}
