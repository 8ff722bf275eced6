"""The installment-plan rule, a pure function of the plan, the payments applied to its
invoices and the day it is judged as of.

Payments valued on or after the day the plan was agreed count, oldest first, against the
installments in order: installment n is paid on the day the cumulative amount first covers
installments 1..n. It is missed when unpaid after due_date + grace_days (missed_on is the day
after). The plan completes when every installment is paid and breaks at its first missed
installment; a broken or completed plan is not judged again."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Iterable, Sequence

from services.collections.domain.promise_rule import AppliedPayment

ZERO = Decimal("0")


@dataclass(frozen=True)
class PlannedInstallment:
    number: int
    due_date: date
    amount: Decimal


@dataclass(frozen=True)
class InstallmentOutcome:
    number: int
    status: str             # paid | missed | open
    paid_amount: Decimal    # what counted towards this installment
    on: date | None         # paid_on or missed_on


def judge_installments(installments: Sequence[PlannedInstallment], agreed_on: date, grace_days: int,
                       payments: Iterable[AppliedPayment], as_of: date) -> list[InstallmentOutcome]:
    counted = sorted((p for p in payments if agreed_on <= p.value_date <= as_of), key=lambda p: p.value_date)
    outcomes: list[InstallmentOutcome] = []
    required = ZERO
    paid_before = ZERO
    for installment in sorted(installments, key=lambda i: i.number):
        required += installment.amount
        cumulative = ZERO
        paid_on = None
        for payment in counted:
            cumulative += payment.amount
            if cumulative >= required:
                paid_on = payment.value_date
                break
        missed_on = installment.due_date + timedelta(days=grace_days + 1)
        if paid_on is not None and paid_on < missed_on:
            outcomes.append(InstallmentOutcome(installment.number, "paid", installment.amount, paid_on))
        elif as_of >= missed_on:
            total = sum((p.amount for p in counted if p.value_date < missed_on), ZERO)
            towards = min(max(total - paid_before, ZERO), installment.amount)
            outcomes.append(InstallmentOutcome(installment.number, "missed", towards, missed_on))
            break
        else:
            total = sum((p.amount for p in counted), ZERO)
            outcomes.append(InstallmentOutcome(installment.number, "open",
                                               min(max(total - paid_before, ZERO), installment.amount), None))
        paid_before = required
    return outcomes


def validate_installments(installments: Sequence[PlannedInstallment], agreed_on: date, owed: Decimal) -> str | None:
    """Why a plan's schedule is not acceptable, or None."""
    if not 1 <= len(installments) <= 60:
        return "a plan has 1 to 60 installments"
    numbers = [i.number for i in installments]
    if numbers != list(range(1, len(installments) + 1)):
        return "installments are numbered 1, 2, 3, ... in order"
    dates = [i.due_date for i in installments]
    if dates != sorted(dates) or len(set(dates)) != len(dates):
        return "installment due dates increase"
    if dates[0] < agreed_on:
        return "the first installment cannot fall due before the plan is agreed"
    if any(i.amount <= 0 for i in installments):
        return "every installment amount is positive"
    if sum((i.amount for i in installments), ZERO) > owed:
        return f"the installments exceed the open balance {owed} of the plan's invoices"
    return None
