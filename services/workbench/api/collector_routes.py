"""The collector's day: the worklist (ranked, sorted and paged by collections), the account
page and its actions (log a contact, record a promise, set up a payment plan, pause or move the
strategy, escalate, open a dispute, request a write-off, the statement of account) and the
account's timeline from the services' event-backed histories."""
from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from services.workbench.adapters.backends import BackendError
from services.workbench.api import deps
from services.workbench.domain import money
from services.workbench.domain.collector import PLAN_ROWS, plan_draft, timeline
from services.workbench.domain.collector import reasons as ranking_reasons
from services.workbench.domain.roles import Permission as P
from services.workbench.domain.worklist import Page, aging_totals, page_number, page_size, worklist_order

DISPUTE_TIMELINES = 20  # the account's latest disputes whose steps the timeline shows

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
    column, descending = worklist_order(sort, order)
    size = page_size(size)
    kept = request.app.state.worklists

    async def fetch(number: int) -> dict[str, Any]:
        return await kept.page(deps.backends(request), collector_id, as_of, user.username, sort=column,
                               descending=descending, offset=(number - 1) * size, limit=size)
    number = max(1, page)
    body = await fetch(number)
    if number != page_number(number, size, body["total"]):  # past the end: the last page
        number = page_number(number, size, body["total"])
        body = await fetch(number)
    result = Page(rows=body["data"], number=number, size=size, total=body["total"], sort=column,
                  descending=descending)
    template = "worklist_table.html" if request.headers.get("HX-Request") and \
        request.headers.get("HX-Target") == "worklist-table" else "worklist.html"
    # The ranking's reasons in the reader's language (collections says them in English, with codes).
    said = {e["customer_id"]: e.get("reasons") or [] if user.locale != "fr" else
            ranking_reasons(e, "fr", lambda v, c: money.format_money(v, c, "fr")) for e in result.rows}
    return deps.render(request, template, page=result, collector_id=collector_id, as_of=as_of,
                       own=collector_id == user.username, said=said)


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
    target = await request.app.state.worklists.next_after(deps.backends(request), collector_id,
                                                          deps.today(request).isoformat(), user.username, after)
    if target is None:
        return RedirectResponse("/worklist", status_code=303)
    suffix = f"?collector={collector_id}" if collector_id != user.username else ""
    return RedirectResponse(f"/accounts/{target}{suffix}", status_code=303)


async def _optional(coro, default):
    """A service's answer, or `default` when it knows nothing of the account (404)."""
    try:
        return await coro
    except BackendError as exc:
        if exc.status == 404:
            return default
        raise


async def _gather_account(request: Request, customer_id: str, actor: str) -> dict[str, Any]:
    b = deps.backends(request)
    as_of = deps.today(request).isoformat()
    (account, customer, payments, disputes, promises, contacts, write_offs, risk, plans, escalations, strategies,
     history, profile_changes, deliveries) = await asyncio.gather(
        b.get("collections", f"/v1/customers/{customer_id}", actor, as_of=as_of),
        _optional(b.get("invoicing", f"/v1/customers/{customer_id}", actor), {}),
        b.get("cash_application", "/v1/payments", actor, customer_id=customer_id, limit=100),
        b.get("disputes", "/v1/disputes", actor, customer_id=customer_id, limit=100),
        b.get("collections", "/v1/promises", actor, customer_id=customer_id, limit=100),
        b.get("collections", "/v1/contacts", actor, customer_id=customer_id),
        b.get("collections", "/v1/write-offs", actor, customer_id=customer_id),
        _optional(b.get("collections", f"/v1/customers/{customer_id}/risk", actor, as_of=as_of), None),
        b.get("collections", "/v1/payment-plans", actor, customer_id=customer_id),
        b.get("collections", "/v1/escalations", actor, customer_id=customer_id),
        b.get("collections", "/v1/strategies", actor),
        b.get("collections", f"/v1/customers/{customer_id}/history", actor),
        _optional(b.get("invoicing", f"/v1/customers/{customer_id}/profile-changes", actor), {"data": []}),
        b.get("invoicing", "/v1/document-deliveries", actor, customer_id=customer_id, limit=100),
    )
    dispute_rows = disputes.get("data", [])
    steps = await asyncio.gather(*[
        _optional(b.get("disputes", f"/v1/disputes/{d['dispute_id']}/timeline", actor), {"data": []})
        for d in dispute_rows[-DISPUTE_TIMELINES:]])
    invoices = sorted(account.get("open_invoices", []), key=lambda i: (-int(i["days_past_due"]), i["invoice_id"]))
    events = timeline(history.get("data", []), [e for s in steps for e in s.get("data", [])],
                      [{"effective_on": c.get("effective_on"), "changed_by": c.get("changed_by"),
                        **{k: True for k in (c.get("changes") or {})}} for c in profile_changes.get("data", [])],
                      payments.get("data", []), contacts.get("data", []))
    numbers = {i["invoice_id"]: i.get("invoice_number") or i["invoice_id"] for i in invoices}
    return {"numbers": numbers, "account": account, "customer": customer, "invoices": invoices, "aging": aging_totals(invoices),
            "payments": payments.get("data", []), "disputes": dispute_rows,
            "promises": promises.get("data", []), "contacts": list(reversed(contacts.get("data", []))),
            "write_offs": write_offs.get("data", []), "risk": risk, "timeline": events,
            "plans": plans.get("data", []), "escalations": escalations.get("data", []),
            "strategies": strategies.get("data", []), "plan_rows": PLAN_ROWS,
            "deliveries": list(reversed(deliveries.get("data", []))),
            "plan_initial": plan_draft({"invoice_ids": [i["invoice_id"] for i in invoices]},
                                       {i["invoice_id"]: i["open_balance"] for i in invoices})}


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


def _open_balances(account: dict[str, Any]) -> dict[str, str]:
    return {i["invoice_id"]: i["open_balance"] for i in account.get("open_invoices", [])}


async def _account_of(request: Request, customer_id: str, actor: str) -> dict[str, Any]:
    return await deps.backends(request).get("collections", f"/v1/customers/{customer_id}", actor,
                                            as_of=deps.today(request).isoformat())


@router.post("/accounts/{customer_id}/plan-totals")
async def plan_totals(request: Request, customer_id: str) -> Response:
    """The plan's running total against the balance of the invoices it covers (htmx, on every
    change), in exact decimals."""
    user = deps.require(request, P.SET_UP_PLAN)
    form = await deps.check_csrf(request)
    account = await _account_of(request, customer_id, user.username)
    draft = plan_draft(form, _open_balances(account))
    return deps.render(request, "plan_totals.html", draft=draft, currency=str(form.get("currency") or ""))


@router.post("/accounts/{customer_id}/plans")
async def set_up_plan(request: Request, customer_id: str) -> Response:
    """An installment plan on some of the account's invoices → collections' PaymentPlanAgreed."""
    user = deps.require(request, P.SET_UP_PLAN)
    form = await deps.check_csrf(request)
    draft = plan_draft(form, _open_balances(await _account_of(request, customer_id, user.username)))
    if draft.errors:
        field, why = next(iter(draft.errors.items()))
        return _back(customer_id, form, error=f"{why} ({field})")
    body = {"customer_id": customer_id, "invoice_ids": draft.invoice_ids, "currency": form.get("currency"),
            "installments": draft.installments, "agreed_on": deps.today(request).isoformat()}
    return await _act(request, customer_id, P.SET_UP_PLAN, "collections", "/v1/payment-plans", body, form, "plan")


@router.post("/accounts/{customer_id}/strategy")
async def change_strategy(request: Request, customer_id: str) -> Response:
    """Pause the account's dunning or move it to another strategy (collections' PUT)."""
    user = deps.require(request, P.CHANGE_STRATEGY)
    form = await deps.check_csrf(request)
    body = {"strategy_id": str(form.get("strategy_id") or "") or None, "paused": form.get("paused") == "on"}
    try:
        await deps.backends(request).put("collections", f"/v1/customers/{customer_id}/strategy", user.username, body)
    except BackendError as exc:
        if 400 <= exc.status < 500:
            return _back(customer_id, form, error=f"{exc.detail}" + (f" ({exc.field})" if exc.field else ""))
        raise
    request.app.state.worklists.drop(user.username)
    return _back(customer_id, form, saved="strategy")


@router.post("/accounts/{customer_id}/escalations")
async def escalate(request: Request, customer_id: str) -> Response:
    """Escalate the account by hand → AccountEscalated, to the AR manager unless named."""
    deps.require(request, P.ESCALATE)
    form = await deps.check_csrf(request)
    body = {"customer_id": customer_id, "reason": form.get("reason"),
            "escalated_to": str(form.get("escalated_to") or "") or None,
            "recommended_action": str(form.get("recommended_action") or "") or None,
            "escalated_on": deps.today(request).isoformat()}
    return await _act(request, customer_id, P.ESCALATE, "collections", "/v1/escalations", body, form, "escalation")


@router.get("/accounts/{customer_id}/statement.pdf")
async def statement(request: Request, customer_id: str) -> Response:
    """The statement of account as of today (reporting's, in the reader's language): open items,
    aging, unapplied cash; a parent's covers its family."""
    user = deps.require(request, P.VIEW_ACCOUNT)
    account = await _account_of(request, customer_id, user.username)
    currency = next((i["currency"] for i in account.get("open_invoices", [])), None) or account.get("currency")
    pdf = await deps.backends(request).get_raw(
        "reporting", f"/v1/reports/statements/{customer_id}", user.username, as_of=deps.today(request).isoformat(),
        currency=currency, format="pdf", language=user.locale if user.locale in ("en", "fr") else "en")
    return Response(pdf.content, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="statement-{customer_id}.pdf"'})


@router.post("/accounts/{customer_id}/statements")
async def send_statement(request: Request, customer_id: str) -> Response:
    """Send the statement of account as of today: invoicing delivers it by the customer's
    delivery preference (email with the PDF, postal, portal, e-invoice), through its outbox."""
    deps.require(request, P.SEND_STATEMENT)
    form = await deps.check_csrf(request)
    return await _act(request, customer_id, P.SEND_STATEMENT, "invoicing",
                      f"/v1/customers/{customer_id}/statement-deliveries",
                      {"as_of": deps.today(request).isoformat()}, form, "statement")
