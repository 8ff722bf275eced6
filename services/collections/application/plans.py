"""Payment plans: agreeing one, and judging installments as of a day (in the daily run)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.contracts import (
    Installment,
    InstallmentMissed,
    InstallmentPaid,
    PaymentPlanAgreed,
    PaymentPlanBroken,
    PaymentPlanCompleted,
)
from shared.money import ZERO, quantize
from shared.problems import Conflict, Unprocessable
from services.collections.adapters import accounts
from services.collections.adapters import repository as repo
from services.collections.application.events import emit
from services.collections.domain.plans import PlannedInstallment, judge_installments, validate_installments
from services.collections.domain.promise_rule import AppliedPayment


@dataclass(frozen=True)
class AgreePlan:
    plan_id: str
    customer_id: str
    invoice_ids: list[str]
    currency: str
    installments: list[PlannedInstallment]
    agreed_on: date
    grace_days: int


async def agree_plan(conn: AsyncConnection, cmd: AgreePlan, meta: dict[str, Any]) -> dict[str, Any]:
    if await accounts.get_plan(conn, cmd.plan_id) is not None:
        raise Conflict(f"payment plan {cmd.plan_id} already exists", field="plan_id")
    if len(set(cmd.invoice_ids)) != len(cmd.invoice_ids):
        raise Unprocessable("an invoice is named twice", field="invoice_ids")
    known = await repo.invoices_with_open_balance(conn, cmd.invoice_ids, at_start_of=cmd.agreed_on)
    owed = ZERO
    for i, invoice_id in enumerate(cmd.invoice_ids):
        row = known.get(invoice_id)
        if row is None:
            raise Unprocessable(f"invoice {invoice_id} is not known to collections", field=f"invoice_ids.{i}")
        if row["customer_id"] != cmd.customer_id:
            raise Unprocessable(f"invoice {invoice_id} belongs to another customer", field=f"invoice_ids.{i}")
        if row["currency"].strip() != cmd.currency:
            raise Unprocessable(f"invoice {invoice_id} is in {row['currency'].strip()}", field="currency")
        owed += Decimal(row["open_balance"])
    for i, installment in enumerate(cmd.installments):
        if quantize(installment.amount, cmd.currency) != installment.amount:
            raise Unprocessable(f"{cmd.currency} amounts have at most its minor unit's decimals",
                                field=f"installments.{i}.amount")
    refusal = validate_installments(cmd.installments, cmd.agreed_on, owed)
    if refusal:
        raise Unprocessable(refusal, field="installments")
    total = sum((i.amount for i in cmd.installments), ZERO)
    event = PaymentPlanAgreed(plan_id=cmd.plan_id, customer_id=cmd.customer_id, invoice_ids=cmd.invoice_ids,
                              currency=cmd.currency, total_amount=total, agreed_on=cmd.agreed_on,
                              installments=[Installment(number=i.number, due_date=i.due_date, amount=i.amount)
                                            for i in cmd.installments])
    version = await emit(conn, "payment_plan", cmd.plan_id, event, cmd.agreed_on, meta, expected_version=0)
    await accounts.insert_plan(conn, {
        "plan_id": cmd.plan_id, "customer_id": cmd.customer_id, "invoice_ids": cmd.invoice_ids,
        "currency": cmd.currency, "total_amount": total, "agreed_on": cmd.agreed_on, "grace_days": cmd.grace_days,
        "installments": [{"number": i.number, "due_date": i.due_date.isoformat(), "amount": str(i.amount)}
                         for i in cmd.installments], "version": version})
    return await accounts.get_plan(conn, cmd.plan_id)


async def judge_plans(conn: AsyncConnection, as_of: date, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Record newly paid and missed installments of active plans; complete or break plans. A
    broken plan moves its invoices on in their strategy (the next step is due at once)."""
    happened: list[dict[str, Any]] = []
    for plan_id in await accounts.active_plan_ids(conn, as_of):
        plan = await accounts.get_plan(conn, plan_id)
        currency = plan["currency"].strip()
        schedule = [PlannedInstallment(int(i["number"]), date.fromisoformat(i["due_date"]), Decimal(i["amount"]))
                    for i in plan["installments"]]
        payments = [AppliedPayment(a, d) for a, d in await repo.payments_on(conn, plan["invoice_ids"])]
        state = dict(plan["installments_state"])
        version = plan["version"]
        status, ended_on = "active", None
        for outcome in judge_installments(schedule, plan["agreed_on"], plan["grace_days"], payments, as_of):
            key = str(outcome.number)
            if outcome.status == "open" or state.get(key) == outcome.status:
                continue
            installment = schedule[outcome.number - 1]
            if outcome.status == "paid":
                event: Any = InstallmentPaid(plan_id=plan_id, customer_id=plan["customer_id"],
                                             installment_number=outcome.number, due_date=installment.due_date,
                                             amount=installment.amount, currency=currency,
                                             paid_amount=quantize(outcome.paid_amount, currency), paid_on=outcome.on)
            else:
                event = InstallmentMissed(plan_id=plan_id, customer_id=plan["customer_id"],
                                          installment_number=outcome.number, due_date=installment.due_date,
                                          amount=installment.amount, currency=currency,
                                          paid_amount=quantize(outcome.paid_amount, currency), missed_on=outcome.on)
            version = await emit(conn, "payment_plan", plan_id, event, outcome.on, meta, expected_version=version)
            state[key] = outcome.status
            happened.append({"plan_id": plan_id, "event": event.event_type, "installment_number": outcome.number})
            if outcome.status == "missed":
                status, ended_on = "broken", outcome.on
                version = await emit(conn, "payment_plan", plan_id, PaymentPlanBroken(
                    plan_id=plan_id, customer_id=plan["customer_id"], broken_on=outcome.on,
                    reason=f"installment {outcome.number} missed"), outcome.on, meta, expected_version=version)
                await accounts.advance_invoices(conn, plan["invoice_ids"], outcome.on)
                happened.append({"plan_id": plan_id, "event": "PaymentPlanBroken"})
        if status == "active" and len(state) == len(schedule) and all(v == "paid" for v in state.values()):
            status = "completed"
            ended_on = max(o.on for o in judge_installments(schedule, plan["agreed_on"], plan["grace_days"],
                                                            payments, as_of))
            version = await emit(conn, "payment_plan", plan_id, PaymentPlanCompleted(
                plan_id=plan_id, customer_id=plan["customer_id"], completed_on=ended_on), ended_on, meta,
                expected_version=version)
            happened.append({"plan_id": plan_id, "event": "PaymentPlanCompleted"})
        if version != plan["version"]:
            await accounts.update_plan(conn, plan_id, status=status, state=state, ended_on=ended_on, version=version)
    return happened
