"""The payments read model (payments, applications, short pays) and the open items' applied
amounts, projected from the payment streams.

The command that appends a payment's events projects them in the same transaction, so the read
model is never behind its own writes and an open item's applied_amount moves under the same row
lock that decided the application. rebuild() replays every payment stream into empty tables and
must give the same result."""
from __future__ import annotations

from typing import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.contracts import PaymentApplied, PaymentReceived, ShortPayDetected, UnappliedCashRecorded, registry
from shared import eventstore
from shared.eventstore import StoredEvent
from services.cash_application.adapters import repository as repo
from services.cash_application.domain.model import REMITTANCE_CONFIDENCE, RULE_REMITTANCE, Payment


async def project(conn: AsyncConnection, events: Iterable[StoredEvent]) -> None:
    for stored in events:
        e = registry.parse(stored.event_type, stored.schema_version, stored.payload)
        if isinstance(e, PaymentReceived):
            await repo.insert_payment(conn, payment_id=e.payment_id, customer_id=e.customer_id, currency=e.currency,
                                      amount=e.amount, value_date=e.value_date, method=e.method,
                                      reference=e.reference, version=stored.version)
        elif isinstance(e, PaymentApplied):
            # PaymentApplied v1 has no rule: remittance is the only rule that produces it so far.
            if await repo.insert_application(conn, event_id=stored.event_id, payment_id=e.payment_id,
                                             invoice_id=e.invoice_id, customer_id=e.customer_id,
                                             currency=e.currency, amount=e.amount, value_date=e.value_date,
                                             rule=RULE_REMITTANCE, confidence=REMITTANCE_CONFIDENCE,
                                             stream_version=stored.version):
                await repo.add_applied_to_open_item(conn, e.invoice_id, e.amount)
        elif isinstance(e, ShortPayDetected):
            await repo.insert_short_pay(conn, event_id=stored.event_id, payment_id=e.payment_id,
                                        invoice_id=e.invoice_id, customer_id=e.customer_id, currency=e.currency,
                                        open_amount=e.open_amount, paid_amount=e.paid_amount,
                                        shortfall=e.shortfall, reason_code=e.reason_code,
                                        value_date=e.value_date, stream_version=stored.version)
        elif isinstance(e, UnappliedCashRecorded):
            await repo.set_unapplied_reason(conn, e.payment_id, e.reason)
        payment_id = getattr(e, "payment_id", None)
        if payment_id:
            await repo.set_payment_version(conn, payment_id, stored.version)


async def rebuild(conn: AsyncConnection) -> int:
    """Rebuild the payments read model and the open items' applied amounts from the event
    store, in the caller's transaction. Returns the number of events replayed.

    The table locks are taken in the order a payment command touches them (open items first),
    so a command in flight finishes first and one arriving later waits for the rebuild."""
    await conn.execute(text("LOCK TABLE open_items, payments, payment_applications, short_pays IN EXCLUSIVE MODE"))
    await conn.execute(text("DELETE FROM short_pays"))
    await conn.execute(text("DELETE FROM payment_applications"))
    await conn.execute(text("DELETE FROM payments"))
    await conn.execute(text("UPDATE open_items SET applied_amount = 0 WHERE applied_amount <> 0"))
    streams = (await conn.execute(
        text("SELECT stream_id FROM events WHERE stream_type = :t GROUP BY stream_id ORDER BY min(global_position)"),
        {"t": Payment.stream_type},
    )).scalars().all()
    replayed = 0
    for stream_id in streams:
        events = await eventstore.read_stream(conn, stream_id)
        await project(conn, events)
        replayed += len(events)
    return replayed
