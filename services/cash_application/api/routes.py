"""/v1 routes of cash_application."""
from __future__ import annotations

import hashlib
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from shared.idempotency import EncodedJSON, idempotent_create, idempotent_request, idempotency_key_header
from shared.money import MoneyError, validate_currency
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, page
from shared.problems import NotFound, Problem, ValidationFailed
from shared.service import get_runtime, request_metadata
from services.cash_application.adapters import repository as repo
from services.cash_application.api.schemas import (
    ApplyCashRequest, ReapplyCashRequest, ReceivePaymentRequest, ReturnRequest, ReverseRequest, money, open_item_out, payment_out)
from services.cash_application.application import chunked_imports, handlers, imports
from services.cash_application.domain.model import ManualApplication, RemittanceLine
from services.cash_application.domain.reconciliation import PostedReceipt, StatementLine, reconcile

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
                         for line in body.remittance),
        policy=imports.policy_of(get_runtime(request).settings))

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


_SORT_KEY_TYPES = {"received": int, "amount": Decimal, "value_date": date.fromisoformat, "customer": str,
                   "score": Decimal}


@router.get("/unapplied-cash", tags=["payments"])
async def list_unapplied_cash(
        request: Request, customer_id: str | None = None, cursor: str | None = None,
        limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
        sort: str = Query("received", pattern="^(received|amount|value_date|customer|score)$",
                          description="received (the order payments came in), amount (unapplied), value_date,"
                                      " customer, score (the top suggestion's)"),
        order: str = Query("asc", pattern="^(asc|desc)$")) -> dict[str, Any]:
    """Payments with cash not (yet) applied to any invoice: the unapplied-cash worklist, sorted and
    paged here (a keyset cursor: pages never skip or repeat a receipt)."""
    after = decode_cursor(cursor)
    if after is not None:
        try:
            if len(after) != 3 or after[0] != sort:
                raise ValueError("cursor of another sort")
            after = (_SORT_KEY_TYPES[sort](after[1]), int(after[2]))
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise _bad_cursor() from exc
    async with get_runtime(request).engine.connect() as conn:
        rows = await repo.list_unapplied(conn, customer_id=customer_id, sort=sort, descending=order == "desc",
                                         after=after, limit=limit + 1)
    keys = [(r["sort_key"], r["received_seq"]) for r in rows]
    return page([payment_out(r) for r in rows], limit,
                lambda _: [sort, str(keys[min(limit, len(keys)) - 1][0]), keys[min(limit, len(keys)) - 1][1]])


# ---------------------------------------------------------------- bank and remittance files

@router.post("/bank-files", status_code=201, tags=["bank files"],
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                 "text/plain": {"schema": {"type": "string"}}}}})
async def import_bank_file(request: Request, key: str = Depends(idempotency_key_header),
                           format: str = Query(..., description="bai2 | camt.053 | camt.054 | mt940 | csv | edi820"),
                           profile: str | None = Query(None, description="CSV column-mapping profile (settings)"),
                           file_name: str | None = Query(None, max_length=200)) -> JSONResponse:
    """Import a file sent as the raw request body (`curl --data-binary @statement.bai2`). All of
    it posts or none of it; the same file or statement again answers the first import (200)."""
    runtime = get_runtime(request)
    content = await body_within(request, runtime.settings.max_file_bytes)
    cmd = imports.ImportFile(content=content, file_format=format, file_name=file_name, csv_profile=profile)
    parsed = await imports.parse(cmd, runtime.settings)
    fingerprint = {"format": format, "profile": profile, "sha256": hashlib.sha256(content).hexdigest()}
    chunked = None
    if chunked_imports.needs_chunks(parsed, runtime.settings):
        # A large file commits chunk by chunk (resumable: the same file again carries on after
        # the last committed chunk); the key then stands for its result.
        chunked = await chunked_imports.import_file_in_chunks(runtime.engine, cmd, parsed, runtime.settings,
                                                              request_metadata(request))

    async def command(conn):
        result = chunked or await imports.import_file(conn, cmd, parsed, runtime.settings, request_metadata(request))
        # A large file's result (every payment) is encoded once, a piece at a time in worker
        # threads: stored with the key and answered as it is, the event loop answering meanwhile.
        return (200 if result["replayed"] else 201), EncodedJSON(await imports.encode_result(result))

    status, body, replayed = await idempotent_request(request, key, fingerprint, command)
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    if isinstance(body, EncodedJSON):
        return Response(body, status_code=status, media_type="application/json", headers=headers)
    return JSONResponse(body, status_code=status, headers=headers)


class FileTooLarge(Problem):
    status = 413
    type_name = "file-too-large"
    title = "The file is larger than this service accepts; nothing was read or posted"


async def body_within(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes the limit: a declared Content-Length
    over it is refused before a byte is read, and a streamed body is counted as it arrives, so a
    300 MB upload never sits in memory."""
    declared = request.headers.get("content-length")
    too_large = FileTooLarge(f"the file is larger than {limit} bytes (the setting"
                             " LEDGERLINE_CASH_APPLICATION_MAX_FILE_BYTES)", field="file",
                             extra={"errors": [{"field": "file", "reason": f"more than {limit} bytes"}]})
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


@router.get("/bank-files", tags=["bank files"])
async def list_bank_files(request: Request, cursor: str | None = None,
                          limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)) -> dict[str, Any]:
    """Imports, newest first, each with its counts (the payments are on GET /v1/bank-files/{id})."""
    after = decode_cursor(cursor)
    async with get_runtime(request).engine.connect() as conn:
        rows = await repo.list_imports(conn, before=str(after[0]) if after else None, limit=limit + 1)
    items = [{**{k: v for k, v in (r["result"] or {}).items() if k not in ("payments", "replayed")},
              "imported_at": r["imported_at"].isoformat(), "import_id": r["import_id"]} for r in rows]
    return page(items, limit, lambda i: [i["imported_at"] + "|" + i["import_id"]])


@router.get("/bank-files/{import_id}", tags=["bank files"])
async def get_bank_file(import_id: str, request: Request) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        result = await repo.get_import_result(conn, import_id)
    if result is None:
        raise NotFound(f"no import {import_id}", field="import_id")
    # The text the import answered, as stored: a 100,000-payment result (some 40 MB) is neither
    # decoded nor encoded again on the event loop.
    return Response(result, media_type="application/json")  # type: ignore[return-value]


# ---------------------------------------------------------------- the unapplied-cash work queue

def _today(request: Request, value: date | None) -> date:
    return value or get_runtime(request).definition.state["clock"].today()


async def _on_payment(request: Request, key: str, payment_id: str, body: Any, handler, cmd) -> JSONResponse:
    """Run a work-queue command on a payment once per Idempotency-Key; answer the payment."""
    async def command(conn):
        return payment_out(await handler(conn, cmd, request_metadata(request)))

    return await idempotent_create(request, key, {"payment_id": payment_id, **body.model_dump(mode="json")}, command)


def _manual(body: ApplyCashRequest) -> tuple[ManualApplication, ...]:
    return tuple(ManualApplication(invoice_id=a.invoice_id, amount=a.amount) for a in body.applications)


@router.post("/payments/{payment_id}/applications", status_code=201, tags=["unapplied cash"])
async def apply_cash(payment_id: str, body: ApplyCashRequest, request: Request,
                     key: str = Depends(idempotency_key_header)):
    """Apply a payment's unapplied cash by hand, split across invoices; teaches the payer alias."""
    cmd = handlers.ApplyCash(payment_id=payment_id, applications=_manual(body), on=_today(request, body.applied_on))
    return await _on_payment(request, key, payment_id, body, handlers.apply_cash, cmd)


@router.post("/payments/{payment_id}/reapplication", status_code=201, tags=["unapplied cash"])
async def reapply_cash(payment_id: str, body: ReapplyCashRequest, request: Request,
                       key: str = Depends(idempotency_key_header)):
    """Reverse all of the payment's applications and apply it as given, in one step."""
    cmd = handlers.ApplyCash(payment_id=payment_id, applications=_manual(body), on=_today(request, body.applied_on),
                             reapply=True, note=body.note)
    return await _on_payment(request, key, payment_id, body, handlers.apply_cash, cmd)


@router.post("/payments/{payment_id}/reversals", status_code=201, tags=["unapplied cash"])
async def reverse_applications(payment_id: str, body: ReverseRequest, request: Request,
                               key: str = Depends(idempotency_key_header)):
    cmd = handlers.ReverseApplications(payment_id=payment_id, application_ids=tuple(body.application_ids),
                                       on=_today(request, body.reversed_on), note=body.note)
    return await _on_payment(request, key, payment_id, body, handlers.reverse_applications, cmd)


@router.post("/payments/{payment_id}/return", status_code=201, tags=["payments"])
async def return_payment(payment_id: str, body: ReturnRequest, request: Request,
                         key: str = Depends(idempotency_key_header)):
    """The bank returned the payment (NSF, recalled wire, ACH return): its invoices open again."""
    cmd = handlers.ReturnPayment(payment_id=payment_id, reason_code=body.reason_code, reason=body.reason,
                                 on=_today(request, body.returned_on))
    return await _on_payment(request, key, payment_id, body, handlers.return_payment, cmd)


@router.get("/payer-aliases", tags=["unapplied cash"])
async def list_payer_aliases(request: Request) -> dict[str, Any]:
    """Payer names and bank accounts learned from manual applications."""
    async with get_runtime(request).engine.connect() as conn:
        rows = await repo.list_aliases(conn)
    return {"items": [{"kind": r["kind"], "alias": r["alias"], "customer_id": r["customer_id"],
                       "learned_from": r["learned_from"]} for r in rows]}


# ---------------------------------------------------------------- daily cash reconciliation

@router.get("/reconciliation", tags=["reconciliation"])
async def daily_reconciliation(request: Request, date_: date = Query(..., alias="date"),
                               currency: str = Query(..., description="ISO 4217 code", examples=["USD"]),
                               account: str | None = None) -> dict[str, Any]:
    """The day's posted receipts against the bank statement lines, with the variances."""
    try:
        currency = validate_currency(currency)
    except MoneyError as exc:
        raise ValidationFailed(str(exc), field="currency") from exc
    async with get_runtime(request).engine.connect() as conn:
        lines = await repo.statement_lines_for(conn, date_, account, currency)
        receipts = await repo.receipts_for(conn, date_, account, currency)
    result = reconcile(
        [StatementLine(r["import_id"], r["position"], Decimal(r["amount"]), r["bank_reference"], r["payment_id"])
         for r in lines],
        [PostedReceipt(r["payment_id"], Decimal(r["amount"]), r["reference"]) for r in receipts])
    return {
        "date": date_.isoformat(), "currency": currency, "account": account,
        "bank_total": money(result.bank_total, currency), "posted_total": money(result.posted_total, currency),
        "difference": money(result.difference, currency), "lines": len(lines), "receipts": len(receipts),
        "matched": result.matched,
        "variances": [{"kind": v.kind, "amount": money(v.amount, currency), "payment_id": v.payment_id,
                       "import_id": v.import_id, "position": v.position, "detail": v.detail}
                      for v in result.variances],
    }
