"""The pool tests a connection before handing it out (shared.db._check_on_checkout): a pooled
connection whose server session was ended (a PostgreSQL restart, an administrator, the
idle-in-transaction limit) is replaced on checkout, and the caller never sees the dead one; a
connection idle longer than PING_AFTER_IDLE_S is pinged (one simple-protocol round trip), one
back in the pool for less is handed out without any."""
from __future__ import annotations

import asyncio
import time

import asyncpg
from sqlalchemy import text

from shared import db
from shared.db import make_engine
from tests.support.infra import asyncpg_dsn, fresh_database, sqlalchemy_url


async def _backends(engine, count: int) -> tuple[set[int], list]:
    """`count` pooled connections used at once, then returned: their server pids and drivers."""
    conns = [await engine.connect() for _ in range(count)]
    pids, drivers = set(), []
    for conn in conns:
        pids.add((await conn.execute(text("SELECT pg_backend_pid()"))).scalar())
        drivers.append((await conn.get_raw_connection()).driver_connection)
        await conn.close()
    return pids, drivers


async def _end_sessions(admin, pids: set[int]) -> None:
    ended = await admin.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                 " WHERE pid = ANY($1::int[])", list(pids))
    assert ended == len(pids)


async def test_a_pooled_connection_whose_session_was_ended_is_replaced_on_checkout():
    async with fresh_database("pool") as name:
        engine = make_engine(sqlalchemy_url(name), pool_size=2, max_overflow=0)
        admin = await asyncpg.connect(asyncpg_dsn(name))
        try:
            # Idle past the window: the ping finds them dead.
            pids, _ = await _backends(engine, 2)
            await _end_sessions(admin, pids)
            await asyncio.sleep(db.PING_AFTER_IDLE_S + 0.2)
            for _ in range(4):
                async with engine.begin() as conn:
                    pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
                    assert pid not in pids
                    await conn.execute(text("CREATE TEMP TABLE IF NOT EXISTS t (v int)"))
            # Used a moment ago: no ping, but the server's close of the session was seen.
            pids, drivers = await _backends(engine, 2)
            await _end_sessions(admin, pids)
            deadline = time.monotonic() + 5
            while not all(d.is_closed() for d in drivers) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            for _ in range(4):
                async with engine.begin() as conn:
                    assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar() not in pids
            # The ping leaves no transaction behind: the connection is idle, not idle in transaction.
            await asyncio.sleep(db.PING_AFTER_IDLE_S + 0.2)
            async with engine.connect() as conn:
                pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
                await conn.rollback()
                state = await admin.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
                assert state == "idle"
        finally:
            await admin.close()
            await engine.dispose()


async def test_only_a_connection_idle_past_the_window_is_pinged():
    async with fresh_database("pool") as name:
        engine = make_engine(sqlalchemy_url(name), pool_size=1, max_overflow=0)
        sent: list[str] = []
        try:
            async with engine.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                driver.add_query_logger(lambda record: sent.append(record.query))
            for _ in range(3):  # back in the pool a moment ago each time
                async with engine.begin() as conn:
                    await conn.execute(text("SELECT 2"))
            assert "SELECT 1" not in sent, sent
            await asyncio.sleep(db.PING_AFTER_IDLE_S + 0.2)
            async with engine.begin() as conn:
                await conn.execute(text("SELECT 2"))
            assert sent.count("SELECT 1") == 1, sent
        finally:
            await engine.dispose()
