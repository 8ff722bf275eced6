"""Command handlers: plain functions of (connection, command, metadata). The caller owns the
transaction; everything a command does commits or rolls back together."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from shared import aggregate, eventstore
from shared.eventstore import utc_midnight
from shared.problems import Conflict, Unprocessable
from services.cash_application.adapters import repository as repo
from services.cash_application.domain.model import CashApplicationRuleViolation, Payment, RemittanceLine
from services.cash_application.projections import payments as payments_projection


@dataclass(frozen=True)
class ReceivePayment:
    payment_id: str
    customer_id: str
    amount: Decimal
    currency: str
    value_date: date
    method: str
    reference: str | None
    remittance: tuple[RemittanceLine, ...]


async def receive_payment(conn: AsyncConnection, cmd: ReceivePayment, meta: dict[str, Any]) -> dict[str, Any]:
    """Receive a payment and apply it by its remittance: events and read models in one transaction."""
    payment = await aggregate.load(conn, Payment, cmd.payment_id)
    if payment.exists:
        raise Conflict(f"payment {cmd.payment_id} was already received", field="payment_id")
    # The balances the decision is based on stay locked until commit, so concurrent payments to
    # one invoice apply one after the other and never exceed its open balance together.
    open_items = await repo.lock_open_items(
        conn, cmd.customer_id,
        invoice_ids=sorted({line.invoice_id for line in cmd.remittance if line.invoice_id}),
        invoice_numbers=sorted({line.invoice_number for line in cmd.remittance if line.invoice_number}),
    )
    try:
        payment.receive(customer_id=cmd.customer_id, amount=cmd.amount, currency=cmd.currency,
                        value_date=cmd.value_date, method=cmd.method, reference=cmd.reference,
                        remittance=cmd.remittance, open_items=open_items, at=utc_midnight(cmd.value_date))
    except CashApplicationRuleViolation as exc:
        raise Unprocessable(str(exc), field=exc.field) from exc
    loaded_at = payment.version
    await aggregate.save(conn, payment, meta)
    await payments_projection.project(conn, await eventstore.read_stream(conn, payment.stream_id, loaded_at))
    stored = await repo.get_payment(conn, cmd.payment_id)
    assert stored is not None  # projected just above, in this transaction
    return stored
