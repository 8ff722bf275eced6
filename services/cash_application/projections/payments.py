"""The payments read model (payments, applications, short pays, small-balance write-offs) and the
open items' applied and written-off amounts, projected from the payment streams.

The command that appends a payment's events projects them in the same transaction, so the read
model is never behind its own writes and an open item's applied_amount moves under the same row
lock that decided the application. rebuild() replays every payment stream into empty tables and
must give the same result."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.contracts import (PaymentApplied, PaymentReceived, PaymentRefunded, PaymentReturned, PaymentUnapplied, ShortPayDetected,
                              SmallBalanceWriteOffReversed, SmallBalanceWrittenOff, UnappliedCashRecorded, registry)
from shared import eventstore
from shared.eventstore import StoredEvent
from services.cash_application.adapters import repository as repo
from services.cash_application.domain.model import Payment


@dataclass(frozen=True)
class Appended:
    """An event just appended in this transaction, as the projection needs it (no read-back)."""

    event_id: Any
    event_type: str
    schema_version: int
    payload: dict[str, Any]
    version: int


def appended(loaded_at: int, new_events: Sequence[eventstore.NewEvent]) -> list[Appended]:
    return [Appended(e.event_id, e.event_type, e.schema_version, e.payload, loaded_at + i)
            for i, e in enumerate(new_events, start=1)]


async def project(conn: AsyncConnection, events: Iterable[StoredEvent | Appended]) -> None:
    """Project a payment's events in stream order. A SmallBalanceWrittenOff is appended together
    with (right after) the application it belongs to, so that application is in the same batch."""
    versions: dict[str, int] = {}  # the payment's version is written once, after its events
    latest_application: dict[tuple[str, str], str] = {}  # (payment, invoice) -> application just made
    for stored in events:
        e = registry.parse(stored.event_type, stored.schema_version, stored.payload)
        if isinstance(e, PaymentReceived):
            await repo.insert_payment(conn, payment_id=e.payment_id, customer_id=e.customer_id, currency=e.currency,
                                      amount=e.amount, value_date=e.value_date, method=e.method,
                                      reference=e.reference, version=stored.version)
        elif isinstance(e, PaymentApplied):
            # v1 events arrive upcast: rule "remittance", confidence 1.
            if await repo.insert_application(conn, event_id=stored.event_id, payment_id=e.payment_id,
                                             invoice_id=e.invoice_id, customer_id=e.customer_id,
                                             currency=e.currency, amount=e.amount, value_date=e.value_date,
                                             rule=e.rule, confidence=e.confidence, stream_version=stored.version,
                                             application_id=e.application_id):
                await repo.add_applied_to_open_item(conn, e.invoice_id, e.amount)
            latest_application[(e.payment_id, e.invoice_id)] = e.application_id
        elif isinstance(e, PaymentUnapplied):
            await repo.reverse_application(conn, payment_id=e.payment_id, application_id=e.application_id,
                                           amount=e.amount, invoice_id=e.invoice_id, on=e.unapplied_on,
                                           reason=e.reason)
        elif isinstance(e, PaymentReturned):
            await repo.mark_returned(conn, e.payment_id, e.returned_on, e.reason_code)
        elif isinstance(e, SmallBalanceWrittenOff):
            await repo.record_write_off(conn, write_off_id=e.adjustment_id, invoice_id=e.invoice_id,
                                        customer_id=e.customer_id, currency=e.currency, amount=e.amount,
                                        source="small_balance", payment_id=e.payment_id,
                                        reason_code=e.reason_code, recorded_on=e.value_date,
                                        application_id=latest_application.get((e.payment_id, e.invoice_id)))
        elif isinstance(e, SmallBalanceWriteOffReversed):
            await repo.reverse_write_off(conn, write_off_id=e.adjustment_id, on=e.reversed_on, reason=e.reason)
        elif isinstance(e, ShortPayDetected):
            await repo.insert_short_pay(conn, event_id=stored.event_id, payment_id=e.payment_id,
                                        invoice_id=e.invoice_id, customer_id=e.customer_id, currency=e.currency,
                                        open_amount=e.open_amount, paid_amount=e.paid_amount,
                                        shortfall=e.shortfall, reason_code=e.reason_code,
                                        value_date=e.value_date, stream_version=stored.version)
        elif isinstance(e, UnappliedCashRecorded):
            await repo.set_unapplied_reason(conn, e.payment_id, e.reason)
        elif isinstance(e, PaymentRefunded):
            await repo.record_refund(conn, refund_id=e.refund_id, payment_id=e.payment_id, customer_id=e.customer_id,
                                     currency=e.currency, amount=e.amount, method=e.method, reference=e.reference,
                                     refunded_on=e.refunded_on, reason=e.reason)
        payment_id = getattr(e, "payment_id", None)
        if payment_id and not isinstance(e, PaymentReceived):
            versions[payment_id] = max(versions.get(payment_id, 0), stored.version)
    for payment_id, version in versions.items():
        await repo.set_payment_version(conn, payment_id, version)


async def project_new_payments(conn: AsyncConnection, streams: Sequence[Sequence[eventstore.NewEvent]]) -> None:
    """The bulk path for payments created in this transaction (an import's receipts): each stream
    is new and holds only PaymentReceived, PaymentApplied, SmallBalanceWrittenOff,
    ShortPayDetected and UnappliedCashRecorded. One statement per table instead of several per
    event; the rows are the ones project() writes event by event, which rebuild() replays, and a
    test holds the two to the same read model. The rows are built (each event parsed against its
    contract: CPU work) in a worker thread, so the event loop keeps answering meanwhile."""
    rows = await asyncio.to_thread(new_payment_rows, streams)
    await write_new_payment_rows(conn, rows)


@dataclass
class NewPaymentRows:
    payments: list[dict[str, Any]]
    applications: list[dict[str, Any]]
    short_pays: list[dict[str, Any]]
    write_offs: list[dict[str, Any]]
    applied_by_invoice: dict[str, Any]
    written_off_by_invoice: dict[str, tuple[str, str, Any]]


async def write_new_payment_rows(conn: AsyncConnection, rows: NewPaymentRows) -> None:
    await repo.insert_payment_rows(conn, rows.payments)
    await repo.insert_application_rows(conn, rows.applications)
    await repo.insert_short_pay_rows(conn, rows.short_pays)
    await repo.insert_write_off_rows(conn, rows.write_offs, rows.written_off_by_invoice)
    await repo.add_applied_to_open_items(conn, rows.applied_by_invoice)


def new_payment_rows(streams: Sequence[Sequence[eventstore.NewEvent]]) -> NewPaymentRows:
    """The read model's rows of new payment streams (pure: no I/O)."""
    payments: list[dict[str, Any]] = []
    applications: list[dict[str, Any]] = []
    short_pays: list[dict[str, Any]] = []
    write_offs: list[dict[str, Any]] = []
    applied_by_invoice: dict[str, Any] = {}
    written_off_by_invoice: dict[str, tuple[str, str, Any]] = {}
    for events in streams:
        row: dict[str, Any] | None = None
        latest_application: dict[str, str] = {}  # invoice -> the application just made on it
        for version, new in enumerate(events, start=1):
            e = new.contract if new.contract is not None else registry.parse(new.event_type, new.schema_version,
                                                                             new.payload)
            if isinstance(e, PaymentReceived) and version == 1:
                row = repo.payment_row(payment_id=e.payment_id, customer_id=e.customer_id, currency=e.currency,
                                       amount=e.amount, value_date=e.value_date, method=e.method,
                                       reference=e.reference, version=1)
                continue
            if row is None:
                raise ValueError(f"{new.event_type} before PaymentReceived: not a new payment's stream")
            row["v"] = version
            if isinstance(e, PaymentApplied):
                applications.append(repo.application_row(
                    event_id=new.event_id, payment_id=e.payment_id, invoice_id=e.invoice_id,
                    customer_id=e.customer_id, currency=e.currency, amount=e.amount, value_date=e.value_date,
                    rule=e.rule, confidence=e.confidence, stream_version=version, application_id=e.application_id))
                row["applied"] += e.amount
                latest_application[e.invoice_id] = e.application_id
                applied_by_invoice[e.invoice_id] = applied_by_invoice.get(e.invoice_id, 0) + e.amount
            elif isinstance(e, SmallBalanceWrittenOff):
                write_offs.append(repo.write_off_row(
                    write_off_id=e.adjustment_id, invoice_id=e.invoice_id, customer_id=e.customer_id,
                    currency=e.currency, amount=e.amount, source="small_balance", payment_id=e.payment_id,
                    reason_code=e.reason_code, recorded_on=e.value_date,
                    application_id=latest_application.get(e.invoice_id)))
                row["written_off"] += e.amount
                previous = written_off_by_invoice.get(e.invoice_id, (e.customer_id, e.currency, 0))
                written_off_by_invoice[e.invoice_id] = (e.customer_id, e.currency, previous[2] + e.amount)
            elif isinstance(e, ShortPayDetected):
                short_pays.append(repo.short_pay_row(
                    event_id=new.event_id, payment_id=e.payment_id, invoice_id=e.invoice_id,
                    customer_id=e.customer_id, currency=e.currency, open_amount=e.open_amount,
                    paid_amount=e.paid_amount, shortfall=e.shortfall, reason_code=e.reason_code,
                    value_date=e.value_date, stream_version=version))
            elif isinstance(e, UnappliedCashRecorded):
                row["reason"] = e.reason
            else:
                raise ValueError(f"{new.event_type} is not an event of a newly received payment")
        if row is not None:
            payments.append(row)
    return NewPaymentRows(payments, applications, short_pays, write_offs, applied_by_invoice, written_off_by_invoice)


async def rebuild(conn: AsyncConnection) -> int:
    """Rebuild the payments read model and the open items' applied amounts from the event
    store, in the caller's transaction. Returns the number of events replayed.

    The table locks are taken in the order a payment command touches them (open items first),
    so a command in flight finishes first and one arriving later waits for the rebuild."""
    await conn.execute(text("LOCK TABLE open_items, payments, payment_applications, short_pays, open_item_write_offs"
                            " IN EXCLUSIVE MODE"))
    await conn.execute(text("DELETE FROM short_pays"))
    await conn.execute(text("DELETE FROM payment_applications"))
    await conn.execute(text("DELETE FROM payments"))
    await conn.execute(text("DELETE FROM open_item_write_offs WHERE source = 'small_balance'"))
    await conn.execute(text("UPDATE open_items SET applied_amount = 0 WHERE applied_amount <> 0"))
    # Collections' write-offs stay (they come from its events, not from the payment streams).
    await conn.execute(text(
        "UPDATE open_items o SET written_off_amount = coalesce((SELECT sum(w.amount) FROM open_item_write_offs w"
        " WHERE w.invoice_id = o.invoice_id AND w.reversed_on IS NULL), 0) WHERE written_off_amount <> 0"))
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
