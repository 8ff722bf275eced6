"""The promise-to-pay rule, a pure function of the promise, the payments applied to the
promised invoices and the date it is evaluated as of.

- A payment counts when its value date is within the promise window, from made_on to
  promise_date + grace_days (both inclusive), and not after as_of.
- Kept: the counted payments reach the promised amount; kept_on is the value date on which the
  cumulative amount first reached it, paid_amount the cumulative amount on that date.
- Broken: not kept and as_of is after the window; broken_on is the first day after the window
  (promise_date + grace_days + 1), the day the promise was known to be broken, whatever day
  the evaluation runs. paid_amount is what the window collected, shortfall the rest.
- Otherwise the promise is still open.
Because kept_on and broken_on depend only on value dates and the terms, evaluating as of any
date at or after them reproduces the same outcome."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Iterable

ZERO = Decimal("0")


@dataclass(frozen=True)
class PromiseTerms:
    amount: Decimal
    made_on: date
    promise_date: date
    grace_days: int

    @property
    def window_ends_on(self) -> date:
        return self.promise_date + timedelta(days=self.grace_days)


@dataclass(frozen=True)
class AppliedPayment:
    amount: Decimal
    value_date: date


@dataclass(frozen=True)
class Kept:
    paid_amount: Decimal
    kept_on: date


@dataclass(frozen=True)
class Broken:
    paid_amount: Decimal
    shortfall: Decimal
    broken_on: date


@dataclass(frozen=True)
class StillOpen:
    paid_amount: Decimal


Outcome = Kept | Broken | StillOpen


def evaluate_promise(terms: PromiseTerms, payments: Iterable[AppliedPayment], as_of: date) -> Outcome:
    window_end = terms.window_ends_on
    counted = sorted(
        (p for p in payments if terms.made_on <= p.value_date <= window_end and p.value_date <= as_of),
        key=lambda p: p.value_date,
    )
    paid = ZERO
    for i, payment in enumerate(counted):
        paid += payment.amount
        last_of_its_day = i + 1 == len(counted) or counted[i + 1].value_date != payment.value_date
        if last_of_its_day and paid >= terms.amount:
            return Kept(paid_amount=paid, kept_on=payment.value_date)
    if as_of > window_end:
        return Broken(paid_amount=paid, shortfall=terms.amount - paid, broken_on=window_end + timedelta(days=1))
    return StillOpen(paid_amount=paid)
