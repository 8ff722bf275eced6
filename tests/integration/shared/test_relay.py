"""Outbox relay on real PostgreSQL and Kafka: at least once, through SIGKILLs."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone

from sqlalchemy import text

from shared import eventstore
from shared.eventstore import NewEvent
from tests.support.infra import KAFKA
from tests.support.kafka import create_topic, read_all

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def _append_batch(engine, start: int, count: int, streams: int) -> None:
    by_stream: dict[str, list[NewEvent]] = defaultdict(list)
    for n in range(start, start + count):
        by_stream[f"acct-{n % streams}"].append(NewEvent(
            event_type="Tested", schema_version=1, payload={"n": n},
            occurred_at=datetime(2024, 1, 1, tzinfo=timezone.utc), metadata={"traceparent": TRACEPARENT}))
    async with engine.begin() as conn:
        for stream, events in by_stream.items():
            version = await eventstore.stream_version(conn, stream)
            await eventstore.append(conn, stream, "acct", version, events)


def _start_relay(url: str, topic: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "shared.relay", "--database-url", url, "--bootstrap", KAFKA,
         "--context", "testctx", "--topic", topic, "--batch-size", "100", "--lease-seconds", "3"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ},
    )


async def test_relay_killed_at_random_points_loses_nothing(platform_db):
    engine, url = platform_db
    topic = await create_topic("relay")
    total, streams = 3000, 40
    appended = 0

    async def appender():
        # Events keep arriving while the relay publishes and is killed.
        nonlocal appended
        while appended < total:
            await _append_batch(engine, appended, 100, streams)
            appended += 100
            await asyncio.sleep(0.05)

    async def checkpoint() -> int:
        async with engine.connect() as conn:
            return (await eventstore.load_checkpoint(conn, f"relay:{topic}"))[1]

    feeding = asyncio.create_task(appender())
    relay = _start_relay(url, topic)
    backlog_at_kill = []
    try:
        # SIGKILL whenever the relay has published past a threshold: mid-stream, with more to send.
        for threshold in (200, 700, 1200, 1700, 2200):
            deadline = time.monotonic() + 60
            while await checkpoint() < threshold:
                assert time.monotonic() < deadline, "relay made no progress"
                await asyncio.sleep(0.01)
            relay.send_signal(signal.SIGKILL)
            relay.wait()
            async with engine.connect() as conn:
                newest = (await conn.execute(text("SELECT max(global_position) FROM events"))).scalar()
            backlog_at_kill.append(newest - await checkpoint())
            relay = _start_relay(url, topic)
        kills = len(backlog_at_kill)
        await feeding
        # Let the last relay finish: its checkpoint reaches the last event.
        async with engine.connect() as conn:
            last = (await eventstore.read_all(conn, eventstore.START, limit=10_000))[-1].position
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            async with engine.connect() as conn:
                if await eventstore.load_checkpoint(conn, f"relay:{topic}") == last:
                    break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("relay did not catch up")
    finally:
        feeding.cancel()
        relay.send_signal(signal.SIGTERM)
        relay.wait(timeout=30)

    records = await read_all(topic, expect=total)
    async with engine.connect() as conn:
        stored = await eventstore.read_all(conn, eventstore.START, limit=10_000)
    assert len(stored) == total
    ids_on_topic = {dict(r.headers)["ce_id"].decode() for r in records}
    missing = {str(e.event_id) for e in stored} - ids_on_topic
    assert not missing, f"{len(missing)} events lost"
    assert kills == 5 and sum(1 for b in backlog_at_kill if b > 0) >= 3, backlog_at_kill

    # Per key, the first delivery of each event keeps the stream's order.
    first_seen: dict[str, list[int]] = defaultdict(list)
    delivered: set[str] = set()
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        headers = {k: v.decode() for k, v in r.headers}
        if headers["ce_id"] in delivered:
            continue
        delivered.add(headers["ce_id"])
        first_seen[r.key.decode()].append(int(headers["ce_streamversion"]))
    for stream, versions in first_seen.items():
        assert versions == sorted(versions), stream

    sample = {k: v.decode() for k, v in records[0].headers}
    assert sample["ce_specversion"] == "1.0"
    assert sample["ce_source"] == "/ledgerline/testctx"
    assert sample["ce_type"] == "Tested"
    assert sample["ce_subject"] == records[0].key.decode()
    assert sample["ce_time"].startswith("2024-01-01")
    assert sample["traceparent"] == TRACEPARENT


async def test_only_one_relay_holds_the_lease(platform_db):
    from shared.relay import OutboxRelay

    engine, _ = platform_db
    topic = await create_topic("lease")
    first = OutboxRelay(engine, KAFKA, "testctx", topic=topic)
    second = OutboxRelay(engine, KAFKA, "testctx", topic=topic)
    tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    try:
        for _ in range(100):
            if first.is_leader or second.is_leader:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        assert [first.is_leader, second.is_leader].count(True) == 1
        leader, standby = (first, second) if first.is_leader else (second, first)
        leader.stop()
        for _ in range(100):  # the standby takes over
            if standby.is_leader:
                break
            await asyncio.sleep(0.1)
        assert standby.is_leader
    finally:
        first.stop()
        second.stop()
        await asyncio.gather(*tasks)


async def test_while_kafka_is_unreachable_the_checkpoint_stays_and_appends_go_on(platform_db):
    """A relay whose broker cannot be reached keeps retrying without moving its checkpoint;
    appends are unaffected; once a broker answers, everything is published."""
    from shared.relay import OutboxRelay

    engine, _ = platform_db
    topic = await create_topic("outage")
    await _append_batch(engine, 0, 50, 5)
    down = OutboxRelay(engine, "127.0.0.1:1", "testctx", topic=topic)  # nothing listens on port 1
    task = asyncio.create_task(down.run())
    await asyncio.sleep(3)
    await _append_batch(engine, 50, 50, 5)  # the API side keeps appending
    async with engine.connect() as conn:
        assert await eventstore.load_checkpoint(conn, f"relay:{topic}") == eventstore.START
    assert down.last_error is not None and not task.done()
    down.stop()
    await task

    up = OutboxRelay(engine, KAFKA, "testctx", topic=topic)
    task = asyncio.create_task(up.run())
    try:
        deadline = time.monotonic() + 60
        while up.published < 100 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        up.stop()
        await task
    records = await read_all(topic, expect=100)
    assert len({dict(r.headers)["ce_id"] for r in records}) == 100


async def test_a_batch_lands_each_stream_in_order_in_the_partition_a_keyed_send_picks(platform_db):
    """The relay builds the Kafka record batches itself (several per partition when a batch's
    events do not fit in one): every event once, each stream in version order, in the partition
    a plain producer's keyed send() chooses for the stream id."""
    from aiokafka import AIOKafkaProducer

    from shared.relay import OutboxRelay

    engine, _ = platform_db
    topic, probe_topic = await create_topic("batches"), await create_topic("probe")
    streams = [f"acct-{n}" for n in range(60)]
    async with engine.begin() as conn:
        for round_ in range(10):  # 600 events of ~2 KB: more than one 256 KB batch per partition
            for stream in streams:
                await eventstore.append(conn, stream, "acct", round_, [NewEvent(
                    "Tested", 1, {"n": round_, "pad": "x" * 2000}, datetime(2024, 1, 1, tzinfo=timezone.utc))])
    relay = OutboxRelay(engine, KAFKA, "testctx", topic=topic)
    producer = relay.make_producer()
    await producer.start()
    try:
        assert await relay.relay_once(producer) == 600
        assert await relay.relay_once(producer) == 0
    finally:
        await producer.stop()

    plain = AIOKafkaProducer(bootstrap_servers=KAFKA)
    await plain.start()
    try:
        expected = {s: (await plain.send_and_wait(probe_topic, b"probe", key=s.encode())).partition for s in streams}
    finally:
        await plain.stop()
    assert len(set(expected.values())) == 3

    records = await read_all(topic, expect=600)
    assert len(records) == 600
    assert len({dict(r.headers)["ce_id"] for r in records}) == 600
    versions: dict[str, list[int]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        stream = r.key.decode()
        assert r.partition == expected[stream], stream
        headers = dict(r.headers)
        assert headers["ce_subject"].decode() == stream
        assert headers["ledgerline_relay_epoch"] == b"0"
        versions[stream].append(int(headers["ce_streamversion"]))
    assert versions == {s: list(range(1, 11)) for s in streams}
