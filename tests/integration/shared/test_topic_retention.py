"""Event topics keep everything: read models are rebuilt by replaying them from offset 0, so
Kafka's default 7-day retention would silently lose history. Checked on the real broker."""
from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

import yaml
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.support.infra import KAFKA
from tests.support.kafka import create_topic
from tests.support.platform import create_event_topics

ROOT = Path(__file__).resolve().parents[3]
PLATFORM_TOPICS = [f"ledgerline.{c}.events" for c in ("invoicing", "cash_application", "collections", "disputes")]
INFINITE = {"retention.ms": "-1", "retention.bytes": "-1"}
UNKNOWN_TOPIC = 3


async def retention(topics: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        for _ in range(20):  # a just-created topic is unknown (error 3) until its metadata spreads
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, t, configs=dict.fromkeys(INFINITE)) for t in topics])
            resources = [r for response in responses for r in response.resources]
            if all(code != UNKNOWN_TOPIC for code, *_ in resources):
                break
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    found: dict[str, dict[str, str]] = {}
    for code, message, _type, name, entries in resources:
        assert code == 0, (name, code, message)
        found[name] = {entry[0]: entry[1] for entry in entries}
    return found


async def test_the_topics_kafka_sh_creates_keep_every_record() -> None:
    found = await retention(PLATFORM_TOPICS)
    assert found == {t: INFINITE for t in PLATFORM_TOPICS}


async def test_kafka_sh_up_gives_an_existing_topic_infinite_retention() -> None:
    topic = PLATFORM_TOPICS[0]
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:  # as a topic created before the fix (or auto-created) would be: 7 days
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "604800000"})])
    finally:
        await admin.close()
    assert (await retention([topic]))[topic]["retention.ms"] == "604800000"

    done = subprocess.run(["bash", str(ROOT / "scripts" / "kafka.sh"), "up"], env=os.environ.copy(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert await retention([topic]) == {topic: INFINITE}


async def test_the_test_platform_and_test_topics_keep_every_record() -> None:
    topics = await create_event_topics(f"ret{uuid.uuid4().hex[:8]}")
    topics.append(await create_topic("retention"))
    found = await retention(topics)
    assert found == {t: INFINITE for t in topics}


def test_compose_and_kubernetes_create_the_topics_with_infinite_retention() -> None:
    script = (ROOT / "deploy" / "compose" / "create-topics.sh").read_text()
    assert "--config retention.ms=-1" in script and "--config retention.bytes=-1" in script
    documents = [d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "platform" / "kafka-topics.yaml").read_text()) if d]
    assert {d["spec"]["topicName"] for d in documents} == set(PLATFORM_TOPICS)
    for document in documents:
        config = document["spec"]["config"]
        assert (config["retention.ms"], config["retention.bytes"]) == (-1, -1), document["spec"]["topicName"]
