"""A service's relay and consumers have a database pool of their own: however busy its API's pool
is, events keep being published. When they shared the API's pool, a running request took every
connection returned before the waiting relay could (asyncio's queue under SQLAlchemy's pool is not
fair), so under load the relay waited 10-20 s between batches; with the API's pool fully held
here, it never got a connection at all and this test fails on that code."""
from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text

from services.invoicing.main import definition
from services.invoicing.settings import InvoicingSettings
from shared import eventstore
from shared.db import make_engine
from shared.eventstore import NewEvent
from shared.service import Runtime
from shared.contracts.base import topic_for
from tests.support.infra import KAFKA, fresh_database, sqlalchemy_url
from tests.support.kafka import EVENT_TOPIC_CONFIG


async def test_the_relay_publishes_while_every_api_connection_is_taken():
    prefix = f"ll-test-wp{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic_for("invoicing", prefix), num_partitions=1, replication_factor=1,
                                            topic_configs=EVENT_TOPIC_CONFIG)])
    finally:
        await admin.close()
    async with fresh_database("workers") as name:
        url = sqlalchemy_url(name)
        runtime = Runtime(definition(InvoicingSettings(database_url=url, kafka_bootstrap_servers=KAFKA,
                                                       topic_prefix=prefix, role="worker")))
        writer = make_engine(url, pool_size=1)
        held = []
        try:
            await runtime.migrate()
            # Every connection of the API's pool in use, as under a burst of requests.
            for _ in range(runtime.settings.db_pool_size + runtime.settings.db_pool_overflow):
                held.append(await runtime.engine.connect())
            runtime.start_workers()
            async with writer.begin() as conn:
                await eventstore.append(conn, "customer:W1", "customer", 0, [NewEvent(
                    "Tested", 1, {"n": 1}, datetime(2024, 1, 1, tzinfo=timezone.utc))])
            published = 0
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not published:
                async with writer.connect() as conn:
                    published = (await conn.execute(text(
                        "SELECT coalesce(max(global_position), 0) FROM event_checkpoints"
                        " WHERE name LIKE 'relay:%'"))).scalar_one()
                await asyncio.sleep(0.2)
            assert published >= 1, "the relay published nothing while the API's pool was busy"
            assert runtime.relay is not None and runtime.relay.engine is not runtime.engine
        finally:
            for conn in held:
                await conn.close()
            await runtime.stop_workers()
            await runtime.dispose()
            await writer.dispose()
