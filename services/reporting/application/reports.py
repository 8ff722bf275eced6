"""Report queries: plain functions of (connection, parameters) that fetch facts through the
repository and compute with domain/metrics. Read-only; the caller owns the connection."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncConnection

from dataclasses import replace

from shared.money import MoneyError, quantum, validate_currency
from shared.pagination import decode_cursor, page
from shared.problems import Problem, ValidationFailed
from services.reporting.adapters import analytics
from services.reporting.adapters import repository as repo
from services.reporting.domain import ledger, metrics
from services.reporting.domain.facts import OpenItem
from services.reporting.domain.metrics import ZERO, Aging, Dso, PromiseReport, Recovery

log = logging.getLogger(__name__)

TIE_OUT_FAILURES = Counter(
    "ledgerline_reporting_tie_out_failures_total",
    "Aging reports whose buckets did not equal invoiced - credited - applied (a bug: alert on any)",
)


async def resolve_currency(conn: AsyncConnection, requested: str | None) -> str:
    """The currency a report is in: the one asked for, else the only one the book has."""
    if requested is not None:
        try:
            return validate_currency(requested)
        except MoneyError as exc:
            raise ValidationFailed(str(exc), field="currency") from exc
    present = await repo.book_currencies(conn)
    if len(present) == 1:
        return present[0]
    if not present:
        raise ValidationFailed("the book holds no amounts in any currency yet; pass currency", field="currency")
    raise ValidationFailed(f"the book holds several currencies ({', '.join(present)}); pass currency",
                           field="currency")


def check_period(start: date, end: date) -> int:
    try:
        return metrics.period_days(start, end)
    except ValueError as exc:
        raise ValidationFailed(f"from ({start}) must be on or before to ({end})", field="from") from exc


GROUPS = ("customer", "collector", "segment", "currency")


@dataclass(frozen=True)
class CurrencyLine:
    """One currency of a consolidated aging: its native total and how it was converted."""

    currency: str
    buckets: dict[str, Decimal]
    total: Decimal
    rate: Decimal
    rate_date: date | None  # None when the currency is the reporting currency (rate 1)
    converted_total: Decimal


@dataclass(frozen=True)
class AgingResult:
    currency: str  # the report's currency: the one asked for, or the reporting currency
    customer_id: str | None
    aging: Aging
    ledger: dict[str, Decimal] | None  # invoiced, credited, ...: the independent tie-out (one native currency)
    customer_names: dict[str, str]
    group_by: str = "customer"
    groups: list[metrics.CustomerAging] | None = None
    reporting_currency: str | None = None
    by_currency: list[CurrencyLine] | None = None
    next_cursor: str | None = None  # the next page of customers, when there is one
    customers_total: Decimal | None = None  # every customer's total added up, when all were summed in SQL

    @property
    def ledger_net(self) -> Decimal:
        assert self.ledger is not None
        return (self.ledger["invoiced"] - self.ledger["credited"] - self.ledger["applied"]
                - self.ledger["adjusted"] - self.ledger["written_off"])

    @property
    def ties_out(self) -> bool:
        if self.customers_total is not None and self.customers_total != self.aging.total:
            return False
        if self.ledger is None:
            return self.aging.ties_out
        return self.aging.ties_out and self.aging.total == self.ledger_net


def bucket_spec(edges: str | None, basis: str) -> metrics.BucketSpec:
    """Buckets from the query: comma-separated edges in days (default 30,60,90)."""
    try:
        parsed = tuple(int(e) for e in edges.split(",")) if edges else metrics.DEFAULT_EDGES
    except ValueError as exc:
        raise ValidationFailed("buckets must be whole days separated by commas, such as 30,60,90",
                               field="buckets") from exc
    if len(parsed) > 12:
        raise ValidationFailed("at most 12 bucket edges", field="buckets")
    try:
        return metrics.BucketSpec(parsed, basis)
    except ValueError as exc:
        raise ValidationFailed(str(exc), field="basis" if "basis" in str(exc) else "buckets") from exc


async def _converted_items(conn: AsyncConnection, codes: list[str], reporting: str, as_of: date,
                           customer_id: str | None, spec: metrics.BucketSpec
                           ) -> tuple[list[OpenItem], list[CurrencyLine], dict[str, str]]:
    """Each invoice's open balance converted at the latest rate on or before as_of, rounded to
    the reporting currency's minor unit; every total adds up converted invoice balances, so
    they all tie."""
    q = quantum(reporting)
    items: list[OpenItem] = []
    lines = []
    native_of: dict[str, str] = {}
    for code in codes:
        native = await repo.open_items(conn, code, as_of, customer_id)
        if not native:
            continue  # nothing open in this currency: no line, and no rate needed
        if code == reporting:
            rate, rate_date = Decimal(1), None
        else:
            found = await analytics.fx_rate(conn, code, reporting, as_of)
            if found is None:
                raise ValidationFailed(f"no {code}->{reporting} rate on or before {as_of}: post one to /v1/fx-rates",
                                       field="reporting_currency")
            rate, rate_date = found
        converted = [replace(i, currency=reporting, amount=ledger.convert(i.open_balance, rate, q), credited=ZERO,
                             applied=ZERO, adjusted=ZERO, written_off=ZERO) for i in native]
        native_aging = metrics.aging(native, as_of, spec)
        lines.append(CurrencyLine(code, native_aging.buckets, native_aging.total, rate, rate_date,
                                  sum((i.amount for i in converted), ZERO)))
        items += converted
        native_of.update((i.invoice_id, code) for i in native)
    return items, lines, native_of


DEFAULT_CUSTOMER_PAGE = 100
MAX_CUSTOMER_PAGE = 1000


def customer_cursor(cursor: str | None) -> str | None:
    """The last customer_id of the previous page, from a cursor this API returned."""
    values = decode_cursor(cursor)
    if values is None:
        return None
    if len(values) != 1 or not isinstance(values[0], str):
        raise Problem("cursor is not one this API returned", field="cursor")
    return values[0]


def _page(customers: list[metrics.CustomerAging], limit: int | None) -> tuple[list[metrics.CustomerAging], str | None]:
    """customers were fetched with limit + 1 rows (or all of them, limit None)."""
    if limit is None:
        return customers, None
    paged = page(customers, limit, lambda c: [c.customer_id])  # type: ignore[arg-type]
    return paged["data"], paged["next_cursor"]


def _after(customers: list[metrics.CustomerAging], after: str | None,
           limit: int | None) -> tuple[list[metrics.CustomerAging], str | None]:
    """The page after `after` of customers already summed (ordered by customer_id)."""
    rest = [c for c in customers if after is None or c.customer_id > after]
    return _page(rest if limit is None else rest[:limit + 1], limit)


def _summed(rows: list[tuple[str, int, list[Decimal]]], spec: metrics.BucketSpec) -> list[metrics.CustomerAging]:
    """(key, open invoices, balance per bucket index) rows as CustomerAging."""
    return [metrics.CustomerAging(key, dict(zip(spec.labels, sums)), sum(sums, ZERO), count)
            for key, count, sums in rows]


async def _customer_rows(conn: AsyncConnection, code: str, as_of: date, spec: metrics.BucketSpec,
                         after: str | None, limit: int | None) -> list[metrics.CustomerAging]:
    return _summed(await repo.customer_aging(conn, code, as_of, spec.basis, spec.bounds, after, limit), spec)


async def _book_aging(conn: AsyncConnection, code: str, as_of: date, spec: metrics.BucketSpec, group_by: str,
                      after: str | None, limit: int | None
                      ) -> tuple[Aging, list[metrics.CustomerAging] | None, str | None, Decimal | None]:
    """The whole book's aging without ageing it invoice by invoice in Python: the buckets and
    the open balance from the ar_deltas snapshot, the customers (one page, or all when limit
    is None) and the groups (one pass over the book) summed in SQL. Returns (aging, groups,
    next cursor, the customers' total when every customer was fetched)."""
    totals = await aging_totals(conn, as_of, code, spec)
    open_total, _ = await analytics.ar_totals(conn, code, as_of)
    if limit is None:
        everyone = await _customer_rows(conn, code, as_of, spec, None, None)
        customers, next_cursor = _after(everyone, after, None)
        customers_total: Decimal | None = sum((c.total for c in everyone), ZERO)
    else:
        customers, next_cursor = _page(await _customer_rows(conn, code, as_of, spec, after, limit + 1), limit)
        customers_total = None
    groups = None
    if group_by != "customer":
        groups = _summed(await analytics.group_aging(conn, code, as_of, spec.basis, spec.bounds, group_by), spec)
    aging = Aging(as_of=as_of, buckets=totals.buckets, total=totals.total, total_open_balance=open_total,
                  customers=customers, items=[], spec=spec)
    return aging, groups, next_cursor, customers_total


async def aging_report(conn: AsyncConnection, as_of: date, currency: str | None, customer_id: str | None = None,
                       spec: metrics.BucketSpec = metrics.DEFAULT_BUCKETS, group_by: str = "customer",
                       reporting_currency: str | None = None, after: str | None = None,
                       limit: int | None = None) -> AgingResult:
    """The aging report. One customer: its invoices aged by metrics.aging (the drill-down).
    The book in one currency: summed in SQL (_book_aging), customers in customer_id order
    after `after`, `limit` of them (None: every one). Converted (reporting_currency): every
    open invoice converted and aged by metrics.aging, then the customers paged alike."""
    next_cursor, customers_total = None, None
    if reporting_currency is None:
        code = await resolve_currency(conn, currency)
        lines = None
        if customer_id is None:
            aging, groups, next_cursor, customers_total = await _book_aging(conn, code, as_of, spec, group_by,
                                                                            after, limit)
            # A page: the tie-out from the snapshot (a few thousand rows). Every customer summed
            # (an export): from the facts, and their total must equal it.
            ledger_totals = await (repo.snapshot_ledger_totals(conn, code, as_of) if customers_total is None
                                   else repo.ledger_totals(conn, code, as_of))
        else:
            ledger_totals = await repo.ledger_totals(conn, code, as_of, customer_id)
            aging = metrics.aging(await repo.open_items(conn, code, as_of, customer_id), as_of, spec)
            groups = _groups_of(aging, group_by, await _attribute(conn, group_by, as_of), {})
    else:
        try:
            code = validate_currency(reporting_currency)
        except MoneyError as exc:
            raise ValidationFailed(str(exc), field="reporting_currency") from exc
        codes = [await resolve_currency(conn, currency)] if currency else await repo.book_currencies(conn)
        items, lines, native_of = await _converted_items(conn, codes, code, as_of, customer_id, spec)
        aging = metrics.aging(items, as_of, spec)
        ledger_totals = None
        groups = _groups_of(aging, group_by, await _attribute(conn, group_by, as_of), native_of)
        if customer_id is None:
            customers, next_cursor = _after(aging.customers, after, limit)
            aging = replace(aging, customers=customers)
    names = await repo.customer_names(conn, [c.customer_id for c in aging.customers])
    result = AgingResult(code, customer_id, aging, ledger_totals, names, group_by, groups, reporting_currency and code,
                         lines, next_cursor, customers_total)
    if not result.ties_out:
        TIE_OUT_FAILURES.inc()
        log.error("aging %s as of %s does not tie out: buckets %s, open balances %s, customers %s, ledger %s",
                  code, as_of, aging.total, aging.total_open_balance, customers_total, ledger_totals)
    return result


async def _attribute(conn: AsyncConnection, group_by: str, as_of: date) -> dict[str, str]:
    if group_by in ("collector", "segment"):
        return await analytics.customer_attribute(conn, group_by, as_of)
    return {}


def _groups_of(aging: Aging, group_by: str, attribute: dict[str, str],
               native_of: dict[str, str]) -> list[metrics.CustomerAging] | None:
    """Groups of an aging aged invoice by invoice (a customer's drill-down, the converted report)."""
    if group_by in ("collector", "segment"):
        return metrics.group_aging(aging, lambda a: attribute.get(a.item.customer_id))
    if group_by == "currency":
        return metrics.group_aging(aging, lambda a: native_of.get(a.item.invoice_id, a.item.currency))
    return None


@dataclass(frozen=True)
class AgingTotals:
    currency: str
    as_of: date
    spec: metrics.BucketSpec
    buckets: dict[str, Decimal]

    @property
    def total(self) -> Decimal:
        return sum(self.buckets.values(), ZERO)


async def aging_totals(conn: AsyncConnection, as_of: date, currency: str | None,
                       spec: metrics.BucketSpec = metrics.DEFAULT_BUCKETS) -> AgingTotals:
    """The book's buckets only, from the ar_deltas snapshot: open balances per due date (or
    issue date) as of the date, bucketed here. Equal to the aging report's buckets (a zero
    balance adds nothing), at a cost that does not grow with the number of invoices."""
    code = await resolve_currency(conn, currency)
    buckets = spec.empty()
    for day, amount in await analytics.open_by_date(conn, code, as_of, spec.basis):
        buckets[spec.bucket(metrics.days_past_due(day, as_of))] += amount
    return AgingTotals(code, as_of, spec, buckets)


@dataclass(frozen=True)
class DsoResult:
    currency: str
    start: date
    end: date
    dso: Dso


async def dso_report(conn: AsyncConnection, start: date, end: date, currency: str | None) -> DsoResult:
    days = check_period(start, end)
    code = await resolve_currency(conn, currency)
    ending = metrics.ending_ar(await repo.open_items(conn, code, end), end)
    sales = await repo.credit_sales(conn, code, start, end)
    return DsoResult(code, start, end, metrics.dso(ending, sales, days))


@dataclass(frozen=True)
class RecoveryResult:
    currency: str
    start: date
    end: date
    recovery: Recovery


async def recovery_report(conn: AsyncConnection, start: date, end: date, currency: str | None) -> RecoveryResult:
    check_period(start, end)
    code = await resolve_currency(conn, currency)
    return RecoveryResult(code, start, end, metrics.recovery_rate(await repo.recovery_items(conn, code, start, end)))


@dataclass(frozen=True)
class PromiseResult:
    currency: str
    start: date
    end: date
    report: PromiseReport


async def promises_report(conn: AsyncConnection, start: date, end: date, currency: str | None) -> PromiseResult:
    check_period(start, end)
    code = await resolve_currency(conn, currency)
    report = metrics.promise_report(await repo.promises(conn, code, end), await repo.promise_outcomes(conn, code, end),
                                    start, end)
    return PromiseResult(code, start, end, report)


@dataclass(frozen=True)
class Summary:
    currency: str
    as_of: date
    aging: AgingTotals  # the book's buckets, from the snapshot
    open_invoices: int
    customers_with_open_balance: int
    unapplied_cash: Decimal
    open_disputes: dict[str, tuple[int, Decimal]]
    open_promises: metrics.PromiseTally
    awaiting_invoice: dict[str, tuple[int, Decimal]]


async def summary(conn: AsyncConnection, as_of: date, currency: str | None) -> Summary:
    code = await resolve_currency(conn, currency)
    aging = await aging_totals(conn, as_of, code)
    invoices, customers = await repo.open_counts(conn, code, as_of)
    cash = await repo.cash_totals(conn, code, as_of)
    promises = metrics.promise_report(await repo.promises(conn, code, as_of),
                                      await repo.promise_outcomes(conn, code, as_of), as_of, as_of)
    return Summary(
        currency=code,
        as_of=as_of,
        aging=aging,
        open_invoices=invoices,
        customers_with_open_balance=customers,
        unapplied_cash=metrics.unapplied_cash(cash["received"], cash["applied"]),
        open_disputes=await repo.open_disputes(conn, code, as_of),
        open_promises=promises.open,
        awaiting_invoice=await repo.awaiting_invoice(conn, code, as_of),
    )
