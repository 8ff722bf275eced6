"""The cash applier's day: the unapplied-cash queue (paged by the service), a payment with its
ranked suggestions, applying and splitting with running totals (computed on the server), and
uploading a bank file."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from services.workbench.adapters.backends import BackendError
from services.workbench.api import deps
from services.workbench.domain.cash import selection
from services.workbench.domain.roles import Permission as P
from services.workbench.domain.worklist import page_size

router = APIRouter()
BANK_FORMATS = ("bai2", "camt.053", "camt.054", "mt940", "csv", "edi820")
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


@router.get("/cash")
async def queue(request: Request, cursor: str | None = None, size: int | None = None,
                customer_id: str | None = None, start: int = Query(1, ge=1)) -> Response:
    user = deps.require(request, P.VIEW_UNAPPLIED)
    size = page_size(size)
    body = await deps.backends(request).get("cash_application", "/v1/unapplied-cash", user.username,
                                            limit=size, cursor=cursor, customer_id=customer_id)
    return deps.render(request, "cash_queue.html", rows=body.get("data", []), next_cursor=body.get("next_cursor"),
                       size=size, start=start, customer_id=customer_id or "", formats=BANK_FORMATS)


async def _payment_and_items(request: Request, payment_id: str, actor: str) -> tuple[dict, list[dict]]:
    b = deps.backends(request)
    payment = await b.get("cash_application", f"/v1/payments/{payment_id}", actor)
    items: dict[str, dict] = {}
    if payment.get("customer_identified") and payment.get("customer_id"):
        body = await b.get("cash_application", "/v1/open-items", actor, customer_id=payment["customer_id"],
                           status="open", limit=200)
        items = {i["invoice_id"]: i for i in body.get("data", [])}
    for s in payment.get("suggestions", []):
        for invoice_id in s.get("invoice_ids", []):
            if invoice_id not in items:
                try:
                    items[invoice_id] = await b.get("cash_application", f"/v1/open-items/{invoice_id}", actor)
                except BackendError as exc:
                    if exc.status != 404:
                        raise
    suggested = {i for s in payment.get("suggestions", [])[:1] for i in s.get("invoice_ids", [])}
    ordered = sorted(items.values(), key=lambda i: (i["invoice_id"] not in suggested, i.get("due_date") or "",
                                                     i["invoice_id"]))
    return payment, ordered


@router.get("/cash/payments/{payment_id}")
async def payment_page(request: Request, payment_id: str, saved: str | None = None,
                       error: str | None = None) -> Response:
    user = deps.require(request, P.VIEW_UNAPPLIED)
    payment, items = await _payment_and_items(request, payment_id, user.username)
    empty = selection({}, [], payment.get("unapplied_amount") or "0")
    numbers = {i["invoice_id"]: i.get("invoice_number") or i["invoice_id"] for i in items}
    return deps.render(request, "cash_payment.html", payment=payment, items=items, sel=empty, saved=saved,
                       error=error, numbers=numbers)


@router.post("/cash/payments/{payment_id}/totals")
async def totals(request: Request, payment_id: str) -> Response:
    """The running totals of what is selected (htmx, on every change): exact decimals."""
    user = deps.require(request, P.APPLY_CASH)
    form = await deps.check_csrf(request)
    payment = await deps.backends(request).get("cash_application", f"/v1/payments/{payment_id}", user.username)
    ids = [k[len("amount_"):] for k in form.keys() if k.startswith("amount_")]
    sel = selection(form, ids, payment.get("unapplied_amount") or "0")
    return deps.render(request, "cash_totals.html", payment=payment, sel=sel)


@router.post("/cash/payments/{payment_id}/applications")
async def apply(request: Request, payment_id: str) -> Response:
    user = deps.require(request, P.APPLY_CASH)
    form = await deps.check_csrf(request)
    payment = await deps.backends(request).get("cash_application", f"/v1/payments/{payment_id}", user.username)
    ids = [k[len("amount_"):] for k in form.keys() if k.startswith("amount_")]
    sel = selection(form, ids, payment.get("unapplied_amount") or "0")
    back = f"/cash/payments/{payment_id}"
    if sel.errors or not sel.applications:
        return RedirectResponse(f"{back}?error=select an invoice and a positive amount", status_code=303)
    try:
        await deps.backends(request).post(
            "cash_application", f"/v1/payments/{payment_id}/applications", user.username,
            {"applications": sel.applications, "applied_on": deps.today(request).isoformat()},
            idempotency_key=str(form.get("idempotency_key") or deps.new_idempotency_key()))
    except BackendError as exc:
        if 400 <= exc.status < 500:
            from urllib.parse import quote

            return RedirectResponse(f"{back}?error={quote(exc.detail[:300])}", status_code=303)
        raise
    return RedirectResponse(f"{back}?saved=applied", status_code=303)


@router.post("/cash/bank-files")
async def upload(request: Request) -> Response:
    user = deps.require(request, P.UPLOAD_BANK_FILE)
    form = await deps.check_csrf(request)
    upload_file = form.get("file")
    file_format = str(form.get("format") or "")
    if file_format not in BANK_FORMATS or upload_file is None or not hasattr(upload_file, "read"):
        return deps.render(request, "cash_import.html", status_code=422, result=None,
                           error="choose a file and its format")
    content = await upload_file.read(MAX_UPLOAD_BYTES + 1)
    if len(content) > MAX_UPLOAD_BYTES:
        return deps.render(request, "cash_import.html", status_code=413, result=None, error="file too large")
    try:
        result: dict[str, Any] = await deps.backends(request).post_bytes(
            "cash_application", "/v1/bank-files", user.username, content,
            idempotency_key=str(form.get("idempotency_key") or deps.new_idempotency_key()),
            format=file_format, file_name=getattr(upload_file, "filename", None))
    except BackendError as exc:
        if 400 <= exc.status < 500:
            return deps.render(request, "cash_import.html", status_code=422, result=None,
                               error=f"{exc.detail}" + (f" ({exc.field})" if exc.field else ""))
        raise
    return deps.render(request, "cash_import.html", result=result, error=None)
