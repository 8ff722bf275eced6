"""Outbox relay: a context's committed events -> its Kafka topic.

- Reads with eventstore.read_all (never skips a late commit), publishes with key = stream_id and
  CloudEvents binary-mode headers, through an idempotent producer with acks="all".
- The checkpoint moves only after the broker acknowledged the whole batch: a crash re-sends
  (at least once), it never loses. Consumers dedupe by ce_id (event_id).
- One active relay per topic, by a lease row (relay_leases: holder, epoch, expires_at on the
  database's clock). The leader renews it every lease_seconds / 5; the others try to take it
  every lease_seconds / 5 and succeed once it expired, so a frozen (SIGSTOP) or cut-off leader
  is replaced within lease_seconds + lease_seconds / 5 (12 s by default), or, when it froze
  inside the transaction that renews the lease (holding the row's lock), once PostgreSQL ends
  that idle transaction (the engine's idle-in-transaction timeout, 15 s by default). Taking it
  bumps the epoch, the fencing token.
- Fencing, twice. In the database: the checkpoint is saved in a transaction that renews the
  lease only for the relay's own (holder, epoch), so a superseded relay saves nothing. In Kafka:
  each batch is one Kafka transaction of a producer whose transactional_id is per topic; the new
  leader's producer initialises that id before publishing, which bumps the producer epoch and
  aborts whatever the old one had open, and any later send or commit of the old producer is
  refused (ProducerFenced). Consumers read read_committed, so nothing a resumed old leader sends
  becomes visible. Before each batch a relay whose lease may have lapsed locally (it was frozen)
  proves it in the database first.
- Readiness: status() says leader or follower, the epoch, the last publish, the last error, and
  the oldest unpublished event's age; a leader failing for 30 s or with a backlog older than
  max_backlog_seconds is not ready, a follower is.
- While Kafka is down the relay retries with exponential backoff and jitter (the same error
  logged once per interval with a count); the APIs keep appending.

Run alone: python -m shared.relay --database-url ... --bootstrap ... --context invoicing
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import random
import signal
import socket
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared import eventstore
from shared.consumer import backoff_delay
from shared.contracts import topic_for
from shared.db import make_engine
from shared.logthrottle import Throttle, throttle_library_logs

log = logging.getLogger(__name__)

RELAYED = Counter("ledgerline_relay_events_total", "Events published to Kafka", ["context"])
RELAY_ERRORS = Counter("ledgerline_relay_errors_total", "Relay publish failures", ["context"])
RELAY_LEADER = Gauge("ledgerline_relay_leader", "1 while this process holds the relay lease", ["context"])


def cloudevent_headers(event: eventstore.StoredEvent | eventstore.OutboxEvent, context: str,
                       times: dict[datetime, bytes] | None = None) -> list[tuple[str, bytes]]:
    """The message's CloudEvents headers (Kafka binary content mode), in a fixed order.

    times: an IsoTimes shared by the events of a batch (a command's events share their
    occurred_at and recorded_at: each is formatted once)."""
    if times is None:
        times = IsoTimes()
    headers = [
        _SPECVERSION,
        ("ce_id", str(event.event_id).encode()),
        ("ce_type", event.event_type.encode()),
        _source_header(context),
        ("ce_subject", event.stream_id.encode()),
        ("ce_time", times[event.occurred_at]),
        ("ce_schemaversion", str(event.schema_version).encode()),
        ("ce_recordedat", times[event.recorded_at]),
        ("ce_streamtype", event.stream_type.encode()),
        ("ce_streamversion", str(event.version).encode()),
        _CONTENT_TYPE,
    ]
    metadata = event.metadata
    if metadata:
        for meta_key, header in _METADATA_HEADERS:
            value = metadata.get(meta_key)
            if value:
                headers.append((header, str(value).encode()))
    return headers


class IsoTimes(dict):
    """datetime -> its isoformat() as bytes, each computed once. For datetimes of one time zone
    (asyncpg returns every timestamptz in UTC): equal instants in two zones would share a text."""

    def __missing__(self, moment: datetime) -> bytes:
        value = self[moment] = moment.isoformat().encode()
        return value


_SPECVERSION = ("ce_specversion", b"1.0")
_CONTENT_TYPE = ("content-type", b"application/json")


@functools.lru_cache(maxsize=64)
def _source_header(context: str) -> tuple[str, bytes]:
    return ("ce_source", f"/ledgerline/{context}".encode())


_METADATA_HEADERS = (
    ("traceparent", "traceparent"),
    ("correlation_id", "ce_correlationid"),
    ("causation_id", "ce_causationid"),
    ("actor", "ce_actor"),
)
assert {key for key, _ in _METADATA_HEADERS} == set(eventstore.OUTBOX_METADATA)


def make_producer(bootstrap: str, client_id: str, transactional_id: str | None = None) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",  # aiokafka defaults to acks=1; an event is published only once all ISRs have it
        # One transactional id per topic: a new leader's producer fences the old one's epoch, so
        # whatever a frozen-then-resumed leader still sends is aborted, invisible to
        # read_committed consumers.
        transactional_id=transactional_id,
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=30000,
        # aiokafka 0.14 has no exponential reconnect backoff: a jittered per-client retry
        # interval keeps an outage at about one attempt a second per client.
        retry_backoff_ms=random.randint(500, 1500),
    )


# The producer's own partitioner (make_producer sets none): the relay computes with it what send()
# would, once per stream per batch.
_PARTITIONER = DefaultPartitioner()


class LeaseLost(RuntimeError):
    """Another relay took the lease (a higher epoch): this one must publish nothing more."""


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        bootstrap: str,
        context: str,
        *,
        topic: str | None = None,
        batch_size: int = 1000,
        poll_interval: float = 0.05,
        max_idle_interval: float = 0.5,
        lease_seconds: float = 10.0,
        max_backlog_seconds: float = 60.0,
        max_failing_seconds: float = 30.0,
        holder: str | None = None,
    ) -> None:
        self.engine = engine
        self.bootstrap = bootstrap
        self.context = context
        self.topic = topic or topic_for(context)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_idle_interval = max_idle_interval
        self.checkpoint_name = f"relay:{self.topic}"
        self.lease_name = f"relay:{self.topic}"
        self.transactional_id = f"ledgerline-relay-{self.topic}"
        self.lease_seconds = lease_seconds
        self.max_backlog_seconds = max_backlog_seconds
        self.max_failing_seconds = max_failing_seconds
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.epoch: int | None = None
        self.is_leader = False
        self.last_error: str | None = None
        self.error_since: float | None = None
        self.last_publish_at: float | None = None  # wall clock, for people
        self.published = 0
        self._lease_valid_until = 0.0  # monotonic; a frozen process finds it passed on waking
        self._stopping = asyncio.Event()
        self._throttle = Throttle(log)
        self._read_ahead: tuple[eventstore.Position, asyncio.Future] | None = None

    def stop(self) -> None:
        self._stopping.set()

    def make_producer(self) -> AIOKafkaProducer:
        return make_producer(self.bootstrap, f"ledgerline-relay-{self.context}", self.transactional_id)

    async def run(self) -> None:
        """Run until stop(); survive Kafka and database outages with backoff."""
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._run_with_lease()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep relaying after any outage
                RELAY_ERRORS.labels(self.context).inc()
                self._failed(exc)
                delay = backoff_delay(failures, 0.5, 30.0)
                failures += 1
                self._throttle.warning("run", "relay %s failed (%d in a row), retrying in %.1fs: %r",
                                       self.context, failures, delay, exc)
                await self._sleep(delay)

    def _failed(self, exc: BaseException) -> None:
        self.last_error = repr(exc)[:500]
        if self.error_since is None:
            self.error_since = time.monotonic()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    # -- the lease -------------------------------------------------------------------------

    async def _try_acquire(self) -> int | None:
        """Take the lease if it is free or expired (database clock); returns the new epoch."""
        async with self.engine.begin() as conn:
            epoch = (await conn.execute(
                text("INSERT INTO relay_leases AS l (name, holder, epoch, expires_at)"
                     " VALUES (:n, :h, 1, now() + make_interval(secs => :ttl))"
                     " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, epoch = l.epoch + 1,"
                     " acquired_at = now(), expires_at = excluded.expires_at WHERE l.expires_at < now()"
                     " RETURNING epoch"),
                {"n": self.lease_name, "h": self.holder, "ttl": self.lease_seconds})).scalar()
        if epoch is not None:
            self._lease_valid_until = time.monotonic() + self.lease_seconds * 0.8
        return epoch

    async def _renew(self, conn: AsyncConnection) -> None:
        """Extend the lease if this relay still holds its epoch; LeaseLost otherwise. Run in the
        checkpoint's transaction, it also fences the checkpoint: a relay whose lease was taken
        over saves nothing."""
        started = time.monotonic()
        held = (await conn.execute(
            text("UPDATE relay_leases SET expires_at = now() + make_interval(secs => :ttl)"
                 " WHERE name = :n AND holder = :h AND epoch = :e RETURNING 1"),
            {"n": self.lease_name, "h": self.holder, "e": self.epoch, "ttl": self.lease_seconds})).first()
        if held is None:
            raise LeaseLost(f"relay lease {self.lease_name} epoch {self.epoch} was taken over")
        self._lease_valid_until = started + self.lease_seconds * 0.8

    async def _release(self) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    text("UPDATE relay_leases SET expires_at = now() WHERE name = :n AND holder = :h AND epoch = :e"),
                    {"n": self.lease_name, "h": self.holder, "e": self.epoch})
        except Exception as exc:  # it expires on its own
            log.info("relay %s: lease not released (%r); it expires by itself", self.context, exc)

    async def _run_with_lease(self) -> None:
        while not self._stopping.is_set():
            epoch = await self._try_acquire()
            if epoch is not None:
                break
            await self._sleep(self.lease_seconds / 5)
        else:
            return
        self.epoch = epoch
        self.is_leader = True
        RELAY_LEADER.labels(self.context).set(1)
        log.info("relay %s: leader with lease epoch %d (%s)", self.context, epoch, self.holder)
        producer = self.make_producer()
        try:
            await producer.start()
            # Initialise the transactional id now: this fences the previous leader's producer
            # before anything is published, even if there is nothing to publish yet.
            await producer.begin_transaction()
            await producer.abort_transaction()
            idle = self.poll_interval
            renew_every = self.lease_seconds / 5
            renewed = time.monotonic()
            while not self._stopping.is_set():
                if time.monotonic() - renewed >= renew_every or time.monotonic() >= self._lease_valid_until:
                    async with self.engine.begin() as conn:
                        await self._renew(conn)
                    renewed = time.monotonic()
                sent = await self.relay_once(producer)
                if sent:
                    renewed = time.monotonic()  # the checkpoint's transaction renewed the lease
                    idle = self.poll_interval
                else:
                    # Back off while nothing is appended (an idle context costs a query every
                    # half second, not twenty), and snap back to the short interval on traffic.
                    await self._sleep(idle)
                    idle = min(idle * 2, self.max_idle_interval)
        finally:
            self.is_leader = False
            RELAY_LEADER.labels(self.context).set(0)
            await self._drop_read_ahead()
            try:
                await producer.stop()
            except Exception as exc:  # fenced or broker gone: nothing of ours is pending
                log.info("relay %s: producer stop: %r", self.context, exc)
            await self._release()

    # -- publishing ------------------------------------------------------------------------

    async def relay_once(self, producer: AIOKafkaProducer) -> int:
        """Publish the next batch in one Kafka transaction, then save the checkpoint in a
        database transaction that also renews (and so checks) the lease."""
        ahead, self._read_ahead = self._read_ahead, None
        try:
            if self.epoch is not None and time.monotonic() >= self._lease_valid_until:
                # Frozen past the lease (SIGSTOP, a long pause): prove the lease first.
                async with self.engine.begin() as conn:
                    await self._renew(conn)
            async with self.engine.connect() as conn:
                after = await eventstore.load_checkpoint(conn, self.checkpoint_name)
                events, ahead = await self._take_read_ahead(ahead, after), None
                if events is None:
                    events = await eventstore.read_outbox(conn, after, self.batch_size)
                await conn.commit()
        finally:
            if ahead is not None:
                await self._cancel(ahead[1])
        if not events:
            # Caught up: nothing is failing to publish. Without this, an idle context whose relay
            # failed once (a database outage) stayed "publishing failing" and unready for good.
            self.last_error = None
            self.error_since = None
            return 0
        try:
            await self._publish(producer, events)
        except BaseException:
            await self._drop_read_ahead()
            raise
        async with self.engine.begin() as conn:
            if self.epoch is not None:
                await self._renew(conn)
            await eventstore.save_checkpoint(conn, self.checkpoint_name, events[-1].position)
        RELAYED.labels(self.context).inc(len(events))
        self.published += len(events)
        self.last_publish_at = time.time()
        self.last_error = None
        self.error_since = None
        self._throttle.reset("run")
        return len(events)

    # -- reading ahead ----------------------------------------------------------------------
    # While a batch's Kafka transaction is acknowledged and committed and its checkpoint saved,
    # the next batch is read (on its own connection, one statement: its own snapshot). The next
    # relay_once uses it only if the checkpoint it loads is exactly where that read started, so
    # whatever happened meanwhile (this batch failed, another relay moved the checkpoint) it
    # reads again as before. Reading earlier is safe: the commit-safe window read then is a
    # prefix of the one read later (rows committed meanwhile all sort after it; see
    # shared.eventstore).

    def _start_read_ahead(self, after: eventstore.Position) -> None:
        self._read_ahead = (after, asyncio.ensure_future(self._read_from(after)))

    async def _read_from(self, after: eventstore.Position) -> list[eventstore.OutboxEvent]:
        async with self.engine.connect() as conn:
            return await eventstore.read_outbox(conn, after, self.batch_size)

    async def _take_read_ahead(self, ahead, after: eventstore.Position) -> list[eventstore.OutboxEvent] | None:
        if ahead is None:
            return None
        started, task = ahead
        if started != after:
            await self._cancel(task)
            return None
        try:
            return await task
        except asyncio.CancelledError:
            if not task.cancelled():  # this relay_once was cancelled, not the read
                task.cancel()
            raise
        except Exception:  # read it again on the relay's own connection
            return None

    async def _drop_read_ahead(self) -> None:
        ahead, self._read_ahead = self._read_ahead, None
        if ahead is not None:
            await self._cancel(ahead[1])

    @staticmethod
    async def _cancel(task: asyncio.Future) -> None:
        task.cancel()
        try:
            await task
        except BaseException:  # cancelled, or failed: nothing of it is used
            pass

    async def _publish(self, producer: AIOKafkaProducer, events: list[eventstore.OutboxEvent]) -> None:
        """The batch in one Kafka transaction, returning once the broker acknowledged all of it
        (acks=all) and the transaction committed.

        The records go in record batches built here, one open batch per partition, each handed to
        the producer whole (send_batch), instead of one send() per record: per record that saved
        the producer's coroutine, its partitioner (murmur2 in pure Python), a future and a
        callback. The partition is the producer's own default partitioner's choice for the key
        (murmur2 of the stream id over the topic's partitions in id order), computed once per
        stream in the batch, so a stream's events land in the partition they always did. A
        partition's records are appended and its batches handed over in read order, and the
        producer sends one partition's batches in the order given (it waits for a batch to be
        drained before queueing the next): each stream keeps its order."""
        topic = self.topic
        partitions = sorted(await producer.partitions_for(topic))
        partition_of: dict[str, int] = {}
        open_batches: dict[int, Any] = {}
        epoch_header = ("ledgerline_relay_epoch", str(self.epoch or 0).encode())
        context = self.context
        times = IsoTimes()
        async with producer.transaction():
            futures = []
            for event in events:
                stream_id = event.stream_id
                key = stream_id.encode()
                partition = partition_of.get(stream_id)
                if partition is None:
                    partition = partition_of[stream_id] = _PARTITIONER(key, partitions, partitions)
                batch = open_batches.get(partition)
                if batch is None:
                    batch = open_batches[partition] = producer.create_batch()
                value = event.payload_json.encode()
                headers = cloudevent_headers(event, context, times)
                headers.append(epoch_header)
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = open_batches[partition] = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                        raise ValueError(f"event {event.event_id} does not fit in a Kafka record batch")
            for partition, batch in open_batches.items():
                batch.close()  # complete: the producer sends it now instead of lingering (linger_ms)
                futures.append(await producer.send_batch(batch, topic, partition=partition))
            if len(events) >= self.batch_size:  # more may wait: read them while Kafka works
                self._start_read_ahead(events[-1].position)
            await asyncio.gather(*futures)  # every record acknowledged by the broker (acks=all)

    async def progress(self) -> dict[str, Any]:
        """Publishing progress for /readyz: the oldest unpublished event's age (the backlog)."""
        async with self.engine.connect() as conn:
            after = await eventstore.load_checkpoint(conn, self.checkpoint_name)
            oldest = await eventstore.oldest_after(conn, after)
        return {"backlog_age_seconds": None if oldest is None else round(max(oldest, 0.0), 1)}

    async def status(self, task_alive: bool) -> tuple[bool, dict[str, Any]]:
        """(ready, details): a follower is ready; a relay is not when publishing (or taking the
        lead and starting its producer) has failed for max_failing_seconds, nor a leader whose
        oldest unpublished event is older than max_backlog_seconds."""
        leader = self.is_leader  # as of this call: a failing relay drops and retakes the lease meanwhile
        details: dict[str, Any] = {
            "running": task_alive, "leader": leader, "holder": self.holder, "epoch": self.epoch,
            "published": self.published, "last_error": self.last_error,
            "last_publish_at": None if self.last_publish_at is None else
            datetime.fromtimestamp(self.last_publish_at, timezone.utc).isoformat(),
        }
        reasons = []
        if not task_alive:
            reasons.append("relay task not running")
        if self.error_since is not None and time.monotonic() - self.error_since > self.max_failing_seconds:
            reasons.append(f"publishing failing for {time.monotonic() - self.error_since:.0f}s")
        try:
            progress = await self.progress()
            details.update(progress)
            age = progress["backlog_age_seconds"]
            if leader and age is not None and age > self.max_backlog_seconds:
                reasons.append(f"oldest unpublished event is {age:.0f}s old")
        except Exception as exc:  # the database check reports the outage itself
            details["backlog_age_seconds"] = f"unknown: {exc.__class__.__name__}"
        details["reasons"] = reasons
        return not reasons, details


# The services' default (db_idle_in_transaction_timeout_seconds), for the stand-alone relay.
IDLE_IN_TRANSACTION_TIMEOUT = 15.0


def relay_engine(database_url: str, idle_in_transaction_timeout: float = IDLE_IN_TRANSACTION_TIMEOUT):
    """The relay's own engine when it runs as its own process. PostgreSQL ends a session of it
    that sits idle in a transaction longer than the timeout (the services' engines do the same,
    `db_idle_in_transaction_timeout_seconds`): a leader frozen (SIGSTOP, a VM pause) inside the
    transaction that renews its lease holds the lease row's lock, and without the timeout the
    other relays' takeover waited on that lock for as long as the process stayed frozen."""
    return make_engine(database_url, pool_size=2, idle_in_transaction_timeout=idle_in_transaction_timeout,
                       application_name="ledgerline-relay")


async def _main(args: argparse.Namespace) -> None:
    engine = relay_engine(args.database_url, args.idle_in_transaction_timeout)
    relay = OutboxRelay(engine, args.bootstrap, args.context, topic=args.topic, batch_size=args.batch_size,
                        lease_seconds=args.lease_seconds)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, relay.stop)
    try:
        await relay.run()
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Publish a context's committed events to Kafka")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--context", required=True)
    parser.add_argument("--topic")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--lease-seconds", type=float, default=10.0)
    parser.add_argument("--idle-in-transaction-timeout", type=float, default=IDLE_IN_TRANSACTION_TIMEOUT,
                        help="seconds after which PostgreSQL ends a transaction of this relay left idle")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    throttle_library_logs()
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
