"""The daily run: as of a day, judge promises and plans, score risk, release holds whose
overdue balance is cleared, and carry out every strategy step now due, once.

Exactly once: every (customer, strategy version, step, invoice) goes into the dunning ledger,
whose unique constraint refuses a second row, so a repeated or concurrent run acts on nothing
twice. Email notices are written with their event in the run's transaction (an outbox) and sent
after it commits (see deliver_pending_emails)."""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared import mail
from shared.contracts import (
    AccountEscalated,
    CallTaskCreated,
    CreditHoldPlaced,
    CreditHoldReleased,
    CustomerSegmented,
    DunningActionBlocked,
    DunningNoticeSent,
)
from shared.money import ZERO, money_str, quantize
from services.collections.adapters import accounts, notices
from services.collections.application.events import emit
from services.collections.application.handlers import evaluate_promises
from services.collections.application.plans import judge_plans
from services.collections.domain.compliance import PERSISTENT_REASONS, ContactProfile, Policy, blocked_reason
from services.collections.domain.risk import RiskHistory, score_customer
from services.collections.domain.strategy import (
    CONTACT_CHANNELS,
    DEFAULT_STEPS,
    DEFAULT_STRATEGY_ID,
    ChannelAction,
    OpenInvoice,
    Strategy,
    build_steps,
    plan_customer,
)
from services.collections.domain.write_offs import recommended_action
from services.collections.settings import CollectionsSettings


async def ensure_default_strategy(conn: AsyncConnection, today: date) -> None:
    await accounts.insert_strategy(conn, strategy_id=DEFAULT_STRATEGY_ID, version=1, name="Standard B2B dunning",
                                   steps=[dict(s) for s in DEFAULT_STEPS], created_on=today)


def strategy_from_row(row: dict[str, Any]) -> Strategy:
    return Strategy(row["strategy_id"], row["version"], row["name"],
                    build_steps(row["steps"], notices.template_names()))


async def policy_for(conn: AsyncConnection, customer_type: str) -> Policy:
    row = await accounts.compliance_policy(conn, customer_type) or await accounts.compliance_policy(conn, "default")
    if row is None:
        return Policy()
    return Policy(max_attempts=row["max_attempts"], window_days=row["window_days"],
                  quiet_start=row["quiet_start"], quiet_end=row["quiet_end"])


@dataclass
class RunResult:
    as_of: date
    run_at: datetime
    customers: int = 0
    promises_kept: list[str] = field(default_factory=list)
    promises_broken: list[str] = field(default_factory=list)
    plan_events: list[dict[str, Any]] = field(default_factory=list)
    segmented: list[dict[str, Any]] = field(default_factory=list)
    notices: list[dict[str, Any]] = field(default_factory=list)
    call_tasks: list[dict[str, Any]] = field(default_factory=list)
    escalations: list[dict[str, Any]] = field(default_factory=list)
    holds_placed: list[dict[str, Any]] = field(default_factory=list)
    holds_released: list[dict[str, Any]] = field(default_factory=list)
    blocked: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"as_of": self.as_of.isoformat(), "run_at": self.run_at.isoformat(), "customers": self.customers,
                "promises_kept": self.promises_kept, "promises_broken": self.promises_broken,
                "plan_events": self.plan_events, "segmented": self.segmented, "notices": self.notices,
                "call_tasks": self.call_tasks, "escalations": self.escalations, "holds_placed": self.holds_placed,
                "holds_released": self.holds_released, "blocked": self.blocked}


def run_instant(as_of: date, now: datetime, settings: CollectionsSettings) -> datetime:
    """When a run as of a day happens: now for today, the configured time for a past day."""
    if as_of == now.date():
        return now
    return datetime.combine(as_of, settings.daily_run_time_utc, tzinfo=timezone.utc)


async def daily_run(engine: AsyncEngine, *, as_of: date, run_at: datetime, settings: CollectionsSettings,
                    meta: dict[str, Any]) -> RunResult:
    """The caller has checked as_of is not after today. Short transactions: promises, then plans,
    then one per customer with an open invoice or an active hold (under that customer's lock),
    so payments and other customers' work never wait for the whole run. An interrupted run is
    resumed by running again: what was done is in the ledger and is not done twice."""
    result = RunResult(as_of=as_of, run_at=run_at)
    async with engine.begin() as conn:
        await ensure_default_strategy(conn, as_of)
    async with engine.begin() as conn:
        evaluation = await evaluate_promises(conn, as_of, as_of, meta)
    result.promises_kept = [p["promise_id"] for p in evaluation.kept]
    result.promises_broken = [p["promise_id"] for p in evaluation.broken]
    async with engine.begin() as conn:
        result.plan_events = await judge_plans(conn, as_of, meta)
        customer_ids = await accounts.customers_to_run(conn, as_of)
    strategies: dict[str, Strategy | None] = {}
    for customer_id in customer_ids:
        async with engine.begin() as conn:
            await accounts.lock_customer_run(conn, customer_id)
            rows = await accounts.invoices_as_of(conn, as_of, customer_id)
            if not any(r["open_balance"] > 0 for r in rows) and await accounts.active_hold(conn, customer_id) is None:
                continue  # settled (or released) since the list was read
            result.customers += 1
            await _run_customer(conn, customer_id, rows, as_of, run_at, settings, meta, strategies, result)
    return result


async def _strategy(conn: AsyncConnection, strategy_id: str, cache: dict[str, Strategy | None]) -> Strategy | None:
    if strategy_id not in cache:
        row = await accounts.latest_strategy(conn, strategy_id)
        cache[strategy_id] = strategy_from_row(row) if row else None
    return cache[strategy_id]


async def _credit_limit_as_of(conn: AsyncConnection, customer: dict[str, Any], as_of: date) -> Decimal | None:
    """The credit limit that held on as_of (invoicing's customer master over time); the current one
    for customers whose limit history predates it."""
    limit = await accounts.credit_limit_as_of(conn, customer["customer_id"], as_of)
    if limit is not None:
        return limit
    return Decimal(customer["credit_limit"]) if customer["credit_limit"] is not None else None


async def score(conn: AsyncConnection, customer: dict[str, Any], rows: list[dict[str, Any]], as_of: date):
    totals = {r["invoice_id"]: (Decimal(r["total_amount"]), r["due_date"]) for r in rows}
    reduced: dict[str, Decimal] = {}
    days_late: list[tuple[date, int]] = []
    for invoice_id, on, amount in await accounts.settlement_movements(conn, customer["customer_id"], as_of):
        if invoice_id not in totals:
            continue
        before = reduced.get(invoice_id, ZERO)
        reduced[invoice_id] = before + amount
        total, due = totals[invoice_id]
        if before < total <= reduced[invoice_id]:
            days_late.append((on, (on - due).days))
    open_balance = sum((Decimal(r["open_balance"]) for r in rows if r["open_balance"] > 0), ZERO)
    history = RiskHistory(days_late=[d for _, d in sorted(days_late)],
                          disputes=await accounts.count_disputes(conn, customer["customer_id"], as_of),
                          broken_promises=await accounts.count_broken_commitments(conn, customer["customer_id"], as_of),
                          open_balance=open_balance,
                          credit_limit=await _credit_limit_as_of(conn, customer, as_of))
    return score_customer(history), history


async def _run_customer(conn: AsyncConnection, customer_id: str, rows: list[dict[str, Any]], as_of: date,
                        run_at: datetime, settings: CollectionsSettings, meta: dict[str, Any],
                        strategies: dict[str, Strategy | None], result: RunResult) -> None:
    customer = await accounts.get_customer(conn, customer_id)
    risk, history = await score(conn, customer, rows, as_of)
    if (customer["risk_score"], customer["segment"]) != (risk.score, risk.segment):
        await accounts.update_customer(conn, customer_id, {"risk_score": risk.score, "segment": risk.segment,
                                                           "risk_factors": risk.factors, "scored_on": as_of})
        await emit(conn, "collections_account", customer_id, CustomerSegmented(
            customer_id=customer_id, segment=risk.segment, risk_score=risk.score, factors=risk.factors,
            scored_on=as_of), as_of, meta)
        result.segmented.append({"customer_id": customer_id, "segment": risk.segment, "risk_score": risk.score})

    overdue = [r for r in rows if r["open_balance"] > 0 and r["due_date"] < as_of]
    hold = await accounts.active_hold(conn, customer_id)
    if hold is not None and not overdue:
        reason = "overdue balance cleared"
        await accounts.release_hold(conn, hold["hold_id"], reason, as_of)
        await emit(conn, "credit_hold", hold["hold_id"], CreditHoldReleased(
            hold_id=hold["hold_id"], customer_id=customer_id, reason=reason, released_on=as_of), as_of, meta)
        result.holds_released.append({"hold_id": hold["hold_id"], "customer_id": customer_id})

    if customer["dunning_paused"]:
        return
    waiting = await accounts.invoices_under_commitment(conn, customer_id, as_of)
    candidates = [r for r in rows if r["open_balance"] > 0 and not r["dunning_paused"] and r["invoice_id"] not in waiting]
    done = await accounts.done_steps(conn, [r["invoice_id"] for r in candidates])
    open_invoices = []
    for r in candidates:
        strategy = await _strategy(conn, r["strategy_id"] or customer["strategy_id"] or DEFAULT_STRATEGY_ID, strategies)
        if strategy is None:
            continue
        open_invoices.append(OpenInvoice(
            invoice_id=r["invoice_id"], invoice_number=r["invoice_number"], currency=r["currency"].strip(),
            open_balance=quantize(Decimal(r["open_balance"]), r["currency"].strip()), due_date=r["due_date"],
            strategy=strategy, done_steps=frozenset(done.get((r["invoice_id"], strategy.strategy_id), ())),
            disputed=r["disputed"], advanced=r["advanced_on"] is not None and r["advanced_on"] <= as_of))
    actions, exclusions = plan_customer(open_invoices, as_of, risk.segment)

    for exclusion in exclusions:
        await _block(conn, customer_id, exclusion.strategy, exclusion.step.step_id, exclusion.step.channel,
                     "disputed", [exclusion.invoice.invoice_id], as_of, meta, result,
                     scope_key=exclusion.invoice.invoice_id)
    if not actions:
        return
    policy = await policy_for(conn, customer["customer_type"])
    profile = ContactProfile(time_zone=customer["time_zone"], do_not_contact=customer["do_not_contact"],
                             consent=customer["consent"], has_email=bool(customer["email"]))
    attempts = await accounts.contact_attempts(conn, customer_id, as_of - timedelta(days=policy.window_days - 1), as_of)
    context = _Context(conn, customer, as_of, settings, meta, result, overdue, waiting, history, risk.score)
    for action in actions:
        reason = blocked_reason(action.channel, policy, profile, attempts, run_at)
        if reason is not None:
            scope_key = "" if reason in PERSISTENT_REASONS else as_of.isoformat()
            await _block(conn, customer_id, action.strategy, action.step.step_id, action.channel, reason,
                         action.invoice_ids, as_of, meta, result, scope_key=scope_key)
            continue
        if await context.carry_out(action) and action.channel in CONTACT_CHANNELS:
            attempts += 1


async def _block(conn: AsyncConnection, customer_id: str, strategy: Strategy, step_id: str, channel: str, reason: str,
                 invoice_ids: list[str], as_of: date, meta: dict[str, Any], result: RunResult, *, scope_key: str) -> None:
    recorded = await accounts.record_block(conn, {
        "customer_id": customer_id, "strategy_id": strategy.strategy_id, "strategy_version": strategy.version,
        "step_id": step_id, "channel": channel, "reason": reason, "scope_key": scope_key,
        "invoice_ids": invoice_ids, "blocked_on": as_of})
    if not recorded:
        return
    await emit(conn, "dunning_block", str(uuid.uuid4()), DunningActionBlocked(
        customer_id=customer_id, strategy_id=strategy.strategy_id, step_id=step_id, channel=channel,
        invoice_ids=invoice_ids, reason=reason, blocked_on=as_of), as_of, meta, expected_version=0)
    result.blocked.append({"customer_id": customer_id, "step_id": step_id, "channel": channel, "reason": reason,
                           "invoice_ids": invoice_ids})


@dataclass
class _Context:
    conn: AsyncConnection
    customer: dict[str, Any]
    as_of: date
    settings: CollectionsSettings
    meta: dict[str, Any]
    result: RunResult
    overdue: list[dict[str, Any]]
    waiting: set[str]          # invoices under an open promise or an active plan
    history: RiskHistory
    risk_score: int

    async def carry_out(self, action: ChannelAction) -> bool:
        """Record the action's ledger rows, then do it with the invoices this run inserted.
        False when another run had already recorded them all."""
        reference_id = str(uuid.uuid4())
        customer_id = self.customer["customer_id"]
        base = {"customer_id": customer_id, "strategy_id": action.strategy.strategy_id,
                "strategy_version": action.strategy.version, "channel": action.channel, "acted_on": self.as_of}
        inserted = await accounts.record_actions(self.conn, [
            {**base, "step_id": step.step_id, "invoice_id": invoice.invoice_id, "outcome": "done",
             "reference_id": reference_id} for invoice, step in action.items])
        items = [(invoice, step) for invoice, step in action.items if (invoice.invoice_id, step.step_id) in inserted]
        if not items:
            return False
        await accounts.record_actions(self.conn, [
            {**base, "step_id": step.step_id, "invoice_id": invoice.invoice_id, "outcome": "superseded",
             "reference_id": reference_id} for invoice, step in action.superseded])
        step = max((s for _, s in items), key=lambda s: s.day_offset)
        handler = {"email": self._notice, "letter": self._notice, "call_task": self._call_task,
                   "credit_hold": self._credit_hold}.get(action.channel, self._escalation)
        await handler(action, step, items, reference_id)
        return True

    async def _notice(self, action: ChannelAction, step, items, notice_id: str) -> None:
        customer = self.customer
        currency = action.currency
        # The notice lists every overdue invoice of the customer in this currency, not just
        # the ones whose step fell due today: one statement-like notice per customer. Invoices
        # in dispute, paused, promised or in a plan are not demanded.
        listed = {invoice.invoice_id: invoice for invoice, _ in items}
        extra = [r for r in self.overdue if r["currency"].strip() == currency and r["invoice_id"] not in listed
                 and not r["disputed"] and not r["dunning_paused"] and r["invoice_id"] not in self.waiting]
        lines = [notices.NoticeLine(i.invoice_number, i.due_date, max(i.days_past_due(self.as_of), 0), i.open_balance)
                 for i in listed.values()]
        lines += [notices.NoticeLine(r["invoice_number"], r["due_date"], (self.as_of - r["due_date"]).days,
                                     quantize(Decimal(r["open_balance"]), currency)) for r in extra]
        lines.sort(key=lambda line: (line.due_date, line.invoice_number))
        invoice_ids = list(listed) + [r["invoice_id"] for r in extra]
        total = quantize(sum((line.open_balance for line in lines), ZERO), currency)
        rendered = notices.render_notice(
            template=step.template, language=customer["language"], notice_id=notice_id, notice_date=self.as_of,
            customer_name=customer["name"] or customer["customer_id"], postal_address=customer["postal_address"],
            currency=currency, lines=lines, total=money_str(total, currency))
        await accounts.insert_notice(self.conn, {
            "notice_id": notice_id, "customer_id": customer["customer_id"], "strategy_id": action.strategy.strategy_id,
            "strategy_version": action.strategy.version, "step_id": step.step_id, "channel": action.channel,
            "template": step.template, "language": rendered.language, "invoice_ids": invoice_ids,
            "currency": currency, "total_amount": total, "sent_on": self.as_of,
            "recipient": customer["email"] if action.channel == "email" else customer["postal_address"],
            "subject": rendered.subject, "body": rendered.text, "html_body": rendered.html, "pdf": rendered.pdf,
            "delivery": "pending" if action.channel == "email" else "print_ready"})
        await emit(self.conn, "notice", notice_id, DunningNoticeSent(
            notice_id=notice_id, customer_id=customer["customer_id"], strategy_id=action.strategy.strategy_id,
            strategy_version=action.strategy.version, step_id=step.step_id, channel=action.channel,
            template=step.template, language=rendered.language, invoice_ids=invoice_ids, currency=currency,
            total_amount=total, sent_on=self.as_of), self.as_of, self.meta, expected_version=0)
        self.result.notices.append({"notice_id": notice_id, "customer_id": customer["customer_id"],
                                    "channel": action.channel, "step_id": step.step_id, "invoice_ids": invoice_ids,
                                    "total_amount": money_str(total, currency), "currency": currency})

    async def _call_task(self, action: ChannelAction, step, items, task_id: str) -> None:
        invoice_ids = [invoice.invoice_id for invoice, _ in items]
        collector_id = self.customer["collector_id"]
        await accounts.insert_call_task(self.conn, {
            "task_id": task_id, "customer_id": self.customer["customer_id"], "strategy_id": action.strategy.strategy_id,
            "step_id": step.step_id, "invoice_ids": invoice_ids, "collector_id": collector_id, "due_on": self.as_of})
        await emit(self.conn, "call_task", task_id, CallTaskCreated(
            task_id=task_id, customer_id=self.customer["customer_id"], strategy_id=action.strategy.strategy_id,
            step_id=step.step_id, invoice_ids=invoice_ids, collector_id=collector_id, due_on=self.as_of),
            self.as_of, self.meta, expected_version=0)
        self.result.call_tasks.append({"task_id": task_id, "customer_id": self.customer["customer_id"],
                                       "step_id": step.step_id, "invoice_ids": invoice_ids})

    async def _credit_hold(self, action: ChannelAction, step, items, hold_id: str) -> None:
        customer_id = self.customer["customer_id"]
        if await accounts.active_hold(self.conn, customer_id) is not None:
            return
        reason = f"strategy {action.strategy.strategy_id} step {step.step_id}: " \
                 f"{len(self.overdue)} invoice(s) {max(i.days_past_due(self.as_of) for i, _ in items)} days past due"
        await accounts.place_hold(self.conn, hold_id=hold_id, customer_id=customer_id, reason=reason,
                                  placed_on=self.as_of)
        await emit(self.conn, "credit_hold", hold_id, CreditHoldPlaced(
            hold_id=hold_id, customer_id=customer_id, reason=reason, placed_on=self.as_of), self.as_of, self.meta,
            expected_version=0)
        self.result.holds_placed.append({"hold_id": hold_id, "customer_id": customer_id})

    async def _escalation(self, action: ChannelAction, step, items, escalation_id: str) -> None:
        recommended = {"recommend_write_off": "write_off", "recommend_legal": "legal"}.get(action.channel)
        reason = f"step {step.step_id} of strategy {action.strategy.strategy_id} v{action.strategy.version}"
        escalation = await escalate_account(
            self.conn, self.customer, escalation_id=escalation_id, as_of=self.as_of, currency=action.currency,
            overdue=self.overdue, risk_score=self.risk_score, broken_commitments=self.history.broken_promises,
            escalated_to=step.escalate_to or self.settings.escalation_manager, recommended=recommended,
            reason=reason, meta=self.meta)
        self.result.escalations.append({"escalation_id": escalation_id, "customer_id": self.customer["customer_id"],
                                        "step_id": step.step_id,
                                        "recommended_action": escalation["recommended_action"]})


async def escalate_account(conn: AsyncConnection, customer: dict[str, Any], *, escalation_id: str, as_of: date,
                           currency: str, overdue: list[dict[str, Any]], risk_score: int | None,
                           broken_commitments: int, escalated_to: str, recommended: str | None, reason: str,
                           meta: dict[str, Any]) -> dict[str, Any]:
    """AccountEscalated with a summary a manager can act on, and the recommended action (the
    rule's unless one is given)."""
    overdue = [r for r in overdue if r["currency"].strip() == currency]
    amount = quantize(sum((Decimal(r["open_balance"]) for r in overdue), ZERO), currency)
    oldest = max(((as_of - r["due_date"]).days for r in overdue), default=0)
    on_plan = bool(await accounts.list_plans(conn, customer_id=customer["customer_id"], status="active"))
    recommended = recommended or recommended_action(oldest_days_past_due=oldest, risk_score=risk_score,
                                                    broken_commitments=broken_commitments, on_active_plan=on_plan)
    summary = (f"{customer['name'] or customer['customer_id']}: {len(overdue)} overdue invoice(s), "
               f"{money_str(amount, currency)} {currency}, oldest {oldest} days past due; risk score "
               f"{risk_score if risk_score is not None else 'not scored'}; {broken_commitments} broken "
               f"promise(s)/plan(s); {reason}")
    row = {"escalation_id": escalation_id, "customer_id": customer["customer_id"], "escalated_to": escalated_to,
           "summary": summary, "recommended_action": recommended, "invoice_ids": [r["invoice_id"] for r in overdue],
           "currency": currency, "overdue_amount": amount, "escalated_on": as_of}
    await accounts.insert_escalation(conn, row)
    await emit(conn, "escalation", escalation_id, AccountEscalated(**row), as_of, meta, expected_version=0)
    return row


# -- email delivery ---------------------------------------------------------------------------

def smtp_settings(settings: CollectionsSettings) -> mail.SmtpSettings:
    return mail.SmtpSettings(host=settings.smtp_host, port=settings.smtp_port, sender=settings.smtp_from,
                                starttls=settings.smtp_starttls, ssl=settings.smtp_ssl,
                                username=settings.smtp_username, password=settings.smtp_password,
                                timeout=settings.smtp_timeout_seconds)


async def deliver_pending_emails(engine: AsyncEngine, settings: CollectionsSettings,
                                 limit: int = 100_000) -> dict[str, int]:
    """Send pending email notices, one transaction each: the row is locked (others skip it),
    sent, then marked sent in the same transaction. A crash after the SMTP server accepted it
    and before the commit leaves it pending, so it is sent again once, with the same
    Message-ID. A failure counts an attempt; after smtp_max_attempts it is marked failed."""
    smtp = smtp_settings(settings)
    counts = {"sent": 0, "failed": 0, "retry": 0}
    for _ in range(limit):
        async with engine.begin() as conn:
            row = await accounts.claim_pending_email(conn)
            if row is None:
                break
            message = notices.email_message(notice_id=row["notice_id"], sender=smtp.sender, recipient=row["recipient"],
                                            subject=row["subject"], text=row["body"], html_body=row["html_body"],
                                            pdf=bytes(row["pdf"]))
            try:
                await asyncio.to_thread(mail.send_email, smtp, message)
            except Exception as exc:  # smtplib raises OSError and SMTPException subclasses; all count
                final = row["attempts"] + 1 >= settings.smtp_max_attempts
                await accounts.mark_delivery(conn, row["notice_id"], delivery="failed" if final else "pending",
                                             error=f"{type(exc).__name__}: {exc}"[:500])
                counts["failed" if final else "retry"] += 1
                if not final:
                    break  # the server is likely down: leave the rest for the next pass
                continue
            await accounts.mark_delivery(conn, row["notice_id"], delivery="sent", error=None)
            counts["sent"] += 1
    return counts
