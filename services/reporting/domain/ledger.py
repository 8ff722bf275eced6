"""The AR sub-ledger as pure functions: dated movements on invoices, the roll-forward of a
period and its tie, period close (prior-period adjustments), reconciliation against general
ledger control totals, the bad-debt allowance by aging bucket and conversion to a reporting
currency. Amounts are exact Decimals; only conversion and allowance round, to the minor unit."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable, Mapping

from services.reporting.domain.facts import InvoiceFact, OpenItem
from services.reporting.domain.metrics import ZERO

CREDIT, CASH, ADJUSTMENT, WRITE_OFF = "credit", "cash", "adjustment", "write_off"
KINDS = (CREDIT, CASH, ADJUSTMENT, WRITE_OFF)


@dataclass(frozen=True)
class Movement:
    """Something that lowers (amount > 0) or raises (amount < 0) an invoice's balance from a
    business date: a credit memo, cash applied (an unapplication is negative cash), a
    small-balance adjustment or a bad-debt write-off."""

    invoice_id: str
    kind: str
    amount: Decimal
    on_date: date


def effective_date(movement_date: date, issue_date: date) -> date:
    """A movement dated before its invoice was issued counts from the issue date, so the
    roll-forward of any period ties with the as-of balances."""
    return max(movement_date, issue_date)


def open_items(invoices: Iterable[InvoiceFact], movements: Iterable[Movement], as_of: date) -> list[OpenItem]:
    """Every invoice issued on or before as_of with its movements dated on or before as_of
    summed by kind (movements of invoices not among the facts are left out), by invoice_id."""
    sums: dict[str, dict[str, Decimal]] = defaultdict(lambda: dict.fromkeys(KINDS, ZERO))
    for m in movements:
        if m.on_date <= as_of:
            sums[m.invoice_id][m.kind] += m.amount
    items = []
    for i in invoices:
        if i.issue_date <= as_of:
            s = sums[i.invoice_id]
            items.append(OpenItem(i.invoice_id, i.customer_id, i.currency, i.amount, i.issue_date, i.due_date,
                                  credited=s[CREDIT], applied=s[CASH], invoice_number=i.invoice_number,
                                  adjusted=s[ADJUSTMENT], written_off=s[WRITE_OFF]))
    return sorted(items, key=lambda item: item.invoice_id)


def total_open(invoices: Iterable[InvoiceFact], movements: Iterable[Movement], as_of: date) -> Decimal:
    return sum((i.open_balance for i in open_items(invoices, movements, as_of)), ZERO)


@dataclass(frozen=True)
class RollForward:
    start: date
    end: date
    opening: Decimal
    invoiced: Decimal
    cash_applied: Decimal  # net of unapplications
    credits: Decimal
    write_offs: Decimal
    adjustments: Decimal  # signed: small balances written off (negative) + prior-period adjustments
    closing: Decimal
    prior_period_adjustments: Decimal = ZERO
    closed: bool = False

    @property
    def computed_closing(self) -> Decimal:
        return self.opening + self.invoiced - self.cash_applied - self.credits - self.write_offs + self.adjustments

    @property
    def ties(self) -> bool:
        return self.computed_closing == self.closing


def roll_forward(invoices: Iterable[InvoiceFact], movements: Iterable[Movement], start: date, end: date) -> RollForward:
    """opening = open balances at the end of the day before start; invoiced = invoices issued
    in [start, end]; each movement kind summed over the movements whose effective date (see
    effective_date) falls in [start, end]; closing = open balances at end."""
    invoices = list(invoices)
    movements = list(movements)
    issued = {i.invoice_id: i.issue_date for i in invoices}
    by_kind = dict.fromkeys(KINDS, ZERO)
    for m in movements:
        if m.invoice_id in issued and start <= effective_date(m.on_date, issued[m.invoice_id]) <= end:
            by_kind[m.kind] += m.amount
    return RollForward(
        start=start, end=end,
        opening=total_open(invoices, movements, start - timedelta(days=1)),
        invoiced=sum((i.amount for i in invoices if start <= i.issue_date <= end), ZERO),
        cash_applied=by_kind[CASH], credits=by_kind[CREDIT], write_offs=by_kind[WRITE_OFF],
        adjustments=-by_kind[ADJUSTMENT],
        closing=total_open(invoices, movements, end),
    )


def after_close(current: RollForward, closed_closing: Decimal | None) -> RollForward:
    """The roll-forward of the period after a closed one: it opens at the closing balance as
    reported at close, and what later events with earlier business dates changed since then
    (recomputed opening - reported closing) is a prior-period adjustment of this period."""
    if closed_closing is None:
        return current
    prior = current.opening - closed_closing
    return replace(current, opening=closed_closing, prior_period_adjustments=prior,
                   adjustments=current.adjustments + prior)


@dataclass(frozen=True)
class Variance:
    line: str
    subledger: Decimal
    general_ledger: Decimal | None

    @property
    def variance(self) -> Decimal | None:
        return None if self.general_ledger is None else self.subledger - self.general_ledger


ROLL_FORWARD_LINES = ("opening", "invoiced", "cash_applied", "credits", "write_offs", "adjustments", "closing")


def reconcile(rf: RollForward, gl: Mapping[str, Decimal]) -> list[Variance]:
    """Each roll-forward line beside the GL control total posted for it (None when not posted);
    variance = sub-ledger - GL."""
    return [Variance(line, getattr(rf, line), gl.get(line)) for line in ROLL_FORWARD_LINES]


def convert(amount: Decimal, rate: Decimal, quantum: Decimal) -> Decimal:
    """amount x rate rounded half up to the reporting currency's minor unit (quantum)."""
    return (amount * rate).quantize(quantum, rounding=ROUND_HALF_UP)


DEFAULT_ALLOWANCE_PERCENT: tuple[Decimal, ...] = (Decimal("1"), Decimal("5"), Decimal("10"), Decimal("25"),
                                                  Decimal("50"))


@dataclass(frozen=True)
class AllowanceLine:
    bucket: str
    balance: Decimal
    percent: Decimal
    allowance: Decimal


@dataclass(frozen=True)
class Allowance:
    lines: list[AllowanceLine] = field(default_factory=list)

    @property
    def balance(self) -> Decimal:
        return sum((line.balance for line in self.lines), ZERO)

    @property
    def allowance(self) -> Decimal:
        return sum((line.allowance for line in self.lines), ZERO)


def allowance(buckets: Mapping[str, Decimal], percents: Iterable[Decimal], quantum: Decimal) -> Allowance:
    """Per bucket: balance x percent / 100, rounded half up to the minor unit; the total is
    the sum of the rounded lines. A credit balance in a bucket gives a negative line."""
    percents = list(percents)
    if len(percents) != len(buckets):
        raise ValueError(f"one percentage per bucket is needed ({len(buckets)}), got {len(percents)}")
    return Allowance([AllowanceLine(name, balance, pct, convert(balance, pct / 100, quantum))
                      for (name, balance), pct in zip(buckets.items(), percents)])
