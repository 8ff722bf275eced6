"""Consumer runner: Kafka events -> a context's read models, exactly once in effect.

Each message is handled in one database transaction that writes the read model, an inbox row
(consumer, event_id) that turns a redelivery into a no-op, and the partition's next offset.
On assignment the runner seeks to the offsets stored in the database (Kafka's committed
offsets are written too, but only so lag tools can see them). A failing event is retried with
backoff, then parked in dead_letters with the error, and the partition moves on."""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.telemetry import span_from_traceparent

log = logging.getLogger(__name__)

HANDLED = Counter("ledgerline_consumer_events_total", "Events handled", ["consumer", "outcome"])
PARKED = Counter("ledgerline_consumer_parked_total", "Events parked as dead letters (alert on any)", ["consumer"])
LAG = Gauge("ledgerline_consumer_lag", "Messages behind the partition end", ["consumer", "topic", "partition"])


@dataclass(frozen=True)
class ReceivedEvent:
    """An event as a consumer sees it: CloudEvents attributes plus the JSON data."""

    event_id: str
    event_type: str
    schema_version: int
    source: str
    subject: str
    occurred_at: datetime | None
    data: dict[str, Any]
    headers: dict[str, str]
    topic: str
    partition: int
    offset: int

    @property
    def traceparent(self) -> str | None:
        return self.headers.get("traceparent")

    def causation_metadata(self, actor: str) -> dict[str, Any]:
        """Metadata for events appended in reaction to this one: caused by it, same
        correlation and trace, done by `actor` (a process manager)."""
        meta: dict[str, Any] = {"causation_id": self.event_id, "actor": actor,
                                "correlation_id": self.headers.get("ce_correlationid", self.event_id)}
        if self.traceparent:
            meta["traceparent"] = self.traceparent
        return meta


Handler = Callable[[AsyncConnection, ReceivedEvent], Awaitable[None]]


class PoisonMessage(ValueError):
    """A message that can never be handled (undecodable): parked without retries."""


def decode(record: ConsumerRecord) -> ReceivedEvent:
    headers = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in (record.headers or ())}
    return decode_parts(record.topic, record.partition, record.offset, headers, record.value)


def decode_parts(topic: str, partition: int, offset: int, headers: dict[str, str], value: bytes | str | None) -> ReceivedEvent:
    try:
        data = json.loads(value) if value is not None else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PoisonMessage(f"value is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PoisonMessage("value is not a JSON object")
    if "ce_type" not in headers:
        raise PoisonMessage("message has no ce_type header")
    occurred = headers.get("ce_time")
    return ReceivedEvent(
        event_id=headers.get("ce_id") or f"{topic}:{partition}:{offset}",
        event_type=headers["ce_type"],
        schema_version=int(headers.get("ce_schemaversion", "1")),
        source=headers.get("ce_source", ""),
        subject=headers.get("ce_subject", ""),
        occurred_at=datetime.fromisoformat(occurred) if occurred else None,
        data=data,
        headers=headers,
        topic=topic,
        partition=partition,
        offset=offset,
    )


class _SeekToStoredOffsets(ConsumerRebalanceListener):
    def __init__(self, runner: "ConsumerRunner") -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        await self.runner._seek_to_stored(assigned)


class ConsumerRunner:
    def __init__(
        self,
        engine: AsyncEngine,
        bootstrap: str,
        name: str,
        topics: Sequence[str],
        handler: Handler,
        *,
        max_attempts: int = 5,
        backoff_seconds: float = 0.2,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self.engine = engine
        self.bootstrap = bootstrap
        self.name = name
        self.topics = list(topics)
        self.handler = handler
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.handled = 0
        self.parked = 0
        self.running = False
        self.last_poll: float | None = None
        self.last_error: str | None = None
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None

    def stop(self) -> None:
        self._stopping.set()

    @property
    def healthy(self) -> bool:
        """Polling recently (a stuck handler or a dead loop shows up in /readyz)."""
        return self.running and self.last_poll is not None and time.monotonic() - self.last_poll < 60

    async def run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                await self._consume()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database outage: reconnect with backoff
                self.last_error = repr(exc)
                log.warning("consumer %s failed, restarting in %.1fs: %r", self.name, backoff, exc)
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=backoff)
                except asyncio.TimeoutError:
                    pass
                backoff = min(backoff * 2, 10.0)

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.name,
            client_id=self.name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=500,
            metadata_max_age_ms=5000,
        )
        self._consumer = consumer
        consumer.subscribe(self.topics, listener=_SeekToStoredOffsets(self))
        await consumer.start()
        self.running = True
        self.last_error = None  # connected again: an earlier outage is over
        try:
            while not self._stopping.is_set():
                self.last_poll = time.monotonic()
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                for tp, records in batches.items():
                    if self._stopping.is_set():
                        return
                    await self.process_batch(records)
                    # Informational only: the database holds the offsets that count.
                    try:
                        await consumer.commit({tp: records[-1].offset + 1})
                    except Exception as exc:  # a rebalance in progress; the DB offsets still hold
                        log.debug("kafka commit skipped: %r", exc)
                    highwater = consumer.highwater(tp)
                    if highwater is not None:
                        LAG.labels(self.name, tp.topic, tp.partition).set(highwater - records[-1].offset - 1)
        finally:
            self.running = False
            self._consumer = None
            await consumer.stop()

    async def _seek_to_stored(self, assigned: Sequence[TopicPartition]) -> None:
        consumer = self._consumer
        if consumer is None or not assigned:
            return
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT topic, partition, next_offset FROM consumer_offsets WHERE consumer = :c"),
                {"c": self.name},
            )
            stored = {(r.topic, r.partition): r.next_offset for r in rows}
        for tp in assigned:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)

    async def process_batch(self, records: Sequence[ConsumerRecord]) -> None:
        """Fast path: one partition's records in one transaction (each event's effects, its
        inbox row and the partition offset commit together, so exactly-once holds per event).
        If any event fails or cannot be decoded, the whole transaction rolls back and the
        records are handled one by one, with retries and dead-lettering."""
        if len(records) == 1:
            await self.process(records[0])
            return
        try:
            events = [decode(r) for r in records]
        except PoisonMessage:
            events = None
        if events is not None:
            try:
                handled = await self._handle_batch(records, events)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # fall back to the careful path for this batch
                log.info("consumer %s: batch fell back to one by one: %r", self.name, exc)
            else:
                HANDLED.labels(self.name, "handled").inc(handled)
                self.handled += handled
                self.last_error = None
                return
        for record in records:
            if self._stopping.is_set():
                return
            await self.process(record)

    async def _handle_batch(self, records: Sequence[ConsumerRecord], events: list[ReceivedEvent]) -> int:
        first, last = records[0], records[-1]
        async with self.engine.begin() as conn:
            stored = await self._locked_offset(conn, first)
            todo = [(r, e) for r, e in zip(records, events) if stored is None or r.offset >= stored]
            if not todo:
                return 0
            fresh = {
                row[0]
                for row in await conn.execute(
                    text("INSERT INTO inbox (consumer, event_id) SELECT :c, unnest(CAST(:ids AS text[]))"
                         " ON CONFLICT DO NOTHING RETURNING event_id"),
                    {"c": self.name, "ids": [e.event_id for _, e in todo]},
                )
            }
            handled = 0
            for record, event in todo:
                if event.event_id in fresh:
                    fresh.discard(event.event_id)  # the same event twice in one batch: once
                    with self._span(record, event):
                        await self.handler(conn, event)
                    handled += 1
            await self._store_offset(conn, last)
        return handled

    async def process(self, record: ConsumerRecord) -> None:
        try:
            event = decode(record)
        except PoisonMessage as exc:
            await self._park(record, None, exc, attempts=1)
            return
        attempt = 0
        delay = self.backoff_seconds
        while True:
            attempt += 1
            try:
                with self._span(record, event):
                    outcome = await self._handle_once(record, event)
                HANDLED.labels(self.name, outcome).inc()
                if outcome != "behind":
                    self.handled += 1
                self.last_error = None
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = repr(exc)
                if attempt >= self.max_attempts:
                    await self._park(record, event, exc, attempts=attempt)
                    return
                log.warning("consumer %s: %s at %s/%s failed (attempt %d): %r", self.name,
                            event.event_type, record.partition, record.offset, attempt, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_seconds)

    async def _handle_once(self, record: ConsumerRecord, event: ReceivedEvent) -> str:
        async with self.engine.begin() as conn:
            if await self._already_past(conn, record):
                return "behind"
            first_time = (
                await conn.execute(
                    text("INSERT INTO inbox (consumer, event_id) VALUES (:c, :e) ON CONFLICT DO NOTHING RETURNING 1"),
                    {"c": self.name, "e": event.event_id},
                )
            ).first()
            if first_time is not None:
                await self.handler(conn, event)
            await self._store_offset(conn, record)
        return "handled" if first_time is not None else "duplicate"

    async def _already_past(self, conn: AsyncConnection, record: ConsumerRecord) -> bool:
        """The stored offset is the arbiter: a record below it was handled (or parked) already.
        Records can be handed out before the seek on assignment lands, and during a rebalance
        two members may briefly hold one partition; the row lock orders them."""
        stored = await self._locked_offset(conn, record)
        return stored is not None and record.offset < stored

    async def _locked_offset(self, conn: AsyncConnection, record: ConsumerRecord) -> int | None:
        """The partition's stored next offset, row-locked until the transaction ends."""
        return (
            await conn.execute(
                text("SELECT next_offset FROM consumer_offsets WHERE consumer = :c AND topic = :t"
                     " AND partition = :p FOR UPDATE"),
                {"c": self.name, "t": record.topic, "p": record.partition},
            )
        ).scalar()

    def _span(self, record: ConsumerRecord, event: ReceivedEvent):
        return span_from_traceparent(
            f"consume {event.event_type}", event.traceparent,
            {"messaging.system": "kafka", "messaging.destination.name": record.topic,
             "messaging.consumer.group.name": self.name, "ledgerline.event_id": event.event_id},
        )

    async def _store_offset(self, conn: AsyncConnection, record: ConsumerRecord) -> None:
        await conn.execute(
            text(
                "INSERT INTO consumer_offsets (consumer, topic, partition, next_offset)"
                " VALUES (:c, :t, :p, :o) ON CONFLICT (consumer, topic, partition)"
                " DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()"
            ),
            {"c": self.name, "t": record.topic, "p": record.partition, "o": record.offset + 1},
        )

    async def _park(self, record: ConsumerRecord, event: ReceivedEvent | None, error: Exception, attempts: int) -> None:
        headers = {k: (v.decode(errors="replace") if isinstance(v, bytes) else str(v)) for k, v in (record.headers or ())}
        value = record.value.decode(errors="replace") if isinstance(record.value, bytes) else record.value
        async with self.engine.begin() as conn:
            if await self._already_past(conn, record):
                return
            await conn.execute(
                text(
                    "INSERT INTO dead_letters (consumer, topic, partition, \"offset\", event_id, event_type,"
                    " headers, value, error, attempts) VALUES (:c, :t, :p, :o, :e, :et, CAST(:h AS jsonb),"
                    " :v, :err, :a) ON CONFLICT DO NOTHING"
                ),
                {"c": self.name, "t": record.topic, "p": record.partition, "o": record.offset,
                 "e": event.event_id if event else None, "et": event.event_type if event else None,
                 "h": json.dumps(headers), "v": value, "err": repr(error)[:4000], "a": attempts},
            )
            if event is not None:
                await conn.execute(
                    text("INSERT INTO inbox (consumer, event_id) VALUES (:c, :e) ON CONFLICT DO NOTHING"),
                    {"c": self.name, "e": event.event_id},
                )
            await self._store_offset(conn, record)
        PARKED.labels(self.name).inc()
        HANDLED.labels(self.name, "parked").inc()
        self.parked += 1
        log.error("consumer %s parked %s/%s/%s after %d attempts: %r", self.name, record.topic,
                  record.partition, record.offset, attempts, error)
