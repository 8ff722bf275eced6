"""Schema evolution across a rolling upgrade (issue 13, item 5), on the real runner, Kafka and
PostgreSQL: a new producer publishes its contract's next version (an extra field, version + 1)
and a type the old consumers do not know, while an old consumer runs. The old consumer applies
what it can read (unknown fields ignored), pauses the partition at the newer version (not
parked, not acknowledged, reason in its status), keeps the other partition going and records the
unknown type. Restarted with the new contract it resumes at the paused event and applies
everything exactly once. On the old code the v2 event was parked (and the unknown type silently
acknowledged): this test fails there."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import ClassVar

from sqlalchemy import text

from shared.consumer import ConsumerRunner
from shared.contracts.base import ContractRegistry, EventContract
from tests.integration.shared.test_consumer_poison import _produce, _run_until_stored
from tests.support.infra import KAFKA
from tests.support.kafka import ce_headers, create_topic
from tests.support.tally import TALLY_DDL, tally


def _registry(version: int) -> ContractRegistry:
    local = ContractRegistry()
    if version == 1:
        class Counted(EventContract):
            event_type: ClassVar[str] = "Counted"
            schema_version: ClassVar[int] = 1
            context: ClassVar[str] = "test"
            n: int
    else:
        class Counted(EventContract):  # type: ignore[no-redef]
            event_type: ClassVar[str] = "Counted"
            schema_version: ClassVar[int] = 2
            context: ClassVar[str] = "test"
            n: int
            weight: int

        @local.upcaster("Counted", 1)
        def v1_to_v2(data):
            return {**data, "weight": 1}
    local.register(Counted)
    return local


def _handler(group: str, contracts: ContractRegistry):
    async def handle(conn, event):
        contract = contracts.parse(event.event_type, event.schema_version, event.data)
        n = contract.n * getattr(contract, "weight", 1)
        await conn.execute(
            text("INSERT INTO tally (consumer, key, total, count) VALUES (:c, :k, :n, 1) ON CONFLICT (consumer, key)"
                 " DO UPDATE SET total = tally.total + excluded.total, count = tally.count + 1"),
            {"c": group, "k": event.subject, "n": n})
    return handle


def _msg(partition: int, subject: str, version: int, data: dict, event_type: str = "Counted"):
    return (partition, json.dumps(data).encode(), ce_headers(event_type, subject=subject, ce_schemaversion=str(version)))


async def test_new_producer_then_old_consumer_pauses_then_new_consumer_applies_everything_once(platform_db):
    engine, _ = platform_db
    async with engine.begin() as conn:
        await conn.execute(text(TALLY_DDL))
    topic = await create_topic("upgrade", partitions=2)
    messages = [
        _msg(0, "a", 1, {"n": 1}),
        _msg(0, "a", 1, {"n": 2, "note": "a field the v1 reader does not know"}),
        _msg(0, "a", 2, {"n": 3, "weight": 10}),          # the new producer's version
        _msg(0, "a", 1, {"n": 4}),
        _msg(0, "a", 1, {"n": 5}, event_type="Recounted"),  # a type no consumer knows yet
        _msg(1, "b", 1, {"n": 7}),
        _msg(1, "b", 1, {"n": 8}, event_type="Recounted"),
    ]
    placed = await _produce(topic, messages)
    group = f"g-{uuid.uuid4().hex[:8]}"
    old = _registry(1)
    runner = ConsumerRunner(engine, KAFKA, group, [topic], _handler(group, old), contracts=old)
    task = asyncio.create_task(runner.run())
    try:
        deadline = time.monotonic() + 60
        while True:
            async with engine.connect() as conn:
                stored = {r.partition: r.next_offset for r in await conn.execute(
                    text("SELECT partition, next_offset FROM consumer_offsets WHERE consumer = :c"), {"c": group})}
            if stored.get(0) == 2 and stored.get(1) == 2 and runner._paused:
                break
            assert time.monotonic() < deadline, (stored, runner.status())
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # still paused, nothing more applied
        ready, status = runner.status()
        assert not ready
        [(where, paused)] = status["paused"].items()
        assert where == f"{topic}/0" and paused["kind"] == "schema_version"
        assert "Counted v2" in paused["reason"] and "newer than this code knows (v1)" in paused["reason"]
        assert status["unknown_event_types"] == {"Recounted v1": 1}
    finally:
        runner.stop()
        await task
    async with engine.connect() as conn:
        assert await tally(conn, group) == {"a": (3, 2), "b": (7, 1)}
        assert (await conn.execute(text("SELECT count(*) FROM dead_letters"))).scalar() == 0
        assert (await conn.execute(text("SELECT next_offset FROM consumer_offsets WHERE consumer = :c AND partition = 0"),
                                   {"c": group})).scalar() == 2

    # The consumer is upgraded: it resumes at the v2 event.
    new = _registry(2)
    runner = ConsumerRunner(engine, KAFKA, group, [topic], _handler(group, new), contracts=new)
    await _run_until_stored(engine, runner, topic, {0: 5, 1: 2})
    async with engine.connect() as conn:
        assert await tally(conn, group) == {"a": (1 + 2 + 30 + 4, 4), "b": (7, 1)}
        unknown = (await conn.execute(text("SELECT event_type, schema_version, count, sample_topic"
                                           " FROM unknown_events WHERE consumer = :c"), {"c": group})).all()
    assert [tuple(u) for u in unknown] == [("Recounted", 1, 2, topic)]  # one from each consumer run
    assert runner.parked == 0
