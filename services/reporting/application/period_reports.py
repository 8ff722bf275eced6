"""Period reports: the DSO family, CEI and days late for any period (and month-by-month
trends), the AR roll-forward with period close and GL reconciliation, the 13-week forecast,
the bad-debt allowance, disputes by reason code, collector performance and recovery cohorts.
Plain functions of (connection, parameters); SQL sums from adapters/, formulas from domain/."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.problems import Conflict, ValidationFailed
from services.reporting.adapters import analytics
from services.reporting.adapters import repository as repo
from services.reporting.application.reports import check_period, resolve_currency
from services.reporting.domain import forecast as fc
from services.reporting.domain import ledger, metrics, periodic
from services.reporting.domain.facts import OpenItem
from services.reporting.domain.metrics import RATE_QUANTUM, ZERO, _ratio

ONE_DAY = timedelta(days=1)


def parse_period(period: str | None, start: date | None, end: date | None) -> tuple[date, date]:
    """A period as `from`/`to`, or `period` = YYYY-MM (a month), YYYY-Qn (a quarter) or YYYY."""
    if period is not None:
        if start is not None or end is not None:
            raise ValidationFailed("give either period or from/to, not both", field="period")
        m = re.fullmatch(r"(\d{4})(?:-(\d{2})|-Q([1-4]))?", period.strip())
        if not m:
            raise ValidationFailed("period must be YYYY-MM, YYYY-Qn or YYYY", field="period")
        year = int(m.group(1))
        if m.group(2):
            month = int(m.group(2))
            if not 1 <= month <= 12:
                raise ValidationFailed("period month must be 01-12", field="period")
            first, months = date(year, month, 1), 1
        elif m.group(3):
            first, months = date(year, 3 * int(m.group(3)) - 2, 1), 3
        else:
            first, months = date(year, 1, 1), 12
        nxt = date(first.year + (first.month - 1 + months) // 12, (first.month - 1 + months) % 12 + 1, 1)
        return first, nxt - ONE_DAY
    if start is None or end is None:
        raise ValidationFailed("give from and to (or period)", field="from" if start is None else "to")
    check_period(start, end)
    return start, end


@dataclass(frozen=True)
class Kpis:
    currency: str
    start: date
    end: date
    days: int
    beginning_ar: Decimal
    ending_ar: Decimal
    ending_current_ar: Decimal
    credit_sales: Decimal
    dso: Decimal | None
    countback_dso: periodic.Countback
    best_possible_dso: Decimal | None
    average_days_delinquent: Decimal | None
    cei: Decimal | None
    days_late: periodic.DaysLate


async def _kpis(conn: AsyncConnection, code: str, start: date, end: date,
                sales_by_month: dict[date, Decimal], first_sale: date | None) -> Kpis:
    days = metrics.period_days(start, end)
    beginning, _ = await analytics.ar_totals(conn, code, start - ONE_DAY)
    ending, current = await analytics.ar_totals(conn, code, end)
    sales = await repo.credit_sales(conn, code, start, end)
    monthly = [(s, e, sales_by_month.get(s, ZERO)) for s, e in periodic.countback_months(end, first_sale or end)]
    if (end + ONE_DAY).day != 1:  # the month holding `end` counts its sales only up to `end`
        monthly[0] = (monthly[0][0], end, await repo.credit_sales(conn, code, monthly[0][0], end))
    return Kpis(
        currency=code, start=start, end=end, days=days, beginning_ar=beginning, ending_ar=ending,
        ending_current_ar=current, credit_sales=sales,
        dso=periodic.per_sales_days(ending, sales, days),
        countback_dso=periodic.dso_countback(ending, monthly),
        best_possible_dso=periodic.per_sales_days(current, sales, days),
        average_days_delinquent=periodic.per_sales_days(ending - current, sales, days),
        cei=periodic.cei(beginning, sales, ending, current),
        days_late=periodic.days_late_from_sums(*await analytics.days_late_sums(conn, code, start, end)),
    )


async def kpis(conn: AsyncConnection, start: date, end: date, currency: str | None) -> Kpis:
    code = await resolve_currency(conn, currency)
    sales, first = await analytics.monthly_sales(conn, code, end)
    return await _kpis(conn, code, start, end, sales, first)


INTERVALS = ("month", "quarter")


async def kpi_trend(conn: AsyncConnection, start: date, end: date, interval: str, currency: str | None) -> list[Kpis]:
    """The figures for each calendar month (or quarter) overlapping [start, end], each period
    clipped to [start, end]; at most 60 periods."""
    code = await resolve_currency(conn, currency)
    sales, first = await analytics.monthly_sales(conn, code, end)
    step = 1 if interval == "month" else 3
    cursor = periodic.month_start(start)
    if step == 3:
        cursor = cursor.replace(month=3 * ((cursor.month - 1) // 3) + 1)
    out = []
    while cursor <= end:
        nxt = date(cursor.year + (cursor.month - 1 + step) // 12, (cursor.month - 1 + step) % 12 + 1, 1)
        out.append(await _kpis(conn, code, max(cursor, start), min(nxt - ONE_DAY, end), sales, first))
        if len(out) > 60:
            raise ValidationFailed("at most 60 periods in one trend", field="to")
        cursor = nxt
    return out


# --- roll-forward, close, reconciliation ----------------------------------------------------------

async def _computed_roll_forward(conn: AsyncConnection, code: str, start: date, end: date) -> ledger.RollForward:
    opening, _ = await analytics.ar_totals(conn, code, start - ONE_DAY)
    closing, _ = await analytics.ar_totals(conn, code, end)
    act = await analytics.period_activity(conn, code, start, end)
    return ledger.RollForward(start=start, end=end, opening=opening, invoiced=act["invoiced"],
                              cash_applied=act[ledger.CASH], credits=act[ledger.CREDIT],
                              write_offs=act[ledger.WRITE_OFF], adjustments=-act[ledger.ADJUSTMENT], closing=closing)


def _stored(rf: ledger.RollForward) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Decimal) else v.isoformat() if isinstance(v, date) else v)
            for k, v in asdict(rf).items()}


def _restored(data: dict[str, Any]) -> ledger.RollForward:
    return ledger.RollForward(
        start=date.fromisoformat(data["start"]), end=date.fromisoformat(data["end"]),
        **{k: Decimal(data[k]) for k in ("opening", "invoiced", "cash_applied", "credits", "write_offs",
                                         "adjustments", "closing", "prior_period_adjustments")},
        closed=True)


@dataclass(frozen=True)
class RollForwardResult:
    currency: str
    roll_forward: ledger.RollForward
    closed_at: Any = None
    closed_by: str | None = None


async def roll_forward(conn: AsyncConnection, start: date, end: date, currency: str | None) -> RollForwardResult:
    """A closed period answers as reported at close. Otherwise computed from the facts; when
    the day before `start` closed a period, this one opens at that reported closing and
    carries the difference as prior-period adjustments."""
    code = await resolve_currency(conn, currency)
    closed = await analytics.period_close(conn, code, end)
    if closed is not None and closed["period_start"] == start:
        return RollForwardResult(code, _restored(closed["roll_forward"]), closed["closed_at"], closed["closed_by"])
    current = await _computed_roll_forward(conn, code, start, end)
    before = await analytics.period_close(conn, code, start - ONE_DAY)
    reported = Decimal(before["roll_forward"]["closing"]) if before is not None else None
    return RollForwardResult(code, ledger.after_close(current, reported))


async def close_period(conn: AsyncConnection, start: date, end: date, currency: str, actor: str) -> RollForwardResult:
    code = await resolve_currency(conn, currency)
    check_period(start, end)
    overlapping = await analytics.closes_overlapping(conn, code, start, end)
    if overlapping:
        s, e = overlapping[0]
        raise Conflict(f"{code} period {s}..{e} is already closed and overlaps {start}..{end}", field="period_end")
    result = await roll_forward(conn, start, end, code)
    rf = result.roll_forward
    await analytics.insert_period_close(conn, code, start, end, _stored(rf), actor)
    stored = await analytics.period_close(conn, code, end)
    return RollForwardResult(code, _restored(_stored(rf)), stored["closed_at"], stored["closed_by"])


@dataclass(frozen=True)
class Reconciliation:
    currency: str
    roll_forward: ledger.RollForward
    lines: list[ledger.Variance]
    gl_posted: bool

    @property
    def reconciled(self) -> bool:
        return self.gl_posted and all(v.variance in (None, ZERO) for v in self.lines)


async def reconciliation(conn: AsyncConnection, start: date, end: date, currency: str | None) -> Reconciliation:
    result = await roll_forward(conn, start, end, currency)
    gl = await analytics.gl_totals(conn, result.currency, start, end)
    return Reconciliation(result.currency, result.roll_forward, ledger.reconcile(result.roll_forward, gl or {}),
                          gl is not None)


# --- forecast ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ForecastResult:
    currency: str
    forecast: fc.Forecast
    actual: dict[int, Decimal]  # week number -> cash applied, for weeks ended before today
    today: date


async def forecast(conn: AsyncConnection, as_of: date, currency: str | None, today: date) -> ForecastResult:
    """The domain rule (domain/forecast.py) on the book summed in SQL: positive open balances
    per expected date (due date + the customer's delay, in whole days as fc.delay_days rounds
    it), covered invoices left out; each sum placed like one invoice due that day."""
    code = await resolve_currency(conn, currency)
    delays = {customer: fc.delay_days(late)
              for customer, late in (await analytics.customer_days_late(conn, code, as_of)).items()}
    expected = await analytics.open_expectations(conn, code, as_of)
    covered = {invoice_id for e in expected for invoice_id in e.invoice_ids}
    sums = [OpenItem(f"expected:{day.isoformat()}", "", code, amount, as_of, day, ZERO, ZERO)
            for day, amount in await analytics.expected_by_date(conn, code, as_of, delays, covered)]
    result = fc.forecast(as_of, sums, {}, expected)
    actual: dict[int, Decimal] = {}
    past = [w for w in result.weeks if w.end < today]
    if past:
        by_week = await analytics.cash_applied_by_week(conn, code, result.weeks[0].start, past[-1].end)
        actual = {w.number: by_week.get(w.number - 1, ZERO) for w in past}
    return ForecastResult(code, result, actual, today)


# --- allowance --------------------------------------------------------------------------------

def parse_percents(raw: str | None, count: int) -> list[Decimal]:
    if raw is None:
        defaults = list(ledger.DEFAULT_ALLOWANCE_PERCENT)
        if count != len(defaults):
            raise ValidationFailed(f"custom buckets need their own percentages ({count})", field="percentages")
        return defaults
    try:
        values = [Decimal(p.strip()) for p in raw.split(",")]
    except ArithmeticError as exc:
        raise ValidationFailed("percentages must be decimals separated by commas, such as 1,5,10,25,50",
                               field="percentages") from exc
    if len(values) != count or any(not v.is_finite() or v < 0 or v > 100 for v in values):
        raise ValidationFailed(f"give {count} percentages between 0 and 100, one per bucket", field="percentages")
    return values


# --- disputes, collectors, recovery cohorts ------------------------------------------------------

async def disputes_by_reason(conn: AsyncConnection, start: date, end: date, currency: str | None
                             ) -> tuple[str, list[Any]]:
    code = await resolve_currency(conn, currency)
    return code, await analytics.disputes_by_reason(conn, code, start, end)


def average(total: Decimal | int, count: int) -> Decimal | None:
    return None if count == 0 else _ratio(Decimal(total), Decimal(count), metrics.DSO_QUANTUM)


def rate(numerator: Decimal | int, denominator: Decimal | int) -> Decimal | None:
    return None if denominator == 0 else _ratio(Decimal(numerator), Decimal(denominator), RATE_QUANTUM)


@dataclass(frozen=True)
class CollectorLine:
    collector_id: str
    customers: int
    open_balance: Decimal
    past_due: Decimal
    collected: Decimal
    collected_past_due: Decimal
    promises_made: int
    promises_kept: int
    promises_broken: int
    notices_sent: int
    call_tasks: int

    @property
    def kept_rate(self) -> Decimal | None:
        return rate(self.promises_kept, self.promises_kept + self.promises_broken)


async def collector_performance(conn: AsyncConnection, start: date, end: date, currency: str | None
                                ) -> tuple[str, list[CollectorLine]]:
    """Per collector (each customer's collector as of `to`): the book at `to` (open balance,
    past due), cash applied in the period (and the part of it on past-due invoices), promises
    made / kept / broken, dunning notices and call tasks in the period."""
    code = await resolve_currency(conn, currency)
    owner = await analytics.customer_attribute(conn, "collector", end)
    balances = await repo.customer_balances(conn, code, end)
    activity = await analytics.collector_activity(conn, code, start, end)
    lines: dict[str, dict[str, Any]] = {}
    customers: dict[str, set[str]] = {}

    def line(customer: str) -> dict[str, Any]:
        key = owner.get(customer, metrics.UNASSIGNED)
        customers.setdefault(key, set()).add(customer)
        return lines.setdefault(key, {"open_balance": ZERO, "past_due": ZERO, "collected": ZERO,
                                      "collected_past_due": ZERO, "promises_made": 0, "promises_kept": 0,
                                      "promises_broken": 0, "notices_sent": 0, "call_tasks": 0})
    for customer, (total, past_due) in balances.items():
        row = line(customer)
        row["open_balance"] += total
        row["past_due"] += past_due
    for customer, figures in activity.items():
        row = line(customer)
        for k, v in figures.items():
            row[k] += v
    return code, [CollectorLine(key, len(customers[key]), **row) for key, row in sorted(lines.items())]


@dataclass(frozen=True)
class CohortResult:
    currency: str
    cohort: str
    start: date
    end: date
    window_days: int
    invoices: int
    balance: Decimal
    collected: Decimal

    @property
    def rate(self) -> Decimal | None:
        return rate(self.collected, self.balance)


async def recovery_cohort(conn: AsyncConnection, cohort: str, start: date, end: date, window_days: int,
                          currency: str | None) -> CohortResult:
    """Invoices that went past due, were escalated or written off within [from, to]: what
    they owed then, and the cash collected on them within window_days of that day. Only
    balances above zero count."""
    code = await resolve_currency(conn, currency)
    check_period(start, end)
    rows = [r for r in await analytics.recovery_cohort(conn, code, cohort, start, end, window_days)
            if Decimal(r.balance) > 0]
    return CohortResult(code, cohort, start, end, window_days, len(rows),
                        sum((Decimal(r.balance) for r in rows), ZERO), sum((Decimal(r.collected) for r in rows), ZERO))

