"""Helpers for tests against the real local Kafka broker."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.support.infra import KAFKA

# Event topics keep everything (Kafka's default would drop records after 7 days): read models
# are rebuilt by replaying them from offset 0. scripts/kafka.sh and the deploy files say the same.
EVENT_TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1"}


async def create_topic(prefix: str, partitions: int = 3) -> str:
    name = f"ll-test-{prefix}-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                            topic_configs=EVENT_TOPIC_CONFIG)])
    finally:
        await admin.close()
    return name


def ce_headers(event_type: str, event_id: str | None = None, subject: str = "s", **extra: str) -> list[tuple[str, bytes]]:
    headers = {"ce_specversion": "1.0", "ce_id": event_id or str(uuid.uuid4()), "ce_type": event_type,
               "ce_source": "/tests", "ce_subject": subject, "ce_schemaversion": "1", **extra}
    return [(k, v.encode()) for k, v in headers.items()]


async def produce(topic: str, messages: list[tuple[str, Any, list[tuple[str, bytes]]]]) -> None:
    """messages: (key, value (dict, or bytes sent raw), headers)."""
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        futures = []
        for key, value, headers in messages:
            raw = value if isinstance(value, bytes) else json.dumps(value).encode()
            futures.append(await producer.send(topic, raw, key=key.encode(), headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(topic: str, expect: int, timeout: float = 60.0) -> list[Any]:
    """Read a topic from the start until `expect` records arrived or the timeout passed."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=KAFKA, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
    finally:
        await consumer.stop()
    return records
