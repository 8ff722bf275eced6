"""Outbox relay: a context's committed events -> its Kafka topic.

- Reads with eventstore.read_all (never skips a late commit), publishes with key = stream_id and
  CloudEvents binary-mode headers, through an idempotent producer with acks="all".
- The checkpoint moves only after the broker acknowledged the whole batch: a crash re-sends
  (at least once), it never loses. Consumers dedupe by ce_id (event_id).
- One active relay per context: it holds a PostgreSQL session advisory lock as its lease, so
  extra replicas wait idle and take over if the holder dies.
- While Kafka is down the relay retries with backoff; the APIs keep appending.

Run alone: python -m shared.relay --database-url ... --bootstrap ... --context invoicing
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import eventstore
from shared.contracts import topic_for
from shared.db import make_engine

log = logging.getLogger(__name__)

RELAYED = Counter("ledgerline_relay_events_total", "Events published to Kafka", ["context"])
RELAY_ERRORS = Counter("ledgerline_relay_errors_total", "Relay publish failures", ["context"])
RELAY_LEADER = Gauge("ledgerline_relay_leader", "1 while this process holds the relay lease", ["context"])


def cloudevent_headers(event: eventstore.StoredEvent, context: str) -> list[tuple[str, bytes]]:
    headers = {
        "ce_specversion": "1.0",
        "ce_id": str(event.event_id),
        "ce_type": event.event_type,
        "ce_source": f"/ledgerline/{context}",
        "ce_subject": event.stream_id,
        "ce_time": event.occurred_at.isoformat(),
        "ce_schemaversion": str(event.schema_version),
        "ce_recordedat": event.recorded_at.isoformat(),
        "ce_streamtype": event.stream_type,
        "ce_streamversion": str(event.version),
        "content-type": "application/json",
    }
    for meta_key, header in (
        ("traceparent", "traceparent"),
        ("correlation_id", "ce_correlationid"),
        ("causation_id", "ce_causationid"),
        ("actor", "ce_actor"),
    ):
        value = event.metadata.get(meta_key)
        if value:
            headers[header] = str(value)
    return [(k, v.encode()) for k, v in headers.items()]


def make_producer(bootstrap: str, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",  # aiokafka defaults to acks=1; an event is published only once all ISRs have it
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=30000,
    )


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
    ) -> None:
        self.engine = engine
        self.bootstrap = bootstrap
        self.context = context
        self.topic = topic or topic_for(context)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_idle_interval = max_idle_interval
        self.checkpoint_name = f"relay:{self.topic}"
        self.is_leader = False
        self.last_error: str | None = None
        self.published = 0
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Run until stop(); survive Kafka and database outages with backoff."""
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                await self._run_with_lease()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep relaying after any outage
                RELAY_ERRORS.labels(self.context).inc()
                self.last_error = repr(exc)
                log.warning("relay %s failed, retrying in %.1fs: %r", self.context, backoff, exc)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    async def _run_with_lease(self) -> None:
        async with self.engine.connect() as lease:
            lock_key = f"ledgerline:relay:{self.topic}"
            while not self._stopping.is_set():
                got = (
                    await lease.execute(text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": lock_key})
                ).scalar()
                await lease.commit()
                if got:
                    break
                await self._sleep(2.0)
            else:
                return
            self.is_leader = True
            RELAY_LEADER.labels(self.context).set(1)
            producer = make_producer(self.bootstrap, f"ledgerline-relay-{self.context}")
            try:
                await producer.start()
                idle = self.poll_interval
                while not self._stopping.is_set():
                    sent = await self.relay_once(producer)
                    # Touch the lease connection so a dead database ends leadership promptly.
                    await lease.execute(text("SELECT 1"))
                    await lease.commit()
                    if sent:
                        idle = self.poll_interval
                    else:
                        # Back off while nothing is appended (an idle context costs a query every
                        # half second, not twenty), and snap back to the short interval on traffic.
                        await self._sleep(idle)
                        idle = min(idle * 2, self.max_idle_interval)
            finally:
                self.is_leader = False
                RELAY_LEADER.labels(self.context).set(0)
                await producer.stop()
                await lease.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": lock_key})
                await lease.commit()

    async def relay_once(self, producer: AIOKafkaProducer) -> int:
        async with self.engine.connect() as conn:
            after = await eventstore.load_checkpoint(conn, self.checkpoint_name)
            events = await eventstore.read_all(conn, after, self.batch_size)
            await conn.commit()
        if not events:
            return 0
        futures = []
        for event in events:
            futures.append(
                await producer.send(
                    self.topic,
                    value=eventstore.dumps(event.payload).encode(),
                    key=event.stream_id.encode(),
                    headers=cloudevent_headers(event, self.context),
                )
            )
        await asyncio.gather(*futures)  # every send acknowledged by the broker (acks=all)
        async with self.engine.begin() as conn:
            await eventstore.save_checkpoint(conn, self.checkpoint_name, events[-1].position)
        RELAYED.labels(self.context).inc(len(events))
        self.published += len(events)
        self.last_error = None
        return len(events)


async def _main(args: argparse.Namespace) -> None:
    engine = make_engine(args.database_url, pool_size=2)
    relay = OutboxRelay(engine, args.bootstrap, args.context, topic=args.topic, batch_size=args.batch_size)
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()

