"""Response bodies of the reports. Amounts are decimal strings at the report currency's minor
unit; ratios (DSO, rates) are decimal strings at their own stated precision."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from shared.money import money_str, to_str
from services.reporting.application.reports import AgingResult, AgingTotals, DsoResult, PromiseResult, RecoveryResult, Summary
from services.reporting.domain.metrics import BUCKETS, CustomerAging, PromiseTally

MoneyString = str
BUCKETS_DOC = ("Open balance per bucket, keyed by bucket label; by default " + ", ".join(BUCKETS) +
               " (days past due = as_of - due_date: current <= 0, 1-30, 31-60, 61-90, 90+ from 91 days)")


def money(amount: Decimal, currency: str) -> MoneyString:
    return money_str(amount, currency)


def ratio(value: Decimal | None) -> str | None:
    return None if value is None else to_str(value)


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class _Period(_Out):
    start: date = Field(alias="from")
    end: date = Field(alias="to")
    currency: str


class AgingCustomer(_Out):
    customer_id: str
    customer_name: str | None
    buckets: dict[str, MoneyString] = Field(description=BUCKETS_DOC)
    total: MoneyString
    invoice_count: int


class AgingInvoice(_Out):
    invoice_id: str
    invoice_number: str
    customer_id: str
    issue_date: date
    due_date: date
    amount: MoneyString
    credited: MoneyString = Field(description="Credit memos issued on or before as_of")
    applied: MoneyString = Field(description="Cash applied with value date on or before as_of, net of unapplications")
    adjusted: MoneyString = Field(description="Small balances written off on or before as_of")
    written_off: MoneyString = Field(description="Bad debt written off on or before as_of")
    open_balance: MoneyString
    days_past_due: int
    age_days: int = Field(description="Days on the aging basis (as_of - due_date, or as_of - issue_date)")
    bucket: str


class TieOut(_Out):
    invoiced: MoneyString
    credited: MoneyString
    applied: MoneyString
    adjusted: MoneyString
    written_off: MoneyString
    net: MoneyString = Field(description="invoiced - credited - applied - adjusted - written_off, summed without "
                                         "the per-invoice query")
    ties_out: bool = Field(description="total == total_open_balance == net, to the minor unit")


class AgingGroup(_Out):
    key: str = Field(description="The collector, segment or currency; \"(none)\" for customers without one")
    buckets: dict[str, MoneyString]
    total: MoneyString
    invoice_count: int


class AgingCurrency(_Out):
    currency: str
    buckets: dict[str, MoneyString] = Field(description="In this currency")
    total: MoneyString
    rate: str = Field(description="1 unit of currency = rate units of the reporting currency")
    rate_date: date | None = Field(description="Date of the rate used: the latest on or before as_of")
    converted_total: MoneyString = Field(description="Sum of the invoices' converted open balances")


class AgingResponse(_Out):
    as_of: date
    currency: str = Field(description="The report's currency (the reporting currency when converted)")
    customer_id: str | None
    basis: str = Field(description="due_date (days past due) or invoice_date (days since issue)")
    bucket_labels: list[str]
    buckets: dict[str, MoneyString] = Field(description=BUCKETS_DOC)
    total: MoneyString = Field(description="Sum of the buckets")
    total_open_balance: MoneyString = Field(description="Sum of the invoices' open balances, added up separately")
    tie_out: TieOut | None = Field(description="The independent ledger sums (one native currency only)")
    customers: list[AgingCustomer] = Field(
        description="Customers with an open invoice, in customer_id order, one page of them (`limit`, after "
                    "`cursor`); CSV and XLSX exports hold every customer")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page of customers; null on the last")
    invoices: list[AgingInvoice] | None = Field(description="Invoice drill-down, when customer_id is given")
    group_by: str
    groups: list[AgingGroup] | None = Field(description="Aging by collector, segment or currency (group_by)")
    reporting_currency: str | None
    by_currency: list[AgingCurrency] | None = Field(description="Native totals and rates, when converted")


class OverdueCustomer(_Out):
    customer_id: str
    customer_name: str | None
    past_due: MoneyString = Field(description="Open balance of invoices past due on as_of")
    over_90: MoneyString = Field(description="Open balance more than 90 days past due")
    total: MoneyString = Field(description="All open balance")
    open_invoices: int


class TopOverdueResponse(_Out):
    as_of: date
    currency: str
    customers: list[OverdueCustomer] = Field(description="Largest past due first (ties by customer_id)")


class AgingSummaryResponse(_Out):
    as_of: date
    currency: str
    basis: str
    bucket_labels: list[str]
    buckets: dict[str, MoneyString] = Field(description=BUCKETS_DOC)
    total: MoneyString


def aging_summary_out(t: AgingTotals) -> AgingSummaryResponse:
    return AgingSummaryResponse(as_of=t.as_of, currency=t.currency, basis=t.spec.basis,
                                bucket_labels=list(t.spec.labels), buckets=_buckets(t.buckets, t.currency),
                                total=money(t.total, t.currency))


class DsoResponse(_Period):
    days: int = Field(description="Days in the period, both ends included")
    ending_ar: MoneyString = Field(description="Sum of open balances as of `to`")
    credit_sales: MoneyString = Field(description="Invoice amounts issued within the period")
    dso: str | None = Field(description="ending_ar / credit_sales x days, 2 decimals, half up")
    reason: str | None


class RecoveryResponse(_Period):
    past_due_balance: MoneyString
    collected: MoneyString
    invoice_count: int
    recovery_rate: str | None = Field(description="collected / past_due_balance, 4 decimals, half up")
    reason: str | None


class Tally(_Out):
    count: int
    amount: MoneyString


class PaidTally(Tally):
    paid_amount: MoneyString


class BrokenTally(PaidTally):
    shortfall: MoneyString


class PromisesResponse(_Period):
    made: Tally
    kept: PaidTally
    broken: BrokenTally
    open: Tally = Field(description="Made on or before `to` with no outcome on or before `to`")
    kept_rate: str | None = Field(description="kept / (kept + broken) by count, 4 decimals, half up")


class SummaryResponse(_Out):
    as_of: date
    currency: str
    total_open_balance: MoneyString
    current: MoneyString
    past_due: MoneyString
    buckets: dict[str, MoneyString] = Field(description=BUCKETS_DOC)
    open_invoice_count: int
    customers_with_open_balance: int
    unapplied_cash: MoneyString
    open_disputes: Tally
    open_deductions: Tally
    open_promises: Tally
    awaiting_invoice: dict[str, Tally] = Field(
        description="Credits and applications whose InvoiceIssued has not arrived yet (in no balance)")


def _buckets(buckets: dict[str, Decimal], currency: str) -> dict[str, MoneyString]:
    return {name: money(amount, currency) for name, amount in buckets.items()}


def _group(g: CustomerAging, currency: str) -> AgingGroup:
    return AgingGroup(key=g.customer_id, buckets=_buckets(g.buckets, currency), total=money(g.total, currency),
                      invoice_count=g.invoice_count)


def aging_out(result: AgingResult) -> AgingResponse:
    cur, aging = result.currency, result.aging
    invoices = None
    if result.customer_id is not None:
        invoices = [
            AgingInvoice(invoice_id=a.item.invoice_id, invoice_number=a.item.invoice_number,
                         customer_id=a.item.customer_id, issue_date=a.item.issue_date, due_date=a.item.due_date,
                         amount=money(a.item.amount, cur), credited=money(a.item.credited, cur),
                         applied=money(a.item.applied, cur), adjusted=money(a.item.adjusted, cur),
                         written_off=money(a.item.written_off, cur), open_balance=money(a.item.open_balance, cur),
                         days_past_due=a.days_past_due, age_days=a.age_days, bucket=a.bucket)
            for a in aging.items
        ]
    tie_out = None
    if result.ledger is not None:
        tie_out = TieOut(**{k: money(v, cur) for k, v in result.ledger.items()}, net=money(result.ledger_net, cur),
                         ties_out=result.ties_out)
    return AgingResponse(
        as_of=aging.as_of, currency=cur, customer_id=result.customer_id, basis=aging.spec.basis,
        bucket_labels=list(aging.spec.labels),
        buckets=_buckets(aging.buckets, cur), total=money(aging.total, cur),
        total_open_balance=money(aging.total_open_balance, cur),
        tie_out=tie_out, group_by=result.group_by,
        groups=None if result.groups is None else [_group(g, cur) for g in result.groups],
        reporting_currency=result.reporting_currency,
        by_currency=None if result.by_currency is None else [
            AgingCurrency(currency=line.currency, buckets=_buckets(line.buckets, line.currency),
                          total=money(line.total, line.currency), rate=to_str(line.rate.normalize()), rate_date=line.rate_date,
                          converted_total=money(line.converted_total, cur)) for line in result.by_currency],
        customers=[AgingCustomer(customer_id=c.customer_id, customer_name=result.customer_names.get(c.customer_id),
                                 buckets=_buckets(c.buckets, cur), total=money(c.total, cur),
                                 invoice_count=c.invoice_count) for c in aging.customers],
        next_cursor=result.next_cursor,
        invoices=invoices,
    )


def dso_out(result: DsoResult) -> DsoResponse:
    d, cur = result.dso, result.currency
    return DsoResponse(start=result.start, end=result.end, currency=cur, days=d.days,
                       ending_ar=money(d.ending_ar, cur), credit_sales=money(d.credit_sales, cur),
                       dso=ratio(d.value), reason=d.reason)


def recovery_out(result: RecoveryResult) -> RecoveryResponse:
    r, cur = result.recovery, result.currency
    return RecoveryResponse(start=result.start, end=result.end, currency=cur,
                            past_due_balance=money(r.past_due_balance, cur), collected=money(r.collected, cur),
                            invoice_count=r.invoice_count, recovery_rate=ratio(r.rate), reason=r.reason)


def _tally(t: PromiseTally, cur: str) -> Tally:
    return Tally(count=t.count, amount=money(t.amount, cur))


def promises_out(result: PromiseResult) -> PromisesResponse:
    p, cur = result.report, result.currency
    return PromisesResponse(
        start=result.start, end=result.end, currency=cur,
        made=_tally(p.made, cur),
        kept=PaidTally(count=p.kept.count, amount=money(p.kept.amount, cur), paid_amount=money(p.kept.paid_amount, cur)),
        broken=BrokenTally(count=p.broken.count, amount=money(p.broken.amount, cur),
                           paid_amount=money(p.broken.paid_amount, cur), shortfall=money(p.broken.shortfall, cur)),
        open=_tally(p.open, cur),
        kept_rate=ratio(p.kept_rate),
    )


def summary_out(s: Summary) -> SummaryResponse:
    cur, aging = s.currency, s.aging
    current = aging.buckets[BUCKETS[0]]

    def pair(count_amount: tuple[int, Decimal]) -> Tally:
        return Tally(count=count_amount[0], amount=money(count_amount[1], cur))

    return SummaryResponse(
        as_of=s.as_of, currency=cur,
        total_open_balance=money(aging.total, cur),
        current=money(current, cur),
        past_due=money(aging.total - current, cur),
        buckets=_buckets(aging.buckets, cur),
        open_invoice_count=s.open_invoices,
        customers_with_open_balance=s.customers_with_open_balance,
        unapplied_cash=money(s.unapplied_cash, cur),
        open_disputes=pair(s.open_disputes["dispute"]),
        open_deductions=pair(s.open_disputes["deduction"]),
        open_promises=_tally(s.open_promises, cur),
        awaiting_invoice={kind: pair(v) for kind, v in s.awaiting_invoice.items()},
    )
