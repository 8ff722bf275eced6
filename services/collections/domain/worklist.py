"""Worklist priority: which customer a collector should call first, and why. Pure.

priority = amount + age + risk + broken promises + days since last contact + promise due today
- amount past due: min(amount / 10 000, 1) * 30 (in the customer's currency)
- age of the oldest past-due invoice: min(days, 90) / 90 * 25
- risk score: score / 100 * 15
- broken promises and plans: min(n, 2) / 2 * 10
- days since last contact (never: 14): min(days, 14) / 14 * 10
- a promise whose date is today: +10; a follow-up date that has come: +5 (the customer
  expects the call)
Each non-zero term is shown as a reason, largest first."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

D = Decimal


@dataclass(frozen=True)
class AccountSnapshot:
    customer_id: str
    currency: str
    amount_past_due: Decimal
    oldest_days_past_due: int
    risk_score: int | None
    broken_promises: int
    last_contact_on: date | None
    promise_due_today: bool
    follow_up_due: bool


@dataclass(frozen=True)
class Priority:
    score: Decimal
    reasons: list[str]


def priority(account: AccountSnapshot, as_of: date) -> Priority:
    since_contact = (as_of - account.last_contact_on).days if account.last_contact_on else 14
    terms: list[tuple[Decimal, str]] = [
        (min(account.amount_past_due / D(10000), D(1)) * 30,
         f"{account.amount_past_due} {account.currency} past due"),
        (D(min(max(account.oldest_days_past_due, 0), 90)) / 90 * 25,
         f"oldest invoice {account.oldest_days_past_due} days past due"),
        (D(account.risk_score or 0) / 100 * 15, f"risk score {account.risk_score or 0}"),
        (D(min(account.broken_promises, 2)) / 2 * 10, f"{account.broken_promises} broken promise(s) or plan(s)"),
        (D(min(max(since_contact, 0), 14)) / 14 * 10,
         "never contacted" if account.last_contact_on is None else f"last contact {since_contact} days ago"),
        (D(10) if account.promise_due_today else D(0), "promise to pay due today"),
        (D(5) if account.follow_up_due else D(0), "follow-up date reached"),
    ]
    terms = [(points.quantize(D("0.1"), rounding=ROUND_HALF_UP), why) for points, why in terms]
    score = sum((p for p, _ in terms), D(0))
    reasons = [f"{why} (+{points})" for points, why in sorted(terms, key=lambda t: -t[0]) if points > 0]
    return Priority(score=score, reasons=reasons)
