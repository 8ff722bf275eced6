"""Projection of invoicing's events into disputes' invoice reference model."""
from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.contracts import InvoiceIssued
from services.disputes.adapters import deductions
from services.disputes.adapters import repository as repo


async def on_invoice_issued(conn: AsyncConnection, e: InvoiceIssued) -> None:
    await repo.record_invoice_reference(conn, invoice_id=e.invoice_id, customer_id=e.customer_id,
                                        currency=e.currency, total_amount=e.total_amount,
                                        issue_date=e.issue_date, due_date=e.due_date,
                                        invoice_number=e.invoice_number, rebill_of_deduction=e.rebill_of_deduction,
                                        product_lines=[line.product_line for line in e.lines])
    if e.rebill_of_deduction:
        await deductions.record_rebill_invoice(conn, dispute_id=e.rebill_of_deduction, invoice_id=e.invoice_id)
