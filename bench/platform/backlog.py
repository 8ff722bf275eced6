"""The aims of issue 9 that a load through the HTTP APIs cannot show, measured in the same
bench-platform run with the machinery of `make bench` and `make bench-projections`:

- event appends (shared.eventstore.append) beside plain asyncpg executemany of the same rows;
- the outbox relay (shared.relay.OutboxRelay) beside a plain aiokafka producer sending the same
  messages;
- every service's live projection draining a backlog with its REAL consumers (handler, contract
  registry, inbox, stream versions, offsets), beside a plain aiokafka consumer COPYing the same
  events with its offsets (the ceiling of a consumer that writes).

Each runs on a database and topics of its own, after the load phases, while the platform's
services idle; bench/mechanisms.py and bench/projections.py say exactly what each side does.
"""
from __future__ import annotations

from dataclasses import dataclass

from bench import mechanisms, projections
from shared.db import apply_migrations, make_engine, sql_files
from tests.support.infra import asyncpg_dsn, fresh_database, sqlalchemy_url


@dataclass(frozen=True)
class Mechanisms:
    append_rate: float
    raw_insert_rate: float
    relay_rate: float
    raw_produce_rate: float


@dataclass(frozen=True)
class Drain:
    service: str
    events: int
    rate: float
    ceiling: float
    parked: int
    anomalies: int


async def measure_mechanisms() -> Mechanisms:
    async with fresh_database("bench_mech") as name:
        engine = make_engine(sqlalchemy_url(name), pool_size=mechanisms.WRITERS + 2)
        try:
            await apply_migrations(engine, sql_files("shared.migrations", "."))
            append_rate, raw_insert, _indexed = await mechanisms.bench_append(engine, asyncpg_dsn(name))
            relay_rate, raw_produce, _topic = await mechanisms.bench_relay(engine)
        finally:
            await engine.dispose()
    return Mechanisms(append_rate, raw_insert, relay_rate, raw_produce)


async def measure_drains(events: int) -> list[Drain]:
    """A receivables backlog of `events` events on private topics, drained by each service."""
    messages = projections.backlog(events)
    topics = await projections.publish(messages)
    counts: dict[str, int] = {}
    for m in messages:
        counts[topics[m.context]] = counts.get(topics[m.context], 0) + 1
    drains = []
    for service in projections.SERVICES:
        result = await projections.drain_service(service, topics, counts)
        subscribed = projections.subscribed_topics(service, topics)
        ceiling = await projections.raw_ceiling(service, subscribed, sum(counts[t] for t in subscribed))
        drains.append(Drain(service, result["events"], result["rate"], ceiling, result["parked"],
                            result["anomalies"]))
    return drains
