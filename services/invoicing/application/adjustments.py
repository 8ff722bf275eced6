"""Adjustments, voids and returns of an invoice: plain functions of (connection, command,
metadata). The caller owns the transaction; rules live in the Invoice aggregate."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from shared import aggregate
from shared.contracts import CreditMemoIssued, InvoiceAdjusted, InvoiceAdjustmentRejected, InvoiceAdjustmentRequested
from shared.eventstore import ConcurrencyError, utc_midnight
from shared.problems import Conflict, NotFound
from services.invoicing.adapters import repository as repo
from services.invoicing.application.documents import queue_document
from services.invoicing.application.handlers import rule_problem
from services.invoicing.domain.model import Customer, Invoice, InvoicingRuleViolation




async def _load(conn: AsyncConnection, invoice_id: str, expected_version: int | None) -> Invoice:
    invoice = await aggregate.load(conn, Invoice, invoice_id)
    if not invoice.exists:
        raise NotFound(f"invoice {invoice_id} does not exist", field="invoice_id")
    if expected_version is not None and expected_version != invoice.version:
        raise ConcurrencyError(f"invoice {invoice_id} is at version {invoice.version}, not {expected_version}",
                               field="If-Match")
    return invoice


async def _save_adjustment_events(conn: AsyncConnection, invoice: Invoice, meta: dict[str, Any]) -> None:
    events = [e for e, _ in invoice.pending]
    await aggregate.save(conn, invoice, meta)
    for e in events:
        if isinstance(e, InvoiceAdjustmentRequested):
            await repo.record_adjustment_requested(conn, e, "pending_approval", invoice.version)
        elif isinstance(e, InvoiceAdjusted):
            await repo.record_adjustment_posted(conn, e, invoice.debit_adjusted, invoice.credit_adjusted,
                                                invoice.version)
        elif isinstance(e, InvoiceAdjustmentRejected):
            await repo.record_adjustment_rejected(conn, e, invoice.version)


@dataclass(frozen=True)
class AdjustInvoice:
    invoice_id: str
    adjustment_id: str
    direction: str
    amount: Decimal
    reason_code: str
    adjustment_date: date
    requested_by: str
    approval_limit: Decimal
    note: str | None = None
    expected_version: int | None = None


async def adjust_invoice(conn: AsyncConnection, cmd: AdjustInvoice, meta: dict[str, Any]) -> dict[str, Any]:
    invoice = await _load(conn, cmd.invoice_id, cmd.expected_version)
    if await repo.get_adjustment(conn, cmd.adjustment_id) is not None:
        raise Conflict(f"adjustment {cmd.adjustment_id} already exists", field="adjustment_id")
    try:
        invoice.adjust(adjustment_id=cmd.adjustment_id, direction=cmd.direction, amount=cmd.amount,
                       reason_code=cmd.reason_code, adjustment_date=cmd.adjustment_date,
                       requested_by=cmd.requested_by, note=cmd.note, approval_limit=cmd.approval_limit,
                       paid_amount=await repo.settled_amount(conn, invoice.id),
                       at=utc_midnight(cmd.adjustment_date))
    except InvoicingRuleViolation as exc:
        raise rule_problem(exc) from exc
    await _save_adjustment_events(conn, invoice, meta)
    return await repo.get_adjustment(conn, cmd.adjustment_id)


@dataclass(frozen=True)
class DecideAdjustment:
    invoice_id: str
    adjustment_id: str
    approve: bool
    decided_by: str
    decided_on: date
    reason: str | None = None


async def decide_adjustment(conn: AsyncConnection, cmd: DecideAdjustment, meta: dict[str, Any]) -> dict[str, Any]:
    existing = await repo.get_adjustment(conn, cmd.adjustment_id)
    if existing is None or existing["invoice_id"] != cmd.invoice_id:
        raise NotFound(f"adjustment {cmd.adjustment_id} does not exist on invoice {cmd.invoice_id}",
                       field="adjustment_id")
    invoice = await _load(conn, cmd.invoice_id, None)
    try:
        if cmd.approve:
            invoice.approve_adjustment(adjustment_id=cmd.adjustment_id, approved_by=cmd.decided_by,
                                       approved_on=cmd.decided_on,
                                       paid_amount=await repo.settled_amount(conn, invoice.id),
                                       at=utc_midnight(cmd.decided_on))
        else:
            invoice.reject_adjustment(adjustment_id=cmd.adjustment_id, rejected_by=cmd.decided_by,
                                      rejected_on=cmd.decided_on, reason=cmd.reason or "rejected",
                                      at=utc_midnight(cmd.decided_on))
    except InvoicingRuleViolation as exc:
        raise rule_problem(exc) from exc
    await _save_adjustment_events(conn, invoice, meta)
    return await repo.get_adjustment(conn, cmd.adjustment_id)


@dataclass(frozen=True)
class VoidInvoice:
    invoice_id: str
    voided_on: date
    reason: str
    expected_version: int | None = None


async def void_invoice(conn: AsyncConnection, cmd: VoidInvoice, meta: dict[str, Any]) -> dict[str, Any]:
    invoice = await _load(conn, cmd.invoice_id, cmd.expected_version)
    try:
        invoice.void(voided_on=cmd.voided_on, reason=cmd.reason,
                     paid_amount=await repo.settled_amount(conn, invoice.id), at=utc_midnight(cmd.voided_on))
    except InvoicingRuleViolation as exc:
        raise rule_problem(exc) from exc
    voided = invoice.pending[0][0]
    await aggregate.save(conn, invoice, meta)
    await repo.record_void(conn, voided, invoice.version)
    return await repo.get_invoice(conn, invoice.id)


@dataclass(frozen=True)
class CreditReturn:
    invoice_id: str
    credit_memo_id: str
    rma_number: str
    lines: list[tuple[int, Decimal]]
    return_date: date
    reason: str
    expected_version: int | None = None


async def credit_return(conn: AsyncConnection, cmd: CreditReturn, meta: dict[str, Any]) -> dict[str, Any]:
    invoice = await _load(conn, cmd.invoice_id, cmd.expected_version)
    try:
        invoice.credit_return(credit_memo_id=cmd.credit_memo_id, rma_number=cmd.rma_number, returned=cmd.lines,
                              issue_date=cmd.return_date, reason=cmd.reason,
                              paid_amount=await repo.settled_amount(conn, invoice.id),
                              at=utc_midnight(cmd.return_date))
    except InvoicingRuleViolation as exc:
        raise rule_problem(exc) from exc
    if not invoice.pending:
        return {**(await repo.get_credit_memo(conn, cmd.credit_memo_id) or {}), "already_issued": True}
    memo: CreditMemoIssued = invoice.pending[0][0]
    await aggregate.save(conn, invoice, meta)
    payload = memo.to_payload()
    await repo.record_credit_memo(conn, {**payload, "amount": memo.amount, "issue_date": memo.issue_date},
                                  invoice.credited_amount, invoice.version)
    customer = await aggregate.load(conn, Customer, invoice.customer_id)
    await queue_document(conn, "credit_memo", memo.credit_memo_id, customer, memo.issue_date)
    return {**payload, "invoice_version": invoice.version}
