"""A tiny read model for consumer-runner tests: per key, the sum and count of payload "n".
Deliberately not idempotent by itself, so a double-handled event shows up as a wrong count.
Run as a process: python -m tests.support.tally DATABASE_URL TOPIC GROUP"""
from __future__ import annotations

import asyncio
import signal
import sys
from typing import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.consumer import ConsumerRunner, Projection, ReceivedEvent
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


def batch_projection_for(consumer: str, calls: list[list[str]] | None = None) -> Projection:
    """The same tally, applied set-based: one statement per batch (keys grouped). `calls` gets
    each batch's event ids, in the order apply_batch received them."""
    async def apply_batch(conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> None:
        if any(e.data.get("poison") for e in events):
            raise ValueError("this event can never be handled")
        if calls is not None:
            calls.append([e.event_id for e in events])
        await conn.execute(
            text("INSERT INTO tally (consumer, key, total, count) SELECT :c, k, sum(n), count(*)"
                 " FROM unnest(CAST(:k AS text[]), CAST(:n AS bigint[])) AS t(k, n) GROUP BY k"
                 " ON CONFLICT (consumer, key) DO UPDATE SET total = tally.total + excluded.total,"
                 " count = tally.count + excluded.count"),
            {"c": consumer, "k": [e.subject for e in events], "n": [int(e.data["n"]) for e in events]},
        )
    return Projection(handler_for(consumer), apply_batch)


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
