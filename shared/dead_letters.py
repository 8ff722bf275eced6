"""Operating the dead-letter table: list parked events, and replay one once its cause is fixed
(python -m services.<context> dead-letters [--replay ID ...]).

A replay runs the consumer's handler in one transaction with the inbox row, exactly as the
runner would have, and marks the dead letter replayed; the row stays as the audit trail."""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.consumer import Handler, PoisonMessage, decode_headers, decode_parts, decode_raw


class ReplayRefused(Exception):
    """The dead letter cannot be replayed (unknown, already replayed, or still undecodable)."""


async def parked(engine: AsyncEngine, consumer: str | None = None, include_replayed: bool = False) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, consumer, topic, partition, \"offset\", event_id, event_type, error, attempts,"
                 " parked_at, replayed_at FROM dead_letters"
                 " WHERE (CAST(:c AS text) IS NULL OR consumer = :c) AND (:all OR replayed_at IS NULL) ORDER BY id"),
            {"c": consumer, "all": include_replayed},
        )
        return [dict(r) for r in rows.mappings()]


async def replay(engine: AsyncEngine, dead_letter_id: int, handlers: dict[str, Handler]) -> dict[str, Any]:
    """Re-run the handler of the dead letter's consumer on its event. Raises ReplayRefused, or
    the handler's own error (then nothing changed)."""
    async with engine.begin() as conn:
        row = (await conn.execute(
            text("SELECT * FROM dead_letters WHERE id = :id FOR UPDATE"), {"id": dead_letter_id})).mappings().first()
        if row is None:
            raise ReplayRefused(f"no dead letter {dead_letter_id}")
        if row["replayed_at"] is not None:
            raise ReplayRefused(f"dead letter {dead_letter_id} was replayed at {row['replayed_at']}")
        handler = handlers.get(row["consumer"])
        if handler is None:
            raise ReplayRefused(f"this service has no consumer {row['consumer']}")
        try:
            if row["raw_headers"] is not None:  # parked since migration 0003: the exact bytes
                event = decode_raw(row["topic"], row["partition"], row["offset"],
                                   decode_headers(bytes(row["raw_headers"])),
                                   bytes(row["raw_value"]) if row["raw_value"] is not None else None)
            else:
                headers = row["headers"] if isinstance(row["headers"], dict) else json.loads(row["headers"])
                event = decode_parts(row["topic"], row["partition"], row["offset"], headers, row["value"])
        except PoisonMessage as exc:
            raise ReplayRefused(f"dead letter {dead_letter_id} is still undecodable: {exc}") from exc
        # Parking recorded the event in the inbox so redeliveries skip it; the replay owns it now.
        await conn.execute(text("DELETE FROM inbox WHERE consumer = :c AND event_id = :e"),
                           {"c": row["consumer"], "e": event.event_id})
        await conn.execute(text("INSERT INTO inbox (consumer, event_id) VALUES (:c, :e)"),
                           {"c": row["consumer"], "e": event.event_id})
        await handler(conn, event)
        await conn.execute(text("UPDATE dead_letters SET replayed_at = now() WHERE id = :id"), {"id": dead_letter_id})
    return {"id": dead_letter_id, "event_id": event.event_id, "event_type": event.event_type, "replayed": True}
