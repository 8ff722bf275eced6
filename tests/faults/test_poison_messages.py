"""Poison messages produced straight to the event topics, interleaved with the valid events of a
steady write load: NUL bytes in the value and in headers, non-UTF-8 header bytes, a ce_time that
is not a timestamp, a non-integer ce_schemaversion, a value that is not JSON, a binary framed
payload starting with 0x00, a tombstone, a message without ce_type, and an event type no
consumer knows. No consumer stops: every poison message is parked (the dead-letters command
lists it, for every consumer of its topic), the unknown type is counted (/metrics), and the
valid events after them are applied (every read model equals what was accepted).

An event of a newer schema version than a consumer's contract is the one message that is not
parked: by design (docs/reliability.md, schema evolution) its partition pauses at it with the
reason in /readyz, so the last test sends it once everything else converged."""
from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from datetime import datetime, timezone

import httpx
from aiokafka import AIOKafkaProducer

from shared.contracts.base import with_topic_prefix
from tests.support.platform import CONTEXTS, PUBLISHERS

STEADY_S = 5
PARTITIONS = 3
A_TYPE = {"invoicing": "InvoiceIssued", "cash_application": "PaymentReceived",
          "collections": "PromiseToPayMade", "disputes": "DisputeOpened"}
UNKNOWN_TYPE = "FaultSuiteTeleported"


def _headers(event_type: str, **override: bytes | None) -> list[tuple[str, bytes]]:
    headers: dict[str, bytes | None] = {
        "ce_specversion": b"1.0", "ce_id": str(uuid.uuid4()).encode(), "ce_type": event_type.encode(),
        "ce_source": b"/faults", "ce_subject": f"poison-{uuid.uuid4().hex[:8]}".encode(),
        "ce_time": datetime.now(timezone.utc).isoformat().encode(), "ce_schemaversion": b"1",
        "content-type": b"application/json"}
    headers.update(override)
    return [(k, v) for k, v in headers.items() if v is not None]


def poison_kinds(event_type: str) -> dict[str, tuple[bytes | None, list[tuple[str, bytes]]]]:
    """kind -> (value, headers); every one must be parked by every consumer of the topic."""
    json_value = json.dumps({"poison": True, "invoice_id": "poison"}).encode()
    return {
        "nul-escape-in-value": (b'{"invoice_id": "in\\u0000voice", "poison": true}', _headers(event_type)),
        "nul-byte-in-value": (b'{"invoice_id": "in\x00voice"}', _headers(event_type)),
        "nul-in-header": (json_value, _headers(event_type, ce_subject=b"poison\x00subject")),
        "non-utf8-header": (json_value, _headers(event_type, ce_id=b"\xff\xfe\xfd-not-utf8")),
        "ce-time-not-a-timestamp": (json_value, _headers(event_type, ce_time=b"yesterday at noon")),
        "ce-schemaversion-not-an-integer": (json_value, _headers(event_type, ce_schemaversion=b"one")),
        "not-json": (b"this is not json {", _headers(event_type)),
        "binary-framed-0x00": (b"\x00\x00\x00\x00\x2a\x02\x10poison\xc3\x28\xff", _headers(event_type)),
        "tombstone": (None, _headers(event_type)),
        "no-ce-type": (json_value, _headers(event_type, ce_type=None)),
    }


def _consumers(prefix: str) -> dict[str, list[tuple[str, list[str]]]]:
    """context -> [(consumer group, its topics)] as the services define them."""
    import importlib

    out: dict[str, list[tuple[str, list[str]]]] = {}
    for context in CONTEXTS:
        definition = importlib.import_module(f"services.{context}.main").definition()
        out[context] = [(f"{prefix}.{spec.name}", [with_topic_prefix(t, prefix) for t in spec.topics])
                        for spec in definition.consumers]
    return out


async def _unknown_counted(client, url: str, group: str) -> int:
    r = await client.get(f"{url}/metrics")
    pattern = re.compile(r'^ledgerline_consumer_unknown_events_total\{([^}]*)\}\s+([0-9.e+]+)$', re.M)
    total = 0
    for labels, value in pattern.findall(r.text):
        if f'consumer="{group}"' in labels and f'event_type="{UNKNOWN_TYPE}"' in labels:
            total += int(float(value))
    return total


async def test_poison_messages_are_parked_and_valid_events_after_them_applied(faults):
    platform = faults.platform
    consumers = _consumers(platform.topic_prefix)
    async with faults.experiment("poison-messages", convergence_bound=180,
                                 description="poison messages of every kind produced to every partition of every"
                                             " topic, between the valid events of the load") as exp:
        await exp.hold(STEADY_S)
        producer = AIOKafkaProducer(bootstrap_servers=platform.endpoints.kafka, acks="all")
        await producer.start()
        produced: list[tuple[str, str, int, int]] = []  # (kind, topic, partition, offset)
        unknown: dict[str, int] = {}
        exp.mark("fault_start")
        try:
            kinds = list(poison_kinds("X")) + ["unknown-event-type"]
            for kind in kinds:  # each kind on every partition, then valid events from the load
                for context in PUBLISHERS:
                    topic = platform.topic(context)
                    for partition in range(PARTITIONS):
                        if kind == "unknown-event-type":
                            value, headers = json.dumps({"poison": True}).encode(), _headers(UNKNOWN_TYPE)
                            unknown[topic] = unknown.get(topic, 0) + 1
                        else:
                            value, headers = poison_kinds(A_TYPE[context])[kind]
                        meta = await (await producer.send(topic, value=value, key=b"poison", partition=partition,
                                                          headers=headers))
                        if kind != "unknown-event-type":
                            produced.append((kind, topic, partition, meta.offset))
                await exp.hold(0.5)
        finally:
            await producer.stop()
        exp.mark("fault_end")
        exp.figures["poison_messages"] = len(produced) + sum(unknown.values())
        await exp.hold(STEADY_S)
        await exp.converge()

        # Every poison message parked by every consumer of its topic (the operator's command).
        missing_seen: list[str] = []

        async def parked_probe():
            missing = []
            for context in CONTEXTS:
                rows = json.loads(await platform.cli(context, "dead-letters"))
                parked = {(r["consumer"], r["topic"], r["partition"], r["offset"]) for r in rows}
                for group, topics in consumers[context]:
                    for kind, topic, partition, offset in produced:
                        if topic in topics and (group, topic, partition, offset) not in parked:
                            missing.append(f"{group}: {kind} at {topic}/{partition}/{offset}")
            missing_seen[:] = missing
            return not missing
        try:
            _, took = await exp.wait_for("every poison message parked", parked_probe, bound=60, interval=2)
        except AssertionError as exc:
            raise AssertionError(f"{len(missing_seen)} poison messages not parked, e.g. {missing_seen[:8]}") from exc
        exp.figures["parked_visible_after_convergence_s"] = round(took, 2)

        # The unknown event type is counted by every consumer of the topics it was sent to.
        async with httpx.AsyncClient(timeout=10) as client:
            for context in CONTEXTS:
                url = platform.urls[context]
                for group, topics in consumers[context]:
                    expected = sum(n for topic, n in unknown.items() if topic in topics)
                    counted = await _unknown_counted(client, url, group)
                    exp.figures.setdefault("unknown_events_counted", {})[group] = counted
                    assert counted >= expected, f"{group} counted {counted} {UNKNOWN_TYPE} events, {expected} sent"

        # No consumer stopped: every instance still ready, every consumer healthy.
        async def all_ready():
            async with httpx.AsyncClient(timeout=5) as client:
                for context in CONTEXTS:
                    r = await client.get(f"{platform.urls[context]}/readyz")
                    if r.status_code != 200:
                        return None
            return True
        await exp.wait_for("every instance ready", all_ready, bound=60)


async def test_newer_schema_version_pauses_its_partition_with_the_reason(faults):
    """Issue 13 item 5: an event newer than the consumer's contract is neither parked nor skipped:
    its partition pauses at it, /readyz names the partition and the reason, and the next
    deployment of newer code resumes from it. Last in the module: the partition stays paused."""
    platform = faults.platform
    consumers = _consumers(platform.topic_prefix)
    topic = platform.topic("invoicing")
    producer = AIOKafkaProducer(bootstrap_servers=platform.endpoints.kafka, acks="all")
    await producer.start()
    try:
        value = json.dumps({"invoice_id": f"v99-{uuid.uuid4().hex[:6]}", "a_field_of_version_99": True}).encode()
        meta = await (await producer.send(topic, value=value, partition=0,
                                          headers=_headers("InvoiceIssued", ce_schemaversion=b"99")))
    finally:
        await producer.stop()
    readers = [(context, group) for context in CONTEXTS for group, topics in consumers[context] if topic in topics]
    assert readers, "no consumer reads the invoicing topic"
    seen: dict[str, object] = {}

    async def paused_everywhere():
        async with httpx.AsyncClient(timeout=5) as client:
            for context, group in readers:
                r = await client.get(f"{platform.urls[context]}/readyz")
                check = (r.json().get("checks") or {}).get(f"consumer:{group}") or {}
                paused = (check.get("paused") or {}).get(f"{topic}/0")
                seen[group] = {"status": r.status_code, "paused": paused}
                if not paused or "version" not in json.dumps(paused).lower():
                    return None
        return True
    deadline_s = 60
    try:
        await _poll(paused_everywhere, deadline_s)
    except AssertionError as exc:
        raise AssertionError(f"partition {topic}/0 not reported paused for the newer schema version within"
                             f" {deadline_s}s: {seen}") from exc
    # Not parked: a newer deployment must still find it on the partition.
    for context, group in readers:
        rows = json.loads(await platform.cli(context, "dead-letters"))
        assert not [r for r in rows if (r["topic"], r["partition"], r["offset"]) == (topic, 0, meta.offset)], \
            f"{group} parked the newer-version event instead of pausing at it"


async def _poll(probe, bound: float, interval: float = 1.0) -> None:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if await probe():
            return
        await asyncio.sleep(interval)
    raise AssertionError("condition not reached")
