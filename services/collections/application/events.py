"""Appending collections' own events. Each daily-run action (a notice, a task, an escalation, a
hold, a block) is a new stream of its own, so appends never contend; per-customer facts
(segment, collector) go on the customer's account stream."""
from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from shared import eventstore
from shared.contracts import EventContract
from shared.eventstore import utc_midnight


async def emit(conn: AsyncConnection, stream_type: str, entity_id: str, event: EventContract, on: date,
               meta: dict[str, Any], *, expected_version: int | None = None) -> int:
    """Append one event; expected_version None means 'at the stream's end' and is used only by
    writers serialised by a lock (the daily run, the per-customer profile updates)."""
    stream_id = f"{stream_type}-{entity_id}"
    if expected_version is None:
        expected_version = await eventstore.stream_version(conn, stream_id)
    return await eventstore.append(conn, stream_id, stream_type, expected_version, [eventstore.NewEvent(
        event_type=event.event_type, schema_version=event.schema_version, payload=event.to_payload(),
        occurred_at=utc_midnight(on), metadata=meta)])
