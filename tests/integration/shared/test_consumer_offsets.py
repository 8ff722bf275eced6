"""Offsets (issue 13, item 4): only the offset the database stored is ever committed to Kafka,
and a seek to the stored offset that fails pauses the partition and is retried, never skips.
Both fail on the old runner: it committed records[-1] + 1 after a batch that stop interrupted,
and when the seek on assignment failed aiokafka only logged it and the runner went on from
Kafka's committed offset, past events the database had not stored."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text

from shared.consumer import ConsumerRunner
from shared.db import make_engine
from tests.integration.shared.test_consumer_poison import _produce, _run_until_stored
from tests.support.infra import KAFKA, asyncpg_dsn
from tests.support.kafka import ce_headers, create_topic
from tests.support.tally import TALLY_DDL, handler_for, tally


def _event(n: int):
    return json.dumps({"n": n}).encode(), ce_headers("Tested", subject="k")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn("postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _kafka_committed(group: str, tp: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.committed(tp)
    finally:
        await consumer.stop()


async def test_stop_mid_batch_commits_to_kafka_only_what_the_database_stored(platform_db):
    engine, _ = platform_db
    async with engine.begin() as conn:
        await conn.execute(text(TALLY_DDL))
    topic = await create_topic("stop-mid-batch", partitions=1)
    # One fetch: three events, an undecodable one, six more. The handler stops the runner while
    # it handles the first three, so the rest of the batch is left for the next run.
    messages = [(0, *_event(n)) for n in (1, 2, 3)] + [(0, b"\x00garbage", ce_headers("Tested", subject="k"))]
    messages += [(0, *_event(n)) for n in range(4, 10)]
    await _produce(topic, messages)
    group = f"g-{uuid.uuid4().hex[:8]}"
    inner = handler_for(group)
    runner: ConsumerRunner

    async def stopping(conn, event):
        await inner(conn, event)
        runner.stop()

    runner = ConsumerRunner(engine, KAFKA, group, [topic], stopping)
    await asyncio.wait_for(runner.run(), timeout=60)
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT next_offset FROM consumer_offsets WHERE consumer = :c"),
                                     {"c": group})).scalar()
        assert await tally(conn, group) == {"k": (6, 3)}
    assert stored == 3
    assert await _kafka_committed(group, TopicPartition(topic, 0)) == 3

    # The next run goes on from there: nothing lost, nothing twice.
    runner = ConsumerRunner(engine, KAFKA, group, [topic], inner)
    await _run_until_stored(engine, runner, topic, {0: 10})
    async with engine.connect() as conn:
        assert await tally(conn, group) == {"k": (sum(range(1, 10)), 9)}
    assert await _kafka_committed(group, TopicPartition(topic, 0)) == 10


async def test_a_failed_seek_on_assignment_pauses_and_retries_instead_of_skipping(platform_db):
    engine, url = platform_db
    database = url.rsplit("/", 1)[1]
    async with engine.begin() as conn:
        await conn.execute(text(TALLY_DDL))
    topic = await create_topic("failed-seek", partitions=1)
    await _produce(topic, [(0, *_event(n)) for n in range(10)])
    group = f"g-{uuid.uuid4().hex[:8]}"
    tp = TopicPartition(topic, 0)
    # The database stored offset 2; Kafka's committed offset for the group says 5.
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO consumer_offsets (consumer, topic, partition, next_offset)"
                                " VALUES (:c, :t, 0, 2)"), {"c": group, "t": topic})
    ahead = AIOKafkaConsumer(bootstrap_servers=KAFKA, group_id=group, enable_auto_commit=False)
    await ahead.start()
    ahead.assign([tp])
    await ahead.commit({tp: 5})
    await ahead.stop()

    # The database refuses new connections while the runner joins the group and seeks.
    await _admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    runner_engine = make_engine(url, pool_size=2)
    handler = handler_for(group)
    runner = ConsumerRunner(runner_engine, KAFKA, group, [topic], handler, max_backoff_seconds=1.0)
    task = asyncio.create_task(runner.run())
    try:
        deadline = time.monotonic() + 60
        while not runner._paused:
            assert time.monotonic() < deadline, "partition never paused"
            assert not task.done(), task.result()
            await asyncio.sleep(0.1)
        ready, status = runner.status()
        # aiokafka starts fetching from Kafka's committed offset while the listener still waits
        # for the database, so the records may arrive before the pause: the stored offset, read
        # under its row lock before anything is handled, refuses them (kind "gap"), or the
        # database being unreachable pauses the partition (kind "transient"). Never a skip.
        assert not ready and status["paused"][f"{topic}/0"]["kind"] in ("seek", "transient", "gap")
        await asyncio.sleep(2)  # fetching from Kafka's offset 5 now would skip 2..4
    finally:
        await _admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    try:
        deadline = time.monotonic() + 60
        while True:
            async with engine.connect() as conn:
                stored = (await conn.execute(text("SELECT next_offset FROM consumer_offsets WHERE consumer = :c"),
                                             {"c": group})).scalar()
            if stored == 10:
                break
            assert time.monotonic() < deadline, f"stuck at {stored}"
            await asyncio.sleep(0.1)
    finally:
        runner.stop()
        await task
        await runner_engine.dispose()
    async with engine.connect() as conn:
        assert await tally(conn, group) == {"k": (sum(range(2, 10)), 8)}
