"""Period metrics as pure functions: DSO by the standard and countback methods, Best Possible
DSO, Average Days Delinquent, the Collection Effectiveness Index and average days late. Inputs
are amounts the repository adds up from facts (as-of balances, credit sales); the formulas and
their single rounding live here. docs/metrics.md states each one and its source convention."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Iterable

from services.reporting.domain.metrics import DSO_QUANTUM, ZERO, _ratio

CEI_QUANTUM = Decimal("0.01")  # percent, 2 decimals


def month_start(day: date) -> date:
    return day.replace(day=1)


def previous_month_end(day: date) -> date:
    return month_start(day) - timedelta(days=1)


def countback_months(end: date, earliest: date) -> list[tuple[date, date]]:
    """The calendar months walked back from `end`: first [first of end's month, end], then each
    whole month before it, down to the month holding `earliest`. Most recent first."""
    months = []
    stop = month_start(min(earliest, end))
    start, last = month_start(end), end
    while True:
        months.append((start, last))
        if start <= stop:
            return months
        last = start - timedelta(days=1)
        start = month_start(last)


@dataclass(frozen=True)
class Countback:
    value: Decimal | None
    months_used: int
    unexplained_ar: Decimal  # AR older than the whole sales history (not counted in days)
    reason: str | None = None


def dso_countback(ending_ar: Decimal, monthly_sales: Iterable[tuple[date, date, Decimal]]) -> Countback:
    """Countback: start from ending AR and walk back month by month (most recent first),
    taking each month's credit sales out of it and counting that month's days, until what is
    left is smaller than a month's sales; that month counts the fraction left / sales of its
    days. Rounded once, 2 decimals, half up. Months with no sales count their days whole.
    None when there is no AR to explain (zero or a credit balance): DSO is then 0 by
    definition only if AR is exactly zero."""
    if ending_ar <= 0:
        return Countback(ZERO if ending_ar == 0 else None, 0, ZERO,
                         None if ending_ar == 0 else "ending AR is a credit balance: countback DSO is undefined")
    left = ending_ar
    whole_days = 0
    used = 0
    for start, end, sales in monthly_sales:
        days = (end - start).days + 1
        used += 1
        if sales > 0 and left <= sales:
            return Countback(_ratio(Decimal(whole_days) * sales + left * days, sales, DSO_QUANTUM), used, ZERO)
        whole_days += days
        left -= max(sales, ZERO)
    return Countback(_ratio(Decimal(whole_days), Decimal(1), DSO_QUANTUM), used, left,
                     "ending AR exceeds all credit sales on record: the rest is not counted")


def per_sales_days(amount: Decimal, credit_sales: Decimal, days: int) -> Decimal | None:
    """amount / credit_sales x days, 2 decimals half up; None without credit sales. With the
    ending AR it is standard DSO, with the current AR Best Possible DSO, with the past-due AR
    Average Days Delinquent (= DSO - BPDSO, rounded once)."""
    if credit_sales == 0:
        return None
    return _ratio(amount * days, credit_sales, DSO_QUANTUM)


def cei(beginning_ar: Decimal, credit_sales: Decimal, ending_ar: Decimal, ending_current_ar: Decimal) -> Decimal | None:
    """Collection Effectiveness Index, percent:
    (beginning AR + credit sales - ending AR) / (beginning AR + credit sales - ending current AR)
    x 100, 2 decimals half up; None when the denominator is zero."""
    collectible = beginning_ar + credit_sales - ending_current_ar
    if collectible == 0:
        return None
    return _ratio((beginning_ar + credit_sales - ending_ar) * 100, collectible, CEI_QUANTUM)


@dataclass(frozen=True)
class DaysLate:
    payments: int
    amount: Decimal
    weighted: Decimal | None  # sum(amount x days late) / sum(amount)
    by_count: Decimal | None  # plain mean of days late per payment


def average_days_late(payments: Iterable[tuple[Decimal, int]]) -> DaysLate:
    """Over (amount applied, days late) pairs, days late = max(0, value date - due date):
    amount-weighted and plain means, 2 decimals half up; None when there were none."""
    rows = [(amount, max(0, days)) for amount, days in payments]
    return days_late_from_sums(len(rows), sum((a for a, _ in rows), ZERO), sum((a * d for a, d in rows), ZERO),
                               sum(d for _, d in rows))


def days_late_from_sums(count: int, amount: Decimal, weighted: Decimal, late_days: int) -> DaysLate:
    """The same from the sums (count, amount, sum of amount x days late, sum of days late)."""
    if count == 0:
        return DaysLate(0, ZERO, None, None)
    return DaysLate(count, amount, _ratio(weighted, amount, DSO_QUANTUM) if amount else None,
                    _ratio(Decimal(late_days), Decimal(count), DSO_QUANTUM))
