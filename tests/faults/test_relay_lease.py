"""The outbox relay's leader frozen (SIGSTOP) under steady write load, a second instance
standing by: the second must take the lease over within 30 s and publish; once everything
converged, the old leader is resumed (SIGCONT) and must publish nothing (fencing): a
read_committed consumer (as every consumer of the platform reads) sees no record appear on the
topic after the resume, and the old leader no longer claims the lease.

Fault: from the freeze to the takeover; the recovery time runs from the takeover to the moment
every read model equals what was accepted."""
from __future__ import annotations

import asyncio
import signal
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

STEADY_S = 5
TAKEOVER_BOUND_S = 30


async def _relay(url: str) -> dict[str, Any] | None:
    """The relay check of an instance's /readyz (None when it does not answer)."""
    try:
        async with httpx.AsyncClient(timeout=3) as client:
            r = await client.get(f"{url}/readyz")
        return (r.json().get("checks") or {}).get("relay") or {}
    except (httpx.HTTPError, ValueError):
        return None


async def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = await consumer.end_offsets(partitions)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def _visible_since(bootstrap: str, topic: str, since: dict[int, int], seconds: float = 5.0) -> list[Any]:
    """Records a read_committed consumer sees on `topic` from the offsets `since` (aborted
    transactions, such as a fenced producer's, stay invisible)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in since]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, since[tp.partition])
        seen: list[Any] = []
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                seen.extend(records)
        return seen
    finally:
        await consumer.stop()


@pytest.mark.parametrize("context", ["invoicing", "cash_application"])
async def test_relay_leader_frozen_then_resumed(faults, context):
    platform = faults.platform
    topic = platform.topic(context)
    async with faults.experiment(f"relay-leader-sigstop-{context}", convergence_bound=120,
                                 description=f"the {context} relay leader SIGSTOPped beside a standby instance;"
                                             " SIGCONT after convergence") as exp:
        await exp.hold(STEADY_S)
        leader = platform.instances[context][0]
        standby = await platform.start(context)
        exp.mark("standby_ready")

        async def roles():
            a, b = await _relay(leader.url), await _relay(standby.url)
            return (a, b) if a and b and a.get("leader") is True and b.get("leader") is False else None
        await exp.wait_for("one leader and one standby", roles, bound=30)

        platform.make_primary(standby)  # the load balancer stops sending requests to the leader
        exp.mark("fault_start")
        leader.signal(signal.SIGSTOP)
        published_at_takeover: list[int] = []

        async def took_over():
            relay = await _relay(standby.url)
            if relay and relay.get("leader") is True and (relay.get("published") or 0) > 0:
                published_at_takeover.append(relay.get("published"))
                return True
            return None
        _, takeover = await exp.wait_for("the standby leading and publishing", took_over,
                                         bound=TAKEOVER_BOUND_S + 30)
        exp.mark("fault_end")
        exp.figures["takeover_s"] = round(takeover, 2)
        assert takeover <= TAKEOVER_BOUND_S, f"takeover took {takeover:.1f}s (bound {TAKEOVER_BOUND_S}s)"
        await exp.hold(STEADY_S)
        await exp.converge()  # the load stops; the new leader published everything

        before = await _end_offsets(platform.endpoints.kafka, topic)
        exp.mark("resume")
        leader.signal(signal.SIGCONT)

        async def answers_as_follower():
            relay = await _relay(leader.url)
            return relay if relay is not None and relay.get("leader") is not True else None
        resumed, took = await exp.wait_for("the resumed leader answering, not leading", answers_as_follower, bound=30)
        exp.figures["resumed_answers_as_follower_s"] = round(took, 2)
        await exp.hold(STEADY_S)  # time for a resumed, unfenced relay to send what it held
        visible = await _visible_since(platform.endpoints.kafka, topic, before)
        after = await _end_offsets(platform.endpoints.kafka, topic)
        exp.figures["offsets_written_after_resume"] = sum(after.values()) - sum(before.values())
        exp.figures["records_visible_after_resume"] = len(visible)
        assert not visible, (f"the resumed old leader published {len(visible)} records, e.g."
                             f" {[dict(r.headers).get('ce_id') for r in visible[:3]]}")
        relay = await _relay(leader.url)
        assert relay is not None and relay.get("leader") is not True, f"the resumed leader claims the lease: {relay}"

        # Back to one instance, as the next experiment expects.
        leader.terminate()
        platform.forget(leader)
