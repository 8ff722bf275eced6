"""AR metrics as pure functions of facts. The rules (as-of balances, bucket boundaries, the DSO
and recovery-rate formulas, rounding) are written here once; docs/metrics.md states them in
prose and tests/unit/reporting checks them. The repository may pre-aggregate in SQL for speed,
but what it returns is fed through these functions.

Amounts are exact Decimals (facts arrive quantised to their currency, sums of them are exact);
only ratios are rounded, half up, to the precision named next to each."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Callable, Iterable

from services.reporting.domain.facts import (
    ApplicationFact,
    CreditFact,
    InvoiceFact,
    OpenItem,
    PromiseFact,
    PromiseOutcomeFact,
    RecoveryItem,
)

ZERO = Decimal(0)
ONE_DAY = timedelta(days=1)

CURRENT = "current"
BUCKETS: tuple[str, ...] = (CURRENT, "1-30", "31-60", "61-90", "90+")

DSO_QUANTUM = Decimal("0.01")  # days, 2 decimals
RATE_QUANTUM = Decimal("0.0001")  # a fraction, 4 decimals


def _round(value: Decimal, quantum: Decimal) -> Decimal:
    return value.quantize(quantum, rounding=ROUND_HALF_UP)


def _ratio(numerator: Decimal, denominator: Decimal, quantum: Decimal) -> Decimal:
    # Enough precision that the single rounding below is the only one.
    with localcontext() as ctx:
        ctx.prec = 60
        return _round(Decimal(numerator) / Decimal(denominator), quantum)


# --- open balances ----------------------------------------------------------------------------

def open_balance(invoice: InvoiceFact, credits: Iterable[CreditFact], applications: Iterable[ApplicationFact],
                 as_of: date) -> Decimal:
    """amount - credits issued on or before as_of - cash applied with value date on or before
    as_of; zero for an invoice not yet issued on as_of. Facts of other invoices are ignored."""
    if invoice.issue_date > as_of:
        return ZERO
    credited = sum((c.amount for c in credits if c.invoice_id == invoice.invoice_id and c.issue_date <= as_of), ZERO)
    applied = sum((a.amount for a in applications if a.invoice_id == invoice.invoice_id and a.value_date <= as_of), ZERO)
    return invoice.amount - credited - applied


def open_items(invoices: Iterable[InvoiceFact], credits: Iterable[CreditFact],
               applications: Iterable[ApplicationFact], as_of: date) -> list[OpenItem]:
    """Every invoice issued on or before as_of with its credits and applications up to as_of
    (zero balances included), ordered by invoice_id. Credits and applications whose invoice is
    not among the facts yet are left out: they count once their InvoiceIssued arrives."""
    credited: dict[str, Decimal] = defaultdict(lambda: ZERO)
    applied: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for c in credits:
        if c.issue_date <= as_of:
            credited[c.invoice_id] += c.amount
    for a in applications:
        if a.value_date <= as_of:
            applied[a.invoice_id] += a.amount
    items = [
        OpenItem(invoice_id=i.invoice_id, customer_id=i.customer_id, currency=i.currency, amount=i.amount,
                 issue_date=i.issue_date, due_date=i.due_date, credited=credited[i.invoice_id],
                 applied=applied[i.invoice_id], invoice_number=i.invoice_number)
        for i in invoices
        if i.issue_date <= as_of
    ]
    return sorted(items, key=lambda item: item.invoice_id)


# --- aging ------------------------------------------------------------------------------------

def days_past_due(due_date: date, as_of: date) -> int:
    """as_of - due_date in days: 0 on the due date, negative before it."""
    return (as_of - due_date).days


DUE = "due_date"
INVOICE = "invoice_date"
DEFAULT_EDGES: tuple[int, ...] = (30, 60, 90)


@dataclass(frozen=True)
class BucketSpec:
    """Aging buckets. By due date the days are days past due and the first bucket, current,
    holds everything not yet past due (<= 0); then one bucket per edge (1-30, 31-60, 61-90) and
    the last from the last edge + 1 (90+). By invoice date the days are as_of - issue_date and
    the first bucket is 0-<first edge>."""

    edges: tuple[int, ...] = DEFAULT_EDGES
    basis: str = DUE

    def __post_init__(self) -> None:
        if not self.edges or any(e <= 0 for e in self.edges) or list(self.edges) != sorted(set(self.edges)):
            raise ValueError("bucket edges must be positive whole days in increasing order")
        if self.basis not in (DUE, INVOICE):
            raise ValueError(f"basis must be {DUE} or {INVOICE}")

    @cached_property
    def bounds(self) -> tuple[int, ...]:
        return ((0,) + self.edges) if self.basis == DUE else self.edges

    @cached_property
    def labels(self) -> tuple[str, ...]:
        bounds = self.bounds
        first = CURRENT if self.basis == DUE else f"0-{bounds[0]}"
        middle = [f"{low + 1}-{high}" for low, high in zip(bounds, bounds[1:])]
        return (first, *middle, f"{bounds[-1]}+")

    def age(self, item: OpenItem, as_of: date) -> int:
        return days_past_due(item.due_date if self.basis == DUE else item.issue_date, as_of)

    def bucket(self, days: int) -> str:
        labels = self.labels
        for index, bound in enumerate(self.bounds):
            if days <= bound:
                return labels[index]
        return labels[-1]

    def empty(self) -> dict[str, Decimal]:
        return {name: ZERO for name in self.labels}


DEFAULT_BUCKETS = BucketSpec()


def aging_bucket(days: int) -> str:
    """current: not yet due (days past due <= 0, due today included); then 1-30, 31-60, 61-90,
    and 90+ for 91 days or more."""
    return DEFAULT_BUCKETS.bucket(days)


def empty_buckets() -> dict[str, Decimal]:
    return DEFAULT_BUCKETS.empty()


@dataclass(frozen=True)
class AgedItem:
    item: OpenItem
    days_past_due: int
    bucket: str
    age_days: int = 0  # days on the spec's basis (equal to days_past_due by due date)


@dataclass(frozen=True)
class CustomerAging:
    customer_id: str
    buckets: dict[str, Decimal]
    total: Decimal
    invoice_count: int


@dataclass(frozen=True)
class Aging:
    as_of: date
    buckets: dict[str, Decimal]
    total: Decimal  # sum of the buckets
    total_open_balance: Decimal  # sum of the invoices' open balances, added up separately
    customers: list[CustomerAging]
    items: list[AgedItem] = field(repr=False)
    spec: BucketSpec = DEFAULT_BUCKETS

    @property
    def ties_out(self) -> bool:
        return self.total == self.total_open_balance


def aging(items: Iterable[OpenItem], as_of: date, spec: BucketSpec = DEFAULT_BUCKETS) -> Aging:
    """Age the items open on as_of: only invoices issued on or before as_of whose open balance
    is not zero (a credit balance, below zero, is aged like any other)."""
    aged = []
    balances = []
    for item in items:
        balance = item.open_balance
        if item.issue_date <= as_of and balance != 0:
            days = spec.age(item, as_of)
            aged.append(AgedItem(item, days_past_due(item.due_date, as_of), spec.bucket(days), days))
            balances.append(balance)
    order = sorted(range(len(aged)), key=lambda n: (aged[n].item.customer_id, aged[n].item.due_date,
                                                    aged[n].item.invoice_id))
    aged = [aged[n] for n in order]
    balances = [balances[n] for n in order]
    totals = spec.empty()
    by_customer: dict[str, dict[str, Decimal]] = {}
    counts: dict[str, int] = defaultdict(int)
    for a, balance in zip(aged, balances):
        customer = a.item.customer_id
        totals[a.bucket] += balance
        buckets = by_customer.get(customer)
        if buckets is None:
            buckets = by_customer[customer] = spec.empty()
        buckets[a.bucket] += balance
        counts[customer] += 1
    customers = [
        CustomerAging(customer_id=cid, buckets=b, total=sum(b.values(), ZERO), invoice_count=counts[cid])
        for cid, b in sorted(by_customer.items())
    ]
    return Aging(
        as_of=as_of,
        buckets=totals,
        total=sum(totals.values(), ZERO),
        total_open_balance=sum(balances, ZERO),
        customers=customers,
        items=aged,
        spec=spec,
    )


UNASSIGNED = "(none)"


def group_aging(aging_: Aging, key_of: Callable[[AgedItem], str | None]) -> list[CustomerAging]:
    """The aging's invoices grouped by a key (a customer's collector or segment as of the aging
    date, the invoice's currency); items without one fall in "(none)". Returned as
    CustomerAging rows whose customer_id is the group key, ordered by it."""
    groups: dict[str, dict[str, Decimal]] = {}
    counts: dict[str, int] = defaultdict(int)
    for a in aging_.items:
        key = key_of(a) or UNASSIGNED
        groups.setdefault(key, aging_.spec.empty())[a.bucket] += a.item.open_balance
        counts[key] += 1
    return [CustomerAging(key, b, sum(b.values(), ZERO), counts[key]) for key, b in sorted(groups.items())]


# --- DSO --------------------------------------------------------------------------------------

def period_days(start: date, end: date) -> int:
    """Days in [start, end], both included."""
    if end < start:
        raise ValueError("the period ends before it starts")
    return (end - start).days + 1


def credit_sales(invoices: Iterable[InvoiceFact], start: date, end: date) -> Decimal:
    """Invoice amounts (gross of later credits) issued within [start, end]."""
    return sum((i.amount for i in invoices if start <= i.issue_date <= end), ZERO)


def ending_ar(items: Iterable[OpenItem], as_of: date) -> Decimal:
    """Sum of open balances on as_of (equal to the aging total on that date)."""
    return sum((i.open_balance for i in items if i.issue_date <= as_of), ZERO)


@dataclass(frozen=True)
class Dso:
    ending_ar: Decimal
    credit_sales: Decimal
    days: int
    value: Decimal | None
    reason: str | None = None


NO_CREDIT_SALES = "no credit sales in the period: DSO is undefined"


def dso(ending_ar_amount: Decimal, credit_sales_amount: Decimal, days: int) -> Dso:
    """Standard (countback-free) method: ending AR / credit sales x days in the period, rounded
    to 2 decimals half up; None with a reason when there were no credit sales."""
    if credit_sales_amount == 0:
        return Dso(ending_ar_amount, credit_sales_amount, days, None, NO_CREDIT_SALES)
    return Dso(ending_ar_amount, credit_sales_amount, days,
               _ratio(ending_ar_amount * days, credit_sales_amount, DSO_QUANTUM))


# --- recovery rate ----------------------------------------------------------------------------

def past_due_from(due_date: date, start: date) -> date:
    """The first day of the period on which the invoice is past due: the later of the period's
    start and the day after the due date."""
    return max(start, due_date + ONE_DAY)


def recovery_items(invoices: Iterable[InvoiceFact], credits: Iterable[CreditFact],
                   applications: Iterable[ApplicationFact], start: date, end: date) -> list[RecoveryItem]:
    """For each invoice past due on some day of [start, end]: its open balance at the start of
    the first such day (end of the day before, so cash applied that day is collected, not
    netted), and the cash applied from that day to end. Ordered by invoice_id."""
    credits = list(credits)
    applications = list(applications)
    items = []
    for invoice in invoices:
        first = past_due_from(invoice.due_date, start)
        if first > end:
            continue
        balance = open_balance(invoice, credits, applications, first - ONE_DAY)
        collected = sum((a.amount for a in applications
                         if a.invoice_id == invoice.invoice_id and first <= a.value_date <= end), ZERO)
        items.append(RecoveryItem(invoice.invoice_id, invoice.customer_id, first, balance, collected))
    return sorted(items, key=lambda i: i.invoice_id)


@dataclass(frozen=True)
class Recovery:
    past_due_balance: Decimal
    collected: Decimal
    invoice_count: int
    rate: Decimal | None
    reason: str | None = None


NO_PAST_DUE_BALANCE = "nothing was past due in the period: recovery rate is undefined"


def recovery_rate(items: Iterable[RecoveryItem]) -> Recovery:
    """collected / past-due balance over the invoices that owed something when past due
    (balance above zero), rounded to 4 decimals half up; None with a reason when nothing did."""
    owing = [i for i in items if i.past_due_balance > 0]
    balance = sum((i.past_due_balance for i in owing), ZERO)
    collected = sum((i.collected for i in owing), ZERO)
    if balance == 0:
        return Recovery(balance, collected, 0, None, NO_PAST_DUE_BALANCE)
    return Recovery(balance, collected, len(owing), _ratio(collected, balance, RATE_QUANTUM))


# --- promises to pay --------------------------------------------------------------------------

@dataclass(frozen=True)
class PromiseTally:
    count: int = 0
    amount: Decimal = ZERO  # amount promised
    paid_amount: Decimal = ZERO
    shortfall: Decimal = ZERO


@dataclass(frozen=True)
class PromiseReport:
    made: PromiseTally
    kept: PromiseTally
    broken: PromiseTally
    open: PromiseTally
    kept_rate: Decimal | None


def promise_report(promises: Iterable[PromiseFact], outcomes: Iterable[PromiseOutcomeFact],
                   start: date, end: date) -> PromiseReport:
    """made: promises made within [start, end]; kept / broken: outcomes dated within it;
    open: promises made on or before end with no outcome on or before end;
    kept_rate: kept / (kept + broken) by count, 4 decimals half up, None when neither."""
    promises = list(promises)
    outcomes = list(outcomes)

    def tally(rows, paid=False, short=False) -> PromiseTally:
        rows = list(rows)
        return PromiseTally(
            count=len(rows),
            amount=sum((r.amount for r in rows), ZERO),
            paid_amount=sum((r.paid_amount for r in rows), ZERO) if paid else ZERO,
            shortfall=sum((r.shortfall for r in rows), ZERO) if short else ZERO,
        )

    settled_by_end = {o.promise_id for o in outcomes if o.outcome_on <= end}
    made = tally(p for p in promises if start <= p.made_on <= end)
    kept = tally((o for o in outcomes if o.outcome == "kept" and start <= o.outcome_on <= end), paid=True)
    broken = tally((o for o in outcomes if o.outcome == "broken" and start <= o.outcome_on <= end),
                   paid=True, short=True)
    still_open = tally(p for p in promises if p.made_on <= end and p.promise_id not in settled_by_end)
    decided = kept.count + broken.count
    rate = _ratio(Decimal(kept.count), Decimal(decided), RATE_QUANTUM) if decided else None
    return PromiseReport(made=made, kept=kept, broken=broken, open=still_open, kept_rate=rate)


# --- cash -------------------------------------------------------------------------------------

def unapplied_cash(received: Decimal, applied: Decimal) -> Decimal:
    """Cash received (value date on or before D) not yet applied to an invoice by D."""
    return received - applied
