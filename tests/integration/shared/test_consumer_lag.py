"""The consumer's lag gauge reaches 0 once a partition is read to its end, also when a
transactional producer (the relay) wrote it: each commit marker takes an offset after the
transaction's last record. On the old runner the gauge stayed at 1 for ever."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

from aiokafka import TopicPartition
from sqlalchemy import text

from shared.consumer import LAG, ConsumerRunner
from tests.integration.shared.test_consumer_poison import _produce
from tests.support.infra import KAFKA
from tests.support.kafka import ce_headers, create_topic
from tests.support.tally import TALLY_DDL, handler_for, tally


async def test_a_partition_read_to_its_end_shows_no_lag_after_transactions(platform_db):
    engine, _ = platform_db
    async with engine.begin() as conn:
        await conn.execute(text(TALLY_DDL))
    topic = await create_topic("lag-markers", partitions=1)
    messages = [(0, json.dumps({"n": n}).encode(), ce_headers("Tested", subject="k")) for n in range(1, 7)]
    placed = await _produce(topic, messages, transactions=3)  # two transactions: offsets 0-2, 4-6
    assert [offset for _, offset in placed] == [0, 1, 2, 4, 5, 6]
    group = f"g-{uuid.uuid4().hex[:8]}"
    runner = ConsumerRunner(engine, KAFKA, group, [topic], handler_for(group))
    tp = TopicPartition(topic, 0)
    task = asyncio.create_task(runner.run())
    try:
        deadline = time.monotonic() + 60
        while True:
            async with engine.connect() as conn:
                counted = await tally(conn, group)
            if counted == {"k": (21, 6)} and runner.lag.get(tp) == 0:
                break
            assert not task.done(), task.result()
            assert time.monotonic() < deadline, f"tally {counted}, lag {runner.lag}"
            await asyncio.sleep(0.1)
        assert LAG.labels(group, topic, 0)._value.get() == 0
        assert runner.status()[1]["lag"] == {f"{topic}/0": 0}
    finally:
        runner.stop()
        await task
