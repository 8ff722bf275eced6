"""make bench: throughput of the platform mechanisms on this machine, each beside its raw
baseline measured in the same run.

- append:   shared.eventstore.append (one statement: head read, expected-version check, insert;
            JSON) vs plain asyncpg executemany of the same rows into a bare table, and into a
            table with the event store's keys and indexes; same batches, same concurrency.
- relay:    shared.relay.OutboxRelay (read committed-safe, CloudEvents headers, acks=all, one
            Kafka transaction per batch, checkpoint) vs a plain aiokafka producer (acks=all, idempotent) sending the same
            messages.
- project:  shared.consumer.ConsumerRunner (one transaction per partition batch with inbox,
            stream versions and offsets) applying a one-row upsert projection, per event and as a
            set-based Projection (one unnest upsert per batch), vs a plain aiokafka consumer
            COPYing the same events with the partition's offset per batch (the ceiling of a
            consumer that writes), and the same consumer doing no database work at all.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import text

from shared import eventstore
from shared.consumer import ConsumerRunner, Projection
from shared.db import apply_migrations, make_engine, sql_files
from shared.relay import OutboxRelay, cloudevent_headers
from tests.support.infra import KAFKA, asyncpg_dsn, fresh_database, sqlalchemy_url
from tests.support.kafka import create_topic

EVENTS = int(os.environ.get("BENCH_EVENTS", "20000"))
BATCH = 10          # events per appending transaction (a command's events)
WRITERS = 8         # concurrent appending transactions
OCCURRED = datetime(2024, 1, 1, tzinfo=timezone.utc)


def payload(n: int) -> dict:
    return {"invoice_id": f"inv-{n}", "customer_id": f"cus-{n % 500}", "currency": "USD",
            "total_amount": f"{n % 9000 + 100}.25", "issue_date": "2024-01-01", "due_date": "2024-01-31"}


async def bench_append(engine, dsn: str) -> tuple[float, float]:
    batches = [list(range(i, min(i + BATCH, EVENTS))) for i in range(0, EVENTS, BATCH)]
    queue: asyncio.Queue = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)

    async def writer():
        while not queue.empty():
            batch = queue.get_nowait()
            async with engine.begin() as conn:
                await eventstore.append(conn, f"invoice-{batch[0]}", "invoice", 0, [
                    eventstore.NewEvent("InvoiceIssued", 1, payload(n), OCCURRED) for n in batch])

    start = time.perf_counter()
    await asyncio.gather(*[writer() for _ in range(WRITERS)])
    store_rate = EVENTS / (time.perf_counter() - start)

    pool = await asyncpg.create_pool(dsn, min_size=WRITERS, max_size=WRITERS)
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE raw_events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                           " stream_id text, version int, event_id uuid, event_type text, occurred_at timestamptz,"
                           " payload jsonb)")
    import json
    for b in batches:
        queue.put_nowait(b)

    async def raw_writer():
        while not queue.empty():
            batch = queue.get_nowait()
            async with pool.acquire() as conn, conn.transaction():
                await conn.executemany(
                    "INSERT INTO raw_events (stream_id, version, event_id, event_type, occurred_at, payload)"
                    " VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
                    [(f"invoice-{batch[0]}", i + 1, uuid.uuid4(), "InvoiceIssued", OCCURRED, json.dumps(payload(n)))
                     for i, n in enumerate(batch)])

    start = time.perf_counter()
    await asyncio.gather(*[raw_writer() for _ in range(WRITERS)])
    raw_rate = EVENTS / (time.perf_counter() - start)

    # The same rows into a table with the event store's keys and indexes (event_id unique,
    # (stream_id, version) unique, (commit_order, global_position)): what the schema costs,
    # apart from the mechanism.
    async with pool.acquire() as conn:
        await conn.execute("DROP TABLE raw_events")
        await conn.execute("CREATE TABLE raw_events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                           " stream_id text, version int, event_id uuid UNIQUE, event_type text,"
                           " occurred_at timestamptz, payload jsonb, commit_order xid8 DEFAULT pg_current_xact_id(),"
                           " UNIQUE (stream_id, version))")
        await conn.execute("CREATE INDEX ON raw_events (commit_order, id)")
    for b in batches:
        queue.put_nowait(b)
    start = time.perf_counter()
    await asyncio.gather(*[raw_writer() for _ in range(WRITERS)])
    raw_indexed_rate = EVENTS / (time.perf_counter() - start)
    await pool.close()
    return store_rate, raw_rate, raw_indexed_rate


async def bench_relay(engine) -> tuple[float, float, str]:
    topic = await create_topic("bench-relay")
    relay = OutboxRelay(engine, KAFKA, "bench", topic=topic, batch_size=2000)
    relay_producer = relay.make_producer()  # transactional: one Kafka transaction per batch
    await relay_producer.start()
    start = time.perf_counter()
    sent = 0
    while sent < EVENTS:
        n = await relay.relay_once(relay_producer)
        if n == 0:
            break
        sent += n
    relay_rate = sent / (time.perf_counter() - start)
    await relay_producer.stop()
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, enable_idempotence=True, acks="all", linger_ms=5,
                                max_batch_size=256 * 1024)
    await producer.start()

    async with engine.connect() as conn:
        events = await eventstore.read_all(conn, eventstore.START, limit=EVENTS)
    messages = [(eventstore.dumps(e.payload).encode(), e.stream_id.encode(), cloudevent_headers(e, "bench")) for e in events]
    raw_topic = await create_topic("bench-raw")
    start = time.perf_counter()
    futures = [await producer.send(raw_topic, value=v, key=k, headers=h) for v, k, h in messages]
    await asyncio.gather(*futures)
    raw_rate = len(messages) / (time.perf_counter() - start)
    await producer.stop()
    return relay_rate, raw_rate, topic


async def bench_project(engine, topic: str, dsn: str) -> tuple[float, float, float, float]:
    """(per-event handler, set-based Projection, plain COPY consumer, plain read-only consumer)."""
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE bench_customer_totals (customer_id text PRIMARY KEY,"
                                " invoiced numeric(20,4) NOT NULL, invoices int NOT NULL)"))

    async def project(conn, event):
        await conn.execute(text(
            "INSERT INTO bench_customer_totals VALUES (:c, :a, 1) ON CONFLICT (customer_id) DO UPDATE SET"
            " invoiced = bench_customer_totals.invoiced + excluded.invoiced,"
            " invoices = bench_customer_totals.invoices + 1"),
            {"c": event.data["customer_id"], "a": event.data["total_amount"]})

    async def project_batch(conn, events):
        await conn.execute(text(
            "INSERT INTO bench_customer_totals SELECT c, sum(a), count(*) FROM unnest(CAST(:c AS text[]),"
            " CAST(:a AS numeric[])) AS t(c, a) GROUP BY c ON CONFLICT (customer_id) DO UPDATE SET"
            " invoiced = bench_customer_totals.invoiced + excluded.invoiced,"
            " invoices = bench_customer_totals.invoices + excluded.invoices"),
            {"c": [e.data["customer_id"] for e in events], "a": [Decimal(e.data["total_amount"]) for e in events]})

    async def drain(handler) -> float:
        runner = ConsumerRunner(engine, KAFKA, f"bench-{uuid.uuid4().hex[:6]}", [topic], handler)
        task = asyncio.create_task(runner.run())
        first = None
        while runner.handled < EVENTS:
            await asyncio.sleep(0.01)
            if first is None and runner.handled:
                first, first_handled = time.perf_counter(), runner.handled
            if task.done():
                task.result()
        rate = (EVENTS - first_handled) / (time.perf_counter() - first)
        runner.stop()
        await task
        return rate

    per_event = await drain(project)
    set_based = await drain(Projection(project, project_batch))

    async def plain(copy: bool) -> float:
        pg = await asyncpg.connect(dsn)
        await pg.execute("CREATE TABLE IF NOT EXISTS raw_projected (event_id text PRIMARY KEY, customer_id text,"
                         " amount numeric(20,4)); CREATE TABLE IF NOT EXISTS raw_offsets (partition int PRIMARY KEY,"
                         " next_offset bigint); TRUNCATE raw_projected, raw_offsets")
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=KAFKA, group_id=None, auto_offset_reset="earliest",
                                    enable_auto_commit=False)
        await consumer.start()
        read, first = 0, None
        while read < EVENTS:
            for tp, records in (await consumer.getmany(timeout_ms=500, max_records=2000)).items():
                if copy:
                    rows = []
                    for r in records:
                        data = json.loads(r.value)
                        rows.append((dict(r.headers)["ce_id"].decode(), data["customer_id"],
                                     Decimal(data["total_amount"])))
                    async with pg.transaction():
                        await pg.copy_records_to_table("raw_projected", records=rows)
                        await pg.execute("INSERT INTO raw_offsets VALUES ($1, $2) ON CONFLICT (partition) DO UPDATE"
                                         " SET next_offset = excluded.next_offset", tp.partition,
                                         records[-1].offset + 1)
                read += len(records)
                if first is None:
                    first, first_read = time.perf_counter(), read
        rate = (read - first_read) / (time.perf_counter() - first)
        await consumer.stop()
        await pg.close()
        return rate

    return per_event, set_based, await plain(copy=True), await plain(copy=False)


async def main() -> None:
    async with fresh_database("bench") as name:
        engine = make_engine(sqlalchemy_url(name), pool_size=WRITERS + 2)
        await apply_migrations(engine, sql_files("shared.migrations", "."))
        append_rate, raw_insert, raw_indexed = await bench_append(engine, asyncpg_dsn(name))
        relay_rate, raw_produce, topic = await bench_relay(engine)
        project_rate, batch_rate, raw_copy, raw_consume = await bench_project(engine, topic, asyncpg_dsn(name))
        await engine.dispose()
    per = lambda a, b: f"{a / b * 100:5.1f}%"  # noqa: E731
    print(f"\nLedgerline mechanisms, {EVENTS} events, {os.cpu_count()} cores (higher is better)\n")
    print(f"{'measure':<34}{'events/s':>12}   {'raw baseline':<44}{'events/s':>12}  {'of raw':>7}")
    print(f"{'events appended (event store)':<34}{append_rate:>12,.0f}   {'plain asyncpg executemany, same rows':<44}{raw_insert:>12,.0f}  {per(append_rate, raw_insert)}")
    print(f"{'':<34}{'':>12}   {'  the same into a table with its indexes':<44}{raw_indexed:>12,.0f}  {per(append_rate, raw_indexed)}")
    print(f"{'events relayed to Kafka':<34}{relay_rate:>12,.0f}   {'plain aiokafka producer, same messages':<44}{raw_produce:>12,.0f}  {per(relay_rate, raw_produce)}")
    print(f"{'events projected (per-event handler)':<34}{project_rate:>12,.0f}   {'plain consumer COPYing the events, offsets':<44}{raw_copy:>12,.0f}  {per(project_rate, raw_copy)}")
    print(f"{'events projected (set-based batch)':<34}{batch_rate:>12,.0f}   {'plain consumer COPYing the events, offsets':<44}{raw_copy:>12,.0f}  {per(batch_rate, raw_copy)}")
    print(f"{'(reading the topic only)':<34}{'':>12}   {'plain aiokafka consumer, no database work':<44}{raw_consume:>12,.0f}")


if __name__ == "__main__":
    asyncio.run(main())
