"""Open items fed by invoicing's events: the invoices cash can be applied to.

Facts are stored keyed by what they refer to (the invoice, the credit memo), so the model
converges whatever the order: a CreditMemoIssued that arrives before its InvoiceIssued leaves a
row holding only the credit, which InvoiceIssued completes. Redeliveries are stopped by the
consumer runner's inbox, and the keyed upserts make them harmless anyway."""
from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.consumer import Projection, ReceivedEvent
from shared.contracts import (
    CreditMemoIssued,
    CustomerParentChanged,
    CustomerRegistered,
    InvoiceAdjusted,
    InvoiceIssued,
    InvoiceVoided,
    UnknownEvent,
    WriteOffApproved,
    registry,
)
from services.cash_application.adapters import repository as repo


async def _on_invoicing_contract(conn: AsyncConnection, contract: Any) -> None:
    if isinstance(contract, InvoiceIssued):
        await repo.record_invoice_issued(
            conn, invoice_id=contract.invoice_id, invoice_number=contract.invoice_number,
            customer_id=contract.customer_id, currency=contract.currency, total_amount=contract.total_amount,
            issue_date=contract.issue_date, due_date=contract.due_date)
    elif isinstance(contract, CreditMemoIssued):
        await repo.record_credit_memo(
            conn, credit_memo_id=contract.credit_memo_id, invoice_id=contract.invoice_id,
            customer_id=contract.customer_id, currency=contract.currency, amount=contract.amount,
            issue_date=contract.issue_date, reason=contract.reason)
    elif isinstance(contract, CustomerRegistered):
        await repo.record_customer(conn, customer_id=contract.customer_id, name=contract.name,
                                   currency=contract.currency)
    elif isinstance(contract, CustomerParentChanged):
        await repo.record_customer_parent(conn, customer_id=contract.customer_id,
                                          parent_customer_id=contract.parent_customer_id)
    elif isinstance(contract, InvoiceAdjusted):
        # A credit adjustment lowers what cash can be applied to; a debit raises it.
        await repo.record_invoice_adjustment(
            conn, adjustment_id=contract.adjustment_id, invoice_id=contract.invoice_id,
            customer_id=contract.customer_id, currency=contract.currency, kind=contract.direction,
            lowers_by=contract.amount if contract.direction == "credit" else -contract.amount,
            adjusted_on=contract.adjustment_date, reason=contract.reason_code)
    elif isinstance(contract, InvoiceVoided):
        await repo.record_invoice_adjustment(
            conn, adjustment_id=f"void:{contract.invoice_id}", invoice_id=contract.invoice_id,
            customer_id=contract.customer_id, currency=contract.currency, kind="void", lowers_by=contract.amount,
            adjusted_on=contract.voided_on, reason=contract.reason)


async def _on_invoicing_event(conn: AsyncConnection, event: ReceivedEvent) -> None:
    """The cash_application consumer's handler (topic ledgerline.invoicing.events)."""
    try:
        contract = registry.parse(event.event_type, event.schema_version, event.data)
    except UnknownEvent:
        return  # an event type this version does not know: nothing to do with it
    await _on_invoicing_contract(conn, contract)


async def _apply_invoicing_batch(conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> None:
    """The same for a batch in offset order: invoices, credit memos and customers with one
    executemany each per run of them; an adjustment or a void first writes what is pending."""
    invoices: list[dict[str, Any]] = []
    credits: list[dict[str, Any]] = []
    customers: list[dict[str, Any]] = []

    async def flush() -> None:
        await repo.record_invoicing_facts(conn, invoices=invoices, credits=credits, customers=customers)
        invoices.clear()
        credits.clear()
        customers.clear()

    for event in events:
        try:
            contract = registry.parse(event.event_type, event.schema_version, event.data)
        except UnknownEvent:
            continue
        if isinstance(contract, InvoiceIssued):
            invoices.append(repo.invoice_row(
                invoice_id=contract.invoice_id, invoice_number=contract.invoice_number,
                customer_id=contract.customer_id, currency=contract.currency, total_amount=contract.total_amount,
                issue_date=contract.issue_date, due_date=contract.due_date))
        elif isinstance(contract, CreditMemoIssued):
            credits.append(repo.credit_row(
                credit_memo_id=contract.credit_memo_id, invoice_id=contract.invoice_id,
                customer_id=contract.customer_id, currency=contract.currency, amount=contract.amount,
                issue_date=contract.issue_date, reason=contract.reason))
        elif isinstance(contract, CustomerRegistered):
            customers.append(repo.customer_row(customer_id=contract.customer_id, name=contract.name,
                                               currency=contract.currency))
        else:
            # Everything else (adjustments, voids, parent changes, and any event added later) goes
            # through the per-event handler, in order, after what is pending: a batch never skips
            # what one event at a time would have applied.
            await flush()
            await _on_invoicing_contract(conn, contract)
    await flush()


# The cash_application consumer's handler (topic ledgerline.invoicing.events): event by event,
# or a batch at once (shared.consumer.Projection).
on_invoicing_event = Projection(_on_invoicing_event, _apply_invoicing_batch)


async def _on_collections_event(conn: AsyncConnection, event: ReceivedEvent) -> None:
    """The cash_application consumer of ledgerline.collections.events: an approved bad-debt
    write-off lowers the invoice's open balance (to zero), so no cash is matched to it."""
    try:
        contract = registry.parse(event.event_type, event.schema_version, event.data)
    except UnknownEvent:
        return
    if isinstance(contract, WriteOffApproved):
        await repo.record_write_off(
            conn, write_off_id=f"collections:{contract.write_off_id}", invoice_id=contract.invoice_id,
            customer_id=contract.customer_id, currency=contract.currency, amount=contract.amount,
            source="collections", payment_id=None, reason_code=contract.reason, recorded_on=contract.approved_on)


# As a Projection without a batch function: the runner hands it a partition's batch in one
# call (one CONSUMER span per event recorded for the batch), which applies the events one by
# one in offset order, as before.
on_collections_event = Projection(_on_collections_event)
