"""The relay lease under a frozen leader (issue 13, item 3), with real processes: two relays of
one topic, the leader SIGSTOPped while events keep being appended. The other takes over and
publishes within 30 s; the old one, SIGCONTed, publishes nothing that a read_committed consumer
can see (its Kafka producer is fenced, its checkpoint saves are refused), and no event is lost.

On the old relay (a session advisory lock on an idle connection) the frozen leader kept the lock
and nothing was published: this test fails there at the 30 s takeover assertion."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone

import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared import eventstore
from shared.eventstore import NewEvent
from shared.relay import OutboxRelay, relay_engine
from tests.support.infra import KAFKA
from tests.support.kafka import create_topic

TAKEOVER_BOUND = 30.0


def _start_relay(url: str, topic: str, log_path: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "shared.relay", "--database-url", url, "--bootstrap", KAFKA,
         "--context", "testctx", "--topic", topic, "--batch-size", "50"],
        stdout=subprocess.DEVNULL, stderr=open(log_path, "ab"), env={**os.environ},
    )


async def _lease(engine, topic: str):
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT holder, epoch, expires_at > now() AS live FROM relay_leases"
                                        " WHERE name = :n"), {"n": f"relay:{topic}"})).first()


async def _checkpoint(engine, topic: str) -> int:
    async with engine.connect() as conn:
        return (await eventstore.load_checkpoint(conn, f"relay:{topic}"))[1]


async def _read_committed(topic: str, expect_ids: set[str], timeout: float = 90.0):
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=KAFKA, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    records = []
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                for r in recs:
                    records.append(r)
                    seen.add(dict(r.headers)["ce_id"].decode())
            if expect_ids <= seen and not batch:
                break
    finally:
        await consumer.stop()
    return records


async def test_a_frozen_leader_is_replaced_within_30s_and_publishes_nothing_after_it_resumes(platform_db, tmp_path):
    engine, url = platform_db
    topic = await create_topic("lease")
    appended = 0
    appending = True

    async def appender():
        nonlocal appended
        while appending:
            async with engine.begin() as conn:
                for i in range(5):
                    stream = f"acct-{(appended + i) % 7}"
                    version = await eventstore.stream_version(conn, stream)
                    await eventstore.append(conn, stream, "acct", version, [NewEvent(
                        "Tested", 1, {"n": appended + i}, datetime(2024, 1, 1, tzinfo=timezone.utc))])
            appended += 5
            await asyncio.sleep(0.05)

    first = _start_relay(url, topic, str(tmp_path / "first.log"))
    second = None
    feeding = asyncio.create_task(appender())
    try:
        deadline = time.monotonic() + 60
        while (lease := await _lease(engine, topic)) is None or await _checkpoint(engine, topic) == 0:
            assert time.monotonic() < deadline, "the first relay never published"
            await asyncio.sleep(0.1)
        old_holder, old_epoch = lease.holder, lease.epoch
        assert old_holder.split(":")[1] == str(first.pid)
        second = _start_relay(url, topic, str(tmp_path / "second.log"))
        await asyncio.sleep(3)  # the second relay is a follower now
        assert (await _lease(engine, topic)).epoch == old_epoch

        first.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        at_freeze = await _checkpoint(engine, topic)
        while True:
            lease = await _lease(engine, topic)
            if lease.epoch > old_epoch and await _checkpoint(engine, topic) > at_freeze:
                break
            assert time.monotonic() - frozen_at < TAKEOVER_BOUND, "no takeover within 30 s"
            await asyncio.sleep(0.2)
        takeover = time.monotonic() - frozen_at
        assert lease.holder.split(":")[1] == str(second.pid)
        new_epoch = lease.epoch

        first.send_signal(signal.SIGCONT)
        resumed_ms = time.time() * 1000
        await asyncio.sleep(8)  # the old leader wakes, tries to publish and renew, and stands down
        appending = False
        await feeding
        async with engine.connect() as conn:
            stored = await eventstore.read_all(conn, eventstore.START, limit=100_000)
        deadline = time.monotonic() + 60
        while await _checkpoint(engine, topic) < stored[-1].global_position:
            assert time.monotonic() < deadline, "the new leader did not catch up"
            await asyncio.sleep(0.2)
        assert first.poll() is None, "the old leader crashed instead of standing down"
        assert (await _lease(engine, topic)).epoch == new_epoch  # it did not take the lease back
    finally:
        appending = False
        feeding.cancel()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)

    ids = {str(e.event_id) for e in stored}
    records = await _read_committed(topic, ids)
    on_topic = {dict(r.headers)["ce_id"].decode() for r in records}
    assert not ids - on_topic, f"{len(ids - on_topic)} events lost"
    zombie_after_resume = [r for r in records if dict(r.headers)["ledgerline_relay_epoch"].decode() == str(old_epoch)
                           and r.timestamp >= resumed_ms]
    assert zombie_after_resume == [], "the resumed old leader's messages became visible"
    # At least once, exactly once in effect: a re-sent event carries the same id and payload, and
    # each stream's first deliveries come in version order.
    by_id = defaultdict(set)
    first_seen: dict[str, list[int]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        h = {k: v.decode() for k, v in r.headers}
        if h["ce_id"] not in by_id:
            first_seen[h["ce_subject"]].append(int(h["ce_streamversion"]))
        by_id[h["ce_id"]].add(r.value)
    assert all(len(values) == 1 for values in by_id.values())
    for stream, versions in first_seen.items():
        assert versions == sorted(versions), stream
    print(f"takeover after SIGSTOP: {takeover:.1f}s; {len(records)} records for {len(ids)} events")


async def test_a_superseded_producer_is_fenced_by_kafka_and_its_sends_stay_invisible(platform_db):
    """The Kafka half of the fencing, on its own: an old leader that got past its lease check just
    before it froze sends its batch after the new leader's producer initialised the topic's
    transactional id; the broker refuses it and a read_committed consumer sees none of it."""
    import pytest
    from aiokafka.errors import KafkaError

    from shared.relay import OutboxRelay

    engine, _ = platform_db
    topic = await create_topic("fence", partitions=1)
    async with engine.begin() as conn:
        await eventstore.append(conn, "s", "s", 0, [NewEvent("Tested", 1, {"n": n}, datetime(2024, 1, 1, tzinfo=timezone.utc))
                                                   for n in range(5)])
    old, new = OutboxRelay(engine, KAFKA, "testctx", topic=topic), OutboxRelay(engine, KAFKA, "testctx", topic=topic)
    old_producer, new_producer = old.make_producer(), new.make_producer()
    await old_producer.start()
    await old_producer.begin_transaction()  # the old producer has its producer id and epoch
    await old_producer.abort_transaction()
    await new_producer.start()
    await new_producer.begin_transaction()  # the new leader initialises the same transactional id
    await new_producer.abort_transaction()
    try:
        with pytest.raises(KafkaError):
            await old.relay_once(old_producer)
        assert await _checkpoint(engine, topic) == 0
        assert await new.relay_once(new_producer) == 5
    finally:
        for producer in (old_producer, new_producer):
            try:
                await producer.stop()
            except KafkaError:
                pass
    records = await _read_committed(topic, set(), timeout=5)
    assert [int(dict(r.headers)["ce_streamversion"]) for r in records] == [1, 2, 3, 4, 5]


async def test_a_leader_frozen_inside_its_lease_transaction_is_replaced_once_postgresql_ends_it(platform_db):
    """The frozen leader's session is the relay's own engine (relay_engine, as `python -m
    shared.relay` makes it, with a 2 s idle-in-transaction timeout here), stopped right after the
    UPDATE that renews its lease and before the COMMIT: it holds the lease row's lock. Another
    relay takes over once PostgreSQL ends that idle transaction. Without the timeout (the
    stand-alone relay before this change) the lock stayed and nobody took over."""
    _, url = platform_db
    frozen_engine = relay_engine(url, idle_in_transaction_timeout=2.0)
    topic = f"frozen-in-tx-{uuid.uuid4().hex[:6]}"
    name = f"relay:{topic}"
    follower = None
    try:
        frozen = await frozen_engine.connect()
        await frozen.execute(text("INSERT INTO relay_leases (name, holder, epoch, expires_at)"
                                  " VALUES (:n, 'frozen:1:x', 1, now() + interval '1 second')"), {"n": name})
        await frozen.commit()
        # The renewing transaction, stopped before its COMMIT (as a SIGSTOP would leave it).
        await frozen.execute(text("UPDATE relay_leases SET expires_at = now() + interval '1 second'"
                                  " WHERE name = :n AND holder = 'frozen:1:x' AND epoch = 1"), {"n": name})
        frozen_at = time.monotonic()
        follower_engine = relay_engine(url)
        follower = OutboxRelay(follower_engine, KAFKA, "testctx", topic=topic, lease_seconds=1.0)
        task = asyncio.create_task(follower.run())
        while not follower.is_leader:
            assert not task.done(), task.result()
            assert time.monotonic() - frozen_at < 20, "no takeover within 20 s: the frozen lock was kept"
            await asyncio.sleep(0.05)
        waited = time.monotonic() - frozen_at
        follower.stop()
        await asyncio.wait_for(task, timeout=30)
        assert follower.epoch == 2
        assert 1.5 < waited < 10, waited  # after PostgreSQL ended the frozen transaction, not before
        with pytest.raises(DBAPIError):  # the frozen session was ended by the server
            await frozen.execute(text("SELECT 1"))
        await frozen.close()
    finally:
        await frozen_engine.dispose()
        if follower is not None:
            await follower.engine.dispose()
