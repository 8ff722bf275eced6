"""/v1 routes of collections beyond promises: accounts, strategies, compliance, the daily run,
notices, worklists, contacts, plans, escalations, credit holds and write-offs."""
from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from shared import eventstore
from shared.auth import acting_as, require_scope
from shared.idempotency import idempotency_key_header, idempotent_create
from shared.money import MoneyError, exact_amount, money_str
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, page
from shared.problems import Conflict, NotFound, Unprocessable
from shared.service import get_runtime, request_metadata
from services.collections.adapters import accounts
from services.collections.adapters.notices import template_names
from services.collections.api import schemas as s
from services.collections.application import accounts as account_commands
from services.collections.application import dunning, families, plans
from services.collections.domain.compliance import zone
from services.collections.domain.model import CollectionsRuleViolation
from services.collections.domain.plans import PlannedInstallment
from services.collections.domain.strategy import build_steps
from services.collections.domain.worklist import DESCENDING_BY_DEFAULT, WORKLIST_SORTS
from services.collections.domain.family import Balances

router = APIRouter(prefix="/v1")


def _today(request: Request) -> date:
    return get_runtime(request).definition.state["clock"].today()


def _rule(exc: CollectionsRuleViolation) -> Unprocessable:
    return Unprocessable(str(exc), field=exc.field)


def _not_future(day: date | None, today: date, field: str) -> date:
    if day is None:
        return today
    if day > today:
        raise Unprocessable(f"{field} {day} is after today ({today})", field=field)
    return day


NOTICE_MONEY = ("total_amount",)


# -- customers ------------------------------------------------------------------------------

@router.get("/customers/{customer_id}", tags=["accounts"])
async def get_account(customer_id: str, request: Request, as_of: date | None = None) -> dict[str, Any]:
    """The customer's collections account: profile, risk, collector, strategy, hold and what is overdue."""
    as_of = as_of or _today(request)
    async with get_runtime(request).engine.connect() as conn:
        customer = await accounts.get_customer(conn, customer_id)
        invoices = await accounts.invoices_as_of(conn, as_of, customer_id)
        hold = await accounts.active_hold(conn, customer_id)
        if not customer["known"] and not invoices:
            raise NotFound(f"customer {customer_id} is not known to collections", field="customer_id")
        hierarchy = await families.account_family(conn, customer_id, invoices, as_of)
    open_items = [r for r in invoices if r["open_balance"] > 0]
    out = s.jsonable({k: v for k, v in customer.items() if k not in ("known",)}, money=("credit_limit",))
    out["credit_hold"] = s.jsonable(hold) if hold else None
    out["open_invoices"] = [
        {"invoice_id": r["invoice_id"], "invoice_number": r["invoice_number"], "currency": r["currency"].strip(),
         "open_balance": money_str(r["open_balance"], r["currency"].strip()), "due_date": r["due_date"].isoformat(),
         "days_past_due": (as_of - r["due_date"]).days, "disputed": r["disputed"], "strategy_id": r["strategy_id"],
         "dunning_paused": r["dunning_paused"]} for r in open_items]
    # Account hierarchies: who pays for this account, and the balances of the accounts it pays for.
    currency = (customer["currency"] or (invoices[0]["currency"] if invoices else "") or "").strip() or None
    out["parent_customer_id"] = hierarchy.parent_customer_id
    out["paid_by"] = hierarchy.payer_customer_id
    out["balances"] = _balances_out(hierarchy.own, currency)
    out["family"] = {**_balances_out(hierarchy.family, currency), "accounts": 1 + len(hierarchy.children)}
    out["children"] = [{"customer_id": c["customer_id"], "name": c["name"],
                        "parent_customer_id": c["parent_customer_id"],
                        **_balances_out(c["balances"], c["currency"] or currency)} for c in hierarchy.children]
    return out


@router.get("/customers/{customer_id}/history", tags=["accounts"])
async def account_history(customer_id: str, request: Request,
                          limit: int = Query(200, ge=1, le=1000)) -> dict[str, Any]:
    """What collections did on the account, from its event store, newest first: promises made,
    kept and broken, plans and their installments, notices sent, escalations, credit holds,
    write-offs, segment and collector changes; each with its business date, who did it (the
    event's actor) and the event's data."""
    async with get_runtime(request).engine.connect() as conn:
        streams = await eventstore.read_streams(conn, await accounts.account_stream_ids(conn, customer_id))
    events = sorted((e for stream in streams.values() for e in stream), key=lambda e: e.global_position,
                    reverse=True)[:limit]
    return {"customer_id": customer_id, "data": [
        {"event_id": str(e.event_id), "event_type": e.event_type, "stream_id": e.stream_id,
         "occurred_at": e.occurred_at.isoformat(), "recorded_at": e.recorded_at.isoformat(),
         "actor": e.metadata.get("actor"), "data": e.payload} for e in events]}


@router.put("/customers/{customer_id}/profile", tags=["accounts"])
async def set_profile(customer_id: str, body: s.CustomerProfileRequest, request: Request) -> dict[str, Any]:
    """Contact profile and compliance settings: language, time zone, email, address, customer
    type (selects the compliance policy), do-not-contact and per-channel consent."""
    fields = body.model_dump(exclude_unset=True)
    if fields.get("time_zone"):
        try:
            zone(fields["time_zone"])
        except CollectionsRuleViolation as exc:
            raise _rule(exc) from exc
    for name in ("language", "time_zone", "customer_type", "do_not_contact", "consent"):
        if name in fields and fields[name] is None:
            raise Unprocessable(f"{name} cannot be null", field=name)
    async with get_runtime(request).engine.begin() as conn:
        await accounts.update_customer(conn, customer_id, fields)
        customer = await accounts.get_customer(conn, customer_id)
    return s.jsonable({k: v for k, v in customer.items() if k != "known"}, money=("credit_limit",))


@router.put("/customers/{customer_id}/strategy", tags=["accounts"])
async def assign_customer_strategy(customer_id: str, body: s.StrategyAssignmentRequest,
                                   request: Request) -> dict[str, Any]:
    """Move a customer to another strategy (null: the default) or pause its dunning."""
    async with get_runtime(request).engine.begin() as conn:
        if body.strategy_id and await accounts.latest_strategy(conn, body.strategy_id) is None:
            raise Unprocessable(f"there is no strategy {body.strategy_id}", field="strategy_id")
        await accounts.update_customer(conn, customer_id, {"strategy_id": body.strategy_id,
                                                           "dunning_paused": body.paused})
    return {"customer_id": customer_id, "strategy_id": body.strategy_id, "paused": body.paused}


@router.put("/invoices/{invoice_id}/strategy", tags=["accounts"])
async def assign_invoice_strategy(invoice_id: str, body: s.StrategyAssignmentRequest, request: Request) -> dict[str, Any]:
    """Move one invoice to another strategy than its customer's (null: the customer's) or pause it."""
    async with get_runtime(request).engine.begin() as conn:
        if await accounts.get_invoice(conn, invoice_id) is None:
            raise NotFound(f"invoice {invoice_id} is not known to collections", field="invoice_id")
        if body.strategy_id and await accounts.latest_strategy(conn, body.strategy_id) is None:
            raise Unprocessable(f"there is no strategy {body.strategy_id}", field="strategy_id")
        await accounts.set_invoice_strategy(conn, invoice_id, body.strategy_id, body.paused)
    return {"invoice_id": invoice_id, "strategy_id": body.strategy_id, "paused": body.paused}


@router.put("/customers/{customer_id}/collector", tags=["accounts"])
async def assign_collector(customer_id: str, body: s.CollectorRequest, request: Request) -> dict[str, Any]:
    """Give the customer's account to a collector → CollectorAssigned (nothing when unchanged)."""
    on = body.assigned_on or _today(request)
    async with get_runtime(request).engine.begin() as conn:
        changed = await account_commands.assign_collector(conn, customer_id, body.collector_id, on,
                                                          request_metadata(request))
    return {"customer_id": customer_id, "collector_id": body.collector_id, "assigned_on": on.isoformat(),
            "changed": changed}


@router.get("/customers/{customer_id}/risk", tags=["accounts"])
async def customer_risk(customer_id: str, request: Request, as_of: date | None = None) -> dict[str, Any]:
    """The risk score as of a day with the points each factor adds (computed, not stored)."""
    as_of = as_of or _today(request)
    async with get_runtime(request).engine.connect() as conn:
        customer = await accounts.get_customer(conn, customer_id)
        rows = await accounts.invoices_as_of(conn, as_of, customer_id)
        if not customer["known"] and not rows:
            raise NotFound(f"customer {customer_id} is not known to collections", field="customer_id")
        risk, _ = await dunning.score(conn, customer, rows, as_of)
    return {"customer_id": customer_id, "as_of": as_of.isoformat(), "risk_score": risk.score,
            "segment": risk.segment, "factors": risk.factors}


# -- strategies -----------------------------------------------------------------------------

def _steps(body_steps: list[s.StepIn]) -> list[dict[str, Any]]:
    raw = [step.model_dump() for step in body_steps]
    try:
        return [step.as_dict() for step in build_steps(raw, template_names())]
    except CollectionsRuleViolation as exc:
        raise _rule(exc) from exc


def _strategy_out(row: dict[str, Any]) -> dict[str, Any]:
    return s.jsonable(row)


@router.post("/strategies", status_code=201, tags=["strategies"])
async def create_strategy(body: s.StrategyRequest, request: Request, key: str = Depends(idempotency_key_header)):
    steps = _steps(body.steps)
    today = _today(request)

    async def command(conn):
        await dunning.ensure_default_strategy(conn, today)
        if not await accounts.insert_strategy(conn, strategy_id=body.strategy_id, version=1, name=body.name,
                                              steps=steps, created_on=today):
            raise Conflict(f"strategy {body.strategy_id} exists; add a version instead", field="strategy_id")
        return _strategy_out(await accounts.strategy_version(conn, body.strategy_id, 1))

    return await idempotent_create(request, key, body.model_dump(mode="json"), command)


@router.post("/strategies/{strategy_id}/versions", status_code=201, tags=["strategies"])
async def add_strategy_version(strategy_id: str, body: s.StrategyVersionRequest, request: Request,
                               key: str = Depends(idempotency_key_header)):
    """A new version; invoices on the strategy follow it from the next run. Steps already done
    under an earlier version (same step_id) are not repeated."""
    steps = _steps(body.steps)
    today = _today(request)

    async def command(conn):
        await dunning.ensure_default_strategy(conn, today)
        latest = await accounts.latest_strategy(conn, strategy_id)
        if latest is None:
            raise NotFound(f"there is no strategy {strategy_id}", field="strategy_id")
        version = latest["version"] + 1
        if not await accounts.insert_strategy(conn, strategy_id=strategy_id, version=version,
                                              name=body.name or latest["name"], steps=steps, created_on=today):
            raise Conflict(f"strategy {strategy_id} version {version} was added concurrently", field="strategy_id")
        return _strategy_out(await accounts.strategy_version(conn, strategy_id, version))

    return await idempotent_create(request, key, body.model_dump(mode="json"), command)


@router.get("/strategies", tags=["strategies"])
async def list_strategies(request: Request) -> dict[str, Any]:
    async with get_runtime(request).engine.begin() as conn:
        await dunning.ensure_default_strategy(conn, _today(request))
        rows = await accounts.list_strategies(conn)
    return {"data": [_strategy_out(r) for r in rows]}


@router.get("/strategies/{strategy_id}", tags=["strategies"])
async def get_strategy(strategy_id: str, request: Request, version: int | None = Query(None, ge=1)) -> dict[str, Any]:
    async with get_runtime(request).engine.begin() as conn:
        await dunning.ensure_default_strategy(conn, _today(request))
        row = await (accounts.strategy_version(conn, strategy_id, version) if version
                     else accounts.latest_strategy(conn, strategy_id))
    if row is None:
        raise NotFound(f"there is no strategy {strategy_id}" + (f" version {version}" if version else ""),
                       field="strategy_id")
    return _strategy_out(row)


# -- compliance -----------------------------------------------------------------------------

@router.put("/compliance-policies/{customer_type}", tags=["compliance"])
async def set_compliance_policy(customer_type: str, body: s.CompliancePolicyRequest, request: Request) -> dict[str, Any]:
    """Frequency cap and quiet hours for a customer type ('default' applies to types without one)."""
    row = {"customer_type": customer_type, **body.model_dump()}
    async with get_runtime(request).engine.begin() as conn:
        await accounts.upsert_compliance_policy(conn, row)
    return s.jsonable(row)


@router.get("/compliance-policies", tags=["compliance"])
async def list_compliance_policies(request: Request) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        rows = await accounts.list_compliance_policies(conn)
    return {"data": [s.jsonable(r) for r in rows]}


# -- the daily run and what it produced -----------------------------------------------------

@router.post("/dunning-runs", status_code=200, tags=["dunning"])
async def run_dunning(body: s.DailyRunRequest, request: Request, key: str = Depends(idempotency_key_header)):
    """The daily run as of a day (default today): promises, plans, risk, holds and every
    strategy step due, each once; then the email notices it wrote are sent."""
    runtime = get_runtime(request)
    clock = runtime.definition.state["clock"]
    as_of = _not_future(body.as_of, clock.today(), "as_of")
    run_at = body.run_at or dunning.run_instant(as_of, clock.now(), runtime.settings)
    if run_at.tzinfo is None:
        raise Unprocessable("run_at needs a UTC offset", field="run_at")

    async def command(conn):
        # The run commits customer by customer on its own connections; the key's transaction only
        # stores the answer (a failed run leaves the key free, and a retry resumes the run).
        result = await dunning.daily_run(runtime.engine, as_of=as_of, run_at=run_at, settings=runtime.settings,
                                         meta=request_metadata(request))
        return result.as_json()

    response = await idempotent_create(request, key, body.model_dump(mode="json"), command, status_code=200)
    await dunning.deliver_pending_emails(runtime.engine, runtime.settings)
    return response


@router.post("/notice-deliveries", status_code=200, tags=["dunning"])
async def deliver_notices(request: Request) -> dict[str, Any]:
    """Send the email notices still pending (after an SMTP outage); safe to repeat."""
    runtime = get_runtime(request)
    return await dunning.deliver_pending_emails(runtime.engine, runtime.settings)


@router.get("/notices", tags=["dunning"])
async def list_notices(request: Request, customer_id: str | None = None,
                       channel: str | None = Query(None, pattern="^(email|letter)$"),
                       delivery: str | None = Query(None, pattern="^(pending|sent|failed|print_ready)$"),
                       cursor: str | None = None, limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)) -> dict[str, Any]:
    after_seq = s.after_sequence(cursor)
    async with get_runtime(request).engine.connect() as conn:
        rows = await accounts.list_notices(conn, customer_id=customer_id, channel=channel, delivery=delivery,
                                           after=after_seq, limit=limit + 1)
    seqs = [r["created_seq"] for r in rows]
    return page([s.jsonable(r, NOTICE_MONEY) for r in rows], limit, lambda _: [seqs[min(limit, len(seqs)) - 1]])


@router.get("/notices/{notice_id}", tags=["dunning"])
async def get_notice(notice_id: str, request: Request) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        row = await accounts.get_notice(conn, notice_id)
    if row is None:
        raise NotFound(f"notice {notice_id} does not exist", field="notice_id")
    return s.jsonable(row, NOTICE_MONEY)


@router.get("/notices/{notice_id}/pdf", tags=["dunning"], response_class=Response)
async def get_notice_pdf(notice_id: str, request: Request) -> Response:
    """The notice as a printable PDF (letters are mailed from this)."""
    async with get_runtime(request).engine.connect() as conn:
        row = await accounts.get_notice(conn, notice_id, with_pdf=True)
    if row is None:
        raise NotFound(f"notice {notice_id} does not exist", field="notice_id")
    return Response(bytes(row["pdf"]), media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{notice_id}.pdf"'})


@router.get("/dunning-actions", tags=["dunning"])
async def list_dunning_actions(request: Request, customer_id: str | None = None) -> dict[str, Any]:
    """The dunning ledger: every (customer, strategy version, step, invoice) acted on, once."""
    async with get_runtime(request).engine.connect() as conn:
        rows = await accounts.list_actions(conn, customer_id)
    return {"data": [s.jsonable(r) for r in rows]}


@router.get("/blocked-actions", tags=["compliance"])
async def list_blocked_actions(request: Request, customer_id: str | None = None) -> dict[str, Any]:
    """What the compliance guard stopped, with the reason (each also a DunningActionBlocked)."""
    async with get_runtime(request).engine.connect() as conn:
        rows = await accounts.list_blocks(conn, customer_id)
    return {"data": [s.jsonable(r) for r in rows]}


@router.get("/call-tasks", tags=["dunning"])
async def list_call_tasks(request: Request, collector_id: str | None = None, customer_id: str | None = None,
                          status: str | None = Query(None, pattern="^(open|done)$")) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        rows = await accounts.list_call_tasks(conn, collector_id=collector_id, customer_id=customer_id, status=status)
    return {"data": [s.jsonable(r) for r in rows]}


@router.post("/escalations", status_code=201, tags=["dunning"])
async def escalate(body: s.EscalationRequest, request: Request, key: str = Depends(idempotency_key_header)):
    """A collector escalates an account by hand → AccountEscalated with the same summary as the
    strategy's escalations, and the rule's recommended action unless one is given."""
    runtime = get_runtime(request)
    on = _not_future(body.escalated_on, _today(request), "escalated_on")

    async def command(conn):
        customer = await accounts.get_customer(conn, body.customer_id)
        rows = await accounts.invoices_as_of(conn, on, body.customer_id)
        overdue = [r for r in rows if r["open_balance"] > 0 and r["due_date"] < on]
        if not overdue:
            raise Unprocessable(f"customer {body.customer_id} has nothing past due on {on}", field="customer_id")
        risk, history = await dunning.score(conn, customer, rows, on)
        currency = (customer["currency"] or overdue[0]["currency"]).strip()
        row = await dunning.escalate_account(
            conn, customer, escalation_id=str(uuid.uuid4()), as_of=on, currency=currency, overdue=overdue,
            risk_score=risk.score, broken_commitments=history.broken_promises,
            escalated_to=body.escalated_to or runtime.settings.escalation_manager,
            recommended=body.recommended_action, reason=body.reason, meta=request_metadata(request))
        return s.jsonable(row, ("overdue_amount",))

    return await idempotent_create(request, key, body.model_dump(mode="json"), command)


@router.get("/escalations", tags=["dunning"])
async def list_escalations(request: Request, customer_id: str | None = None) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        rows = await accounts.list_escalations(conn, customer_id)
    return {"data": [s.jsonable(r, ("overdue_amount",)) for r in rows]}


@router.get("/credit-holds", tags=["dunning"])
async def list_credit_holds(request: Request, customer_id: str | None = None, active: bool = False) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        rows = await accounts.list_holds(conn, customer_id, active)
    return {"data": [s.jsonable(r) for r in rows]}


# -- worklists and contacts -----------------------------------------------------------------

def _balances_out(b: Balances, currency: str | None) -> dict[str, Any]:
    def money(amount: Decimal) -> str:
        return money_str(amount, currency) if currency else format(amount, "f")
    return {"currency": currency, "open_balance": money(b.open_balance), "past_due": money(b.past_due),
            "aging": {name: money(amount) for name, amount in b.aging.items()}}


@router.get("/worklists/{collector_id}", tags=["worklists"])
async def worklist(
        collector_id: str, request: Request, as_of: date | None = None,
        sort: str = Query("priority", pattern=f"^({'|'.join(WORKLIST_SORTS)})$",
                          description="priority (the ranking), amount_past_due, oldest_days_past_due, name,"
                                      " risk_score; ties by customer id ascending"),
        order: str | None = Query(None, pattern="^(asc|desc)$",
                                  description="desc by default, asc by default for name"),
        limit: int | None = Query(None, ge=1, le=MAX_LIMIT, description="at most this many entries (all by default)"),
        offset: int = Query(0, ge=0, description="entries to skip (after `after`, when given)"),
        after: str | None = Query(None, description="start after this customer's entry (from the first when it is"
                                                    " not on the worklist): the next account")) -> dict[str, Any]:
    """The collector's customers with something past due, highest priority first, each with the
    reasons that make up its priority and its open call tasks. A parent that pays for its
    children is one entry with its whole family (the children are not listed on their own).
    Sorted and paged here: `total` counts the whole worklist, `data` is the page asked for."""
    as_of = as_of or _today(request)
    descending = sort in DESCENDING_BY_DEFAULT if order is None else order == "desc"
    async with get_runtime(request).engine.connect() as conn:
        ranked = await families.worklist(conn, collector_id, as_of, sort=sort, descending=descending,
                                         offset=offset, limit=limit, after=after)
    entries = []
    for e in ranked.entries:
        unit, currency = e.snapshot, e.snapshot.currency
        entries.append({
            "customer_id": e.customer["customer_id"], "name": e.customer["name"],
            "priority": format(e.ranked.score, "f"), "reasons": e.ranked.reasons,
            "reason_details": [{"code": r.code, "points": format(r.points, "f"), "values": r.values}
                               for r in e.ranked.details],
            "currency": currency, "amount_past_due": money_str(unit.amount_past_due, currency),
            "oldest_days_past_due": unit.oldest_days_past_due, "segment": e.customer["segment"],
            "risk_score": e.customer["risk_score"], "open_call_tasks": e.open_call_tasks,
            "family_size": unit.family_size, "family_members": e.members,
            "own_amount_past_due": money_str(e.own.amount_past_due, currency),
            "family": _balances_out(e.family, currency)})
    return {"collector_id": collector_id, "as_of": as_of.isoformat(), "sort": sort,
            "order": "desc" if descending else "asc", "offset": offset, "limit": limit,
            "total": ranked.total, "data": entries}


@router.post("/contacts", status_code=201, tags=["contacts"])
async def log_contact(body: s.ContactRequest, request: Request, key: str = Depends(idempotency_key_header)):
    """Log a call, email, letter, SMS, meeting or note with its outcome and next follow-up.
    Outbound contacts count towards the frequency cap; a logged call closes open call tasks."""
    cmd = account_commands.LogContact(customer_id=body.customer_id, collector_id=body.collector_id, kind=body.kind,
                                      outcome=body.outcome, note=body.note,
                                      contacted_on=_not_future(body.contacted_on, _today(request), "contacted_on"),
                                      next_follow_up_on=body.next_follow_up_on)

    async def command(conn):
        return s.jsonable(await account_commands.log_contact(conn, cmd))

    return await idempotent_create(request, key, body.model_dump(mode="json"), command)


@router.get("/contacts", tags=["contacts"])
async def list_contacts(request: Request, customer_id: str | None = None,
                        collector_id: str | None = None) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        rows = await accounts.list_contacts(conn, customer_id, collector_id)
    return {"data": [s.jsonable(r) for r in rows]}


# -- payment plans --------------------------------------------------------------------------

def _plan_out(row: dict[str, Any]) -> dict[str, Any]:
    return s.jsonable(row, ("total_amount",))


@router.post("/payment-plans", status_code=201, tags=["plans"])
async def agree_payment_plan(body: s.PaymentPlanRequest, request: Request, key: str = Depends(idempotency_key_header)):
    """An installment plan on some of a customer's invoices → PaymentPlanAgreed. Its invoices
    are not dunned while it is active; a missed installment breaks it and moves them on."""
    runtime = get_runtime(request)
    installments = []
    for i, item in enumerate(body.installments):
        try:
            amount = exact_amount(item.amount, body.currency)
        except MoneyError as exc:
            raise Unprocessable(str(exc), field=f"installments.{i}.amount") from exc
        installments.append(PlannedInstallment(item.number, item.due_date, amount))
    cmd = plans.AgreePlan(plan_id=body.plan_id or str(uuid.uuid4()), customer_id=body.customer_id,
                          invoice_ids=body.invoice_ids, currency=body.currency, installments=installments,
                          agreed_on=body.agreed_on or _today(request),
                          grace_days=runtime.settings.installment_grace_days if body.grace_days is None
                          else body.grace_days)

    async def command(conn):
        return _plan_out(await plans.agree_plan(conn, cmd, request_metadata(request)))

    return await idempotent_create(request, key, body.model_dump(mode="json"), command)


@router.get("/payment-plans", tags=["plans"])
async def list_payment_plans(request: Request, customer_id: str | None = None,
                             status: str | None = Query(None, pattern="^(active|completed|broken)$")) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        rows = await accounts.list_plans(conn, customer_id=customer_id, status=status)
    return {"data": [_plan_out(r) for r in rows]}


@router.get("/payment-plans/{plan_id}", tags=["plans"])
async def get_payment_plan(plan_id: str, request: Request) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        row = await accounts.get_plan(conn, plan_id)
    if row is None:
        raise NotFound(f"payment plan {plan_id} does not exist", field="plan_id")
    return _plan_out(row)


# -- write-offs -----------------------------------------------------------------------------

def _write_off_out(row: dict[str, Any]) -> dict[str, Any]:
    return s.jsonable(row, ("amount",))


@router.put("/approvers/{approver_id}", tags=["write-offs"])
async def set_approver(approver_id: str, body: s.ApproverRequest, request: Request) -> dict[str, Any]:
    """Register an approver's role; the role's limit (setting write_off_limits) bounds what it
    approves. Needs the collections:admin scope when API keys are configured."""
    require_scope(request, "collections:admin")
    async with get_runtime(request).engine.begin() as conn:
        await accounts.set_approver(conn, approver_id, body.role)
    limit = get_runtime(request).settings.write_off_limit_map().get(body.role, Decimal(0))
    return {"approver_id": approver_id, "role": body.role, "limit": None if limit is None else format(limit, "f")}


@router.post("/write-offs", status_code=201, tags=["write-offs"])
async def request_write_off(body: s.WriteOffRequest, request: Request, key: str = Depends(idempotency_key_header)):
    """Ask to write off (part of) an invoice's open balance → WriteOffRequested."""
    acting_as(request, body.requested_by, "requested_by")
    cmd = account_commands.RequestWriteOff(
        write_off_id=body.write_off_id or str(uuid.uuid4()), invoice_id=body.invoice_id, amount=body.amount,
        reason=body.reason, requested_by=body.requested_by,
        requested_on=_not_future(body.requested_on, _today(request), "requested_on"))

    async def command(conn):
        return _write_off_out(await account_commands.request_write_off(conn, cmd, request_metadata(request)))

    return await idempotent_create(request, key, body.model_dump(mode="json"), command)


@router.post("/write-offs/{write_off_id}/approval", status_code=201, tags=["write-offs"])
async def approve_write_off(write_off_id: str, body: s.WriteOffApprovalRequest, request: Request,
                            key: str = Depends(idempotency_key_header)):
    """Approve → WriteOffApproved: the approver is not the requester and the amount is within
    the approver role's limit. Collections' balance of the invoice drops to zero."""
    acting_as(request, body.approved_by, "approved_by")
    runtime = get_runtime(request)
    on = _not_future(body.approved_on, _today(request), "approved_on")

    async def command(conn):
        return _write_off_out(await account_commands.decide_write_off(
            conn, write_off_id, approve=True, decided_by=body.approved_by, decided_on=on, reason=None,
            limits=runtime.settings.write_off_limit_map(), meta=request_metadata(request)))

    return await idempotent_create(request, key, body.model_dump(mode="json"), command)


@router.post("/write-offs/{write_off_id}/rejection", status_code=201, tags=["write-offs"])
async def reject_write_off(write_off_id: str, body: s.WriteOffRejectionRequest, request: Request,
                           key: str = Depends(idempotency_key_header)):
    acting_as(request, body.rejected_by, "rejected_by")
    runtime = get_runtime(request)
    on = _not_future(body.rejected_on, _today(request), "rejected_on")

    async def command(conn):
        return _write_off_out(await account_commands.decide_write_off(
            conn, write_off_id, approve=False, decided_by=body.rejected_by, decided_on=on, reason=body.reason,
            limits=runtime.settings.write_off_limit_map(), meta=request_metadata(request)))

    return await idempotent_create(request, key, body.model_dump(mode="json"), command)


@router.get("/write-offs", tags=["write-offs"])
async def list_write_offs(request: Request, customer_id: str | None = None,
                          status: str | None = Query(None, pattern="^(requested|approved|rejected)$")) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        rows = await accounts.list_write_offs(conn, customer_id=customer_id, status=status)
    return {"data": [_write_off_out(r) for r in rows]}


@router.get("/write-offs/{write_off_id}", tags=["write-offs"])
async def get_write_off(write_off_id: str, request: Request) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        row = await accounts.get_write_off(conn, write_off_id)
    if row is None:
        raise NotFound(f"write-off {write_off_id} does not exist", field="write_off_id")
    return _write_off_out(row)
