"""A session idle inside a transaction is ended by PostgreSQL after the engine's limit, and its
locks go with it: a frozen process (SIGSTOP mid-request) cannot block the instances that carry on
(tests/faults/test_relay_lease.py freezes one for real)."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared.db import allow_long_idle, make_engine
from tests.support.infra import fresh_database, sqlalchemy_url


async def _holder_and_waiter(url: str, *, long_idle: bool) -> tuple[bool, bool]:
    """A transaction takes a row lock and goes idle for 3 s; another session wants the row within
    2 s. Returns (the waiter got the row, the holder's transaction was ended)."""
    holder_engine = make_engine(url, pool_size=1, idle_in_transaction_timeout=1.0)
    waiter_engine = make_engine(url, pool_size=1)
    try:
        async with waiter_engine.begin() as conn:
            await conn.execute(text("CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, v int)"))
            await conn.execute(text("INSERT INTO t VALUES (1, 0) ON CONFLICT DO NOTHING"))
        holder = await holder_engine.connect()
        await holder.begin()
        if long_idle:
            await allow_long_idle(holder)
        await holder.execute(text("UPDATE t SET v = v + 1 WHERE id = 1"))

        async def wait_for_row() -> bool:
            async with waiter_engine.connect() as conn:
                await conn.execute(text("SET lock_timeout = '2500ms'"))
                try:
                    await conn.execute(text("SELECT v FROM t WHERE id = 1 FOR UPDATE"))
                    return True
                except DBAPIError:
                    return False

        got_row = await wait_for_row()
        await asyncio.sleep(0.5)  # the holder has been idle past its limit either way
        try:
            await holder.execute(text("SELECT 1"))
            await holder.commit()
            ended = False
        except DBAPIError:
            ended = True
        finally:
            await holder.close()
        return got_row, ended
    finally:
        await holder_engine.dispose()
        await waiter_engine.dispose()


async def test_an_idle_transaction_is_ended_and_its_locks_released():
    async with fresh_database("idle") as name:
        got_row, ended = await _holder_and_waiter(sqlalchemy_url(name), long_idle=False)
    assert got_row, "the row stayed locked by a session idle in its transaction"
    assert ended, "the idle transaction was allowed to commit after its limit"


async def test_a_transaction_that_asked_for_long_idle_keeps_its_locks():
    async with fresh_database("idle") as name:
        got_row, ended = await _holder_and_waiter(sqlalchemy_url(name), long_idle=True)
    assert not got_row
    assert not ended


def test_services_limit_idle_transactions_by_default():
    from shared.settings import ServiceSettings

    assert ServiceSettings(database_url="postgresql+asyncpg://x/y").db_idle_in_transaction_timeout_seconds > 0
