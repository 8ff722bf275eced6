"""A tiny read model for consumer-runner tests: per key, the sum and count of payload "n".
Deliberately not idempotent by itself, so a double-handled event shows up as a wrong count.
Run as a process: python -m tests.support.tally DATABASE_URL TOPIC GROUP"""
from __future__ import annotations

import asyncio
import signal
import sys

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.consumer import ConsumerRunner, ReceivedEvent
from shared.db import make_engine

TALLY_DDL = (
    "CREATE TABLE IF NOT EXISTS tally (consumer text, key text, total bigint NOT NULL, count integer NOT NULL,"
    " PRIMARY KEY (consumer, key))"
)


def handler_for(consumer: str):
    async def handle(conn: AsyncConnection, event: ReceivedEvent) -> None:
        if event.data.get("poison"):
            raise ValueError("this event can never be handled")
        await conn.execute(
            text("INSERT INTO tally (consumer, key, total, count) VALUES (:c, :k, :n, 1) ON CONFLICT (consumer, key)"
                 " DO UPDATE SET total = tally.total + excluded.total, count = tally.count + 1"),
            {"c": consumer, "k": event.subject, "n": int(event.data["n"])},
        )
    return handle


async def tally(conn: AsyncConnection, consumer: str) -> dict[str, tuple[int, int]]:
    rows = await conn.execute(text("SELECT key, total, count FROM tally WHERE consumer = :c"), {"c": consumer})
    return {r.key: (r.total, r.count) for r in rows}


async def _main(url: str, topic: str, group: str) -> None:
    from tests.support.infra import KAFKA

    engine = make_engine(url, pool_size=2)
    runner = ConsumerRunner(engine, KAFKA, group, [topic], handler_for(group), max_attempts=2, backoff_seconds=0.01)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, runner.stop)
    await runner.run()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(_main(*sys.argv[1:4]))
