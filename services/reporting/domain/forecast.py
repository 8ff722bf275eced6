"""The 13-week cash forecast as a pure function. Each open invoice is expected on its due date
moved by its customer's own average days late; invoices under an open promise to pay or an
open payment plan are expected as promised instead (the promise amount on its date, each open
installment on its due date). Anything expected on or before the as-of date (overdue, and late
even after the customer's usual delay) lands in week 1."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable, Mapping

from services.reporting.domain.facts import OpenItem
from services.reporting.domain.metrics import ZERO

WEEKS = 13
SOURCES = ("invoices", "promises", "plans")


@dataclass(frozen=True)
class Expected:
    """A promise or a plan installment still open on the as-of date."""

    source: str  # promises | plans
    customer_id: str
    amount: Decimal
    on: date
    invoice_ids: tuple[str, ...]


@dataclass
class Week:
    number: int
    start: date
    end: date
    by_source: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(SOURCES, ZERO))

    @property
    def total(self) -> Decimal:
        return sum(self.by_source.values(), ZERO)


@dataclass(frozen=True)
class Forecast:
    as_of: date
    weeks: list[Week]
    beyond: Decimal  # expected after week 13


def delay_days(average_days_late: Decimal | None) -> int:
    """A customer's average days late as whole days (half up); 0 without payment history."""
    if average_days_late is None:
        return 0
    return int(average_days_late.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def forecast(as_of: date, items: Iterable[OpenItem], delays: Mapping[str, Decimal | None],
             expected: Iterable[Expected]) -> Forecast:
    weeks = [Week(n + 1, as_of + timedelta(days=7 * n + 1), as_of + timedelta(days=7 * n + 7)) for n in range(WEEKS)]
    beyond = ZERO
    expected = list(expected)
    covered = {invoice_id for e in expected for invoice_id in e.invoice_ids}

    def place(source: str, amount: Decimal, on: date) -> None:
        nonlocal beyond
        index = max(0, (on - as_of).days - 1) // 7
        if index < WEEKS:
            weeks[index].by_source[source] += amount
        else:
            beyond += amount

    for item in items:
        if item.open_balance > 0 and item.invoice_id not in covered and item.issue_date <= as_of:
            place("invoices", item.open_balance,
                  item.due_date + timedelta(days=delay_days(delays.get(item.customer_id))))
    for e in expected:
        place(e.source, e.amount, e.on)
    return Forecast(as_of, weeks, beyond)
