"""Worklist priority: which customer a collector should call first, and why. Pure.

priority = amount + age + risk + broken promises + days since last contact + promise due today
- amount past due: min(amount / 10 000, 1) * 30 (in the customer's currency)
- age of the oldest past-due invoice: min(days, 90) / 90 * 25
- risk score: score / 100 * 15
- broken promises and plans: min(n, 2) / 2 * 10
- days since last contact (never: 14): min(days, 14) / 14 * 10
- a promise whose date is today: +10; a follow-up date that has come: +5 (the customer
  expects the call)
Each non-zero term is shown as a reason, largest first, in English and as a code with its values
(so a screen can say it in the reader's language).

A paying parent's family is ranked as one unit (domain/family.py says which accounts form it):
family_snapshot sums the members' past-due amounts in the unit's currency, takes the oldest
past-due invoice, the highest risk score, every broken commitment, the latest contact, and any
promise or follow-up due, and priority() applies the same terms to that."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Sequence

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
    family_size: int = 1  # accounts ranked together (a paying parent and every account below it)


@dataclass(frozen=True)
class Reason:
    code: str
    points: Decimal
    text: str
    values: dict[str, str]


@dataclass(frozen=True)
class Priority:
    score: Decimal
    reasons: list[str]
    details: list[Reason]


def family_snapshot(owner: AccountSnapshot, members: Sequence[AccountSnapshot]) -> AccountSnapshot:
    """The unit of a paying parent (owner) and the accounts below it (members), in the owner's
    currency (a family shares one currency; an amount in another is left out, never converted)."""
    everyone = [owner, *members]
    contacts = [m.last_contact_on for m in everyone if m.last_contact_on is not None]
    risks = [m.risk_score for m in everyone if m.risk_score is not None]
    return AccountSnapshot(
        customer_id=owner.customer_id, currency=owner.currency,
        amount_past_due=sum((m.amount_past_due for m in everyone if m.currency == owner.currency), D(0)),
        oldest_days_past_due=max(m.oldest_days_past_due for m in everyone),
        risk_score=max(risks) if risks else None,
        broken_promises=sum(m.broken_promises for m in everyone),
        last_contact_on=max(contacts) if contacts else None,
        promise_due_today=any(m.promise_due_today for m in everyone),
        follow_up_due=any(m.follow_up_due for m in everyone),
        family_size=len(everyone))


def priority(account: AccountSnapshot, as_of: date) -> Priority:
    since_contact = (as_of - account.last_contact_on).days if account.last_contact_on else 14
    amount = f"{account.amount_past_due} {account.currency} past due"
    if account.family_size > 1:
        amount += f" across {account.family_size} accounts"
    terms: list[tuple[Decimal, str, str, dict[str, str]]] = [
        (min(account.amount_past_due / D(10000), D(1)) * 30, "amount_past_due", amount,
         {"amount": str(account.amount_past_due), "currency": account.currency,
          "accounts": str(account.family_size)}),
        (D(min(max(account.oldest_days_past_due, 0), 90)) / 90 * 25, "oldest_days_past_due",
         f"oldest invoice {account.oldest_days_past_due} days past due", {"days": str(account.oldest_days_past_due)}),
        (D(account.risk_score or 0) / 100 * 15, "risk_score", f"risk score {account.risk_score or 0}",
         {"score": str(account.risk_score or 0)}),
        (D(min(account.broken_promises, 2)) / 2 * 10, "broken_commitments",
         f"{account.broken_promises} broken promise(s) or plan(s)", {"count": str(account.broken_promises)}),
        (D(min(max(since_contact, 0), 14)) / 14 * 10,
         "never_contacted" if account.last_contact_on is None else "last_contact",
         "never contacted" if account.last_contact_on is None else f"last contact {since_contact} days ago",
         {} if account.last_contact_on is None else {"days": str(since_contact)}),
        (D(10) if account.promise_due_today else D(0), "promise_due_today", "promise to pay due today", {}),
        (D(5) if account.follow_up_due else D(0), "follow_up_due", "follow-up date reached", {}),
    ]
    rounded = [Reason(code, points.quantize(D("0.1"), rounding=ROUND_HALF_UP), why, values)
               for points, code, why, values in terms]
    score = sum((r.points for r in rounded), D(0))
    shown = [r for r in sorted(rounded, key=lambda r: -r.points) if r.points > 0]
    return Priority(score=score, reasons=[f"{r.text} (+{r.points})" for r in shown], details=shown)
