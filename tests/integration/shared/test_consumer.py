"""Consumer runner on real PostgreSQL and Kafka: exactly-once effects, dead letters, crashes."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from sqlalchemy import text

from shared.consumer import ConsumerRunner
from tests.support.infra import KAFKA
from tests.support.kafka import ce_headers, create_topic, produce
from tests.support.tally import TALLY_DDL, batch_projection_for, handler_for, tally


@pytest.fixture
async def tally_db(platform_db):
    engine, url = platform_db
    async with engine.begin() as conn:
        await conn.execute(text(TALLY_DDL))
    return engine, url


async def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def _handled(engine, group: str) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM inbox WHERE consumer = :c"), {"c": group})).scalar()


async def test_redelivered_event_changes_nothing(tally_db):
    engine, _ = tally_db
    topic = await create_topic("redeliver")
    event_id = str(uuid.uuid4())
    await produce(topic, [("k1", {"n": 5}, ce_headers("Tested", event_id, subject="k1")),
                          ("k1", {"n": 5}, ce_headers("Tested", event_id, subject="k1")),  # the same event again
                          ("k1", {"n": 7}, ce_headers("Tested", subject="k1"))])
    group = f"g-{uuid.uuid4().hex[:6]}"
    runner = ConsumerRunner(engine, KAFKA, group, [topic], handler_for(group))
    task = asyncio.create_task(runner.run())
    try:
        await _wait_for(lambda: _offsets_total(engine, group, 3))
    finally:
        runner.stop()
        await task
    async with engine.connect() as conn:
        assert await tally(conn, group) == {"k1": (12, 2)}


async def test_a_batch_projection_applies_each_event_once_in_order(tally_db):
    """A Projection's apply_batch gets a partition's fresh events in offset order, in one call:
    a duplicate inside the batch is dropped by the inbox, a poison event makes the batch fall
    back to one by one (parked, the rest applied once), and the whole batch delivered again
    (stored offsets lost) changes nothing."""
    engine, _ = tally_db
    topic = await create_topic("batched", partitions=1)
    twice = str(uuid.uuid4())
    ids = [str(uuid.uuid4()) for _ in range(6)]
    await produce(topic, [("a", {"n": 1}, ce_headers("Tested", ids[0], subject="a")),
                          ("b", {"n": 10}, ce_headers("Tested", twice, subject="b")),
                          ("b", {"n": 10}, ce_headers("Tested", twice, subject="b")),  # duplicate in the batch
                          ("a", {"n": 2}, ce_headers("Tested", ids[1], subject="a")),
                          ("b", {"n": 20}, ce_headers("Tested", ids[2], subject="b"))])
    group = f"g-{uuid.uuid4().hex[:6]}"
    calls: list[list[str]] = []
    runner = ConsumerRunner(engine, KAFKA, group, [topic], batch_projection_for(group, calls))
    task = asyncio.create_task(runner.run())
    try:
        await _wait_for(lambda: _offsets_total(engine, group, 5))
    finally:
        runner.stop()
        await task
    assert [e for call in calls for e in call] == [ids[0], twice, ids[1], ids[2]]
    async with engine.connect() as conn:
        assert await tally(conn, group) == {"a": (3, 2), "b": (30, 2)}

    # A poison event in the next batch: the batch falls back to one by one.
    await produce(topic, [("a", {"n": 4}, ce_headers("Tested", ids[3], subject="a")),
                          ("b", {"n": 1, "poison": True}, ce_headers("Tested", ids[4], subject="b")),
                          ("b", {"n": 40}, ce_headers("Tested", ids[5], subject="b"))])
    calls.clear()
    runner = ConsumerRunner(engine, KAFKA, group, [topic], batch_projection_for(group, calls), max_attempts=2,
                            backoff_seconds=0.01)
    task = asyncio.create_task(runner.run())
    try:
        await _wait_for(lambda: _offsets_total(engine, group, 8))
    finally:
        runner.stop()
        await task
    assert runner.parked == 1
    async with engine.connect() as conn:
        assert await tally(conn, group) == {"a": (7, 3), "b": (70, 3)}

    # Every batch delivered again from offset 0: the inbox makes it a no-op.
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM consumer_offsets WHERE consumer = :c"), {"c": group})
    calls.clear()
    runner = ConsumerRunner(engine, KAFKA, group, [topic], batch_projection_for(group, calls))
    task = asyncio.create_task(runner.run())
    try:
        await _wait_for(lambda: _offsets_total(engine, group, 8))
    finally:
        runner.stop()
        await task
    assert calls == [] and runner.handled == 8  # 8 deliveries dealt with, none applied
    async with engine.connect() as conn:
        assert await tally(conn, group) == {"a": (7, 3), "b": (70, 3)}


async def _offsets_total(engine, group: str, expected: int) -> bool:
    async with engine.connect() as conn:
        total = (await conn.execute(text("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE consumer = :c"),
                                    {"c": group})).scalar()
    return total >= expected


async def test_poison_event_is_parked_and_the_partition_moves_on(tally_db):
    engine, _ = tally_db
    topic = await create_topic("poison", partitions=1)
    await produce(topic, [("k", {"n": 1}, ce_headers("Tested", subject="k")),
                          ("k", {"n": 2, "poison": True}, ce_headers("Tested", subject="k")),
                          ("k", b"not json at all", ce_headers("Tested", subject="k")),
                          ("k", {"n": 3}, ce_headers("Tested", subject="k"))])
    group = f"g-{uuid.uuid4().hex[:6]}"
    runner = ConsumerRunner(engine, KAFKA, group, [topic], handler_for(group), max_attempts=3, backoff_seconds=0.01)
    task = asyncio.create_task(runner.run())
    try:
        await _wait_for(lambda: _offsets_total(engine, group, 4))
    finally:
        runner.stop()
        await task
    async with engine.connect() as conn:
        assert await tally(conn, group) == {"k": (4, 2)}
        parked = (await conn.execute(text("SELECT \"offset\", attempts, error FROM dead_letters WHERE consumer = :c"
                                          " ORDER BY \"offset\""), {"c": group})).all()
    assert [(p.offset, p.attempts) for p in parked] == [(1, 3), (2, 1)]
    assert "never be handled" in parked[0].error and "not JSON" in parked[1].error
    assert runner.parked == 2


async def test_stored_offsets_win_over_kafka_on_assignment(tally_db):
    """The database's offsets are the truth: a restarted consumer resumes exactly there."""
    engine, _ = tally_db
    topic = await create_topic("seek", partitions=1)
    await produce(topic, [("k", {"n": i}, ce_headers("Tested", subject="k")) for i in range(1, 6)])
    group = f"g-{uuid.uuid4().hex[:6]}"
    async with engine.begin() as conn:  # pretend offsets 0..2 were handled before
        await conn.execute(text("INSERT INTO consumer_offsets (consumer, topic, partition, next_offset)"
                                " VALUES (:c, :t, 0, 3)"), {"c": group, "t": topic})
    runner = ConsumerRunner(engine, KAFKA, group, [topic], handler_for(group))
    task = asyncio.create_task(runner.run())
    try:
        await _wait_for(lambda: _offsets_total(engine, group, 5))
    finally:
        runner.stop()
        await task
    async with engine.connect() as conn:
        assert await tally(conn, group) == {"k": (4 + 5, 2)}


async def test_consumer_killed_mid_stream_converges_to_the_uncrashed_model(tally_db):
    engine, url = tally_db
    topic = await create_topic("crash")
    messages = [(f"k{i % 17}", {"n": i}, ce_headers("Tested", subject=f"k{i % 17}")) for i in range(4000)]
    await produce(topic, messages)
    crashed = f"crash-{uuid.uuid4().hex[:6]}"
    calm = f"calm-{uuid.uuid4().hex[:6]}"

    def start():
        return subprocess.Popen([sys.executable, "-m", "tests.support.tally", url, topic, crashed],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})

    proc = start()
    handled_at_kill = []
    try:
        # Kill it whenever it has made some progress, so each kill lands mid-stream.
        for threshold in (400, 1400, 2400, 3400):
            await _wait_for(lambda: _count_is(engine, crashed, threshold), timeout=120)
            handled_at_kill.append(await _handled(engine, crashed))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc = start()
        await _wait_for(lambda: _count_is(engine, crashed, 4000), timeout=120)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    runner = ConsumerRunner(engine, KAFKA, calm, [topic], handler_for(calm))
    task = asyncio.create_task(runner.run())
    try:
        await _wait_for(lambda: _count_is(engine, calm, 4000), timeout=120)
    finally:
        runner.stop()
        await task
    async with engine.connect() as conn:
        crashed_model = await tally(conn, crashed)
        calm_model = await tally(conn, calm)
    assert sum(1 for n in handled_at_kill if n < 4000) >= 3, handled_at_kill  # really mid-stream
    assert crashed_model == calm_model
    assert sum(count for _, count in calm_model.values()) == 4000


async def _count_is(engine, group: str, n: int) -> bool:
    return await _handled(engine, group) >= n


async def test_a_record_below_the_stored_offset_is_never_handled_again(tally_db):
    """Kafka may hand out records before the seek to the stored offset lands (or to two members
    during a rebalance): the stored offset, read under a row lock, decides."""
    from aiokafka.structs import ConsumerRecord

    engine, _ = tally_db
    group = f"g-{uuid.uuid4().hex[:6]}"
    runner = ConsumerRunner(engine, KAFKA, group, ["t"], handler_for(group))

    def record(offset: int, n: int, value: bytes | None = None) -> ConsumerRecord:
        import json
        return ConsumerRecord(topic="t", partition=0, offset=offset, timestamp=0, timestamp_type=0, key=b"k",
                              value=value if value is not None else json.dumps({"n": n}).encode(),
                              checksum=None, serialized_key_size=1, serialized_value_size=1,
                              headers=ce_headers("Tested", subject="k"))

    await runner.process(record(0, 1))
    await runner.process(record(1, 2))
    await runner.process(record(0, 100))  # a different event id, but offset 0 is already behind us
    await runner.process(record(1, 0, value=b"garbage"))  # nor is an old offset parked
    async with engine.connect() as conn:
        assert await tally(conn, group) == {"k": (3, 2)}
        assert (await conn.execute(text("SELECT count(*) FROM dead_letters"))).scalar() == 0
    assert runner.handled == 2 and runner.parked == 0


async def test_a_parked_event_can_be_replayed_once_its_cause_is_fixed(tally_db):
    from aiokafka.structs import ConsumerRecord

    from shared import dead_letters

    engine, _ = tally_db
    group = f"g-{uuid.uuid4().hex[:6]}"
    broken_handler_calls = []

    async def broken(conn, event):
        broken_handler_calls.append(event.event_id)
        raise RuntimeError("bug in the projection")

    runner = ConsumerRunner(engine, KAFKA, group, ["t"], broken, max_attempts=2, backoff_seconds=0.01)
    import json
    record = ConsumerRecord(topic="t", partition=0, offset=0, timestamp=0, timestamp_type=0, key=b"k",
                            value=json.dumps({"n": 42}).encode(), checksum=None, serialized_key_size=1,
                            serialized_value_size=1, headers=ce_headers("Tested", subject="k"))
    await runner.process(record)
    assert len(broken_handler_calls) == 2 and runner.parked == 1
    [row] = await dead_letters.parked(engine, group)
    # The fix is deployed: replay with the corrected handler.
    result = await dead_letters.replay(engine, row["id"], {group: handler_for(group)})
    assert result["replayed"] is True
    async with engine.connect() as conn:
        assert await tally(conn, group) == {"k": (42, 1)}
    assert await dead_letters.parked(engine, group) == []
    with pytest.raises(dead_letters.ReplayRefused):
        await dead_letters.replay(engine, row["id"], {group: handler_for(group)})
    async with engine.connect() as conn:
        assert await tally(conn, group) == {"k": (42, 1)}  # not twice
