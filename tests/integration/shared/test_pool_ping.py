"""The pool tests a connection before handing it out (shared.db._ping_once, one round trip): a
pooled connection whose server session was ended (a PostgreSQL restart, an administrator, the
idle-in-transaction limit) is replaced on checkout, and the caller never sees the dead one."""
from __future__ import annotations

import asyncpg
from sqlalchemy import text

from shared.db import make_engine
from tests.support.infra import asyncpg_dsn, fresh_database, sqlalchemy_url


async def test_a_pooled_connection_whose_session_was_ended_is_replaced_on_checkout():
    async with fresh_database("pool") as name:
        engine = make_engine(sqlalchemy_url(name), pool_size=2, max_overflow=0)
        admin = await asyncpg.connect(asyncpg_dsn(name))
        try:
            pids = set()
            # Both pooled connections in use at once, then back in the pool.
            first = await engine.connect()
            second = await engine.connect()
            for conn in (first, second):
                pids.add((await conn.execute(text("SELECT pg_backend_pid()"))).scalar())
                await conn.close()
            ended = await admin.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                         " WHERE pid = ANY($1::int[])", list(pids))
            assert ended == 2
            for _ in range(4):
                async with engine.begin() as conn:
                    pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
                    assert pid not in pids
                    await conn.execute(text("CREATE TEMP TABLE IF NOT EXISTS t (v int)"))
            # The ping leaves no transaction behind: the connection is idle, not idle in transaction.
            async with engine.connect() as conn:
                pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
                await conn.rollback()
                state = await admin.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
                assert state == "idle"
        finally:
            await admin.close()
            await engine.dispose()
