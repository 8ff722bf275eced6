"""/v1 routes of invoicing."""
from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from shared.idempotency import idempotent_create, idempotency_key_header
from shared.money import MoneyError, exact_amount, money_str
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, page
from shared.problems import NotFound, Problem, ValidationFailed
from shared.service import get_runtime, request_metadata
from services.invoicing.adapters import repository as repo
from services.invoicing.api.schemas import (
    CreditMemoIssuedOut,
    CustomerOut,
    CustomerPage,
    InvoiceOut,
    InvoicePage,
    IssueCreditMemoRequest,
    IssueInvoiceRequest,
    RegisterCustomerRequest,
    money_out,
)
from services.invoicing.application import handlers
from services.invoicing.domain.documents import payment_reference

router = APIRouter(prefix="/v1")


def _customer_out(c: dict[str, Any]) -> dict[str, Any]:
    c = money_out(c, "credit_limit")
    c["currency"] = c["currency"].strip()
    c["registered_on"] = c["registered_on"].isoformat()
    c.pop("credit_hold_version", None)
    hold = c.get("credit_hold")
    c["credit_hold"] = json.loads(hold) if isinstance(hold, str) else hold
    for name in ("billing_contacts", "billing_address"):
        if isinstance(c.get(name), str):
            c[name] = json.loads(c[name])
    return c


def _invoice_out(i: dict[str, Any]) -> dict[str, Any]:
    i = dict(i)
    i["currency"] = i["currency"].strip()
    i.pop("created_seq", None)
    out = money_out(i, "total_amount", "credited_amount", "paid_amount", "adjusted_amount", "written_off_amount",
                    "debit_adjusted", "credit_adjusted", "voided_amount", "open_balance")
    out["issue_date"] = i["issue_date"].isoformat()
    out["due_date"] = i["due_date"].isoformat()
    out["voided_on"] = i["voided_on"].isoformat() if i.get("voided_on") else None
    out["status"] = "void" if i.get("voided_on") else "open" if i["open_balance"] > 0 else "closed"
    out["taxes"] = i.get("taxes") or []
    out["payment_reference"] = payment_reference(i["invoice_number"])
    return out


@router.post("/customers", status_code=201, tags=["customers"], responses={201: {"model": CustomerOut}})
async def register_customer(body: RegisterCustomerRequest, request: Request,
                            key: str = Depends(idempotency_key_header)):
    runtime = get_runtime(request)
    now = runtime.definition.state["clock"].now()
    cmd = handlers.RegisterCustomer(
        customer_id=body.customer_id or f"cus_{uuid.uuid4().hex[:16]}", name=body.name, currency=body.currency,
        payment_terms=body.terms(), credit_limit=body.credit_limit,
        registered_on=body.registered_on or now.date())

    async def command(conn):
        return _customer_out(await handlers.register_customer(conn, cmd, request_metadata(request), now))

    return await idempotent_create(request, key, body.model_dump(mode="json"), command)


@router.get("/customers/{customer_id}", tags=["customers"], response_model=CustomerOut)
async def get_customer(customer_id: str, request: Request) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        customer = await repo.get_customer(conn, customer_id)
        if customer is None:
            raise NotFound(f"customer {customer_id} does not exist", field="customer_id")
        credit = await handlers.credit_position(conn, customer_id)
    out = _customer_out(customer)
    # Exposure against the limits: what an order desk checks before shipping more on credit.
    out["open_balance"] = money_str(credit["own_exposure"], out["currency"])
    out["family_open_balance"] = money_str(credit["levels"][0].exposure, out["currency"])
    out["available_credit"] = money_str(credit["available"], out["currency"])
    return out


@router.get("/customers", tags=["customers"], response_model=CustomerPage)
async def list_customers(request: Request, cursor: str | None = None,
                         limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)) -> dict[str, Any]:
    after = decode_cursor(cursor)
    async with get_runtime(request).engine.connect() as conn:
        rows = await repo.list_customers(conn, after[0] if after else None, limit + 1)
    return page([_customer_out(r) for r in rows], limit, lambda c: [c["customer_id"]])


@router.post("/invoices", status_code=201, tags=["invoices"], responses={201: {"model": InvoiceOut}})
async def issue_invoice(body: IssueInvoiceRequest, request: Request, key: str = Depends(idempotency_key_header)):
    cmd = handlers.IssueInvoice(
        invoice_id=body.invoice_id or str(uuid.uuid4()), invoice_number=body.invoice_number,
        customer_id=body.customer_id, currency=body.currency, issue_date=body.issue_date, due_date=body.due_date,
        lines=body.line_tuples(), taxes=body.tax_tuples(), po_number=body.po_number,
        credit_override=body.override())

    async def command(conn):
        invoice = await handlers.issue_invoice(conn, cmd, request_metadata(request))
        return _invoice_out(invoice)

    return await idempotent_create(request, key, body.model_dump(mode="json"), command)


@router.get("/invoices/{invoice_id}", tags=["invoices"], response_model=InvoiceOut)
async def get_invoice(invoice_id: str, request: Request, response: Response) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        invoice = await repo.get_invoice(conn, invoice_id)
        if invoice is None:
            raise NotFound(f"invoice {invoice_id} does not exist", field="invoice_id")
        memos = await repo.credit_memos_for(conn, invoice_id)
    response.headers["ETag"] = f'"{invoice["version"]}"'
    out = _invoice_out(invoice)
    out["credit_memos"] = [
        {**money_out(m, "amount"), "currency": m["currency"].strip(), "issue_date": m["issue_date"].isoformat()}
        for m in memos
    ]
    return out


@router.get("/invoices", tags=["invoices"], response_model=InvoicePage)
async def list_invoices(request: Request, customer_id: str | None = None,
                        status: str | None = Query(None, pattern="^(open|closed|void)$"),
                        issued_from: date | None = None, issued_to: date | None = None,
                        cursor: str | None = None, limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)) -> dict[str, Any]:
    after = decode_cursor(cursor)
    async with get_runtime(request).engine.connect() as conn:
        rows = await repo.list_invoices(conn, customer_id=customer_id, status=status, issued_from=issued_from,
                                        issued_to=issued_to, after=int(after[0]) if after else None, limit=limit + 1)
    seqs = [r["created_seq"] for r in rows]
    result = page([_invoice_out(r) for r in rows], limit, lambda _: [seqs[min(limit, len(seqs)) - 1]])
    return result


def _if_match_version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    try:
        return int(if_match.strip().strip('W/').strip('"'))
    except ValueError as exc:
        raise Problem("If-Match must be the ETag returned by GET (the invoice version)", field="If-Match") from exc


@router.post("/invoices/{invoice_id}/credit-memos", status_code=201, tags=["invoices"],
             responses={201: {"model": CreditMemoIssuedOut}})
async def issue_credit_memo(invoice_id: str, body: IssueCreditMemoRequest, request: Request,
                            key: str = Depends(idempotency_key_header),
                            if_match: str | None = Header(default=None, alias="If-Match")):
    expected = _if_match_version(if_match)

    async def command(conn):
        invoice = await repo.get_invoice(conn, invoice_id)
        if invoice is None:
            raise NotFound(f"invoice {invoice_id} does not exist", field="invoice_id")
        currency = invoice["currency"].strip()
        try:
            amount = exact_amount(body.amount, currency)
        except MoneyError as exc:
            raise ValidationFailed(str(exc), field="amount") from exc
        memo = await handlers.issue_credit_memo(conn, handlers.IssueCreditMemo(
            invoice_id=invoice_id, amount=amount, issue_date=body.issue_date, reason=body.reason,
            expected_version=expected), request_metadata(request))
        return memo

    return await idempotent_create(request, key, {"invoice_id": invoice_id, **body.model_dump(mode="json")}, command)


