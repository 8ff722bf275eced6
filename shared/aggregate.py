"""Event-sourced aggregate mechanism: state changes only by applying events; an aggregate is
rebuilt from its stream; saving appends its new events with the version it was loaded at."""
from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Sequence, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from shared import eventstore
from shared.contracts import EventContract, registry

A = TypeVar("A", bound="Aggregate")


class Aggregate:
    stream_type: ClassVar[str]

    def __init__(self, aggregate_id: str) -> None:
        self.id = aggregate_id
        self.version = 0
        self.pending: list[tuple[EventContract, datetime]] = []

    @classmethod
    def stream_id_for(cls, aggregate_id: str) -> str:
        return f"{cls.stream_type}-{aggregate_id}"

    @property
    def stream_id(self) -> str:
        return self.stream_id_for(self.id)

    @property
    def exists(self) -> bool:
        return self.version > 0 or bool(self.pending)

    def trigger(self, event: EventContract, occurred_at: datetime) -> None:
        """Record a new event after the caller's rule checks passed, and apply it."""
        self.apply(event)
        self.pending.append((event, occurred_at))

    def apply(self, event: EventContract) -> None:
        method = getattr(self, f"when_{event.event_type}", None)
        if method is None:
            raise TypeError(f"{type(self).__name__} does not apply {event.event_type}")
        method(event)


async def load(conn: AsyncConnection, cls: type[A], aggregate_id: str) -> A:
    aggregate = cls(aggregate_id)
    for stored in await eventstore.read_stream(conn, cls.stream_id_for(aggregate_id)):
        aggregate.apply(registry.parse(stored.event_type, stored.schema_version, stored.payload))
        aggregate.version = stored.version
    return aggregate


def from_history(cls: type[A], aggregate_id: str, history: Sequence[tuple[str, int, dict[str, Any], int]]) -> A:
    """An aggregate rebuilt from its stream's events read by the caller's own query: (event_type,
    schema_version, payload, version) each, in version order (a command that reads the stream
    together with other state, in one round trip)."""
    aggregate = cls(aggregate_id)
    for event_type, schema_version, payload, version in history:
        aggregate.apply(registry.parse(event_type, schema_version, payload))
        aggregate.version = version
    return aggregate


async def load_many(conn: AsyncConnection, cls: type[A], aggregate_ids: Sequence[str]) -> dict[str, A]:
    """Many aggregates of one type in one query: {aggregate_id: aggregate} (one that has no
    events is there too, not existing)."""
    streams = await eventstore.read_streams(conn, [cls.stream_id_for(i) for i in aggregate_ids])
    loaded = {}
    for aggregate_id in aggregate_ids:
        aggregate = cls(aggregate_id)
        for stored in streams.get(cls.stream_id_for(aggregate_id), []):
            aggregate.apply(registry.parse(stored.event_type, stored.schema_version, stored.payload))
            aggregate.version = stored.version
        loaded[aggregate_id] = aggregate
    return loaded


def _new_events(aggregate: Aggregate, metadata: dict[str, Any]) -> list[eventstore.NewEvent]:
    return [
        eventstore.NewEvent(
            event_type=event.event_type,
            schema_version=event.schema_version,
            payload=event.to_payload(),
            occurred_at=occurred_at,
            metadata=metadata,
            contract=event,
        )
        for event, occurred_at in aggregate.pending
    ]


def new_streams(aggregates: Sequence[Aggregate], metadata: dict[str, Any] | Sequence[dict[str, Any]]
                ) -> list[tuple[str, str, list[eventstore.NewEvent]]]:
    """New aggregates' streams as eventstore.append_new_streams takes them, (stream_id,
    stream_type, events) each (pure: no I/O; the aggregates keep their pending events), for a
    caller that builds the rows in one process and inserts them in another (a bank import's
    worker). `metadata`: one for all, or one per aggregate (each caused by its own event)."""
    loaded = [a.stream_id for a in aggregates if a.version != 0]
    if loaded:
        raise ValueError(f"save_new takes new aggregates only; {loaded[0]} is at a version")
    each = [metadata] * len(aggregates) if isinstance(metadata, dict) else list(metadata)
    if len(each) != len(aggregates):
        raise ValueError(f"{len(each)} metadata for {len(aggregates)} aggregates")
    return [(a.stream_id, a.stream_type, _new_events(a, m)) for a, m in zip(aggregates, each)]


async def save_new(conn: AsyncConnection, aggregates: Sequence[Aggregate],
                   metadata: dict[str, Any] | Sequence[dict[str, Any]]) -> list[list[eventstore.NewEvent]]:
    """Save many aggregates created in this command (none loaded from a stream) in one batch:
    eventstore.append_new_streams. Returns each one's new events, in order. `metadata`: one for
    all, or one per aggregate."""
    streams = new_streams(aggregates, metadata)
    await eventstore.append_new_streams(conn, streams)
    for a, (_, _, events) in zip(aggregates, streams):
        a.version = len(events)
        a.pending.clear()
    return [events for _, _, events in streams]


async def save(conn: AsyncConnection, aggregate: Aggregate, metadata: dict[str, Any]) -> list[eventstore.NewEvent]:
    """Append the aggregate's pending events, expecting the version it was loaded at."""
    new_events = _new_events(aggregate, metadata)
    aggregate.version = await eventstore.append(
        conn, aggregate.stream_id, aggregate.stream_type, aggregate.version, new_events
    )
    aggregate.pending.clear()
    return new_events
