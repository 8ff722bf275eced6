"""make bench-projections: every service's live projection draining a realistic backlog, beside
the raw ceiling measured in the same run.

1. Publishes a receivables backlog to four private topics (one per publishing context, 3
   partitions each, keyed by stream, CloudEvents headers with stream versions, as the relay
   sends them): customers registered, invoices issued, credit memos, payments received and
   applied, promises to pay made and kept, disputes opened and resolved. BENCH_PROJECTION_EVENTS
   (default 20,000) events in all.
2. For each service: a fresh database with the service's migrations, then the service's REAL
   consumers (its ConsumerSpecs: handler, consumer runner with the contract registry, inbox,
   stream versions, offsets) subscribed to the private topics it consumes, started on the
   backlog. events/s = deliveries handled / time from the first handled batch to the last
   (the consumer group's join is not counted).
3. The raw ceiling, per service, on the same topics: a plain aiokafka consumer that reads each
   partition's batch, parses the JSON and COPYs one row per event (event id, type, payload)
   into a table, with the partition's offset, in one transaction per batch (asyncpg, no
   inbox, no contracts, no read model).

BENCH_PROJECTION_SERVICES (comma-separated) limits the services measured. With PROFILE=1 each
service's drain is profiled by py-spy into artifacts/profiles/projection-<service>.svg (flame
graphs; PROFILE=raw: collapsed stacks, .txt).
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.consumer import ConsumerRunner
from shared.contracts import (
    CreditMemoIssued,
    CustomerRegistered,
    DisputeOpened,
    DisputeResolved,
    InvoiceIssued,
    InvoiceLine,
    PaymentApplied,
    PaymentReceived,
    PromiseKept,
    PromiseToPayMade,
    registry,
    topic_for,
)
from shared.service import Runtime
from shared.telemetry import setup_tracing
from tests.support.infra import KAFKA, asyncpg_dsn, fresh_database, sqlalchemy_url
from tests.support.kafka import create_topic

EVENTS = int(os.environ.get("BENCH_PROJECTION_EVENTS", "20000"))
SERVICES = [s for s in os.environ.get("BENCH_PROJECTION_SERVICES",
                                      "reporting,cash_application,collections,disputes,invoicing").split(",") if s]
# PROFILE=1: flame graphs (SVG); PROFILE=raw: collapsed stacks (text, for scripts and diffs)
PROFILE = os.environ.get("PROFILE", "")
PROFILES = Path(os.environ.get("BENCH_PROFILE_DIR", "artifacts/profiles"))
CONTEXTS = ("invoicing", "cash_application", "collections", "disputes")
START = date(2024, 1, 1)


@dataclass
class Message:
    context: str
    key: str
    value: bytes
    headers: list[tuple[str, bytes]]


def backlog(total: int) -> list[Message]:
    """About `total` events of a receivables book, in the order the contexts would publish
    them. Per invoice: issued; 70% paid (received, applied); 10% credited; 5% promised and
    kept; 4% disputed and resolved; a customer per 10 invoices."""
    messages: list[Message] = []
    versions: dict[str, int] = {}

    def emit(contract: Any, stream: str) -> None:
        versions[stream] = versions.get(stream, 0) + 1
        headers = {"ce_specversion": "1.0", "ce_id": str(uuid.uuid4()), "ce_type": contract.event_type,
                   "ce_source": f"/ledgerline/{contract.context}", "ce_subject": stream,
                   "ce_schemaversion": str(contract.schema_version), "ce_streamversion": str(versions[stream]),
                   "ce_time": "2024-06-01T00:00:00+00:00"}
        messages.append(Message(contract.context, stream, json.dumps(contract.to_payload()).encode(),
                                [(k, v.encode()) for k, v in headers.items()]))

    n = 0
    while len(messages) < total:
        customer = f"C{n // 10}"
        if n % 10 == 0:
            emit(CustomerRegistered(customer_id=customer, name=f"Customer {customer}", currency="USD",
                                    payment_terms_days=30, credit_limit="50000.00", registered_on="2023-01-01"),
                 f"customer-{customer}")
        invoice = f"INV-{n}"
        issued = START + timedelta(days=n % 300)
        amount = Decimal(f"{(n * 7919) % 90000 + 100}.{n % 100:02d}")
        emit(InvoiceIssued(invoice_id=invoice, invoice_number=f"N-{n}", customer_id=customer, currency="USD",
                           issue_date=issued, due_date=issued + timedelta(days=30), total_amount=amount,
                           lines=[InvoiceLine(description="Goods", quantity="1", unit_price=amount, amount=amount)]),
             f"invoice-{invoice}")
        if n % 10 == 0:
            emit(CreditMemoIssued(credit_memo_id=f"CM-{n}", invoice_id=invoice, customer_id=customer, currency="USD",
                                  amount="10.00", issue_date=issued + timedelta(days=5), reason="damaged"),
                 f"invoice-{invoice}")
        if n % 10 < 7:
            paid = issued + timedelta(days=20 + n % 30)
            emit(PaymentReceived(payment_id=f"P-{n}", customer_id=customer, amount=amount, currency="USD",
                                 value_date=paid, method="wire", reference=f"N-{n}"), f"payment-P-{n}")
            emit(PaymentApplied(payment_id=f"P-{n}", invoice_id=invoice, customer_id=customer,
                                amount=amount - Decimal("10.00") if n % 10 == 0 else amount, currency="USD",
                                value_date=paid, application_id=f"A-{n}", rule="remittance", confidence="1"),
                 f"payment-P-{n}")
        if n % 20 == 7:
            due = issued + timedelta(days=40)
            emit(PromiseToPayMade(promise_id=f"PR-{n}", customer_id=customer, invoice_ids=[invoice], amount=amount,
                                  currency="USD", promise_date=due, made_on=issued + timedelta(days=31),
                                  grace_days=2), f"promise-PR-{n}")
            emit(PromiseKept(promise_id=f"PR-{n}", customer_id=customer, amount=amount, currency="USD",
                             promise_date=due, paid_amount=amount, kept_on=due), f"promise-PR-{n}")
        if n % 25 == 8:
            emit(DisputeOpened(dispute_id=f"D-{n}", invoice_id=invoice, customer_id=customer, currency="USD",
                               amount="25.00", reason_code="pricing", opened_on=issued + timedelta(days=10)),
                 f"dispute-D-{n}")
            emit(DisputeResolved(dispute_id=f"D-{n}", invoice_id=invoice, customer_id=customer, currency="USD",
                                 credit_amount="0.00", resolution="rejected",
                                 resolved_on=issued + timedelta(days=15)), f"dispute-D-{n}")
        n += 1
    return messages


async def publish(messages: list[Message]) -> dict[str, str]:
    """The backlog on private topics; returns context -> topic."""
    topics = {context: await create_topic(f"proj-{context.replace('_', '-')}") for context in CONTEXTS}
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, enable_idempotence=True, acks="all", linger_ms=5,
                                max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topics[m.context], m.value, key=m.key.encode(), headers=m.headers)
                   for m in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return topics


def _definition(service: str, url: str):
    if service == "reporting":
        from services.reporting.main import definition
        from services.reporting.settings import ReportingSettings as Settings
    elif service == "cash_application":
        from services.cash_application.main import definition
        from services.cash_application.settings import CashApplicationSettings as Settings
    elif service == "collections":
        from services.collections.main import definition
        from services.collections.settings import CollectionsSettings as Settings
    elif service == "disputes":
        from services.disputes.main import definition
        from services.disputes.settings import DisputesSettings as Settings
    else:
        from services.invoicing.main import definition
        from services.invoicing.settings import InvoicingSettings as Settings
    return definition(Settings(database_url=url))


def _private(topic: str, topics: dict[str, str]) -> str:
    for context, private in topics.items():
        if topic == topic_for(context):
            return private
    raise ValueError(f"no private topic for {topic}")


class _Profiler:
    """py-spy recording this process while a drain runs (PROFILE=1), into a flame graph."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "_Profiler":
        if PROFILE:
            PROFILES.mkdir(parents=True, exist_ok=True)
            spy = Path(sys.executable).parent / "py-spy"
            raw = PROFILE == "raw"
            self.proc = subprocess.Popen([str(spy), "record", "--pid", str(os.getpid()), "--rate", "200",
                                          "--output", str(PROFILES / f"{self.name}.{'txt' if raw else 'svg'}"),
                                          "--format", "raw" if raw else "flamegraph"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # attached before the drain starts
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(2)  # SIGINT: py-spy writes the flame graph and exits
            self.proc.wait(timeout=60)


def subscribed_topics(service: str, topics: dict[str, str]) -> list[str]:
    """The private topics the service's consumers subscribe to."""
    definition = _definition(service, "postgresql+asyncpg://unused/none")
    return sorted({_private(t, topics) for spec in definition.consumers for t in spec.topics})


async def drain_service(service: str, topics: dict[str, str], counts: dict[str, int]) -> dict[str, Any]:
    """The service's real consumers on the backlog: events/s, parked, stream anomalies."""
    async with fresh_database(f"proj_{service}") as name:
        runtime = Runtime(_definition(service, sqlalchemy_url(name)))
        await runtime.migrate()
        runners: list[tuple[ConsumerRunner, int]] = []
        for spec in runtime.definition.consumers:
            subscribed = [_private(t, topics) for t in spec.topics]
            expected = sum(counts[t] for t in subscribed)
            runner = ConsumerRunner(runtime.engine, KAFKA, f"bench-{spec.name}-{uuid.uuid4().hex[:6]}", subscribed,
                                    spec.handler, contracts=registry, backoff_seconds=0.05, max_attempts=2)
            runners.append((runner, expected))
        expected_total = sum(e for _, e in runners)
        with _Profiler(f"projection-{service}"):
            tasks = [asyncio.create_task(r.run()) for r, _ in runners]
            first: float | None = None
            first_done = 0
            cpu_started = time.process_time()
            deadline = time.monotonic() + max(600, expected_total / 20)
            try:
                while True:
                    done = sum(r.handled + r.parked for r, _ in runners)
                    now = time.perf_counter()
                    if first is None and done:
                        first, first_done = now, done
                    if done >= expected_total:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{service}: {done} of {expected_total} after the deadline")
                    for t in tasks:
                        if t.done():
                            t.result()
                    await asyncio.sleep(0.01)
            finally:
                cpu = time.process_time() - cpu_started
                for r, _ in runners:
                    r.stop()
                await asyncio.gather(*tasks, return_exceptions=True)
        elapsed = now - (first or now)
        async with runtime.engine.connect() as conn:
            from sqlalchemy import text
            anomalies = (await conn.execute(text("SELECT count(*) FROM stream_anomalies"))).scalar()
        await runtime.dispose()
    rate = (expected_total - first_done) / elapsed if elapsed > 0 else float("inf")
    # CPU of this process (the consumers' Python: decoding, contracts, SQLAlchemy, aiokafka) per
    # delivery over the whole drain, group join included: steadier than events/s on a shared
    # machine, where the wall clock also waits for the other processes' turns.
    return {"events": expected_total, "rate": rate, "parked": sum(r.parked for r, _ in runners),
            "anomalies": anomalies, "cpu_us": cpu / expected_total * 1e6}


async def raw_ceiling(service: str, subscribed: list[str], expected: int) -> float:
    """A plain consumer COPYing one row per event, offsets in the same transaction."""
    async with fresh_database(f"raw_{service}") as name:
        pg = await asyncpg.connect(asyncpg_dsn(name))
        await pg.execute("CREATE TABLE raw_events (event_id text PRIMARY KEY, event_type text, payload jsonb);"
                         " CREATE TABLE raw_offsets (topic text, partition int, next_offset bigint,"
                         " PRIMARY KEY (topic, partition))")
        consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, group_id=None, enable_auto_commit=False,
                                    isolation_level="read_committed", auto_offset_reset="earliest")
        await consumer.start()
        try:
            partitions = [TopicPartition(t, p) for t in subscribed for p in sorted(consumer.partitions_for_topic(t)
                                                                                   or await _partitions(consumer, t))]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            read = 0
            first: float | None = None
            first_read = 0
            while read < expected:
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                for tp, records in batches.items():
                    rows = []
                    for r in records:
                        headers = {k: v.decode() for k, v in r.headers}
                        json.loads(r.value)
                        rows.append((headers["ce_id"], headers["ce_type"], r.value.decode()))
                    async with pg.transaction():
                        await pg.copy_records_to_table("raw_events", records=rows)
                        await pg.execute("INSERT INTO raw_offsets VALUES ($1, $2, $3) ON CONFLICT (topic, partition)"
                                         " DO UPDATE SET next_offset = excluded.next_offset", tp.topic, tp.partition,
                                         records[-1].offset + 1)
                    read += len(records)
                    if first is None:
                        first, first_read = time.perf_counter(), read
            elapsed = time.perf_counter() - (first or time.perf_counter())
        finally:
            await consumer.stop()
            await pg.close()
    return (read - first_read) / elapsed if elapsed > 0 else float("inf")


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # noqa: SLF001 -- a fresh topic's metadata
    return consumer.partitions_for_topic(topic) or set()


async def main() -> None:
    setup_tracing("ledgerline-bench")  # as every service process does: consumers' spans are real
    messages = backlog(EVENTS)
    topics = await publish(messages)
    counts: dict[str, int] = {}
    for m in messages:
        counts[topics[m.context]] = counts.get(topics[m.context], 0) + 1
    kinds: dict[str, int] = {}
    for m in messages:
        kind = dict(m.headers)["ce_type"].decode()
        kinds[kind] = kinds.get(kind, 0) + 1
    print(f"\nLedgerline live projections: a backlog of {len(messages):,} events on {len(topics)} topics"
          f" ({', '.join(f'{k} {v:,}' for k, v in sorted(kinds.items()))}), {os.cpu_count()} cores\n")
    print(f"{'service':<18}{'deliveries':>11}{'events/s':>11}   {'raw ceiling (plain consumer, COPY)':>36}"
          f"{'of raw':>8}{'parked':>8}{'anomalies':>10}{'CPU µs/event':>14}")
    for service in SERVICES:
        result = await drain_service(service, topics, counts)
        subscribed = subscribed_topics(service, topics)
        ceiling = await raw_ceiling(service, subscribed, sum(counts[t] for t in subscribed))
        print(f"{service:<18}{result['events']:>11,}{result['rate']:>11,.0f}   {ceiling:>36,.0f}"
              f"{result['rate'] / ceiling * 100:>7.1f}%{result['parked']:>8}{result['anomalies']:>10}"
              f"{result['cpu_us']:>14,.0f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
