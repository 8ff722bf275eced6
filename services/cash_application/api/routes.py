"""/v1 routes of cash_application."""
from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from shared.idempotency import idempotent_create, idempotency_key_header
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, page
from shared.problems import NotFound, Problem
from shared.service import get_runtime, request_metadata
from services.cash_application.adapters import repository as repo
from services.cash_application.api.schemas import ReceivePaymentRequest, open_item_out, payment_out
from services.cash_application.application import handlers
from services.cash_application.domain.model import RemittanceLine

router = APIRouter(prefix="/v1")


def _bad_cursor() -> Problem:
    return Problem("cursor is not one this API returned", field="cursor")


@router.get("/open-items", tags=["open items"])
async def list_open_items(request: Request, customer_id: str | None = None,
                          status: str | None = Query(None, pattern="^(open|closed)$"),
                          cursor: str | None = None,
                          limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)) -> dict[str, Any]:
    after = decode_cursor(cursor)
    if after is not None:
        try:
            after = (date.fromisoformat(after[0]), str(after[1]))
        except (IndexError, TypeError, ValueError) as exc:
            raise _bad_cursor() from exc
    async with get_runtime(request).engine.connect() as conn:
        rows = await repo.list_open_items(conn, customer_id=customer_id, status=status, after=after, limit=limit + 1)
    return page([open_item_out(r) for r in rows], limit, lambda i: [i["due_date"], i["invoice_id"]])


@router.get("/open-items/{invoice_id}", tags=["open items"])
async def get_open_item(invoice_id: str, request: Request) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        item = await repo.get_open_item(conn, invoice_id)
    if item is None:
        raise NotFound(f"invoice {invoice_id} is not known here (yet)", field="invoice_id")
    return open_item_out(item)


@router.post("/payments", status_code=201, tags=["payments"])
async def receive_payment(body: ReceivePaymentRequest, request: Request, key: str = Depends(idempotency_key_header)):
    body.check_amounts()
    cmd = handlers.ReceivePayment(
        payment_id=body.payment_id or f"pay_{uuid.uuid4().hex}", customer_id=body.customer_id,
        amount=body.amount, currency=body.currency, value_date=body.value_date, method=body.method,
        reference=body.reference,
        remittance=tuple(RemittanceLine(amount=line.amount, invoice_id=line.invoice_id,
                                        invoice_number=line.invoice_number, reason_code=line.reason_code)
                         for line in body.remittance))

    async def command(conn):
        return payment_out(await handlers.receive_payment(conn, cmd, request_metadata(request)))

    return await idempotent_create(request, key, body.model_dump(mode="json"), command)


@router.get("/payments/{payment_id}", tags=["payments"])
async def get_payment(payment_id: str, request: Request) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        payment = await repo.get_payment(conn, payment_id)
    if payment is None:
        raise NotFound(f"payment {payment_id} does not exist", field="payment_id")
    return payment_out(payment)


async def _payments_page(request: Request, customer_id: str | None, cursor: str | None, limit: int,
                         unapplied_only: bool) -> dict[str, Any]:
    after = decode_cursor(cursor)
    try:
        after_seq = int(after[0]) if after else None
    except (IndexError, TypeError, ValueError) as exc:
        raise _bad_cursor() from exc
    async with get_runtime(request).engine.connect() as conn:
        rows = await repo.list_payments(conn, customer_id=customer_id, unapplied_only=unapplied_only,
                                        after=after_seq, limit=limit + 1)
    seqs = [r["received_seq"] for r in rows]
    return page([payment_out(r) for r in rows], limit, lambda _: [seqs[min(limit, len(seqs)) - 1]])


@router.get("/payments", tags=["payments"])
async def list_payments(request: Request, customer_id: str | None = None, cursor: str | None = None,
                        limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)) -> dict[str, Any]:
    return await _payments_page(request, customer_id, cursor, limit, unapplied_only=False)


@router.get("/unapplied-cash", tags=["payments"])
async def list_unapplied_cash(request: Request, customer_id: str | None = None, cursor: str | None = None,
                              limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)) -> dict[str, Any]:
    """Payments with cash not (yet) applied to any invoice: the unapplied-cash worklist."""
    return await _payments_page(request, customer_id, cursor, limit, unapplied_only=True)
