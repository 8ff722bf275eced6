"""SQL for the period metrics, the sub-ledger and the collection reports. Each query adds up
facts set-based in PostgreSQL and returns plain sums or rows; the formulas that turn them into
metrics live in domain/ (periodic, ledger, forecast)."""
from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.reporting.adapters.repository import aged_balances_sql as repo_aged
from services.reporting.adapters.repository import balances_sql as repo_balances
from services.reporting.adapters.repository import bucket_params as repo_bucket_params
from services.reporting.adapters.repository import bucket_sums_sql as repo_bucket_sums
from services.reporting.domain.forecast import Expected
from services.reporting.domain.ledger import KINDS
from services.reporting.domain.metrics import UNASSIGNED

ZERO = Decimal(0)


async def ar_totals(conn: AsyncConnection, currency: str, as_of: date) -> tuple[Decimal, Decimal]:
    """(open balance total, current part: invoices not yet past due, due_date >= as_of) on
    as_of, from the ar_deltas snapshot."""
    row = (await conn.execute(text(
        "SELECT coalesce(sum(invoiced - moved), 0) AS total,"
        " coalesce(sum(invoiced - moved) FILTER (WHERE due_date >= :d), 0) AS current"
        " FROM ar_deltas WHERE currency = :cur AND eff_date <= :d"
    ), {"cur": currency, "d": as_of})).one()
    return Decimal(row.total), Decimal(row.current)


async def open_by_date(conn: AsyncConnection, currency: str, as_of: date, basis_column: str) -> list[tuple[date, Decimal]]:
    """Open balances on as_of summed per due date (or issue date), from the ar_deltas snapshot."""
    column = {"due_date": "due_date", "invoice_date": "issue_date"}[basis_column]
    rows = await conn.execute(text(
        f"SELECT {column} AS day, sum(invoiced - moved) AS open FROM ar_deltas"
        f" WHERE currency = :cur AND eff_date <= :d GROUP BY {column}"
    ), {"cur": currency, "d": as_of})
    return [(r.day, Decimal(r.open)) for r in rows]


async def monthly_sales(conn: AsyncConnection, currency: str, end: date) -> tuple[dict[date, Decimal], date | None]:
    """Credit sales per calendar month (keyed by the month's first day) up to end, and the
    first issue date on record."""
    rows = (await conn.execute(text(
        "SELECT CAST(date_trunc('month', issue_date) AS date) AS month, sum(invoiced) AS sales, min(issue_date) AS first"
        " FROM ar_deltas WHERE currency = :cur AND issue_date <= :t AND invoiced <> 0 GROUP BY 1"
    ), {"cur": currency, "t": end})).all()
    return {r.month: Decimal(r.sales) for r in rows}, min((r.first for r in rows), default=None)


async def days_late_sums(conn: AsyncConnection, currency: str, start: date, end: date) -> tuple[int, Decimal, Decimal, int]:
    """Over each application dated in [start, end] not reversed (unapplied) on or before end,
    with days late = max(0, value_date - due_date): (count, sum of amounts, sum of amount x
    days late, sum of days late)."""
    row = (await conn.execute(text(
        "SELECT count(*) AS n, coalesce(sum(a.amount), 0) AS amount,"
        " coalesce(sum(a.amount * greatest(a.value_date - i.due_date, 0)), 0) AS weighted,"
        " coalesce(sum(greatest(a.value_date - i.due_date, 0)), 0) AS late"
        " FROM applications a JOIN invoices i USING (invoice_id)"
        " WHERE i.currency = :cur AND a.value_date BETWEEN :f AND :t"
        "   AND NOT EXISTS (SELECT 1 FROM unapplications u WHERE u.application_id = a.application_id"
        "                   AND u.unapplied_on <= :t)"
    ), {"cur": currency, "f": start, "t": end})).one()
    return int(row.n), Decimal(row.amount), Decimal(row.weighted), int(row.late)


async def customer_days_late(conn: AsyncConnection, currency: str, as_of: date) -> dict[str, Decimal]:
    """Each customer's amount-weighted average days late (max(0, value_date - due_date)) over
    every application dated on or before as_of and not reversed by then: its own payment
    behaviour, for the forecast."""
    rows = await conn.execute(text(
        "SELECT i.customer_id, sum(a.amount * greatest(a.value_date - i.due_date, 0)) AS weighted, sum(a.amount) AS paid"
        " FROM applications a JOIN invoices i USING (invoice_id)"
        " WHERE i.currency = :cur AND a.value_date <= :d AND a.amount > 0"
        "   AND NOT EXISTS (SELECT 1 FROM unapplications u WHERE u.application_id = a.application_id"
        "                   AND u.unapplied_on <= :d)"
        " GROUP BY i.customer_id"
    ), {"cur": currency, "d": as_of})
    return {r.customer_id: Decimal(r.weighted) / Decimal(r.paid) for r in rows if r.paid}


async def expected_by_date(conn: AsyncConnection, currency: str, as_of: date, delays: dict[str, int],
                           covered: set[str]) -> list[tuple[date, Decimal]]:
    """Positive open balances on as_of, summed per expected date = due_date + the customer's
    delay in whole days (0 when the customer has none), leaving out the covered invoices."""
    rows = await conn.execute(text(
        "WITH d AS (SELECT * FROM unnest(CAST(:customers AS text[]), CAST(:days AS integer[])) AS d(customer_id, days)),"
        f" b AS ({repo_balances()})"
        " SELECT b.due_date + coalesce(d.days, 0) AS expected, sum(b.balance) AS amount"
        " FROM b LEFT JOIN d USING (customer_id)"
        " WHERE b.balance > 0 AND NOT (b.invoice_id = ANY(CAST(:covered AS text[]))) GROUP BY 1"
    ), {"cur": currency, "d": as_of, "customers": list(delays), "days": list(delays.values()),
        "covered": sorted(covered)})
    return [(r.expected, Decimal(r.amount)) for r in rows]


async def period_activity(conn: AsyncConnection, currency: str, start: date, end: date) -> dict[str, Decimal]:
    """The roll-forward's activity lines: invoiced in [start, end] and each movement kind whose
    effective date, greatest(movement date, issue date), falls in it (see domain/ledger)."""
    row = (await conn.execute(text(
        "SELECT (SELECT coalesce(sum(amount), 0) FROM invoices WHERE currency = :cur AND issue_date BETWEEN :f AND :t)"
        "   AS invoiced, m.* FROM (SELECT "
        + ", ".join(f"coalesce(sum(m.amount) FILTER (WHERE m.kind = '{k}'), 0) AS {k}" for k in KINDS) +
        "  FROM invoice_movements m JOIN invoices i USING (invoice_id)"
        "  WHERE i.currency = :cur AND greatest(m.on_date, i.issue_date) BETWEEN :f AND :t) m"
    ), {"cur": currency, "f": start, "t": end})).one()
    return {k: Decimal(getattr(row, k)) for k in ("invoiced", *KINDS)}


async def cash_applied_by_week(conn: AsyncConnection, currency: str, start: date, end: date) -> dict[int, Decimal]:
    """Cash applied net of unapplications per 7-day week counted from start (week 0 = start..start+6)."""
    rows = await conn.execute(text(
        "SELECT (m.on_date - CAST(:f AS date)) / 7 AS week, sum(m.amount) AS cash"
        " FROM invoice_movements m JOIN invoices i USING (invoice_id)"
        " WHERE m.kind = 'cash' AND i.currency = :cur AND m.on_date BETWEEN :f AND :t GROUP BY 1"
    ), {"cur": currency, "f": start, "t": end})
    return {int(r.week): Decimal(r.cash) for r in rows}


async def open_expectations(conn: AsyncConnection, currency: str, as_of: date) -> list[Expected]:
    """Promises made on or before as_of with no outcome by then, and installments of plans
    agreed by then (neither completed nor broken) with no outcome by then."""
    promises = await conn.execute(text(
        "SELECT p.customer_id, p.amount, p.promise_date, p.invoice_ids FROM promises p"
        " WHERE p.currency = :cur AND p.made_on <= :d AND NOT EXISTS"
        "  (SELECT 1 FROM promise_outcomes o WHERE o.promise_id = p.promise_id AND o.outcome_on <= :d)"
    ), {"cur": currency, "d": as_of})
    installments = await conn.execute(text(
        "SELECT p.customer_id, n.amount, n.due_date, p.invoice_ids FROM payment_plans p"
        " JOIN plan_installments n USING (plan_id)"
        " WHERE p.currency = :cur AND p.agreed_on <= :d"
        "   AND NOT EXISTS (SELECT 1 FROM plan_outcomes o WHERE o.plan_id = p.plan_id AND o.outcome_on <= :d)"
        "   AND NOT EXISTS (SELECT 1 FROM installment_outcomes o WHERE o.plan_id = p.plan_id"
        "                   AND o.installment_number = n.installment_number AND o.outcome_on <= :d)"
    ), {"cur": currency, "d": as_of})
    return ([Expected("promises", r.customer_id, Decimal(r.amount), r.promise_date, tuple(r.invoice_ids))
             for r in promises] +
            [Expected("plans", r.customer_id, Decimal(r.amount), r.due_date, tuple(r.invoice_ids))
             for r in installments])


async def customer_attribute(conn: AsyncConnection, attribute: str, as_of: date) -> dict[str, str]:
    """Each customer's collector or segment as of a date: the latest assignment dated on or
    before it (same-day ties go to the larger event id, so the answer is the same whatever
    order the events arrived in)."""
    rows = await conn.execute(text(_attribute_sql(attribute)), {"d": as_of})
    return {r.customer_id: r.value for r in rows}


def _attribute_sql(attribute: str) -> str:
    table, column, on = {"collector": ("collector_assignments", "collector_id", "assigned_on"),
                         "segment": ("customer_segments", "segment", "scored_on")}[attribute]
    return (f"SELECT DISTINCT ON (customer_id) customer_id, {column} AS value FROM {table}"
            f" WHERE {on} <= :d ORDER BY customer_id, {on} DESC, event_id DESC")


async def group_aging(conn: AsyncConnection, currency: str, as_of: date, basis_column: str,
                      bounds: tuple[int, ...], group_by: str) -> list[tuple[str, int, list[Decimal]]]:
    """The book's open invoices of `currency` on as_of added up per group, in one SQL pass:
    (key, open invoices, balance per bucket index), ordered by key. group_by collector or
    segment: the customer's as of as_of (customer_attribute), "(none)" without one; currency:
    the one currency. Buckets as repository.customer_aging."""
    if group_by == "currency":
        keyed, key = "", "CAST(:cur AS text)"
    else:
        keyed, key = f" LEFT JOIN ({_attribute_sql(group_by)}) a USING (customer_id)", "coalesce(a.value, :none)"
    rows = await conn.execute(text(
        f"SELECT {key} AS key, {repo_bucket_sums(len(bounds) + 1)} FROM ({repo_aged(basis_column)}) b{keyed}"
        " WHERE balance <> 0 GROUP BY 1 ORDER BY 1"), {**repo_bucket_params(currency, as_of, bounds), "none": UNASSIGNED})
    return [(row[0], int(row[1]), list(row[2:])) for row in rows]


async def fx_rate(conn: AsyncConnection, currency: str, reporting_currency: str, as_of: date) -> tuple[Decimal, date] | None:
    """The latest rate dated on or before as_of (None when there is none)."""
    row = (await conn.execute(text(
        "SELECT rate, rate_date FROM fx_rates WHERE currency = :c AND reporting_currency = :r AND rate_date <= :d"
        " ORDER BY rate_date DESC LIMIT 1"
    ), {"c": currency, "r": reporting_currency, "d": as_of})).first()
    return None if row is None else (Decimal(row.rate), row.rate_date)


async def upsert_fx_rate(conn: AsyncConnection, currency: str, reporting_currency: str, rate_date: date,
                         rate: Decimal) -> None:
    await conn.execute(text(
        "INSERT INTO fx_rates (currency, reporting_currency, rate_date, rate) VALUES (:c, :r, :d, :rate)"
        " ON CONFLICT (currency, reporting_currency, rate_date) DO UPDATE SET rate = EXCLUDED.rate, posted_at = now()"
    ), {"c": currency, "r": reporting_currency, "d": rate_date, "rate": rate})


async def upsert_gl_totals(conn: AsyncConnection, currency: str, start: date, end: date, lines: dict[str, str]) -> None:
    await conn.execute(text(
        "INSERT INTO gl_control_totals (currency, period_start, period_end, lines) VALUES (:c, :f, :t, CAST(:l AS jsonb))"
        " ON CONFLICT (currency, period_start, period_end) DO UPDATE SET lines = EXCLUDED.lines, posted_at = now()"
    ), {"c": currency, "f": start, "t": end, "l": json.dumps(lines)})


async def gl_totals(conn: AsyncConnection, currency: str, start: date, end: date) -> dict[str, Decimal] | None:
    row = (await conn.execute(text(
        "SELECT lines FROM gl_control_totals WHERE currency = :c AND period_start = :f AND period_end = :t"
    ), {"c": currency, "f": start, "t": end})).first()
    if row is None:
        return None
    lines = row.lines if isinstance(row.lines, dict) else json.loads(row.lines)
    return {k: Decimal(v) for k, v in lines.items()}


async def period_close(conn: AsyncConnection, currency: str, end: date) -> dict[str, Any] | None:
    row = (await conn.execute(text(
        "SELECT period_start, period_end, roll_forward, closed_at, closed_by FROM period_closes"
        " WHERE currency = :c AND period_end = :t"
    ), {"c": currency, "t": end})).first()
    if row is None:
        return None
    stored = row.roll_forward if isinstance(row.roll_forward, dict) else json.loads(row.roll_forward)
    return {"period_start": row.period_start, "period_end": row.period_end, "roll_forward": stored,
            "closed_at": row.closed_at, "closed_by": row.closed_by}


async def insert_period_close(conn: AsyncConnection, currency: str, start: date, end: date,
                              roll_forward: dict[str, Any], closed_by: str) -> bool:
    result = await conn.execute(text(
        "INSERT INTO period_closes (currency, period_start, period_end, roll_forward, closed_by)"
        " VALUES (:c, :f, :t, CAST(:rf AS jsonb), :by) ON CONFLICT DO NOTHING RETURNING 1"
    ), {"c": currency, "f": start, "t": end, "rf": json.dumps(roll_forward), "by": closed_by})
    return result.first() is not None


async def closes_overlapping(conn: AsyncConnection, currency: str, start: date, end: date) -> list[tuple[date, date]]:
    rows = await conn.execute(text(
        "SELECT period_start, period_end FROM period_closes WHERE currency = :c"
        " AND period_start <= :t AND period_end >= :f ORDER BY period_end"
    ), {"c": currency, "f": start, "t": end})
    return [(r.period_start, r.period_end) for r in rows]


async def disputes_by_reason(conn: AsyncConnection, currency: str, start: date, end: date) -> list[Any]:
    """Per kind and reason code: opened in the period (count, amount), resolved in it (count,
    amount, credit granted, total and longest cycle days = resolved_on - opened_on), and open at
    the period's end (count, amount, total age in days)."""
    return list(await conn.execute(text(
        "SELECT d.kind, d.reason_code,"
        " count(*) FILTER (WHERE d.opened_on BETWEEN :f AND :t) AS opened,"
        " coalesce(sum(d.amount) FILTER (WHERE d.opened_on BETWEEN :f AND :t), 0) AS opened_amount,"
        " count(r.dispute_id) FILTER (WHERE r.resolved_on BETWEEN :f AND :t) AS resolved,"
        " coalesce(sum(d.amount) FILTER (WHERE r.resolved_on BETWEEN :f AND :t), 0) AS resolved_amount,"
        " coalesce(sum(r.credit_amount) FILTER (WHERE r.resolved_on BETWEEN :f AND :t), 0) AS credited,"
        " coalesce(sum(r.resolved_on - d.opened_on) FILTER (WHERE r.resolved_on BETWEEN :f AND :t), 0) AS cycle_days,"
        " max(r.resolved_on - d.opened_on) FILTER (WHERE r.resolved_on BETWEEN :f AND :t) AS longest,"
        " count(*) FILTER (WHERE d.opened_on <= :t AND (r.dispute_id IS NULL OR r.resolved_on > :t)) AS still_open,"
        " coalesce(sum(d.amount) FILTER (WHERE d.opened_on <= :t AND (r.dispute_id IS NULL OR r.resolved_on > :t)), 0)"
        "   AS open_amount,"
        " coalesce(sum(CAST(:t AS date) - d.opened_on)"
        "   FILTER (WHERE d.opened_on <= :t AND (r.dispute_id IS NULL OR r.resolved_on > :t)), 0) AS open_age_days"
        " FROM disputes d LEFT JOIN dispute_resolutions r USING (dispute_id)"
        " WHERE d.currency = :cur AND d.opened_on <= :t"
        " GROUP BY d.kind, d.reason_code ORDER BY d.kind, d.reason_code"
    ), {"cur": currency, "f": start, "t": end}))


async def collector_activity(conn: AsyncConnection, currency: str, start: date, end: date) -> dict[str, dict[str, Any]]:
    """Per customer: cash applied net in [start, end] (and the part on invoices past due when
    paid), promises made/kept/broken, dunning notices and call tasks in the period."""
    params = {"cur": currency, "f": start, "t": end}
    result: dict[str, dict[str, Any]] = {}

    def bump(customer: str, key: str, value: Any) -> None:
        result.setdefault(customer, {})[key] = value

    for r in await conn.execute(text(
        "SELECT i.customer_id, sum(m.amount) AS cash, coalesce(sum(m.amount) FILTER (WHERE m.on_date > i.due_date), 0)"
        " AS late_cash FROM invoice_movements m JOIN invoices i USING (invoice_id)"
        " WHERE m.kind = 'cash' AND i.currency = :cur AND m.on_date BETWEEN :f AND :t GROUP BY 1"), params):
        bump(r.customer_id, "collected", Decimal(r.cash))
        bump(r.customer_id, "collected_past_due", Decimal(r.late_cash))
    for r in await conn.execute(text(
        "SELECT customer_id, count(*) AS n FROM promises WHERE currency = :cur AND made_on BETWEEN :f AND :t GROUP BY 1"),
            params):
        bump(r.customer_id, "promises_made", int(r.n))
    for r in await conn.execute(text(
        "SELECT customer_id, count(*) FILTER (WHERE outcome = 'kept') AS kept,"
        " count(*) FILTER (WHERE outcome = 'broken') AS broken FROM promise_outcomes"
        " WHERE currency = :cur AND outcome_on BETWEEN :f AND :t GROUP BY 1"), params):
        bump(r.customer_id, "promises_kept", int(r.kept))
        bump(r.customer_id, "promises_broken", int(r.broken))
    for r in await conn.execute(text(
        "SELECT customer_id, count(*) AS n FROM dunning_notices WHERE currency = :cur AND sent_on BETWEEN :f AND :t"
        " GROUP BY 1"), params):
        bump(r.customer_id, "notices_sent", int(r.n))
    for r in await conn.execute(text(
        "SELECT customer_id, count(*) AS n FROM call_tasks WHERE due_on BETWEEN :f AND :t GROUP BY 1"), params):
        bump(r.customer_id, "call_tasks", int(r.n))
    return result


COHORTS = ("past_due", "escalated", "written_off")


async def recovery_cohort(conn: AsyncConnection, currency: str, cohort: str, start: date, end: date,
                          window_days: int) -> list[Any]:
    """Per invoice entering the cohort on a day e in [start, end]: the balance owed when it
    entered (past due: at the start of due_date + 1; escalated: at the start of the escalation
    day; written off: the amount written off) and the cash applied net from e to e + window - 1.
    An invoice escalated or written off twice counts from its first entry."""
    entry = {
        "past_due": "SELECT invoice_id, due_date + 1 AS entered FROM invoices WHERE currency = :cur"
                    " AND due_date + 1 BETWEEN :f AND :t",
        "escalated": "SELECT unnest(invoice_ids) AS invoice_id, min(escalated_on) AS entered FROM escalations"
                     " WHERE currency = :cur GROUP BY 1 HAVING min(escalated_on) BETWEEN :f AND :t",
        "written_off": "SELECT invoice_id, min(approved_on) AS entered FROM write_offs WHERE currency = :cur"
                       " GROUP BY 1 HAVING min(approved_on) BETWEEN :f AND :t",
    }[cohort]
    balance = ("(SELECT coalesce(sum(amount), 0) FROM write_offs w WHERE w.invoice_id = e.invoice_id)"
               if cohort == "written_off" else
               "i.amount - coalesce((SELECT sum(m.amount) FROM invoice_movements m"
               " WHERE m.invoice_id = e.invoice_id AND m.on_date < e.entered), 0)")
    return list(await conn.execute(text(
        f"WITH e AS ({entry})"
        f" SELECT e.invoice_id, i.customer_id, e.entered, {balance} AS balance,"
        "  coalesce((SELECT sum(m.amount) FROM invoice_movements m WHERE m.invoice_id = e.invoice_id"
        "            AND m.kind = 'cash' AND m.on_date BETWEEN e.entered AND e.entered + CAST(:w AS integer) - 1), 0) AS collected"
        " FROM e JOIN invoices i USING (invoice_id) WHERE i.issue_date < e.entered OR CAST(:cohort AS text) <> 'past_due'"
        " ORDER BY e.invoice_id"
    ), {"cur": currency, "f": start, "t": end, "w": window_days, "cohort": cohort}))
