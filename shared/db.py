"""Database engine and migrations. SQLAlchemy 2 async (Core) on asyncpg.

A request or a handled event is one transaction: `async with engine.begin() as conn` at the
edge (route or consumer runner); domain and application code never commit."""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import time
from importlib import resources
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

log = logging.getLogger(__name__)


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10,
                idle_in_transaction_timeout: float | None = None,
                application_name: str | None = None) -> AsyncEngine:
    """idle_in_transaction_timeout (seconds): PostgreSQL ends a session of this engine that sits
    idle inside a transaction longer than that, and so releases its row and advisory locks. A
    process frozen (SIGSTOP, a VM paused) or cut off mid-transaction would otherwise keep them
    for as long as its TCP connection lives, and every other instance retrying the same request
    (same Idempotency-Key) or touching the same invoices would wait on it.

    application_name names the sessions in pg_stat_activity and the server's log; PGAPPNAME in
    the environment (libpq's convention, which asyncpg does not read itself) overrides it, so an
    operator can tell one process's sessions from another's (a CLI import beside the pods)."""
    # While a statement runs (or waits for a lock), PostgreSQL checks every 5 s that the client is
    # still there and ends the session when it is not: a process killed mid-import (SIGKILL, the
    # OOM killer) otherwise left a session waiting on a lock, holding its own, until it got it.
    server_settings: dict[str, str] = {"client_connection_check_interval": "5000"}
    if idle_in_transaction_timeout:
        server_settings["idle_in_transaction_session_timeout"] = str(int(idle_in_transaction_timeout * 1000))
    name = os.environ.get("PGAPPNAME") or application_name
    if name:
        server_settings["application_name"] = name[:63]
    connect_args = {"server_settings": server_settings}
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        # The pool tests a connection on checkout itself (_check_on_checkout), not SQLAlchemy's
        # pre-ping on every checkout.
        pool_pre_ping=False,
        connect_args=connect_args,
        # Transactions are short; READ COMMITTED is the PostgreSQL default and what the
        # event store's visibility rule (its readers' horizon, shared.eventstore) is written for.
    )
    if engine.dialect.driver == "asyncpg":
        event.listen(engine.sync_engine.pool, "connect", _mark_used)
        event.listen(engine.sync_engine.pool, "checkin", _mark_used)
        event.listen(engine.sync_engine.pool, "checkout", _check_on_checkout)
    return engine


# A connection back in the pool for less than this is handed out without a round trip (HikariCP's
# aliveBypassWindowMs, 500 ms by default, is the same trade): under load every connection is
# reused within milliseconds, and the ping was one round trip in four of an event append and one
# in ten of an invoice's issue. A session the server ended meanwhile is still caught without one:
# PostgreSQL says so and closes the socket (a restart, pg_terminate_backend, the idle-in-
# transaction limit), the event loop sees the close, and the driver marks the connection closed.
PING_AFTER_IDLE_S = 0.5


def _mark_used(_dbapi_connection, record) -> None:
    record.info["ledgerline_used_at"] = time.monotonic()


def _check_on_checkout(dbapi_connection, record, _proxy) -> None:
    """A connection known closed, or idle longer than PING_AFTER_IDLE_S and not answering one
    simple-protocol `SELECT 1` (no prepared statement, its own transaction: safe behind
    pgbouncer's transaction mode), is not handed out: the pool drops it, and every connection
    opened before it (a dead one is most often a server restart), and connects anew."""
    driver = dbapi_connection.driver_connection
    if driver.is_closed():
        raise exc.InvalidatePoolError("the server closed this pooled connection")
    if time.monotonic() - record.info.get("ledgerline_used_at", 0.0) < PING_AFTER_IDLE_S:
        return
    try:
        await_only(driver.execute("SELECT 1"))
    except Exception as error:
        raise exc.InvalidatePoolError(f"a pooled connection did not answer: {type(error).__name__}") from error


async def driver_connection(conn: AsyncConnection) -> Any:
    """The asyncpg connection under `conn`, inside conn's transaction, for the few statements of
    a hot path (a creating POST's idempotency key, an invoice's issue): SQLAlchemy's work around
    a statement (the text's bind parameters parsed, its cache key, the parameters processed, the
    result's metadata) cost about 0.15 ms of CPU per statement here, asyncpg's own 0.025 ms.
    SQLAlchemy sends BEGIN with a transaction's first statement; when none was sent yet it is
    sent now, so a statement on the driver is never outside the caller's transaction. Errors are
    asyncpg's (shared.db_errors classifies both)."""
    raw = await conn.get_raw_connection()
    if conn.in_transaction():
        adapted = raw.dbapi_connection
        if adapted._transaction is None and not adapted.autocommit:
            await adapted._start_transaction()
    return raw.driver_connection


async def allow_long_idle(conn: AsyncConnection) -> None:
    """Lift the idle-in-transaction limit for the rest of this transaction: for the few that
    legitimately compute for long between statements (matching a large bank file under its
    locks, a reporting rebuild reading the topics)."""
    await conn.execute(text("SET LOCAL idle_in_transaction_session_timeout = 0"))


def sql_files(package: str, folder: str = "migrations") -> list[tuple[str, str]]:
    """(name, sql) of the package's migration files, in name order."""
    root = resources.files(package).joinpath(folder)
    files = sorted((p.name, p.read_text()) for p in root.iterdir() if p.name.endswith(".sql"))
    return files


async def apply_migrations(engine: AsyncEngine, migrations: Iterable[tuple[str, str]]) -> list[str]:
    """Apply migrations not yet applied, each in its own transaction, under an advisory lock so
    that several replicas (or a Job and a pod) starting together do not race. Returns the names
    applied now."""
    applied_now: list[str] = []
    async with engine.connect() as conn:
        await conn.execute(text("SELECT pg_advisory_lock(hashtext('ledgerline:migrations'))"))
        try:
            await conn.execute(
                text(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " name text PRIMARY KEY, checksum text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
            )
            await conn.commit()
            done = {
                row.name: row.checksum
                for row in (await conn.execute(text("SELECT name, checksum FROM schema_migrations")))
            }
            await conn.commit()
            for name, sql in migrations:
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if name in done:
                    if done[name] != checksum:
                        raise RuntimeError(
                            f"migration {name} was changed after it was applied; add a new one instead"
                        )
                    continue
                async with conn.begin():
                    # The INSERT opens the transaction; the script then runs inside it (asyncpg
                    # runs a parameterless multi-statement script in one call).
                    await conn.execute(
                        text("INSERT INTO schema_migrations (name, checksum) VALUES (:n, :c)"),
                        {"n": name, "c": checksum},
                    )
                    raw = await conn.get_raw_connection()
                    await raw.driver_connection.execute(sql)
                applied_now.append(name)
                log.info("applied migration %s", name)
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(hashtext('ledgerline:migrations'))"))
            await conn.commit()
    return applied_now


_NAMED_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=256)
def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """A statement with `:name` parameters (SQLAlchemy text()'s style) in asyncpg's `$n` style, and
    the names in their order (a `::type` cast is not a parameter)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return _NAMED_PARAMETER.sub(number, sql), tuple(names)


async def execute_many(conn: AsyncConnection, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """One statement for many rows (`:name` parameters, rows as mappings), sent by asyncpg's
    executemany inside conn's transaction (driver_connection). SQLAlchemy's executemany processed
    every row's parameters in Python first (about 25 us a row: 13 s of a 100,000-receipt import,
    on the event loop); asyncpg encodes them itself."""
    if not rows:
        return
    statement, names = positional(sql)
    driver = await driver_connection(conn)
    await driver.executemany(statement, [tuple(row[name] for name in names) for row in rows])


async def execute_arrays(conn: AsyncConnection, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """One statement for many rows, each `:name` parameter bound to that field's values over the
    rows, as an array: the statement takes them apart itself (`INSERT ... SELECT ... FROM
    unnest(CAST(:a AS text[]), CAST(:b AS numeric[])) AS r(a, b)`, `UPDATE ... FROM unnest(...)`).
    PostgreSQL plans and runs it once for the batch; execute_many runs its statement once per row
    (a bank import's 5,000 open-item updates took 0.7-1.7 s that way). Sent by asyncpg inside
    conn's transaction (driver_connection)."""
    if not rows:
        return
    statement, names = positional(sql)
    driver = await driver_connection(conn)
    await driver.execute(statement, *[[row[name] for row in rows] for name in names])
