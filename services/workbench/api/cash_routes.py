"""The cash applier's day: the unapplied-cash queue (paged by the service), a payment with its
ranked suggestions, applying and splitting with running totals (computed on the server), and
uploading a bank file."""
from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from services.workbench.adapters.backends import BackendError
from services.workbench.api import deps
from services.workbench.application.reconciliation import day as reconciliation_day
from services.workbench.domain.cash import (QUEUE_SORTS, active_applications, applied_total, queue_order,
                                            reopened_balances, selection)
from services.workbench.domain.roles import Permission as P
from services.workbench.domain.worklist import page_size

router = APIRouter()
BANK_FORMATS = ("bai2", "camt.053", "camt.054", "mt940", "csv", "edi820")
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


@router.get("/cash")
async def queue(request: Request, cursor: str | None = None, size: int | None = None,
                customer_id: str | None = None, start: int = Query(1, ge=1), sort: str | None = None,
                order: str | None = None, trail: str | None = Query(None, max_length=20_000)) -> Response:
    """The queue as cash application sorts and pages it (10,000 receipts never reach the browser)."""
    user = deps.require(request, P.VIEW_UNAPPLIED)
    size = page_size(size)
    q = queue_order(sort, order)
    body = await deps.backends(request).get("cash_application", "/v1/unapplied-cash", user.username,
                                            limit=size, cursor=cursor, customer_id=customer_id,
                                            sort=q.api_sort, order=q.api_order)
    today = deps.today(request)
    rows = body.get("data", [])
    for r in rows:
        r["age_days"] = (today - date.fromisoformat(r["value_date"])).days
    # The cursors of the pages before this one ("."-separated: cursors are base64url), so that
    # "Previous" goes back through a keyset-paged queue.
    before = [c for c in (trail or "").split(".") if c] if cursor else []
    previous = {"cursor": before[-1] if len(before) > 0 else None, "trail": ".".join(before[:-1]),
                "start": max(1, start - size)} if cursor else None
    next_trail = ".".join(before + [cursor]) if cursor else ""
    return deps.render(request, "cash_queue.html", rows=rows, next_cursor=body.get("next_cursor"),
                       previous=previous, next_trail=next_trail,
                       size=size, start=start, customer_id=customer_id or "", formats=BANK_FORMATS, q=q,
                       sorts=QUEUE_SORTS)


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
    # The invoices it is applied to (closed once paid in full): a re-application may use them again.
    for a in active_applications(payment):
        if a["invoice_id"] not in items:
            try:
                items[a["invoice_id"]] = await b.get("cash_application", f"/v1/open-items/{a['invoice_id']}", actor)
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
    open_items = [i for i in items if i.get("open_balance") not in (None, "0", "0.00") and i.get("status") != "closed"]
    return deps.render(request, "cash_payment.html", payment=payment, items=open_items, all_items=items,
                       sel=empty, saved=saved, error=error, numbers=numbers,
                       active=active_applications(payment), reopened=reopened_balances(payment, items),
                       live=not payment.get("returned_on"), return_codes=RETURN_CODES)


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


# ---------------------------------------------------------------- re-apply, reverse, return
# Each asks for a reason and shows what it will do before doing it: the first POST answers a
# confirmation page carrying the same fields (and Idempotency-Key); only `confirm=yes` acts.

RETURN_CODES = ("NSF", "R01", "R02", "R03", "R08", "R10", "R16", "WIRE_RECALL", "STOP_PAYMENT", "OTHER")
MAX_REASON = 500


def _reason(form) -> str:
    return str(form.get("reason") or "").strip()[:MAX_REASON]


async def _act(request: Request, payment_id: str, user, path: str, body: dict, form, saved: str) -> Response:
    return await deps.post_then_back(request, "cash_application", f"/v1/payments/{payment_id}/{path}", user, body,
                                     form, f"/cash/payments/{payment_id}", saved)


def _confirm(request: Request, payment: dict, action: str, form, summary: list[tuple[str, str]]) -> Response:
    fields = [(k, str(v)) for k, v in form.multi_items() if k not in ("confirm", deps.CSRF_FIELD)]
    return deps.render(request, "cash_confirm.html", payment=payment, action=action, fields=fields, summary=summary)


@router.post("/cash/payments/{payment_id}/reversal")
async def reverse(request: Request, payment_id: str) -> Response:
    """Reverse applications (those ticked, else all): the cash is unapplied again, the invoices reopen."""
    user = deps.require(request, P.APPLY_CASH)
    form = await deps.check_csrf(request)
    payment = await deps.backends(request).get("cash_application", f"/v1/payments/{payment_id}", user.username)
    active = {a["application_id"] for a in active_applications(payment)}
    chosen = [a for a in form.getlist("application_id") if a in active]
    reason = _reason(form)
    back = f"/cash/payments/{payment_id}"
    if not active:
        return RedirectResponse(f"{back}?error={quote('nothing to reverse')}", status_code=303)
    if not reason:
        return RedirectResponse(f"{back}?error={quote('give the reason for the reversal')}", status_code=303)
    if form.get("confirm") != "yes":
        return _confirm(request, payment, "reversal", form, [
            ("Reverse", applied_total(payment, chosen)), ("Applications", str(len(chosen) or len(active))),
            ("Reason", reason)])
    return await _act(request, payment_id, user, "reversals",
                      {"application_ids": chosen, "reversed_on": deps.today(request).isoformat(), "note": reason},
                      form, "reversed")


@router.post("/cash/payments/{payment_id}/reapplication")
async def reapply(request: Request, payment_id: str) -> Response:
    """Reverse every application and apply the payment as chosen now, in one step."""
    user = deps.require(request, P.APPLY_CASH)
    form = await deps.check_csrf(request)
    payment = await deps.backends(request).get("cash_application", f"/v1/payments/{payment_id}", user.username)
    ids = [k[len("amount_"):] for k in form.keys() if k.startswith("amount_")]
    sel = selection(form, ids, payment.get("amount") or "0")
    reason = _reason(form)
    back = f"/cash/payments/{payment_id}"
    if sel.errors or not sel.applications or sel.over:
        return RedirectResponse(f"{back}?error={quote('select invoices and positive amounts within the payment')}",
                                status_code=303)
    if not reason:
        return RedirectResponse(f"{back}?error={quote('give the reason for the re-application')}", status_code=303)
    if form.get("confirm") != "yes":
        return _confirm(request, payment, "reapplication", form, [
            ("Reverse", applied_total(payment)), ("Apply", sel.selected), ("Reason", reason)])
    return await _act(request, payment_id, user, "reapplication",
                      {"applications": sel.applications, "applied_on": deps.today(request).isoformat(),
                       "note": reason}, form, "reapplied")


@router.post("/cash/payments/{payment_id}/return")
async def return_payment(request: Request, payment_id: str) -> Response:
    """The bank returned the payment (NSF, recalled wire): every application reversed, then returned."""
    user = deps.require(request, P.RETURN_PAYMENT)
    form = await deps.check_csrf(request)
    payment = await deps.backends(request).get("cash_application", f"/v1/payments/{payment_id}", user.username)
    code = str(form.get("reason_code") or "")
    reason = _reason(form)
    back = f"/cash/payments/{payment_id}"
    if code not in RETURN_CODES or not reason:
        return RedirectResponse(f"{back}?error={quote('choose the return code and give the reason')}",
                                status_code=303)
    if form.get("confirm") != "yes":
        return _confirm(request, payment, "return", form, [
            ("Amount", payment["amount"]), ("Reverse", applied_total(payment)), ("Return code", code),
            ("Reason", reason)])
    return await _act(request, payment_id, user, "return",
                      {"reason_code": code, "reason": reason, "returned_on": deps.today(request).isoformat()},
                      form, "returned")


# ---------------------------------------------------------------- daily reconciliation

@router.get("/cash/reconciliation")
async def reconciliation(request: Request, day: str | None = None, account: str | None = None,
                         currency: str | None = None) -> Response:
    """The day's bank lines against the posted receipts, per bank account (or one account)."""
    user = deps.require(request, P.VIEW_UNAPPLIED)
    try:
        chosen = date.fromisoformat(day) if day else deps.today(request)
    except ValueError:
        chosen = deps.today(request)
    currency = (currency or "USD").strip().upper()[:3]
    accounts, results, overall = await reconciliation_day(deps.backends(request), user.username, chosen.isoformat(),
                                                          currency, account or None)
    return deps.render(request, "cash_reconciliation.html", on=chosen.isoformat(), account=account or "",
                       currency=currency, accounts=accounts, results=results, overall=overall,
                       previous=(chosen - timedelta(days=1)).isoformat(), next=(chosen + timedelta(days=1)).isoformat())
