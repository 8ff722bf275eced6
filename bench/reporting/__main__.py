"""make bench-reporting: reporting at the scale of a large receivables book, beside raw
baselines measured in the same run.

1. Publishes a book to private Kafka topics: BENCH_INVOICES (default 1,000,000) InvoiceIssued
   across BENCH_CUSTOMERS (50,000) customers, issued through 2024, net 30, and a partial
   PaymentApplied on every fifth invoice (so every invoice stays open).
2. Rebuilds the read model from those topics with the set-based rebuild (the CLI's default:
   COPY + INSERT ... SELECT, snapshot recomputed, end offsets stored, one transaction):
   events/s, beside a plain aiokafka consumer reading the same messages (no database work).
3. Times the reports over HTTP (in-process ASGI app, the real routes and queries) on that
   book, BENCH_RUNS (40) times each after a warm-up: the aging summary, one customer's aging
   with its invoice drill-down, a page of the full aging report (100 customers after a random
   cursor, with the book's buckets and tie-out), and DSO + CEI (the KPI report) for a quarter;
   each beside a plain SQL aggregate over the same invoices table through asyncpg. The full
   aging grouped by collector (one pass over the book) is timed over 10 runs, its CSV export
   (every customer) over 3.
"""
from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
import uuid

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text

from shared.pagination import encode_cursor
from shared.service import Runtime, build_app
from services.reporting.application.rebuild import rebuild_from_topics
from services.reporting.main import definition
from services.reporting.settings import ReportingSettings
from tests.support.infra import KAFKA, asyncpg_dsn, fresh_database, sqlalchemy_url

INVOICES = int(os.environ.get("BENCH_INVOICES", "1000000"))
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "50000"))
RUNS = int(os.environ.get("BENCH_RUNS", "40"))
PAY_EVERY = 5
AS_OF = "2024-12-31"


def _invoice(n: int) -> tuple[bytes, bytes]:
    day = 1 + n % 365
    issue = f"2024-{_month(day)}"
    due = f"2025-{_month(day - 335)}" if day > 335 else f"2024-{_month(day + 30)}"
    amount = f"{(n * 7919) % 90000 + 100}.{n % 100:02d}"
    value = ('{"invoice_id":"I%d","invoice_number":"N%d","customer_id":"C%d","currency":"USD","issue_date":"%s",'
             '"due_date":"%s","lines":[{"description":"goods","quantity":"1","unit_price":"%s","amount":"%s"}],'
             '"total_amount":"%s"}' % (n, n, n % CUSTOMERS, issue, due, amount, amount, amount))
    return value.encode(), b"InvoiceIssued"


def _payment(n: int) -> tuple[bytes, bytes]:
    day = min(365, 1 + n % 365 + 20)
    value = ('{"payment_id":"P%d","invoice_id":"I%d","customer_id":"C%d","amount":"50.00","currency":"USD",'
             '"value_date":"2024-%s","application_id":"A%d","rule":"remittance","confidence":"1"}'
             % (n, n, n % CUSTOMERS, _month(day), n))
    return value.encode(), b"PaymentApplied"


_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _month(day_of_year: int) -> str:
    """MM-DD of a 2024 day number (1-366)."""
    for month, days in enumerate(_MONTH_DAYS, start=1):
        if day_of_year <= days:
            return f"{month:02d}-{day_of_year:02d}"
        day_of_year -= days
    return "12-31"


async def publish(topics: dict[str, str]) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    await admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1,
                                        topic_configs={"retention.ms": "-1", "retention.bytes": "-1"})
                               for t in topics.values()])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, enable_idempotence=True, acks="all", linger_ms=20,
                                max_batch_size=512 * 1024)
    await producer.start()
    sent = 0
    try:
        futures = []
        for n in range(INVOICES):
            for topic, make in ((topics["invoicing"], _invoice),) + (
                    ((topics["cash_application"], _payment),) if n % PAY_EVERY == 0 else ()):
                value, kind = make(n)
                headers = [("ce_id", f"{kind.decode()}-{n}".encode()), ("ce_type", kind),
                           ("ce_schemaversion", b"2" if kind == b"PaymentApplied" else b"1")]
                futures.append(await producer.send(topic, value=value, key=f"I{n}".encode(), headers=headers))
                sent += 1
            if len(futures) >= 50_000:
                await asyncio.gather(*futures)
                futures = []
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


async def raw_consume(topics: list[str], total: int) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, group_id=None, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in range(3)]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, 0)
        start, seen = time.perf_counter(), 0
        while seen < total:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=20_000)).values():
                seen += len(records)
        return seen / (time.perf_counter() - start)
    finally:
        await consumer.stop()


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000


async def timed(call, runs: int = RUNS) -> tuple[float, float]:
    for _ in range(3):
        await call()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return _ms(samples)


async def main() -> None:
    run = uuid.uuid4().hex[:8]
    topics = {c: f"ll-bench-{run}.{c}.events" for c in ("invoicing", "cash_application")}
    async with fresh_database("benchrep") as database:
        settings = ReportingSettings(database_url=sqlalchemy_url(database), allow_open=True)  # in-process, no keys
        settings.role = "api"
        d = definition(settings)
        runtime = Runtime(d)
        await runtime.migrate()
        await runtime.dispose()
        try:
            start = time.perf_counter()
            events = await publish(topics)
            publish_s = time.perf_counter() - start
            print(f"published {events:,} events in {publish_s:.0f} s", flush=True)

            runtime = Runtime(definition(ReportingSettings(database_url=sqlalchemy_url(database))))
            start = time.perf_counter()
            assert await rebuild_from_topics(runtime.engine, KAFKA, "bench.reporting", list(topics.values()),
                                             force=True, progress=True) == 0
            rebuild_s = time.perf_counter() - start
            async with runtime.engine.begin() as conn:
                await conn.execute(text("ANALYZE"))
                invoices = (await conn.execute(text("SELECT count(*) FROM invoices"))).scalar_one()
                deltas = (await conn.execute(text("SELECT count(*) FROM ar_deltas"))).scalar_one()
            await runtime.dispose()
            raw_rate = await raw_consume(list(topics.values()), events)

            app = build_app(d)
            pool = await asyncpg.create_pool(asyncpg_dsn(database), min_size=1, max_size=2)
            rng = random.Random(5)
            async with app.router.lifespan_context(app):
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as c:
                    async def get(path: str, **params) -> None:
                        r = await c.get(path, params={"currency": "USD", **params})
                        assert r.status_code == 200, r.text

                    summary = await timed(lambda: get("/v1/reports/aging/summary", as_of=AS_OF))
                    customer = await timed(lambda: get("/v1/reports/aging", as_of=AS_OF,
                                                       customer_id=f"C{rng.randrange(CUSTOMERS)}"))
                    full_page = await timed(lambda: get("/v1/reports/aging", as_of=AS_OF, limit=100,
                                                        cursor=encode_cursor([f"C{rng.randrange(CUSTOMERS)}"])))
                    grouped = await timed(lambda: get("/v1/reports/aging", as_of=AS_OF, limit=100,
                                                      group_by="collector"), runs=10)
                    export = await timed(lambda: get("/v1/reports/aging", as_of=AS_OF, format="csv"), runs=3)
                    kpis = await timed(lambda: get("/v1/reports/kpis", period="2024-Q4"))

                    raw_summary = await timed(lambda: pool.fetch(
                        "SELECT sum(amount) FILTER (WHERE due_date >= $1) AS current,"
                        " sum(amount) FILTER (WHERE due_date < $1) AS past_due FROM invoices"
                        " WHERE currency = 'USD' AND issue_date <= $1", _date(AS_OF)))
                    raw_customer = await timed(lambda: pool.fetch(
                        "SELECT invoice_id, amount, due_date FROM invoices WHERE customer_id = $1",
                        f"C{rng.randrange(CUSTOMERS)}"))
                    raw_page = await timed(lambda: pool.fetch(
                        "SELECT customer_id, sum(amount) FROM invoices WHERE currency = 'USD' AND issue_date <= $1"
                        " AND customer_id > $2 GROUP BY customer_id ORDER BY customer_id LIMIT 100",
                        _date(AS_OF), f"C{rng.randrange(CUSTOMERS)}"))
                    raw_export = await timed(lambda: pool.fetch(
                        "SELECT customer_id, sum(amount) FROM invoices WHERE currency = 'USD' AND issue_date <= $1"
                        " GROUP BY customer_id ORDER BY customer_id", _date(AS_OF)), runs=3)
                    raw_kpis = await timed(lambda: pool.fetch(
                        "SELECT sum(amount) FROM invoices WHERE currency = 'USD' AND issue_date BETWEEN $1 AND $2",
                        _date("2024-10-01"), _date("2024-12-31")))
            await pool.close()
        finally:
            admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
            await admin.start()
            await admin.delete_topics(list(topics.values()))
            await admin.close()

    rate = events / rebuild_s
    print(f"\nLedgerline reporting, {invoices:,} open invoices, {CUSTOMERS:,} customers, {events:,} events, "
          f"{deltas:,} snapshot rows, {os.cpu_count()} cores; {RUNS} runs each (lower is better)\n")
    print(f"{'report':<40}{'p50 ms':>8}{'p95 ms':>8}   {'raw baseline (asyncpg, same table)':<52}{'p50 ms':>8}{'p95 ms':>8}")
    for name, (p50, p95), base, (b50, b95) in (
            ("aging summary (book, 5 buckets)", summary, "sum(amount) current/past due over invoices", raw_summary),
            ("a customer's aging with drill-down", customer, "select a customer's invoices by index", raw_customer),
            ("full aging, a page of 100 customers", full_page, "sum(amount) of 100 customers by index", raw_page),
            ("full aging page + groups by collector", grouped, "sum(amount) per customer, whole table", raw_export),
            ("full aging CSV export, every customer", export, "sum(amount) per customer, whole table", raw_export),
            ("DSO + CEI (KPIs) for a quarter", kpis, "sum(amount) of the quarter's invoices", raw_kpis)):
        print(f"{name:<40}{p50:>8.1f}{p95:>8.1f}   {base:<52}{b50:>8.1f}{b95:>8.1f}")
    print(f"\n{'projection rebuild (set-based)':<40}{rate:>12,.0f} events/s  ({events:,} events in {rebuild_s:.0f} s)")
    print(f"{'raw baseline: plain aiokafka consumer':<40}{raw_rate:>12,.0f} events/s  (same messages, no database)")


def _date(text_: str):
    from datetime import date
    return date.fromisoformat(text_)


if __name__ == "__main__":
    asyncio.run(main())
