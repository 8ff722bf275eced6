"""The collector's day: the worklist (ranked by collections, sorted and paged here), the account
page and its actions (log a contact, record a promise, open a dispute, request a write-off)."""
from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from services.workbench.adapters.backends import BackendError
from services.workbench.api import deps
from services.workbench.domain.roles import Permission as P
from services.workbench.domain.worklist import aging_totals, next_account, sort_and_page

router = APIRouter()


def _collector_of(request: Request, user: deps.User, asked: str | None) -> str:
    if asked and asked != user.username:
        deps.require(request, P.VIEW_ANY_WORKLIST)
        return asked
    return user.username


@router.get("/worklist")
async def worklist(request: Request, collector: str | None = None, sort: str | None = None,
                   order: str | None = None, page: int = Query(1, ge=1, le=100_000),
                   size: int | None = None) -> Response:
    user = deps.require(request, P.VIEW_WORKLIST)
    collector_id = _collector_of(request, user, collector)
    as_of = deps.today(request).isoformat()
    entries = await request.app.state.worklists.entries(deps.backends(request), collector_id, as_of, user.username)
    result = sort_and_page(entries, sort, order, page, size)
    template = "worklist_table.html" if request.headers.get("HX-Request") and \
        request.headers.get("HX-Target") == "worklist-table" else "worklist.html"
    return deps.render(request, template, page=result, collector_id=collector_id, as_of=as_of,
                       own=collector_id == user.username)


@router.post("/worklist/refresh")
async def refresh(request: Request) -> Response:
    """Rank again now: drop the ranking the workbench keeps for this collector (60 s otherwise)."""
    user = deps.require(request, P.VIEW_WORKLIST)
    form = await deps.check_csrf(request)
    collector_id = _collector_of(request, user, str(form.get("collector") or "") or None)
    request.app.state.worklists.drop(collector_id)
    suffix = f"?collector={collector_id}" if collector_id != user.username else ""
    return RedirectResponse(f"/worklist{suffix}", status_code=303)


@router.get("/worklist/next")
async def next_in_worklist(request: Request, after: str = "", collector: str | None = None) -> Response:
    """'n' on an account page: the next account of the worklist, in priority order."""
    user = deps.require(request, P.VIEW_WORKLIST)
    collector_id = _collector_of(request, user, collector)
    entries = await request.app.state.worklists.entries(deps.backends(request), collector_id,
                                                         deps.today(request).isoformat(), user.username)
    ordered = sort_and_page(entries, "priority", "desc", 1, None, everything=True).rows
    target = next_account(ordered, after)
    if target is None:
        return RedirectResponse("/worklist", status_code=303)
    suffix = f"?collector={collector_id}" if collector_id != user.username else ""
    return RedirectResponse(f"/accounts/{target}{suffix}", status_code=303)


async def _gather_account(request: Request, customer_id: str, actor: str) -> dict[str, Any]:
    b = deps.backends(request)
    as_of = deps.today(request).isoformat()

    async def optional(coro, default):
        try:
            return await coro
        except BackendError as exc:
            if exc.status == 404:
                return default
            raise

    account, customer, payments, disputes, promises, contacts, write_offs, risk = await asyncio.gather(
        b.get("collections", f"/v1/customers/{customer_id}", actor, as_of=as_of),
        optional(b.get("invoicing", f"/v1/customers/{customer_id}", actor), {}),
        b.get("cash_application", "/v1/payments", actor, customer_id=customer_id, limit=100),
        b.get("disputes", "/v1/disputes", actor, customer_id=customer_id, limit=100),
        b.get("collections", "/v1/promises", actor, customer_id=customer_id, limit=100),
        b.get("collections", "/v1/contacts", actor, customer_id=customer_id),
        b.get("collections", "/v1/write-offs", actor, customer_id=customer_id),
        optional(b.get("collections", f"/v1/customers/{customer_id}/risk", actor, as_of=as_of), None),
    )
    invoices = sorted(account.get("open_invoices", []), key=lambda i: (-int(i["days_past_due"]), i["invoice_id"]))
    timeline = _timeline(invoices, payments.get("data", []), disputes.get("data", []), promises.get("data", []),
                         contacts.get("data", []), write_offs.get("data", []))
    numbers = {i["invoice_id"]: i.get("invoice_number") or i["invoice_id"] for i in invoices}
    return {"numbers": numbers, "account": account, "customer": customer, "invoices": invoices, "aging": aging_totals(invoices),
            "payments": payments.get("data", []), "disputes": disputes.get("data", []),
            "promises": promises.get("data", []), "contacts": list(reversed(contacts.get("data", []))),
            "write_offs": write_offs.get("data", []), "risk": risk, "timeline": timeline}


def _timeline(invoices, payments, disputes, promises, contacts, write_offs) -> list[dict[str, Any]]:
    """Everything that happened to the account, newest first, from what the services record."""
    items: list[dict[str, Any]] = []
    for p in payments:
        items.append({"on": p.get("value_date"), "what": "Payment", "ref": p.get("payment_id"),
                      "amount": p.get("amount"), "currency": p.get("currency"), "by": None})
    for d in disputes:
        items.append({"on": d.get("opened_on"), "what": "Disputed", "ref": d.get("dispute_id"),
                      "amount": d.get("amount"), "currency": d.get("currency"), "by": d.get("opened_by")})
    for pr in promises:
        items.append({"on": pr.get("made_on"), "what": "Promises", "ref": pr.get("promise_id"),
                      "amount": pr.get("amount"), "currency": pr.get("currency"), "by": None})
    for c in contacts:
        items.append({"on": c.get("contacted_on"), "what": c.get("kind"), "ref": c.get("outcome") or "",
                      "amount": None, "currency": None, "by": c.get("collector_id"), "note": c.get("note")})
    for w in write_offs:
        items.append({"on": w.get("requested_on"), "what": "Request a write-off", "ref": w.get("write_off_id"),
                      "amount": w.get("amount"), "currency": w.get("currency"), "by": w.get("requested_by")})
    items = [i for i in items if i["on"]]
    items.sort(key=lambda i: str(i["on"]), reverse=True)
    return items


@router.get("/accounts/{customer_id}")
async def account_page(request: Request, customer_id: str, collector: str | None = None,
                       saved: str | None = None, error: str | None = None) -> Response:
    user = deps.require(request, P.VIEW_ACCOUNT)
    data = await _gather_account(request, customer_id, user.username)
    return deps.render(request, "account.html", customer_id=customer_id, collector=collector, saved=saved,
                       error=error, today=deps.today(request).isoformat(), **data)


def _back(customer_id: str, form: Any, **flag: str) -> RedirectResponse:
    from urllib.parse import urlencode

    params = {k: v for k, v in flag.items() if v}
    collector = str(form.get("collector") or "")
    if collector:
        params["collector"] = collector
    return RedirectResponse(f"/accounts/{customer_id}" + (f"?{urlencode(params)}" if params else ""), status_code=303)


async def _act(request: Request, customer_id: str, permission: P, context: str, path: str, body: dict[str, Any],
               form: Any, what: str) -> Response:
    user = deps.current_user(request)
    try:
        await deps.backends(request).post(context, path, user.username, body,
                                          idempotency_key=str(form.get("idempotency_key") or deps.new_idempotency_key()))
    except BackendError as exc:
        if 400 <= exc.status < 500:
            field = f" ({exc.field})" if exc.field else ""
            return _back(customer_id, form, error=f"{exc.detail}{field}")
        raise
    request.app.state.worklists.drop(user.username)
    return _back(customer_id, form, saved=what)


@router.post("/accounts/{customer_id}/contacts")
async def log_contact(request: Request, customer_id: str) -> Response:
    user = deps.require(request, P.LOG_CONTACT)
    form = await deps.check_csrf(request)
    body = {"customer_id": customer_id, "collector_id": user.username, "kind": form.get("kind"),
            "outcome": form.get("outcome") or None, "note": form.get("note") or None,
            "contacted_on": deps.today(request).isoformat(),
            "next_follow_up_on": form.get("next_follow_up_on") or None}
    return await _act(request, customer_id, P.LOG_CONTACT, "collections", "/v1/contacts", body, form, "contact")


@router.post("/accounts/{customer_id}/promises")
async def record_promise(request: Request, customer_id: str) -> Response:
    deps.require(request, P.RECORD_PROMISE)
    form = await deps.check_csrf(request)
    body = {"customer_id": customer_id, "invoice_ids": form.getlist("invoice_ids"), "amount": form.get("amount"),
            "currency": form.get("currency"), "promise_date": form.get("promise_date") or None,
            "made_on": deps.today(request).isoformat()}
    return await _act(request, customer_id, P.RECORD_PROMISE, "collections", "/v1/promises", body, form, "promise")


@router.post("/accounts/{customer_id}/disputes")
async def open_dispute(request: Request, customer_id: str) -> Response:
    deps.require(request, P.OPEN_DISPUTE)
    form = await deps.check_csrf(request)
    body = {"invoice_id": form.get("invoice_id"), "amount": form.get("amount"),
            "reason_code": form.get("reason_code"), "description": form.get("description") or None,
            "opened_on": deps.today(request).isoformat()}
    return await _act(request, customer_id, P.OPEN_DISPUTE, "disputes", "/v1/disputes", body, form, "dispute")


@router.post("/accounts/{customer_id}/write-offs")
async def request_write_off(request: Request, customer_id: str) -> Response:
    user = deps.require(request, P.REQUEST_WRITE_OFF)
    form = await deps.check_csrf(request)
    body = {"invoice_id": form.get("invoice_id"), "amount": form.get("amount") or None,
            "reason": form.get("reason"), "requested_by": user.username,
            "requested_on": deps.today(request).isoformat()}
    return await _act(request, customer_id, P.REQUEST_WRITE_OFF, "collections", "/v1/write-offs", body, form,
                      "write-off")
