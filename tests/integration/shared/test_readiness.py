"""Readiness tells the truth (issue 13, item 7): a relay that cannot publish, or a leader with
an old backlog, is not ready; a follower is; a consumer that cannot reach its broker is not
ready. Before, the relay reported healthy while it could not publish and readiness only asked
whether the tasks were running."""
from __future__ import annotations

import asyncio
import socket
import time
from datetime import datetime, timezone

from sqlalchemy import text

from shared import eventstore
from shared.consumer import ConsumerRunner
from shared.eventstore import NewEvent
from shared.relay import OutboxRelay
from tests.support.infra import KAFKA
from tests.support.kafka import create_topic
from tests.support.tally import handler_for


def _closed_port() -> str:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def _until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


async def _append(engine, n: int) -> None:
    async with engine.begin() as conn:
        await eventstore.append(conn, f"s-{n}", "s", 0, [NewEvent("Tested", 1, {"n": n},
                                                                   datetime(2024, 1, 1, tzinfo=timezone.utc))])


async def test_leader_publishing_and_follower_are_ready_a_relay_that_cannot_publish_is_not(platform_db):
    engine, _ = platform_db
    topic = await create_topic("ready")
    await _append(engine, 1)
    leader = OutboxRelay(engine, KAFKA, "testctx", topic=topic, lease_seconds=5)
    follower = OutboxRelay(engine, KAFKA, "testctx", topic=topic, lease_seconds=5)
    tasks = [asyncio.create_task(leader.run())]
    try:
        await _until(lambda: _true(leader.published == 1))
        tasks.append(asyncio.create_task(follower.run()))
        await asyncio.sleep(1)
        ready, details = await leader.status(True)
        assert ready and details["leader"] and details["epoch"] == 1 and details["last_publish_at"]
        assert details["backlog_age_seconds"] is None
        ready, details = await follower.status(True)
        assert ready and not details["leader"]
    finally:
        for relay in (leader, follower):
            relay.stop()
        await asyncio.gather(*tasks)

    # A relay whose broker is unreachable: it holds the lease but publishes nothing.
    await _append(engine, 2)
    async with engine.begin() as conn:  # the unpublished event has waited two minutes
        await conn.execute(text("UPDATE events SET recorded_at = now() - interval '2 minutes'"))
    stuck = OutboxRelay(engine, _closed_port(), "testctx", topic=topic, lease_seconds=5,
                        max_backlog_seconds=30, max_failing_seconds=1)
    task = asyncio.create_task(stuck.run())
    try:
        async def failing() -> bool:
            ready, details = await stuck.status(True)
            return any(reason.startswith("publishing failing") for reason in details["reasons"])
        await _until(failing, timeout=90)
        # From then on it stays unready, whether it holds the lease at that moment or not (it
        # drops it after each failed attempt and takes it again): a backlog reason alone came
        # and went with the lease.
        for _ in range(20):
            ready, details = await stuck.status(True)
            assert not ready and details["reasons"] and details["last_error"], details
            await asyncio.sleep(0.1)
    finally:
        stuck.stop()
        await task


async def _true(value: bool) -> bool:
    return value


async def test_a_consumer_that_cannot_reach_its_broker_is_not_ready(platform_db):
    engine, _ = platform_db
    runner = ConsumerRunner(engine, _closed_port(), "g-unreachable", ["t"], handler_for("g-unreachable"))
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.sleep(3)
        ready, details = runner.status()
        assert not ready and "not connected" in details["reasons"]
        assert details["last_error"]
    finally:
        runner.stop()
        await task
