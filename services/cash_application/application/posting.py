"""Saving a payment and projecting what it just appended, in the caller's transaction."""
from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from shared import aggregate
from services.cash_application.domain.model import Payment
from services.cash_application.projections import payments as payments_projection


async def project_saved(conn: AsyncConnection, payment: Payment, meta: dict[str, Any]) -> None:
    """Append the payment's new events and project them, so the read model (and the open items'
    balances) move in the same transaction, under the same row locks, as the decision."""
    loaded_at = payment.version
    new_events = await aggregate.save(conn, payment, meta)
    await payments_projection.project(conn, payments_projection.appended(loaded_at, new_events))
