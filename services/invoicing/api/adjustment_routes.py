"""/v1 routes of invoice adjustments (with approval above a limit), voids and returns."""
from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request

from shared.auth import acting_as
from shared.idempotency import idempotent_create, idempotency_key_header
from shared.money import MoneyError, exact_amount
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, page
from shared.problems import NotFound, Problem, Unprocessable, ValidationFailed
from shared.service import get_runtime, request_metadata
from services.invoicing.adapters import repository as repo
from services.invoicing.api.adjustment_schemas import (
    AdjustInvoiceRequest,
    AdjustmentOut,
    AdjustmentPage,
    ApproveAdjustmentRequest,
    CreditReturnRequest,
    RejectAdjustmentRequest,
    VoidInvoiceRequest,
    adjustment_out,
)
from services.invoicing.api.routes import _if_match_version, _invoice_out
from services.invoicing.api.schemas import CreditMemoIssuedOut, InvoiceOut
from services.invoicing.application import adjustments
from services.invoicing.domain.adjustments import ADJUSTMENT_REASONS

router = APIRouter(prefix="/v1")


def _today(request: Request):
    return get_runtime(request).definition.state["clock"].today()


def _who(request: Request, claimed: str | None, field: str) -> str:
    """Who acts: the name given (checked against the API key's actor) or the caller."""
    who = claimed or getattr(request.state, "actor", None) or "anonymous"
    acting_as(request, who, field)
    return who


async def _invoice_currency(conn, invoice_id: str) -> str:
    invoice = await repo.get_invoice(conn, invoice_id)
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} does not exist", field="invoice_id")
    return invoice["currency"].strip()


@router.get("/adjustment-reason-codes", tags=["adjustments"])
async def list_adjustment_reason_codes() -> dict[str, Any]:
    return {"data": [{"code": r.code, "description": r.description, "directions": list(r.directions)}
                     for r in ADJUSTMENT_REASONS]}


@router.post("/invoices/{invoice_id}/adjustments", status_code=201, tags=["adjustments"],
             responses={201: {"model": AdjustmentOut}})
async def adjust_invoice(invoice_id: str, body: AdjustInvoiceRequest, request: Request,
                         key: str = Depends(idempotency_key_header),
                         if_match: str | None = Header(default=None, alias="If-Match")):
    expected = _if_match_version(if_match)
    requested_by = _who(request, body.requested_by, "requested_by")
    adjustment_id = body.adjustment_id or f"adj_{uuid.uuid4().hex[:16]}"
    limit = get_runtime(request).settings.adjustment_approval_limit

    async def command(conn):
        currency = await _invoice_currency(conn, invoice_id)
        try:
            amount = exact_amount(body.amount, currency)
        except MoneyError as exc:
            raise ValidationFailed(str(exc), field="amount") from exc
        row = await adjustments.adjust_invoice(conn, adjustments.AdjustInvoice(
            invoice_id=invoice_id, adjustment_id=adjustment_id, direction=body.direction, amount=amount,
            reason_code=body.reason_code, adjustment_date=body.adjustment_date or _today(request),
            requested_by=requested_by, approval_limit=limit, note=body.note, expected_version=expected),
            request_metadata(request))
        return adjustment_out(row)

    return await idempotent_create(request, key, {"invoice_id": invoice_id, **body.model_dump(mode="json")}, command)


@router.get("/invoices/{invoice_id}/adjustments", tags=["adjustments"], response_model=AdjustmentPage)
async def list_invoice_adjustments(invoice_id: str, request: Request,
                                   status: str | None = Query(None, pattern="^(posted|pending_approval|rejected)$"),
                                   cursor: str | None = None,
                                   limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)) -> dict[str, Any]:
    return await _adjustment_page(request, invoice_id, status, cursor, limit)


@router.get("/adjustments", tags=["adjustments"], response_model=AdjustmentPage)
async def list_adjustments(request: Request,
                           status: str | None = Query(None, pattern="^(posted|pending_approval|rejected)$"),
                           cursor: str | None = None,
                           limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)) -> dict[str, Any]:
    """Every invoice's adjustments; status=pending_approval is the approver's queue."""
    return await _adjustment_page(request, None, status, cursor, limit)


async def _adjustment_page(request: Request, invoice_id: str | None, status: str | None, cursor: str | None,
                           limit: int) -> dict[str, Any]:
    after = decode_cursor(cursor)
    try:
        after_seq = int(after[0]) if after else None
    except (TypeError, ValueError, IndexError) as exc:
        raise Problem("cursor is not one this API returned", field="cursor") from exc
    async with get_runtime(request).engine.connect() as conn:
        rows = await repo.list_adjustments(conn, invoice_id=invoice_id, status=status, after=after_seq,
                                           limit=limit + 1)
    seqs = [r["created_seq"] for r in rows]
    return page([adjustment_out(r) for r in rows], limit, lambda _: [seqs[min(limit, len(seqs)) - 1]])


@router.get("/invoices/{invoice_id}/adjustments/{adjustment_id}", tags=["adjustments"], response_model=AdjustmentOut)
async def get_adjustment(invoice_id: str, adjustment_id: str, request: Request) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        row = await repo.get_adjustment(conn, adjustment_id)
    if row is None or row["invoice_id"] != invoice_id:
        raise NotFound(f"adjustment {adjustment_id} does not exist on invoice {invoice_id}", field="adjustment_id")
    return adjustment_out(row)


@router.post("/invoices/{invoice_id}/adjustments/{adjustment_id}/approval", status_code=201, tags=["adjustments"],
             responses={201: {"model": AdjustmentOut}})
async def approve_adjustment(invoice_id: str, adjustment_id: str, body: ApproveAdjustmentRequest, request: Request,
                             key: str = Depends(idempotency_key_header)):
    approved_by = _who(request, body.approved_by, "approved_by")
    if approved_by == "anonymous":
        raise Unprocessable("name the approver (approved_by, X-Actor or an API key)", field="approved_by")

    async def command(conn):
        row = await adjustments.decide_adjustment(conn, adjustments.DecideAdjustment(
            invoice_id=invoice_id, adjustment_id=adjustment_id, approve=True, decided_by=approved_by,
            decided_on=body.approved_on or _today(request)), request_metadata(request))
        return adjustment_out(row)

    return await idempotent_create(request, key, {"adjustment_id": adjustment_id, **body.model_dump(mode="json")},
                                   command)


@router.post("/invoices/{invoice_id}/adjustments/{adjustment_id}/rejection", status_code=201, tags=["adjustments"],
             responses={201: {"model": AdjustmentOut}})
async def reject_adjustment(invoice_id: str, adjustment_id: str, body: RejectAdjustmentRequest, request: Request,
                            key: str = Depends(idempotency_key_header)):
    rejected_by = _who(request, body.rejected_by, "rejected_by")

    async def command(conn):
        row = await adjustments.decide_adjustment(conn, adjustments.DecideAdjustment(
            invoice_id=invoice_id, adjustment_id=adjustment_id, approve=False, decided_by=rejected_by,
            decided_on=body.rejected_on or _today(request), reason=body.reason), request_metadata(request))
        return adjustment_out(row)

    return await idempotent_create(request, key, {"adjustment_id": adjustment_id, **body.model_dump(mode="json")},
                                   command)


@router.post("/invoices/{invoice_id}/void", status_code=201, tags=["invoices"], responses={201: {"model": InvoiceOut}})
async def void_invoice(invoice_id: str, body: VoidInvoiceRequest, request: Request,
                       key: str = Depends(idempotency_key_header),
                       if_match: str | None = Header(default=None, alias="If-Match")):
    expected = _if_match_version(if_match)

    async def command(conn):
        invoice = await adjustments.void_invoice(conn, adjustments.VoidInvoice(
            invoice_id=invoice_id, voided_on=body.voided_on or _today(request), reason=body.reason,
            expected_version=expected), request_metadata(request))
        return _invoice_out(invoice)

    return await idempotent_create(request, key, {"invoice_id": invoice_id, **body.model_dump(mode="json")}, command)


@router.post("/invoices/{invoice_id}/returns", status_code=201, tags=["invoices"],
             responses={201: {"model": CreditMemoIssuedOut}})
async def credit_return(invoice_id: str, body: CreditReturnRequest, request: Request,
                        key: str = Depends(idempotency_key_header),
                        if_match: str | None = Header(default=None, alias="If-Match")):
    expected = _if_match_version(if_match)
    memo_id = str(uuid.uuid4())

    async def command(conn):
        await _invoice_currency(conn, invoice_id)
        return await adjustments.credit_return(conn, adjustments.CreditReturn(
            invoice_id=invoice_id, credit_memo_id=memo_id, rma_number=body.rma_number,
            lines=[(line.line_number, line.quantity) for line in body.lines],
            return_date=body.return_date or _today(request), reason=body.reason, expected_version=expected),
            request_metadata(request))

    return await idempotent_create(request, key, {"invoice_id": invoice_id, **body.model_dump(mode="json")}, command)
