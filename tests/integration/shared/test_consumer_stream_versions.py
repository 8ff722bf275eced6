"""Consumers detect a gap or a reordering in a stream's versions (ce_subject + ce_streamversion,
sent by the relay) and say so: a metric, a warning and a stream_anomalies row. A redelivery of a
handled event is a no-op through the inbox, counted but not an anomaly. (No such check existed
before issue 13: this test fails on the old code.)"""
from __future__ import annotations

import uuid

from sqlalchemy import text

from shared.consumer import STREAM_ANOMALIES, ConsumerRunner
from tests.integration.shared.test_consumer_poison import _produce, _run_until_stored
from tests.support.infra import KAFKA
from tests.support.kafka import ce_headers, create_topic
from tests.support.tally import TALLY_DDL, handler_for, tally


def _event(n: int, stream: str, version: int, event_id: str | None = None):
    import json
    return json.dumps({"n": n}).encode(), ce_headers("Tested", event_id, subject=stream, ce_streamversion=str(version))


async def test_gaps_and_reorderings_are_recorded_and_redeliveries_are_not(platform_db):
    engine, _ = platform_db
    async with engine.begin() as conn:
        await conn.execute(text(TALLY_DDL))
    topic = await create_topic("versions", partitions=1)
    again = str(uuid.uuid4())
    messages = [(0, *_event(1, "A", 1)), (0, *_event(2, "A", 2, again)), (0, *_event(2, "A", 2, again)),  # redelivery
                (0, *_event(4, "A", 4)), (0, *_event(3, "A", 3)),  # v3 published after v4
                (0, *_event(1, "B", 1)), (0, *_event(2, "B", 2))]
    # Sent as the relay sends, in Kafka transactions: every commit marker takes an offset, so a
    # partition's offsets have holes and a stored offset can point at a marker.
    group = f"g-{uuid.uuid4().hex[:8]}"
    before = {k: STREAM_ANOMALIES.labels(group, k)._value.get() for k in ("gap", "out_of_order")}
    placed = await _produce(topic, messages[:3], transactions=3)
    await _run_until_stored(engine, ConsumerRunner(engine, KAFKA, group, [topic], handler_for(group)),
                            topic, {0: placed[-1][1] + 1})
    placed = await _produce(topic, messages[3:], transactions=2)
    runner = ConsumerRunner(engine, KAFKA, group, [topic], handler_for(group))
    await _run_until_stored(engine, runner, topic, {0: placed[-1][1] + 1})
    assert placed[0][1] == 4  # the first run stored 3: the first transaction's commit marker
    async with engine.connect() as conn:
        anomalies = [tuple(r) for r in await conn.execute(text(
            "SELECT stream_id, kind, expected_version, received_version FROM stream_anomalies WHERE consumer = :c"
            " ORDER BY id"), {"c": group})]
        versions = dict(tuple(r) for r in await conn.execute(text(
            "SELECT stream_id, version FROM consumer_stream_versions WHERE consumer = :c"), {"c": group}))
        assert await tally(conn, group) == {"A": (10, 4), "B": (3, 2)}
    assert anomalies == [("A", "gap", 3, 4), ("A", "out_of_order", 5, 3)]
    assert versions == {"A": 4, "B": 2}
    assert STREAM_ANOMALIES.labels(group, "gap")._value.get() - before["gap"] == 1
    assert STREAM_ANOMALIES.labels(group, "out_of_order")._value.get() - before["out_of_order"] == 1
