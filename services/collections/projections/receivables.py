"""Projection of invoicing and cash_application events into collections' receivables facts."""
from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.contracts import CreditMemoIssued, InvoiceIssued, PaymentApplied
from services.collections.adapters import repository as repo


async def on_invoice_issued(conn: AsyncConnection, e: InvoiceIssued) -> None:
    await repo.record_invoice(conn, invoice_id=e.invoice_id, customer_id=e.customer_id, currency=e.currency,
                              total_amount=e.total_amount, issue_date=e.issue_date, due_date=e.due_date)


async def on_payment_applied(conn: AsyncConnection, event_id: str, e: PaymentApplied) -> bool:
    """Keyed by the applying event's id: one payment may be applied to an invoice in steps."""
    return await repo.record_payment_applied(conn, event_id=event_id, payment_id=e.payment_id,
                                             invoice_id=e.invoice_id, customer_id=e.customer_id,
                                             currency=e.currency, amount=e.amount, value_date=e.value_date)


async def on_credit_memo_issued(conn: AsyncConnection, e: CreditMemoIssued) -> None:
    await repo.record_credit_memo(conn, credit_memo_id=e.credit_memo_id, invoice_id=e.invoice_id,
                                  amount=e.amount, issue_date=e.issue_date)
