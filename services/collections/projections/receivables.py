"""Projection of invoicing and cash_application events into collections' receivables facts."""
from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.contracts import (
    CreditMemoIssued,
    CustomerParentChanged,
    CustomerProfileChanged,
    CustomerRegistered,
    DeductionOpened,
    DisputeOpened,
    DisputeResolved,
    InvoiceAdjusted,
    InvoiceIssued,
    InvoiceVoided,
    PaymentApplied,
    PaymentUnapplied,
    SmallBalanceWriteOffReversed,
    SmallBalanceWrittenOff,
)
from services.collections.adapters import accounts
from services.collections.adapters import repository as repo


async def on_invoice_issued(conn: AsyncConnection, e: InvoiceIssued) -> None:
    await repo.record_invoice(conn, invoice_id=e.invoice_id, customer_id=e.customer_id, currency=e.currency,
                              total_amount=e.total_amount, issue_date=e.issue_date, due_date=e.due_date,
                              invoice_number=e.invoice_number)


async def on_payment_applied(conn: AsyncConnection, event_id: str, e: PaymentApplied) -> bool:
    """Keyed by the applying event's id: one payment may be applied to an invoice in steps."""
    return await repo.record_payment_applied(conn, event_id=event_id, payment_id=e.payment_id,
                                             invoice_id=e.invoice_id, customer_id=e.customer_id,
                                             currency=e.currency, amount=e.amount, value_date=e.value_date)


async def on_credit_memo_issued(conn: AsyncConnection, e: CreditMemoIssued) -> None:
    await repo.record_credit_memo(conn, credit_memo_id=e.credit_memo_id, invoice_id=e.invoice_id,
                                  amount=e.amount, issue_date=e.issue_date)


async def on_customer_registered(conn: AsyncConnection, e: CustomerRegistered) -> None:
    await accounts.register_customer(conn, customer_id=e.customer_id, name=e.name, currency=e.currency,
                                     credit_limit=e.credit_limit, registered_on=e.registered_on)


async def on_balance_adjusted(conn: AsyncConnection, event_id: str,
                              e: PaymentUnapplied | SmallBalanceWrittenOff | SmallBalanceWriteOffReversed) -> None:
    """An unapplied payment reopens what it had paid; a small-balance write-off closes the rest,
    and its reversal (the application that justified it was undone) reopens that rest again.
    A PaymentReturned changes no balance by itself: cash_application unapplies the payment's
    applications (and reverses their write-offs), and those events reopen the invoices."""
    if isinstance(e, PaymentUnapplied):
        await accounts.add_adjustment(conn, key=event_id, invoice_id=e.invoice_id, kind="payment_unapplied",
                                      amount=e.amount, effective_on=e.unapplied_on)
    elif isinstance(e, SmallBalanceWriteOffReversed):
        await accounts.add_adjustment(conn, key=event_id, invoice_id=e.invoice_id,
                                      kind="small_balance_write_off_reversed", amount=e.amount,
                                      effective_on=e.reversed_on)
    else:
        await accounts.add_adjustment(conn, key=event_id, invoice_id=e.invoice_id, kind="small_balance_write_off",
                                      amount=-e.amount, effective_on=e.value_date)


async def on_dispute(conn: AsyncConnection, e: DisputeOpened | DeductionOpened | DisputeResolved) -> None:
    if isinstance(e, DisputeResolved):
        await accounts.resolve_dispute(conn, dispute_id=e.dispute_id, invoice_id=e.invoice_id,
                                       customer_id=e.customer_id, resolved_on=e.resolved_on)
    else:
        await accounts.record_dispute(conn, dispute_id=e.dispute_id, invoice_id=e.invoice_id,
                                      customer_id=e.customer_id, opened_on=e.opened_on)


async def on_invoice_adjusted(conn: AsyncConnection, event_id: str, e: InvoiceAdjusted | InvoiceVoided) -> None:
    """Invoicing's adjustments move the balance collections works: a debit adjustment raises it,
    a credit adjustment lowers it, a void takes the whole open balance off from its date."""
    if isinstance(e, InvoiceVoided):
        await accounts.add_adjustment(conn, key=event_id, invoice_id=e.invoice_id, kind="invoice_void",
                                      amount=-e.amount, effective_on=e.voided_on)
    else:
        await accounts.add_adjustment(conn, key=event_id, invoice_id=e.invoice_id,
                                      kind=f"invoice_{e.direction}_adjustment",
                                      amount=e.amount if e.direction == "debit" else -e.amount,
                                      effective_on=e.adjustment_date)


async def on_credit_limit(conn: AsyncConnection, event_id: str, e: CustomerRegistered | CustomerProfileChanged) -> None:
    """Credit limits over time: the registration's from registered_on, each change from its date
    (a customer registered without a limit has none until a change sets one)."""
    if isinstance(e, CustomerRegistered):
        if e.credit_limit is None:
            return
        await accounts.record_credit_limit(conn, event_id=event_id, customer_id=e.customer_id,
                                           effective_on=e.registered_on, credit_limit=e.credit_limit)
    elif e.credit_limit is not None:
        await accounts.record_credit_limit(conn, event_id=event_id, customer_id=e.customer_id,
                                           effective_on=e.effective_on, credit_limit=e.credit_limit)


async def on_parent_changed(conn: AsyncConnection, event_id: str, stream_version: int | None,
                            e: CustomerParentChanged) -> None:
    """The account that pays for the customer from effective_on, kept as a dated fact: the
    worklist and the account read the hierarchy as of their day."""
    await accounts.record_parent_change(conn, event_id=event_id, customer_id=e.customer_id,
                                        parent_customer_id=e.parent_customer_id, effective_on=e.effective_on,
                                        stream_version=stream_version or 0)
