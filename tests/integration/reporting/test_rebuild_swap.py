"""The batch rebuild builds the new read model in a shadow schema and swaps it in with renames:
reports keep answering from the old model while the rebuild runs (even while it waits to swap
behind a long report), answer the new model after the swap, and the rebuilt model equals the
incrementally built one (issue 13, defect 8). Real PostgreSQL and Kafka."""
from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal

from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text

from shared.db import allow_long_idle

from reporting_book import book, feed, get, received, reporting, rich_book  # noqa: F401
from shared.contracts import CreditMemoIssued
from shared.relay import make_producer
from services.reporting.adapters.repository import FACT_TABLES
from services.reporting.application.rebuild import rebuild_from_topics
from services.reporting.main import definition
from services.reporting.settings import ReportingSettings
from tests.support.infra import KAFKA, service_client
from tests.support.kafka import create_topic

AGING = {"as_of": "2024-03-31", "currency": "USD"}


async def facts(engine) -> dict[str, list]:
    async with engine.connect() as conn:
        return {t: [tuple(r) for r in await conn.execute(text(f"SELECT * FROM {t} ORDER BY 1, 2, 3"))]
                for t in FACT_TABLES}


async def publish(topic: str, events) -> None:
    producer = make_producer(KAFKA, "reporting-swap-test")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topic, json.dumps(event.data).encode(), key=uuid.uuid4().bytes, headers=[
                ("ce_id", event.event_id.encode()), ("ce_type", event.event_type.encode()),
                ("ce_schemaversion", str(event.schema_version).encode())])
    finally:
        await producer.stop()


async def until_waiting_on_a_lock(engine, rebuild: asyncio.Task, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with engine.connect() as conn:
        while loop.time() < deadline:
            assert not rebuild.done(), rebuild.result()
            waiting = (await conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"))).scalar_one()
            await conn.rollback()
            if waiting:
                return
            await asyncio.sleep(0.02)
    raise AssertionError("the rebuild never reached its swap")


async def test_reports_answer_the_old_model_during_a_rebuild_and_the_new_one_after_the_swap(reporting):
    client, app = reporting
    engine = app.state.runtime.engine
    events = [received(e) for e in rich_book() + book()]
    late = received(CreditMemoIssued(credit_memo_id="CM-LATE", invoice_id="A", customer_id="C1", currency="USD",
                                     amount="10.00", issue_date="2024-03-30", reason="late"))
    topic, group = await create_topic("swap"), f"reporting-swap-{uuid.uuid4().hex[:8]}"
    try:
        await feed(engine, events)  # the live model knows everything but the late credit
        await publish(topic, events + [late])
        old_total = (await get(client, "/v1/reports/aging", **AGING))["total"]

        # A long report holds the live tables: the rebuild loads, then has to wait to swap.
        holder = await engine.connect()
        holder = await holder.execution_options(isolation_level="REPEATABLE READ")
        await holder.begin()
        await allow_long_idle(holder)  # a real long report is busy, not idle: keep this stand-in's session
        await holder.execute(text("SELECT count(*) FROM invoices"))
        said: list[str] = []
        rebuild = asyncio.create_task(rebuild_from_topics(engine, KAFKA, group, [topic], force=True,
                                                          say=said.append, progress=False))
        try:
            await until_waiting_on_a_lock(engine, rebuild)
            for _ in range(3):  # other reports are not queued behind the rebuild
                during = await asyncio.wait_for(get(client, "/v1/reports/aging", **AGING), timeout=5)
                assert during["total"] == old_total
            assert not rebuild.done()
        finally:
            await holder.rollback()
            await holder.close()
        assert await asyncio.wait_for(rebuild, timeout=60) == 0, said

        after = (await get(client, "/v1/reports/aging", **AGING))["total"]
        assert Decimal(old_total) - Decimal(after) == Decimal("10.00")
        async with engine.connect() as conn:
            offsets = (await conn.execute(text("SELECT sum(next_offset) FROM consumer_offsets WHERE consumer = :c"),
                                          {"c": group})).scalar_one()
            schemas = (await conn.execute(text("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'reporting_%'"))
                       ).scalar_one()
        assert offsets == len(events) + 1 and schemas == 0

        # Rebuilt = incremental: the same events fed one by one into a fresh read model.
        rebuilt = await facts(engine)
        async with service_client(lambda url: definition(ReportingSettings(database_url=url))) as (other, other_app):
            await feed(other_app.state.runtime.engine, events + [late])
            assert await facts(other_app.state.runtime.engine) == rebuilt
            assert (await get(other, "/v1/reports/aging", **AGING))["total"] == after
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
        await admin.start()
        await admin.delete_topics([topic])
        await admin.close()
