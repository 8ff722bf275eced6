"""Report queries: plain functions of (connection, parameters) that fetch facts through the
repository and compute with domain/metrics. Read-only; the caller owns the connection."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.money import MoneyError, validate_currency
from shared.problems import ValidationFailed
from services.reporting.adapters import repository as repo
from services.reporting.domain import metrics
from services.reporting.domain.metrics import Aging, Dso, PromiseReport, Recovery

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


@dataclass(frozen=True)
class AgingResult:
    currency: str
    customer_id: str | None
    aging: Aging
    ledger: dict[str, Decimal]  # invoiced, credited, applied: the independent tie-out
    customer_names: dict[str, str]

    @property
    def ledger_net(self) -> Decimal:
        return self.ledger["invoiced"] - self.ledger["credited"] - self.ledger["applied"]

    @property
    def ties_out(self) -> bool:
        return self.aging.ties_out and self.aging.total == self.ledger_net


async def aging_report(conn: AsyncConnection, as_of: date, currency: str | None,
                       customer_id: str | None = None) -> AgingResult:
    code = await resolve_currency(conn, currency)
    aging = metrics.aging(await repo.open_items(conn, code, as_of, customer_id), as_of)
    ledger = await repo.ledger_totals(conn, code, as_of, customer_id)
    names = await repo.customer_names(conn, [c.customer_id for c in aging.customers])
    result = AgingResult(code, customer_id, aging, ledger, names)
    if not result.ties_out:
        TIE_OUT_FAILURES.inc()
        log.error("aging %s as of %s does not tie out: buckets %s, open balances %s, ledger %s",
                  code, as_of, aging.total, aging.total_open_balance, result.ledger_net)
    return result


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
    aging: Aging
    unapplied_cash: Decimal
    open_disputes: dict[str, tuple[int, Decimal]]
    open_promises: metrics.PromiseTally
    awaiting_invoice: dict[str, tuple[int, Decimal]]


async def summary(conn: AsyncConnection, as_of: date, currency: str | None) -> Summary:
    code = await resolve_currency(conn, currency)
    aging = metrics.aging(await repo.open_items(conn, code, as_of), as_of)
    cash = await repo.cash_totals(conn, code, as_of)
    promises = metrics.promise_report(await repo.promises(conn, code, as_of),
                                      await repo.promise_outcomes(conn, code, as_of), as_of, as_of)
    return Summary(
        currency=code,
        as_of=as_of,
        aging=aging,
        unapplied_cash=metrics.unapplied_cash(cash["received"], cash["applied"]),
        open_disputes=await repo.open_disputes(conn, code, as_of),
        open_promises=promises.open,
        awaiting_invoice=await repo.awaiting_invoice(conn, code, as_of),
    )
