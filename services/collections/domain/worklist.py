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
from functools import lru_cache
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable, Sequence

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


# Each term's points, rounded to a tenth. The terms of the age, risk, broken commitments and
# contact take few distinct values, so their points are computed once per value (a book of
# thousands of accounts ranks without redoing the same decimal divisions).
_TENTH = D("0.1")
_PROMISE_DUE, _FOLLOW_UP_DUE, _NONE = D("10.0"), D("5.0"), D("0.0")


def _rounded(points: Decimal) -> Decimal:
    return points.quantize(_TENTH, rounding=ROUND_HALF_UP)


def _amount_points(amount: Decimal) -> Decimal:
    return _rounded(min(amount / D(10000), D(1)) * 30)


@lru_cache(maxsize=128)
def _age_points(days: int) -> Decimal:
    return _rounded(D(min(max(days, 0), 90)) / 90 * 25)


@lru_cache(maxsize=1024)
def _risk_points(score: int) -> Decimal:
    return _rounded(D(score) / 100 * 15)


@lru_cache(maxsize=16)
def _broken_points(count: int) -> Decimal:
    return _rounded(D(min(count, 2)) / 2 * 10)


@lru_cache(maxsize=32)
def _contact_points(days: int) -> Decimal:
    return _rounded(D(min(max(days, 0), 14)) / 14 * 10)


def _since_contact(account: AccountSnapshot, as_of: date) -> int:
    return (as_of - account.last_contact_on).days if account.last_contact_on else 14


def _terms(account: AccountSnapshot, since_contact: int) -> tuple[Decimal, ...]:
    """The points of the seven terms, in the order priority() tells them (each term clamped
    before its cached point function, so the caches stay small)."""
    return (_amount_points(account.amount_past_due), _age_points(min(max(account.oldest_days_past_due, 0), 90)),
            _risk_points(account.risk_score or 0), _broken_points(min(account.broken_promises, 2)),
            _contact_points(min(max(since_contact, 0), 14)), _PROMISE_DUE if account.promise_due_today else _NONE,
            _FOLLOW_UP_DUE if account.follow_up_due else _NONE)


def priority_score(account: AccountSnapshot, as_of: date) -> Decimal:
    """priority(account, as_of).score without its reasons (what ranking a whole book needs; the
    reasons are said only for the accounts shown)."""
    return sum(_terms(account, _since_contact(account, as_of)), D(0))


def priority(account: AccountSnapshot, as_of: date) -> Priority:
    since_contact = _since_contact(account, as_of)
    amount_pts, age_pts, risk_pts, broken_pts, contact_pts, promise_pts, follow_up_pts = _terms(account, since_contact)
    amount = f"{account.amount_past_due} {account.currency} past due"
    if account.family_size > 1:
        amount += f" across {account.family_size} accounts"
    rounded = [
        Reason("amount_past_due", amount_pts, amount,
               {"amount": str(account.amount_past_due), "currency": account.currency,
                "accounts": str(account.family_size)}),
        Reason("oldest_days_past_due", age_pts,
               f"oldest invoice {account.oldest_days_past_due} days past due", {"days": str(account.oldest_days_past_due)}),
        Reason("risk_score", risk_pts, f"risk score {account.risk_score or 0}",
               {"score": str(account.risk_score or 0)}),
        Reason("broken_commitments", broken_pts,
               f"{account.broken_promises} broken promise(s) or plan(s)", {"count": str(account.broken_promises)}),
        Reason("never_contacted" if account.last_contact_on is None else "last_contact", contact_pts,
               "never contacted" if account.last_contact_on is None else f"last contact {since_contact} days ago",
               {} if account.last_contact_on is None else {"days": str(since_contact)}),
        Reason("promise_due_today", promise_pts, "promise to pay due today", {}),
        Reason("follow_up_due", follow_up_pts, "follow-up date reached", {}),
    ]
    score = sum((r.points for r in rounded), D(0))
    shown = [r for r in sorted(rounded, key=lambda r: -r.points) if r.points > 0]
    return Priority(score=score, reasons=[f"{r.text} (+{r.points})" for r in shown], details=shown)


# -- the worklist's order ---------------------------------------------------------------------

@dataclass(frozen=True)
class Ranked:
    """A collection unit as the worklist orders it: its owner, the unit's snapshot and score."""
    customer_id: str
    name: str | None
    risk_score: int | None            # the owner's own (what the worklist shows beside it)
    snapshot: AccountSnapshot
    score: Decimal


WORKLIST_SORTS: dict[str, Callable[[Ranked], Any]] = {
    "priority": lambda r: r.score,
    "amount_past_due": lambda r: r.snapshot.amount_past_due,
    "oldest_days_past_due": lambda r: r.snapshot.oldest_days_past_due,
    "name": lambda r: (r.name or r.customer_id).casefold(),
    "risk_score": lambda r: r.risk_score or 0,
}
DESCENDING_BY_DEFAULT = frozenset({"priority", "amount_past_due", "oldest_days_past_due", "risk_score"})


def ordered(units: Sequence[Ranked], sort: str = "priority", descending: bool | None = None) -> list[Ranked]:
    """The units by a column of WORKLIST_SORTS (descending by default but for the name), ties by
    customer id ascending in either direction, so pages never shuffle. The default, priority
    highest first, is the worklist's ranking."""
    if descending is None:
        descending = sort in DESCENDING_BY_DEFAULT
    out = sorted(units, key=lambda r: r.customer_id)
    out.sort(key=WORKLIST_SORTS[sort], reverse=descending)
    return out


def page_of(units: Sequence[Ranked], offset: int = 0, limit: int | None = None,
            after: str | None = None) -> list[Ranked]:
    """A page of ordered units: those following the unit `after` (a customer id; from the first
    when it is not on the worklist), then skipping `offset` of them, at most `limit`."""
    start = 0
    if after is not None:
        start = next((i + 1 for i, r in enumerate(units) if r.customer_id == after), 0)
    start += max(offset, 0)
    return list(units[start:] if limit is None else units[start:start + limit])
