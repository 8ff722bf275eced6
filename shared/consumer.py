"""Consumer runner: Kafka events -> a context's read models, exactly once in effect.

Each partition's fetched records are handled in one database transaction that writes the read
model, an inbox row per event (consumer, event_id) that turns a redelivery into a no-op, the
last stream version seen per stream, and the partition's next offset. The database's offsets
are the truth: on assignment the runner seeks to them, and the only offset ever committed to
Kafka (for lag tools) is the one the database stored.

No message stops a consumer (issue 13):
- decode() turns any bytes and headers into an event or PoisonMessage (never another error);
  a poison message is parked in dead_letters with its raw bytes (bytea) and the reason.
- A failure is either transient (the database or broker is down, a connection dropped, a
  timeout, a serialization failure: is_transient) or deterministic (the handler refuses this
  event). A transient failure pauses the partition and retries with exponential backoff and
  jitter for as long as it lasts, and never parks. A deterministic one is retried
  max_attempts times (the partition paused between attempts), then parked, and the partition
  moves on. A paused partition never blocks the others: they keep being fetched and handled.
- An event whose schema version is newer than this code's contract (no upcaster can help)
  pauses its partition at that event, with the reason in status() (so /readyz and metrics): it
  is neither parked nor acknowledged, and the next deployment of newer code resumes from it.
- An event type this code has no contract for is recorded in unknown_events (count, first and
  last seen, a sample to find it on the topic) and counted in a metric.
- Every event carrying ce_subject and ce_streamversion (the relay sends both) is checked
  against the last version this consumer saw of that stream: a gap or an out-of-order version
  is logged, counted and recorded in stream_anomalies. A repeat of a handled event is a no-op
  (the inbox) and is only counted.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import struct
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Iterable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.heap import freeze_long_lived
from shared.logthrottle import Throttle
from shared.telemetry import record_consumed, span_from_traceparent, spans_exported

if TYPE_CHECKING:
    from shared.contracts.base import ContractRegistry

log = logging.getLogger(__name__)

# How often, at most, the offsets the database stored are committed to Kafka while batches keep
# coming (seconds). Lag tools read them; a restart seeks to the database's own.
KAFKA_COMMIT_INTERVAL = 1.0

HANDLED = Counter("ledgerline_consumer_events_total", "Events handled", ["consumer", "outcome"])
PARKED = Counter("ledgerline_consumer_parked_total", "Events parked as dead letters (alert on any)", ["consumer"])
LAG = Gauge("ledgerline_consumer_lag", "Messages behind the partition end", ["consumer", "topic", "partition"])
PAUSED = Gauge("ledgerline_consumer_partition_paused", "1 while a partition is paused (reason in /readyz)",
               ["consumer", "topic", "partition", "reason"])
RETRIES = Counter("ledgerline_consumer_retries_total", "Partition retries after a failure", ["consumer", "kind"])
STREAM_ANOMALIES = Counter("ledgerline_consumer_stream_anomalies_total",
                           "Stream versions received out of order or with a gap (alert on any)", ["consumer", "kind"])
REDELIVERIES = Counter("ledgerline_consumer_redeliveries_total", "Events received again (no-ops via the inbox)",
                       ["consumer"])
UNKNOWN = Counter("ledgerline_consumer_unknown_events_total", "Events of a type this code has no contract for",
                  ["consumer", "event_type"])

MAX_ID_BYTES = 512          # ce_id, ce_type: keys of btree indexes (inbox, unknown_events)
MAX_SUBJECT_BYTES = 1000    # ce_subject: key of consumer_stream_versions
_VERSION = re.compile(r"[0-9]{1,9}")


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
    stream_version: int | None = None

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
BatchHandler = Callable[[AsyncConnection, Sequence[ReceivedEvent]], Awaitable[None]]


class Projection:
    """A consumer handler that can also apply a whole batch at once.

    The runner hands a projection every fresh event of one partition's batch, in offset order,
    inside the transaction that also writes their inbox rows, stream versions and the
    partition's offset: apply_batch(conn, events). Without a batch function, apply_batch calls
    the per-event handler for each event in order, so a projection can move to set-based
    application one step at a time. A set-based apply_batch must leave the read model exactly
    as the per-event handler applied in the same order would (tests hold the two together).
    A plain handler function is still accepted wherever a Projection is."""

    def __init__(self, handle: Handler, apply_batch: BatchHandler | None = None) -> None:
        self.handle = handle
        self._apply_batch = apply_batch

    async def __call__(self, conn: AsyncConnection, event: ReceivedEvent) -> None:
        await self.handle(conn, event)

    async def apply_batch(self, conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> None:
        if self._apply_batch is not None:
            await self._apply_batch(conn, events)
            return
        for event in events:
            await self.handle(conn, event)


class PoisonMessage(ValueError):
    """A message that can never be handled (undecodable): parked without retries."""


class DatabaseUnavailable(ConnectionError):
    """No connection to the database could be had (down, refusing connections, wrong
    credentials): nothing to do with the event being handled, so always transient."""


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """engine.begin(), with a failure to connect raised as DatabaseUnavailable."""
    try:
        conn = await engine.connect()
    except Exception as exc:
        raise DatabaseUnavailable(f"cannot connect to the database: {exc!r}"[:500]) from exc
    try:
        async with conn.begin():
            yield conn
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------------
# Decoding: any bytes -> ReceivedEvent or PoisonMessage


def decode(record: ConsumerRecord) -> ReceivedEvent:
    """The record as an event; PoisonMessage (and nothing else) when it cannot be one."""
    return decode_raw(record.topic, record.partition, record.offset, record.headers, record.value)


def decode_raw(topic: str, partition: int, offset: int, raw_headers: Iterable[tuple[str, bytes | None]] | None,
               value: bytes | None) -> ReceivedEvent:
    headers: dict[str, str] = {}
    for key, raw in raw_headers or ():
        try:
            header = "" if raw is None else (raw if type(raw) is bytes else bytes(raw)).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PoisonMessage(f"header {_printable(key)} is not UTF-8: {exc.reason} at byte {exc.start}") from None
        except Exception as exc:  # a header value that is not bytes at all
            raise PoisonMessage(f"header {_printable(key)} cannot be read: {exc!r}") from None
        if "\x00" in key or "\x00" in header:
            raise PoisonMessage(f"header {_printable(key)} holds a NUL character")
        headers[key] = header
    return decode_parts(topic, partition, offset, headers, value)


def decode_parts(topic: str, partition: int, offset: int, headers: dict[str, str], value: bytes | str | None) -> ReceivedEvent:
    try:
        return _decode_parts(topic, partition, offset, headers, value)
    except PoisonMessage:
        raise
    except Exception as exc:  # whatever the bytes do to a parser: this message is bad, not the code
        raise PoisonMessage(f"undecodable: {exc!r}"[:500]) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number PostgreSQL can store")


# One decoder for every record (json.loads with parse_constant builds a new one per call).
_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _decode_parts(topic: str, partition: int, offset: int, headers: dict[str, str], value: bytes | str | None) -> ReceivedEvent:
    if value is None:
        raise PoisonMessage("message has no value")
    try:
        raw = value.decode("utf-8") if isinstance(value, (bytes, bytearray, memoryview)) else str(value)
    except UnicodeDecodeError as exc:
        raise PoisonMessage(f"value is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        data = _JSON.decode(raw)
    except (ValueError, RecursionError) as exc:
        raise PoisonMessage(f"value is not JSON: {exc}"[:500]) from None
    if not isinstance(data, dict):
        raise PoisonMessage("value is not a JSON object")
    if "\\u0000" in raw and _has_nul(data):  # PostgreSQL text and jsonb cannot hold it
        raise PoisonMessage("value holds a NUL character")
    event_type = headers.get("ce_type")
    if not event_type:
        raise PoisonMessage("message has no ce_type header")
    if len(event_type.encode()) > MAX_ID_BYTES:
        raise PoisonMessage("ce_type is too long")
    event_id = headers.get("ce_id") or f"{topic}:{partition}:{offset}"
    if len(event_id.encode()) > MAX_ID_BYTES:
        raise PoisonMessage("ce_id is too long")
    subject = headers.get("ce_subject", "")
    if len(subject.encode()) > MAX_SUBJECT_BYTES:
        raise PoisonMessage("ce_subject is too long")
    schema_version = _positive_int(headers.get("ce_schemaversion", "1"), "ce_schemaversion")
    stream_version = headers.get("ce_streamversion")
    occurred = headers.get("ce_time")
    occurred_at = None
    if occurred:
        try:
            occurred_at = datetime.fromisoformat(occurred)
        except ValueError:
            raise PoisonMessage(f"ce_time {_printable(occurred)} is not an ISO 8601 timestamp") from None
        if occurred_at.tzinfo is None:
            occurred_at = occurred_at.replace(tzinfo=timezone.utc)
    return ReceivedEvent(
        event_id=event_id,
        event_type=event_type,
        schema_version=schema_version,
        source=headers.get("ce_source", ""),
        subject=subject,
        occurred_at=occurred_at,
        data=data,
        headers=headers,
        topic=topic,
        partition=partition,
        offset=offset,
        stream_version=_positive_int(stream_version, "ce_streamversion") if stream_version is not None else None,
    )


def _positive_int(value: str, name: str) -> int:
    if not _VERSION.fullmatch(value) or int(value) < 1:
        raise PoisonMessage(f"{name} {_printable(value)} is not a positive integer")
    return int(value)


def _printable(value: str) -> str:
    return repr(value[:80]).replace("\x00", "")


def encode_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> bytes:
    """Kafka headers as bytes, exactly (length-prefixed key and value, -1 for a null value)."""
    out = bytearray()
    for key, value in headers or ():
        k = key.encode("utf-8", "surrogatepass")
        out += struct.pack(">i", len(k)) + k
        if value is None:
            out += struct.pack(">i", -1)
        else:
            v = bytes(value)
            out += struct.pack(">i", len(v)) + v
    return bytes(out)


def decode_headers(raw: bytes) -> list[tuple[str, bytes | None]]:
    headers: list[tuple[str, bytes | None]] = []
    i = 0
    while i < len(raw):
        (n,) = struct.unpack_from(">i", raw, i)
        key = raw[i + 4:i + 4 + n].decode("utf-8", "surrogatepass")
        i += 4 + n
        (n,) = struct.unpack_from(">i", raw, i)
        i += 4
        if n < 0:
            headers.append((key, None))
        else:
            headers.append((key, raw[i:i + n]))
            i += n
    return headers


def readable(value: bytes | None) -> str | None:
    """A NUL-free, valid-UTF-8 copy for people and text columns (the bytes are kept as well)."""
    if value is None:
        return None
    return bytes(value).decode("utf-8", "replace").replace("\x00", "")


# ---------------------------------------------------------------------------------------------
# Transient or deterministic

# SQLSTATE classes of a database that is unavailable or a transaction that lost a race, not of a
# bad event: connection exceptions, insufficient resources, operator intervention (shutdown,
# cannot connect now), serialization failure, deadlock, lock not available, query cancelled
# (statement timeout).
_TRANSIENT_SQLSTATES = ("08", "53", "57P", "40001", "40P01", "55P03", "57014")


def is_transient(exc: BaseException) -> bool:
    """True when the failure says the database or broker is unavailable (retry, never park).
    Walks the exception's causes: SQLAlchemy wraps asyncpg's errors, handlers may wrap either."""
    import socket

    import asyncpg.exceptions as pg_exc
    from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
    from sqlalchemy import exc as sa_exc

    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, pg_exc.DataError):
            return False  # asyncpg could not encode a value (e.g. out of range): the event is bad
        if isinstance(e, (ConnectionError, TimeoutError, socket.gaierror, KafkaConnectionError, KafkaTimeoutError,
                          pg_exc.PostgresConnectionError, pg_exc.InterfaceError, pg_exc.CannotConnectNowError,
                          pg_exc.TooManyConnectionsError, sa_exc.DisconnectionError, sa_exc.TimeoutError)):
            return True
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, KafkaError) and getattr(e, "retriable", False):
            return True
        sqlstate = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_TRANSIENT_SQLSTATES):
            return True
        stack.extend([e.__cause__, e.__context__, getattr(e, "orig", None)])
    return False


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: uniform in [base/2, min(cap, base * 2**attempt)]."""
    ceiling = min(cap, base * (2 ** min(attempt, 30)))
    return random.uniform(min(base / 2, ceiling), ceiling)


# ---------------------------------------------------------------------------------------------
# The runner


class _PausePartition(Exception):
    """Stop handling this partition for now: retry after `retry_in` seconds (seeking back to
    the stored offset), or, with retry_in None, until the code is upgraded."""

    def __init__(self, reason: str, retry_in: float | None, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_in = retry_in
        self.kind = kind
        self.stored: int | None = None  # the offset the database stored before the pause


@dataclass
class _Paused:
    reason: str
    kind: str
    due: float | None
    since: float = field(default_factory=time.monotonic)


class _SeekToStoredOffsets(ConsumerRebalanceListener):
    def __init__(self, runner: "ConsumerRunner") -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self.runner._forget(revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        await self.runner._seek_to_stored(assigned)


class ConsumerRunner:
    def __init__(
        self,
        engine: AsyncEngine,
        bootstrap: str,
        name: str,
        topics: Sequence[str],
        handler: Handler | Projection,
        *,
        max_attempts: int = 5,
        backoff_seconds: float = 0.2,
        max_backoff_seconds: float = 30.0,
        contracts: "ContractRegistry | None" = None,
        max_lag: int = 10_000,
        max_batch: int = 2000,
    ) -> None:
        self.engine = engine
        self.bootstrap = bootstrap
        self.name = name
        self.topics = list(topics)
        self.handler = handler
        # A Projection's apply_batch gets the batch's fresh events in one call; a plain
        # handler function is called once per event.
        self._apply_batch: BatchHandler | None = getattr(handler, "apply_batch", None)
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        # With a registry, the runner checks each event's type and version against the code's
        # contracts (unknown types recorded, newer versions pause); without, every event goes
        # to the handler (consumers of non-contract topics, tests).
        self.contracts = contracts
        self.max_lag = max_lag
        # Records fetched per poll (all partitions together); each partition's share is applied
        # in one transaction. Larger batches amortise the per-transaction round trips (inbox,
        # stream versions, offset, Kafka commit) over more events.
        self.max_batch = max_batch
        self.handled = 0
        self.parked = 0
        self.running = False
        self.last_poll: float | None = None
        self.last_error: str | None = None
        self.lag: dict[TopicPartition, int] = {}
        # Offsets the database stored, not yet committed to Kafka (for lag tools only: the
        # database's offsets are what a restart seeks to), and when Kafka last got them.
        self._to_commit: dict[TopicPartition, int] = {}
        self._committed_at = 0.0
        self.unknown_seen: dict[str, int] = {}  # "Type vN" -> count since start (all time: unknown_events)
        self._paused: dict[TopicPartition, _Paused] = {}
        # Partitions this runner positioned at their stored offset since assignment. Offsets are
        # not contiguous (transaction markers, aborted records), so only a partition that was
        # not positioned (its seek failed or has not happened yet) is checked for a fetch
        # position past the stored offset.
        self._seeked: set[TopicPartition] = set()
        self._attempts: dict[tuple[TopicPartition, int], int] = {}
        self._transient_failures: dict[TopicPartition, int] = {}
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._assigned_at = time.monotonic()
        self._throttle = Throttle(log)

    def stop(self) -> None:
        self._stopping.set()

    @property
    def healthy(self) -> bool:
        """Polling recently (a stuck handler or a dead loop shows up in /readyz)."""
        return self.running and self.last_poll is not None and time.monotonic() - self.last_poll < 60

    def status(self) -> tuple[bool, dict[str, Any]]:
        """(ready, details) for /readyz: running and polling, broker answering fetches, no paused
        partition, lag under max_lag."""
        reasons: list[str] = []
        if not self.healthy:
            reasons.append("not polling" if self.running else "not connected")
        paused = {f"{tp.topic}/{tp.partition}": {"reason": p.reason, "kind": p.kind,
                                                 "for_seconds": round(time.monotonic() - p.since, 1)}
                  for tp, p in self._paused.items()}
        if paused:
            reasons.append(f"{len(paused)} partition(s) paused")
        lagging = {f"{tp.topic}/{tp.partition}": n for tp, n in self.lag.items() if n > self.max_lag}
        if lagging:
            reasons.append(f"lag above {self.max_lag}")
        consumer = self._consumer
        if consumer is not None and self.running:
            assigned = consumer.assignment()
            if assigned and time.monotonic() - self._assigned_at > 30:
                now_ms = time.time() * 1000
                fetched = [consumer.last_poll_timestamp(tp) for tp in assigned]
                if not any(t and now_ms - t < 30_000 for t in fetched):
                    reasons.append("no fetch answered by the broker for 30 s")
        details = {"ready": not reasons, "reasons": reasons, "healthy": self.healthy, "handled": self.handled,
                   "parked": self.parked, "last_error": self.last_error, "paused": paused,
                   "unknown_event_types": dict(self.unknown_seen),
                   "lag": {f"{tp.topic}/{tp.partition}": n for tp, n in self.lag.items()}}
        return not reasons, details

    async def run(self) -> None:
        freeze_long_lived()
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._consume()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database outage: reconnect with backoff
                self.last_error = repr(exc)[:500]
                delay = backoff_delay(failures, 0.5, self.max_backoff_seconds)
                failures += 1
                self._throttle.warning("restart", "consumer %s failed (%d in a row), restarting in %.1fs: %r",
                                       self.name, failures, delay, exc)
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                except asyncio.TimeoutError:
                    pass

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.name,
            client_id=self.name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self.max_batch,
            metadata_max_age_ms=5000,
            # aiokafka 0.14 has no exponential reconnect backoff: a per-client jittered retry
            # interval keeps a broker outage at about one attempt a second per client, not
            # hundreds, and stops clients from retrying in lockstep.
            retry_backoff_ms=random.randint(500, 1500),
        )
        self._consumer = consumer
        self._paused.clear()
        consumer.subscribe(self.topics, listener=_SeekToStoredOffsets(self))
        try:
            await consumer.start()
        except BaseException:
            self._consumer = None
            await consumer.stop()  # release its connections and tasks before the retry
            raise
        self.running = True
        self.last_error = None  # connected again: an earlier outage is over
        self._throttle.reset("restart")
        try:
            while not self._stopping.is_set():
                self.last_poll = time.monotonic()
                await self._resume_due(consumer)
                batches = await consumer.getmany(timeout_ms=200, max_records=self.max_batch)
                stored: dict[TopicPartition, int] = {}
                for tp, records in batches.items():
                    if self._stopping.is_set():
                        break
                    if tp in self._paused or not records:
                        continue  # fetched before the pause: read again after the seek back
                    offset = await self._handle_partition(consumer, tp, records)
                    if offset is not None:
                        stored[tp] = offset
                self._to_commit.update(stored)
                if self._to_commit and (not batches or self._stopping.is_set()
                                        or time.monotonic() - self._committed_at >= KAFKA_COMMIT_INTERVAL):
                    await self._commit_to_kafka(consumer)
                if not batches:
                    await self._settle_lag(consumer)
        finally:
            if self._to_commit and consumer.assignment():
                with contextlib.suppress(Exception):  # stopping on a broker outage: the database holds them
                    await asyncio.wait_for(self._commit_to_kafka(consumer), timeout=5)
            self.running = False
            self._consumer = None
            for tp in list(self._paused):
                self._unpause_metric(tp)
            self._paused.clear()
            await consumer.stop()

    async def _handle_partition(self, consumer: AIOKafkaConsumer, tp: TopicPartition,
                                records: Sequence[ConsumerRecord]) -> int | None:
        """Handle one partition's records; returns the offset the database stored, if any."""
        stored: int | None = None
        try:
            stored = await self.process_batch(records)
            self._transient_failures.pop(tp, None)
        except _PausePartition as pause:
            stored = pause.stored
            self._pause(consumer, tp, pause)
        if stored is not None:
            highwater = consumer.highwater(tp)
            if highwater is not None:
                self.lag[tp] = max(highwater - stored, 0)
                LAG.labels(self.name, tp.topic, tp.partition).set(self.lag[tp])
        return stored

    async def _settle_lag(self, consumer: AIOKafkaConsumer) -> None:
        """A poll that brought nothing: what each partition still shows behind is measured from
        the consumer's position instead of the last record handled. A transactional producer's
        commit marker takes an offset of its own after its last record, and no record moves the
        stored offset past it, so a partition read to its end would show a lag of 1 for ever
        (an alert on lag > 0 would never clear); the position has moved past such markers."""
        for tp, behind in list(self.lag.items()):
            if behind == 0 or tp in self._paused or tp not in consumer.assignment():
                continue
            highwater = consumer.highwater(tp)
            position = await consumer.position(tp)
            if highwater is not None and position is not None:
                self.lag[tp] = max(highwater - position, 0)
                LAG.labels(self.name, tp.topic, tp.partition).set(self.lag[tp])

    async def _commit_to_kafka(self, consumer: AIOKafkaConsumer) -> None:
        """Only offsets the database stored go to Kafka (for lag tools; the database's offsets are
        what a restart seeks to), at most once every KAFKA_COMMIT_INTERVAL while batches keep
        coming, at once when a poll comes back empty or the runner stops. Once per batch, the
        commit was a Kafka request and a write to __consumer_offsets for every transaction of
        every consumer. Partitions no longer assigned are left to their new owner."""
        assigned = consumer.assignment()
        stored = {tp: offset for tp, offset in self._to_commit.items() if tp in assigned}
        self._to_commit.clear()
        self._committed_at = time.monotonic()
        if not stored:
            return
        try:
            await consumer.commit(stored)
        except Exception as exc:  # a rebalance in progress; the database offsets still hold
            log.debug("kafka commit skipped: %r", exc)

    def _pause(self, consumer: AIOKafkaConsumer, tp: TopicPartition, pause: _PausePartition) -> None:
        if tp not in consumer.assignment():
            return
        consumer.pause(tp)
        self._unpause_metric(tp)
        self._paused[tp] = _Paused(pause.reason, pause.kind,
                                   None if pause.retry_in is None else time.monotonic() + pause.retry_in)
        PAUSED.labels(self.name, tp.topic, tp.partition, pause.kind).set(1)
        RETRIES.labels(self.name, pause.kind).inc()
        if pause.kind != "gap":
            self.last_error = pause.reason[:500]
        level = logging.ERROR if pause.retry_in is None else logging.WARNING
        self._throttle.log(level, f"pause:{tp.topic}:{tp.partition}:{pause.kind}",
                           "consumer %s paused %s/%s (%s)%s", self.name, tp.topic, tp.partition, pause.reason,
                           "" if pause.retry_in is None else f", retrying in {pause.retry_in:.1f}s")

    def _unpause_metric(self, tp: TopicPartition) -> None:
        old = self._paused.get(tp)
        if old is not None:
            PAUSED.labels(self.name, tp.topic, tp.partition, old.kind).set(0)

    def _forget(self, revoked: Iterable[TopicPartition]) -> None:
        for tp in revoked:
            self._seeked.discard(tp)
            self._unpause_metric(tp)
            self._paused.pop(tp, None)
            self.lag.pop(tp, None)

    async def _resume_due(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        due = [tp for tp, p in self._paused.items() if p.due is not None and p.due <= now]
        if not due:
            return
        try:
            stored = await self._stored_offsets()
        except Exception as exc:  # still unreachable: stay paused (never fetch unseeked), retry later
            self._throttle.warning("resume", "consumer %s cannot read its stored offsets yet: %r", self.name, exc)
            for tp in due:
                self._transient_failures[tp] = self._transient_failures.get(tp, 0) + 1
                self._paused[tp].due = now + backoff_delay(self._transient_failures.get(tp, 0), 0.5,
                                                           self.max_backoff_seconds)
            return
        assigned = consumer.assignment()
        for tp in due:
            if tp in assigned:
                offset = stored.get((tp.topic, tp.partition))
                if offset is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, offset)
                self._seeked.add(tp)
                consumer.resume(tp)
            self._unpause_metric(tp)
            self._paused.pop(tp, None)

    async def _stored_offsets(self) -> dict[tuple[str, int], int]:
        async with transaction(self.engine) as conn:
            rows = await conn.execute(
                text("SELECT topic, partition, next_offset FROM consumer_offsets WHERE consumer = :c"),
                {"c": self.name},
            )
            return {(r.topic, r.partition): r.next_offset for r in rows}

    async def _seek_to_stored(self, assigned: Sequence[TopicPartition]) -> None:
        """On assignment: seek every partition to its stored offset. aiokafka only logs an
        exception raised here and goes on fetching from Kafka's committed offset, so a failure
        (database down) must not escape: the partitions are paused instead, and the runner seeks
        them before resuming."""
        consumer = self._consumer
        if consumer is None or not assigned:
            return
        self._forget(assigned)
        self._assigned_at = time.monotonic()
        try:
            stored = await self._stored_offsets()
            for tp in assigned:
                offset = stored.get((tp.topic, tp.partition))
                if offset is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, offset)
                self._seeked.add(tp)
        except Exception as exc:
            for tp in assigned:
                self._pause(consumer, tp, _PausePartition(f"seek to the stored offset failed: {exc!r}"[:300],
                                                          backoff_delay(0, 0.5, self.max_backoff_seconds), "seek"))

    async def process_batch(self, records: Sequence[ConsumerRecord]) -> int | None:
        """Handle one partition's records in order; returns the next offset the database stored
        (None if it stored nothing new).

        Runs of decodable events go in one transaction each (effects, inbox rows, stream
        versions and the offset commit together: exactly once per event). A poison message is
        parked on its own. If a run fails, its events are handled one by one so the failing one
        is found; a deterministic failure is retried (the partition paused in between) and then
        parked; a transient one pauses the partition and is retried without limit. A pause is
        raised as _PausePartition carrying the offset stored so far."""
        stored: int | None = None
        decoded: list[tuple[ConsumerRecord, ReceivedEvent | PoisonMessage]] = []
        for record in records:
            try:
                decoded.append((record, decode(record)))
            except PoisonMessage as exc:
                decoded.append((record, exc))
        try:
            i = 0
            while i < len(decoded):
                if self._stopping.is_set():
                    return stored
                record, first = decoded[i]
                if isinstance(first, PoisonMessage):
                    stored = await self._park(record, None, first, attempts=1) or stored
                    i += 1
                    continue
                j = i
                while j < len(decoded) and isinstance(decoded[j][1], ReceivedEvent):
                    j += 1
                run = [(r, e) for r, e in decoded[i:j] if isinstance(e, ReceivedEvent)]
                newer = next((k for k, (_, e) in enumerate(run) if self._too_new(e)), None)
                blocked = run[newer][1] if newer is not None else None
                if newer is not None:
                    run = run[:newer]
                if len(run) > 1:
                    try:
                        stored = await self._guard(run[0][0], self._handle_batch(
                            [r for r, _ in run], [e for _, e in run])) or stored
                        run = []
                    except _PausePartition:
                        raise
                    except Exception as exc:  # find the failing event: one by one
                        log.info("consumer %s: batch fell back to one by one: %r", self.name, exc)
                for record, event in run:
                    if self._stopping.is_set():
                        return stored
                    stored = await self._handle_one(record, event) or stored
                if blocked is not None:
                    known = self.contracts.contract(blocked.event_type) if self.contracts else None
                    raise _PausePartition(
                        f"{blocked.event_type} v{blocked.schema_version} at offset {blocked.offset} is newer than"
                        f" this code knows (v{known.schema_version if known else '?'}): waiting for an upgrade",
                        None, "schema_version")
                i = j
        except _PausePartition as pause:
            pause.stored = stored
            raise
        return stored

    def _too_new(self, event: ReceivedEvent) -> bool:
        if self.contracts is None:
            return False
        contract = self.contracts.contract(event.event_type)
        return contract is not None and event.schema_version > contract.schema_version

    async def _guard(self, record: ConsumerRecord, work: Awaitable[int | None]) -> int | None:
        """Run one transaction's work; a transient failure pauses the partition for a retry."""
        tp = TopicPartition(record.topic, record.partition)
        try:
            return await work
        except (_PausePartition, asyncio.CancelledError):
            raise
        except Exception as exc:
            if not is_transient(exc):
                raise
            failures = self._transient_failures.get(tp, 0)
            self._transient_failures[tp] = failures + 1
            raise _PausePartition(f"transient failure (database or broker unavailable): {exc!r}"[:500],
                                  backoff_delay(failures, self.backoff_seconds, self.max_backoff_seconds),
                                  "transient") from exc

    async def _handle_one(self, record: ConsumerRecord, event: ReceivedEvent) -> int | None:
        tp = TopicPartition(record.topic, record.partition)
        try:
            return await self._guard(record, self._handle_batch([record], [event]))
        except _PausePartition:
            raise
        except Exception as exc:
            attempt = self._attempts.get((tp, record.offset), 0) + 1
            self.last_error = repr(exc)[:500]
            if attempt >= self.max_attempts:
                self._attempts.pop((tp, record.offset), None)
                return await self._park(record, event, exc, attempts=attempt)
            self._attempts[(tp, record.offset)] = attempt
            raise _PausePartition(f"{event.event_type} at offset {record.offset} failed (attempt {attempt} of"
                                  f" {self.max_attempts}): {exc!r}"[:500],
                                  backoff_delay(attempt - 1, self.backoff_seconds, self.max_backoff_seconds),
                                  "retry") from exc

    async def process(self, record: ConsumerRecord) -> None:
        """Handle one record to the end: applied, a no-op, or parked (retries inline; for
        tools and tests, the runner itself uses process_batch). The caller hands the record in
        directly, so there is no fetch position to distrust: only the stored offset decides."""
        self._seeked.add(TopicPartition(record.topic, record.partition))
        while True:
            try:
                await self.process_batch([record])
                return
            except _PausePartition as pause:
                if pause.retry_in is None:
                    raise
                await asyncio.sleep(pause.retry_in)

    async def _handle_batch(self, records: Sequence[ConsumerRecord], events: list[ReceivedEvent]) -> int | None:
        first, last = records[0], records[-1]
        handled = duplicates = 0
        async with transaction(self.engine) as conn:
            stored = await self._locked_offset(conn, first)
            if self._unpositioned_past(first, stored):
                # The fetch position ran ahead of the stored offset (a seek that did not land):
                # handling these would skip the records in between. Seek back and read them.
                raise _PausePartition(f"fetched offset {first.offset} is past the stored offset {stored}", 0.0, "gap")
            todo = [(r, e) for r, e in zip(records, events) if stored is None or r.offset >= stored]
            if not todo:
                return None
            fresh = {
                row[0]
                for row in await conn.execute(
                    text("INSERT INTO inbox (consumer, event_id) SELECT :c, unnest(CAST(:ids AS text[]))"
                         " ON CONFLICT DO NOTHING RETURNING event_id"),
                    {"c": self.name, "ids": [e.event_id for _, e in todo]},
                )
            }
            first_seen: list[ReceivedEvent] = []
            unknown: list[ReceivedEvent] = []
            apply: list[tuple[ConsumerRecord, ReceivedEvent]] = []
            for record, event in todo:
                if event.event_id not in fresh:
                    duplicates += 1
                    continue
                fresh.discard(event.event_id)  # the same event twice in one batch: once
                first_seen.append(event)
                if self.contracts is not None and self.contracts.contract(event.event_type) is None:
                    unknown.append(event)
                    continue
                apply.append((record, event))
            if self._apply_batch is None:
                for record, event in apply:
                    with self._span(record, event):
                        await self.handler(conn, event)
            elif apply:
                # One call for the whole batch, in offset order; one span per event (covering
                # the batch's application) still continues each event's trace, when spans are
                # exported (nothing is parented to these: unexported, they would only cost).
                started = time.time_ns()
                await self._apply_batch(conn, [e for _, e in apply])
                ended = time.time_ns()
                for record, event in apply if spans_exported() else ():
                    record_consumed(f"consume {event.event_type}", event.traceparent,
                                    {"messaging.system": "kafka", "messaging.destination.name": record.topic,
                                     "messaging.consumer.group.name": self.name,
                                     "ledgerline.event_id": event.event_id, "ledgerline.batch_size": len(apply)},
                                    started, ended)
            handled = len(apply)
            anomalies = await self._track_streams(conn, first_seen)
            if unknown:
                await self._record_unknown(conn, unknown)
            await self._store_offset(conn, last)
        # Counted only once the transaction committed.
        if handled:
            HANDLED.labels(self.name, "handled").inc(handled)
        if duplicates:
            HANDLED.labels(self.name, "duplicate").inc(duplicates)
            REDELIVERIES.labels(self.name).inc(duplicates)
        for event in unknown:
            UNKNOWN.labels(self.name, event.event_type).inc()
            key = f"{event.event_type} v{event.schema_version}"
            self.unknown_seen[key] = self.unknown_seen.get(key, 0) + 1
            self._throttle.warning(f"unknown:{event.event_type}", "consumer %s has no contract for %s v%d"
                                   " (recorded in unknown_events)", self.name, event.event_type, event.schema_version)
        self._report_anomalies(anomalies)
        self.handled += handled + duplicates  # deliveries dealt with: applied, or a no-op repeat
        self.last_error = None
        for record in records:
            self._attempts.pop((TopicPartition(record.topic, record.partition), record.offset), None)
        return last.offset + 1

    async def _track_streams(self, conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> list[dict[str, Any]]:
        """Check stream versions against the last one seen (one statement per batch) and record
        anomalies. A stream first seen by this consumer is not checked (it may have started after
        the topic's retention)."""
        versioned = [e for e in events if e.stream_version is not None and e.subject]
        if not versioned:
            return []
        runs: dict[str, list[ReceivedEvent]] = {}
        for e in versioned:
            runs.setdefault(e.subject, []).append(e)
        anomalies: list[dict[str, Any]] = []
        rows = await conn.execute(
            text(
                "WITH incoming AS (SELECT * FROM unnest(CAST(:s AS text[]), CAST(:f AS int[]), CAST(:l AS int[]))"
                " AS t(stream_id, first_version, last_version)),"
                " previous AS (SELECT i.stream_id, v.version FROM incoming i JOIN consumer_stream_versions v"
                "   ON v.consumer = :c AND v.stream_id = i.stream_id),"
                " saved AS (INSERT INTO consumer_stream_versions (consumer, stream_id, version)"
                "   SELECT :c, stream_id, last_version FROM incoming"
                "   ON CONFLICT (consumer, stream_id) DO UPDATE SET"
                "   version = greatest(consumer_stream_versions.version, excluded.version))"
                " SELECT stream_id, version FROM previous"
            ),
            {"c": self.name, "s": list(runs), "f": [r[0].stream_version for r in runs.values()],
             "l": [max(e.stream_version or 0 for e in r) for r in runs.values()]},
        )
        last_seen: dict[str, int] = {r.stream_id: r.version for r in rows}
        for stream, run in runs.items():
            expected = last_seen.get(stream)
            for e in run:
                assert e.stream_version is not None
                if expected is not None and e.stream_version != expected + 1:
                    anomalies.append({"c": self.name, "s": stream, "k": "gap" if e.stream_version > expected + 1
                                      else "out_of_order", "x": expected + 1, "r": e.stream_version, "e": e.event_id,
                                      "t": e.topic, "p": e.partition, "o": e.offset})
                expected = e.stream_version if expected is None else max(expected, e.stream_version)
        if anomalies:
            await conn.execute(
                text("INSERT INTO stream_anomalies (consumer, stream_id, kind, expected_version, received_version,"
                     " event_id, topic, partition, \"offset\") VALUES (:c, :s, :k, :x, :r, :e, :t, :p, :o)"),
                anomalies,
            )
        return anomalies

    def _report_anomalies(self, anomalies: list[dict[str, Any]]) -> None:
        for a in anomalies:
            STREAM_ANOMALIES.labels(self.name, a["k"]).inc()
            self._throttle.warning(f"anomaly:{a['k']}", "consumer %s: stream %s %s: expected version %d, received %d"
                                   " (%s/%s/%s; recorded in stream_anomalies)", self.name, a["s"],
                                   a["k"].replace("_", " "), a["x"], a["r"], a["t"], a["p"], a["o"])

    async def _record_unknown(self, conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> None:
        await conn.execute(
            text(
                "INSERT INTO unknown_events AS u (consumer, event_type, schema_version, count, sample_event_id,"
                " sample_topic, sample_partition, sample_offset) VALUES (:c, :t, :v, 1, :e, :tp, :p, :o)"
                " ON CONFLICT (consumer, event_type, schema_version) DO UPDATE SET count = u.count + 1,"
                " last_seen = now(), sample_event_id = excluded.sample_event_id, sample_topic = excluded.sample_topic,"
                " sample_partition = excluded.sample_partition, sample_offset = excluded.sample_offset"
            ),
            [{"c": self.name, "t": e.event_type, "v": e.schema_version, "e": e.event_id, "tp": e.topic,
              "p": e.partition, "o": e.offset} for e in events],
        )

    def _unpositioned_past(self, record: ConsumerRecord, stored: int | None) -> bool:
        """A record past the stored offset on a partition this runner did not seek (the seek on
        assignment failed, or aiokafka fetched from Kafka's committed offset before it ran):
        handling it could skip records in between, so the partition is seeked back first."""
        return (stored is not None and record.offset > stored
                and TopicPartition(record.topic, record.partition) not in self._seeked)

    async def _locked_offset(self, conn: AsyncConnection, record: ConsumerRecord) -> int | None:
        """The partition's stored next offset, row-locked until the transaction ends. Records can
        be handed out before the seek on assignment lands, and during a rebalance two members may
        briefly hold one partition; the row lock orders them, and a record below the stored
        offset is never handled (or parked) again."""
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

    async def _park(self, record: ConsumerRecord, event: ReceivedEvent | None, error: Exception,
                    attempts: int) -> int | None:
        """Dead-letter the record with its raw bytes and move the partition past it. Parking
        must not fail on the message's content: if the full dead letter is refused, the raw
        bytes alone are kept. A transient failure pauses the partition for a retry."""
        try:
            return await self._guard(record, self._park_once(record, event, error, attempts, full=True))
        except _PausePartition:
            raise
        except Exception as exc:
            log.error("consumer %s: parking %s/%s/%s in full failed (%r); keeping the raw bytes only", self.name,
                      record.topic, record.partition, record.offset, exc)
            return await self._guard(record, self._park_once(record, None, error, attempts, full=False))

    async def _park_once(self, record: ConsumerRecord, event: ReceivedEvent | None, error: Exception,
                         attempts: int, full: bool) -> int | None:
        headers = {(k or "").replace("\x00", ""): readable(v) for k, v in (record.headers or ())} if full else {}
        reason = repr(error).replace("\x00", "")[:4000]
        async with transaction(self.engine) as conn:
            stored = await self._locked_offset(conn, record)
            if stored is not None and record.offset < stored:
                return None
            if self._unpositioned_past(record, stored):
                raise _PausePartition(f"fetched offset {record.offset} is past the stored offset {stored}", 0.0, "gap")
            await conn.execute(
                text(
                    "INSERT INTO dead_letters (consumer, topic, partition, \"offset\", event_id, event_type,"
                    " headers, value, error, attempts, raw_key, raw_value, raw_headers) VALUES (:c, :t, :p, :o,"
                    " :e, :et, CAST(:h AS jsonb), :v, :err, :a, :rk, :rv, :rh) ON CONFLICT DO NOTHING"
                ),
                {"c": self.name, "t": record.topic, "p": record.partition, "o": record.offset,
                 "e": event.event_id if event else None, "et": event.event_type if event else None,
                 "h": json.dumps(headers), "v": readable(record.value) if full else None, "err": reason, "a": attempts,
                 "rk": bytes(record.key) if record.key is not None else None,
                 "rv": bytes(record.value) if record.value is not None else None,
                 "rh": encode_headers(record.headers)},
            )
            anomalies: list[dict[str, Any]] = []
            if event is not None:
                fresh = (await conn.execute(
                    text("INSERT INTO inbox (consumer, event_id) VALUES (:c, :e) ON CONFLICT DO NOTHING RETURNING 1"),
                    {"c": self.name, "e": event.event_id})).first()
                if fresh is not None:
                    anomalies = await self._track_streams(conn, [event])
            await self._store_offset(conn, record)
        self._report_anomalies(anomalies)
        PARKED.labels(self.name).inc()
        HANDLED.labels(self.name, "parked").inc()
        self.parked += 1
        self._throttle.error("parked", "consumer %s parked %s/%s/%s after %d attempt(s): %s", self.name, record.topic,
                             record.partition, record.offset, attempts, reason[:300])
        return record.offset + 1
