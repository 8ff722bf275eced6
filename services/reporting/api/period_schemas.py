"""Request and response bodies of the period reports, the sub-ledger inputs (FX rates, GL
control totals, period closes) and the collection reports. Money is a decimal string at the
currency's minor unit; ratios are decimal strings at their stated precision."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.money import Amount, CurrencyCode, MoneyError, exact_amount, to_str
from services.reporting.api.schemas import MoneyString, _Out, _Period, money, ratio
from services.reporting.application import period_reports as pr
from services.reporting.domain import ledger
from services.reporting.domain.forecast import SOURCES


class KpisResponse(_Period):
    days: int
    beginning_ar: MoneyString = Field(description="Open balances at the end of the day before `from`")
    ending_ar: MoneyString = Field(description="Open balances as of `to`")
    ending_current_ar: MoneyString = Field(description="The part of ending_ar not yet past due (due_date >= to)")
    ending_past_due_ar: MoneyString
    credit_sales: MoneyString = Field(description="Invoice amounts issued within the period")
    dso: str | None = Field(description="Standard: ending_ar / credit_sales x days, 2 decimals half up")
    countback_dso: str | None = Field(description="Countback over calendar months back from `to`, 2 decimals")
    countback_months: int
    countback_unexplained_ar: MoneyString = Field(description="AR older than every sale on record (not counted)")
    best_possible_dso: str | None = Field(description="ending_current_ar / credit_sales x days")
    average_days_delinquent: str | None = Field(description="ADD = DSO - BPDSO = past-due AR / credit_sales x days")
    cei: str | None = Field(description="(beginning + sales - ending) / (beginning + sales - ending current) x 100")
    payments: int = Field(description="Applications dated in the period, not reversed by its end")
    paid_amount: MoneyString
    average_days_late: str | None = Field(description="Amount-weighted mean of max(0, value_date - due_date)")
    average_days_late_by_count: str | None = Field(description="Plain mean of days late per application")
    reasons: list[str]


def kpis_out(k: pr.Kpis) -> KpisResponse:
    cur = k.currency
    reasons = []
    if k.credit_sales == 0:
        reasons.append("no credit sales in the period: DSO, BPDSO and ADD are undefined")
    if k.cei is None:
        reasons.append("beginning AR + credit sales - ending current AR is zero: CEI is undefined")
    if k.countback_dso.reason:
        reasons.append(k.countback_dso.reason)
    return KpisResponse(
        start=k.start, end=k.end, currency=cur, days=k.days, beginning_ar=money(k.beginning_ar, cur),
        ending_ar=money(k.ending_ar, cur), ending_current_ar=money(k.ending_current_ar, cur),
        ending_past_due_ar=money(k.ending_ar - k.ending_current_ar, cur), credit_sales=money(k.credit_sales, cur),
        dso=ratio(k.dso), countback_dso=ratio(k.countback_dso.value), countback_months=k.countback_dso.months_used,
        countback_unexplained_ar=money(k.countback_dso.unexplained_ar, cur),
        best_possible_dso=ratio(k.best_possible_dso), average_days_delinquent=ratio(k.average_days_delinquent),
        cei=ratio(k.cei), payments=k.days_late.payments, paid_amount=money(k.days_late.amount, cur),
        average_days_late=ratio(k.days_late.weighted), average_days_late_by_count=ratio(k.days_late.by_count),
        reasons=reasons,
    )


class KpiTrendResponse(_Period):
    interval: str
    periods: list[KpisResponse]


class RollForwardResponse(_Period):
    opening: MoneyString
    invoiced: MoneyString
    cash_applied: MoneyString = Field(description="Net of unapplications")
    credits: MoneyString
    write_offs: MoneyString
    adjustments: MoneyString = Field(description="Signed: - small balances written off + prior-period adjustments")
    prior_period_adjustments: MoneyString = Field(
        description="Changes to closed periods from events with earlier business dates, booked here")
    closing: MoneyString
    computed_closing: MoneyString = Field(description="opening + invoiced - cash - credits - write-offs + adjustments")
    ties: bool
    closed: bool
    closed_at: datetime | None
    closed_by: str | None


def roll_forward_out(r: pr.RollForwardResult) -> RollForwardResponse:
    rf, cur = r.roll_forward, r.currency
    return RollForwardResponse(
        start=rf.start, end=rf.end, currency=cur,
        **{line: money(getattr(rf, line), cur) for line in ledger.ROLL_FORWARD_LINES},
        prior_period_adjustments=money(rf.prior_period_adjustments, cur),
        computed_closing=money(rf.computed_closing, cur), ties=rf.ties, closed=rf.closed,
        closed_at=r.closed_at, closed_by=r.closed_by)


class VarianceLine(_Out):
    line: str
    subledger: MoneyString
    general_ledger: MoneyString | None
    variance: MoneyString | None = Field(description="subledger - general_ledger; null when GL did not post the line")


class ReconciliationResponse(_Period):
    gl_posted: bool
    reconciled: bool = Field(description="GL totals posted and every posted line has zero variance")
    roll_forward: RollForwardResponse
    lines: list[VarianceLine]
    variances: list[VarianceLine] = Field(description="Only the lines whose variance is not zero")


def reconciliation_out(r: pr.Reconciliation) -> ReconciliationResponse:
    cur = r.currency
    lines = [VarianceLine(line=v.line, subledger=money(v.subledger, cur), general_ledger=money(v.general_ledger, cur),
                          variance=money(v.variance, cur)) for v in r.lines]
    return ReconciliationResponse(
        start=r.roll_forward.start, end=r.roll_forward.end, currency=cur, gl_posted=r.gl_posted,
        reconciled=r.reconciled, roll_forward=roll_forward_out(pr.RollForwardResult(cur, r.roll_forward)),
        lines=lines, variances=[v for v, raw in zip(lines, r.lines) if raw.variance not in (None, Decimal(0))])


class ForecastWeek(_Out):
    week: int
    start: date
    end: date
    invoices: MoneyString = Field(description="Open invoices expected at due date + the customer's average days late")
    promises: MoneyString = Field(description="Open promises to pay, on their promise date")
    plans: MoneyString = Field(description="Open payment-plan installments, on their due date")
    forecast: MoneyString
    actual: MoneyString | None = Field(description="Cash applied (net) in the week, once the week is over")
    variance: MoneyString | None = Field(description="actual - forecast")


class ForecastResponse(_Out):
    as_of: date
    currency: str
    weeks: list[ForecastWeek]
    total: MoneyString
    beyond: MoneyString = Field(description="Expected after week 13")


def forecast_out(r: pr.ForecastResult) -> ForecastResponse:
    cur = r.currency
    weeks = []
    for w in r.forecast.weeks:
        actual = r.actual.get(w.number)
        weeks.append(ForecastWeek(
            week=w.number, start=w.start, end=w.end, **{s: money(w.by_source[s], cur) for s in SOURCES},
            forecast=money(w.total, cur), actual=money(actual, cur),
            variance=None if actual is None else money(actual - w.total, cur)))
    return ForecastResponse(as_of=r.forecast.as_of, currency=cur, weeks=weeks,
                            total=money(sum((w.total for w in r.forecast.weeks), Decimal(0)), cur),
                            beyond=money(r.forecast.beyond, cur))


class AllowanceLineOut(_Out):
    bucket: str
    balance: MoneyString
    percent: str
    allowance: MoneyString


class AllowanceResponse(_Out):
    as_of: date
    currency: str
    basis: str
    lines: list[AllowanceLineOut]
    balance: MoneyString
    allowance: MoneyString = Field(description="Sum of the lines, each rounded half up to the minor unit")


def allowance_out(as_of: date, currency: str, basis: str, a: ledger.Allowance) -> AllowanceResponse:
    return AllowanceResponse(
        as_of=as_of, currency=currency, basis=basis,
        lines=[AllowanceLineOut(bucket=line.bucket, balance=money(line.balance, currency), percent=to_str(line.percent),
                                allowance=money(line.allowance, currency)) for line in a.lines],
        balance=money(a.balance, currency), allowance=money(a.allowance, currency))


class ReasonLine(_Out):
    kind: str
    reason_code: str
    opened: int
    opened_amount: MoneyString
    resolved: int
    resolved_amount: MoneyString
    credited: MoneyString
    average_cycle_days: str | None = Field(description="mean of resolved_on - opened_on over those resolved")
    longest_cycle_days: int | None
    open: int = Field(description="Opened on or before `to`, not resolved by then")
    open_amount: MoneyString
    average_open_age_days: str | None


class DisputesResponse(_Period):
    reasons: list[ReasonLine]


def disputes_out(currency: str, start: date, end: date, rows: list[Any]) -> DisputesResponse:
    return DisputesResponse(start=start, end=end, currency=currency, reasons=[ReasonLine(
        kind=r.kind, reason_code=r.reason_code, opened=r.opened, opened_amount=money(r.opened_amount, currency),
        resolved=r.resolved, resolved_amount=money(r.resolved_amount, currency), credited=money(r.credited, currency),
        average_cycle_days=ratio(pr.average(r.cycle_days, r.resolved)), longest_cycle_days=r.longest,
        open=r.still_open, open_amount=money(r.open_amount, currency),
        average_open_age_days=ratio(pr.average(r.open_age_days, r.still_open))) for r in rows])


class CollectorOut(_Out):
    collector_id: str
    customers: int
    open_balance: MoneyString
    past_due: MoneyString
    past_due_share: str | None
    collected: MoneyString
    collected_past_due: MoneyString
    promises_made: int
    promises_kept: int
    promises_broken: int
    promise_kept_rate: str | None
    notices_sent: int
    call_tasks: int


class CollectorsResponse(_Period):
    collectors: list[CollectorOut]


def collectors_out(currency: str, start: date, end: date, lines: list[pr.CollectorLine]) -> CollectorsResponse:
    return CollectorsResponse(start=start, end=end, currency=currency, collectors=[CollectorOut(
        collector_id=c.collector_id, customers=c.customers, open_balance=money(c.open_balance, currency),
        past_due=money(c.past_due, currency), past_due_share=ratio(pr.rate(c.past_due, c.open_balance)),
        collected=money(c.collected, currency), collected_past_due=money(c.collected_past_due, currency),
        promises_made=c.promises_made, promises_kept=c.promises_kept, promises_broken=c.promises_broken,
        promise_kept_rate=ratio(c.kept_rate), notices_sent=c.notices_sent, call_tasks=c.call_tasks)
        for c in lines])


class CohortResponse(_Period):
    cohort: str
    window_days: int
    invoices: int
    balance: MoneyString = Field(description="Owed when each invoice entered the cohort")
    collected: MoneyString = Field(description="Cash applied (net) within window_days of entry")
    recovery_rate: str | None = Field(description="collected / balance, 4 decimals half up")


def cohort_out(r: pr.CohortResult) -> CohortResponse:
    return CohortResponse(start=r.start, end=r.end, currency=r.currency, cohort=r.cohort, window_days=r.window_days,
                          invoices=r.invoices, balance=money(r.balance, r.currency),
                          collected=money(r.collected, r.currency), recovery_rate=ratio(r.rate))


# --- inputs posted through the API ---------------------------------------------------------------

class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FxRateIn(_In):
    currency: CurrencyCode
    reporting_currency: CurrencyCode
    rate_date: date
    rate: str = Field(description="1 unit of currency = rate units of reporting_currency, a decimal string")

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str) -> str:
        try:
            parsed = Decimal(value)
        except ArithmeticError as exc:
            raise ValueError("rate must be a decimal string such as \"1.0845\"") from exc
        if not parsed.is_finite() or parsed <= 0 or parsed.as_tuple().exponent < -12 or parsed >= Decimal(10) ** 18:
            raise ValueError("rate must be above zero with at most 12 decimals")
        return to_str(parsed)

    @model_validator(mode="after")
    def _distinct(self) -> "FxRateIn":
        if self.currency == self.reporting_currency:
            raise ValueError("reporting_currency: must differ from currency (a currency converts to itself at 1)")
        return self


class GlTotalsIn(_In):
    currency: CurrencyCode
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    opening: Amount | None = None
    invoiced: Amount | None = None
    cash_applied: Amount | None = None
    credits: Amount | None = None
    write_offs: Amount | None = None
    adjustments: Amount | None = None
    closing: Amount | None = None

    @model_validator(mode="after")
    def _check(self) -> "GlTotalsIn":
        if self.end < self.start:
            raise ValueError("from: must be on or before to")
        posted = self.lines()
        if not posted:
            raise ValueError("closing: post at least one control total (opening, invoiced, ..., closing)")
        for line, value in posted.items():
            try:
                setattr(self, line, exact_amount(value, self.currency))
            except MoneyError as exc:
                raise ValueError(f"{line}: {exc}") from exc
        return self

    def lines(self) -> dict[str, Decimal]:
        return {line: getattr(self, line) for line in ledger.ROLL_FORWARD_LINES if getattr(self, line) is not None}


class PeriodCloseIn(_In):
    currency: CurrencyCode
    start: date = Field(alias="from")
    end: date = Field(alias="to")
