"""SQL for reporting's facts. Writes are idempotent on the facts' keys (a redelivered event
changes nothing even outside the consumer runner's inbox). Reads filter and pre-aggregate per
invoice for speed; the rules that turn those rows into metrics live in domain/metrics.py."""
from __future__ import annotations

import json
from contextlib import asynccontextmanager
from datetime import date
from decimal import Decimal
from typing import Any, AsyncIterator, Iterable, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.reporting.domain.facts import OpenItem, PromiseFact, PromiseOutcomeFact, RecoveryItem
from services.reporting.domain.hierarchy import ParentChange

# Every table of the read model, in the order rebuild truncates them (no foreign keys between
# them: facts arrive in any order).
FACT_TABLES: tuple[str, ...] = (
    "customers", "invoices", "credits", "applications", "payments",
    "promises", "promise_outcomes", "disputes", "dispute_resolutions",
    "unapplications", "payment_returns", "adjustments", "write_offs", "escalations",
    "collector_assignments", "customer_segments", "payment_plans", "plan_installments",
    "installment_outcomes", "plan_outcomes", "dunning_notices", "call_tasks", "adjustment_reversals",
    "invoice_adjustments", "refunds", "customer_parents", "ar_deltas",
)

# Fact tables whose rows move an invoice's balance (see the invoice_movements view), with the
# column holding the movement's date, the sign it moves the balance down by, and the view's kind.
MOVEMENT_TABLES: dict[str, tuple[str, int, str]] = {
    "credits": ("issue_date", 1, "credit"), "applications": ("value_date", 1, "cash"),
    "unapplications": ("unapplied_on", -1, "cash"), "adjustments": ("value_date", 1, "adjustment"),
    "adjustment_reversals": ("reversed_on", -1, "adjustment"), "write_offs": ("approved_on", 1, "write_off"),
    # invoicing's adjustments and voids, already signed (a debit adjustment is negative)
    "invoice_adjustments": ("adjusted_on", 1, "adjustment"),
}
# ar_deltas keeps the movements per kind too (migration 0004): the book's tie-out as of a date.
DELTA_KINDS: dict[str, str] = {"credit": "credited", "cash": "applied", "adjustment": "adjusted",
                               "write_off": "written_off"}
_KIND_COLUMNS = ", ".join(DELTA_KINDS.values())

_DELTA_UPSERT = (
    f"INSERT INTO ar_deltas (currency, eff_date, due_date, issue_date, invoiced, moved, {_KIND_COLUMNS})"
    " SELECT currency, eff_date, due_date, issue_date, sum(invoiced), sum(moved), "
    + ", ".join(f"sum({c})" for c in DELTA_KINDS.values()) + " FROM ({rows}) r"
    " GROUP BY currency, eff_date, due_date, issue_date"
    " ON CONFLICT (currency, eff_date, due_date, issue_date) DO UPDATE"
    " SET invoiced = ar_deltas.invoiced + EXCLUDED.invoiced, moved = ar_deltas.moved + EXCLUDED.moved, "
    + ", ".join(f"{c} = ar_deltas.{c} + EXCLUDED.{c}" for c in DELTA_KINDS.values())
)
_INVOICE_DELTAS = ("SELECT currency, issue_date AS eff_date, due_date, issue_date, amount AS invoiced, 0 AS moved, "
                   + ", ".join(f"0 AS {c}" for c in DELTA_KINDS.values()) + " FROM invoices")


def _movement_deltas(source: str) -> str:
    """Every movement of `source` (rows invoice_id, kind, amount signed, on_date) on a known
    invoice, at greatest(movement date, issue date), moved and by kind."""
    return (
        "SELECT i.currency, greatest(m.on_date, i.issue_date) AS eff_date, i.due_date, i.issue_date,"
        " 0 AS invoiced, m.amount AS moved, "
        + ", ".join(f"CASE WHEN m.kind = '{k}' THEN m.amount ELSE 0 END AS {c}" for k, c in DELTA_KINDS.items())
        + f" FROM {source} m JOIN invoices i USING (invoice_id)"
    )


_MOVEMENT_DELTAS = _movement_deltas("invoice_movements")
# A batch's new movements, as arrays; those on invoices new in the same batch are left out
# (the invoice's own delta adds every movement recorded on it, these included).
_BATCH_MOVEMENTS = (
    "(SELECT * FROM unnest(CAST(:mi AS text[]), CAST(:mk AS text[]), CAST(:ma AS numeric[]), CAST(:md AS date[]))"
    " AS t(invoice_id, kind, amount, on_date) WHERE NOT (t.invoice_id = ANY(CAST(:inv AS text[]))))"
)


async def rebuild_deltas(conn: AsyncConnection) -> None:
    """ar_deltas recomputed from the facts, set-based (after a batch load)."""
    await conn.execute(text("TRUNCATE ar_deltas"))
    await conn.execute(text(_DELTA_UPSERT.format(rows=f"{_INVOICE_DELTAS} UNION ALL {_MOVEMENT_DELTAS}")))


async def _lock_invoices(conn: AsyncConnection, invoice_ids: Iterable[str]) -> None:
    """An invoice and a movement on it committing at once (two partitions, two workers) would
    each miss the other; both lock the invoice after inserting their facts and before reading
    for ar_deltas, so the second sees the first. One statement for the batch's invoices, in one
    global order (the lock keys sorted), so two batches never deadlock each other."""
    await conn.execute(text(
        "SELECT count(pg_advisory_xact_lock(h)) FROM (SELECT DISTINCT hashtext('ar_deltas:' || i) AS h"
        " FROM unnest(CAST(:ids AS text[])) AS i ORDER BY h) AS keys"), {"ids": sorted(set(invoice_ids))})


def _json_default(value: Any) -> str:
    if isinstance(value, (Decimal, date)):
        return str(value)  # exact decimal text, ISO date (datetime: ISO with offset)
    raise TypeError(f"{type(value).__name__} is not a fact value")


async def insert_facts(conn: AsyncConnection, facts: Sequence[tuple[str, dict[str, Any]]]) -> int:
    """insert_fact for a batch of facts, set-based, with the same result as inserting them one
    by one in this order: one INSERT ... SELECT FROM jsonb_populate_recordset ... ON CONFLICT DO
    NOTHING per table and column set (the first fact with a key wins, within the batch as across
    batches), then ar_deltas in one statement for what was new: each new invoice adds its amount
    and every movement recorded on it (those of this batch included), each new movement on an
    invoice known before this batch adds itself. The invoices' locks are taken after the inserts
    and before ar_deltas is read, as insert_fact does. Returns the number of new facts."""
    groups: dict[tuple[str, tuple[str, ...]], list[dict[str, Any]]] = {}
    for table, row in facts:
        if table not in FACT_TABLES:
            raise ValueError(f"{table} is not a reporting fact table")
        groups.setdefault((table, tuple(row)), []).append(row)
    new_invoices: list[str] = []
    moves: dict[str, list[Any]] = {"mi": [], "mk": [], "ma": [], "md": []}
    inserted = 0
    for (table, columns), rows in groups.items():
        names = ", ".join(columns)
        returning = "1"
        if table == "invoices":
            returning = "invoice_id"
        elif table in MOVEMENT_TABLES:
            returning = f"invoice_id, amount, {MOVEMENT_TABLES[table][0]}"
        result = await conn.execute(
            text(f"INSERT INTO {table} ({names}) SELECT {names} FROM"
                 f" jsonb_populate_recordset(CAST(NULL AS {table}), CAST(:rows AS jsonb))"
                 f" ON CONFLICT DO NOTHING RETURNING {returning}"),
            {"rows": json.dumps(rows, default=_json_default)},
        )
        new = result.all()
        inserted += len(new)
        if table == "invoices":
            new_invoices.extend(r[0] for r in new)
        elif table in MOVEMENT_TABLES:
            _, sign, kind = MOVEMENT_TABLES[table]
            for invoice_id, amount, on_date in new:
                moves["mi"].append(invoice_id)
                moves["mk"].append(kind)
                moves["ma"].append(sign * amount)
                moves["md"].append(on_date)
    if not new_invoices and not moves["mi"]:
        return inserted
    await _lock_invoices(conn, [*new_invoices, *moves["mi"]])
    rows = (f"{_INVOICE_DELTAS} WHERE invoice_id = ANY(CAST(:inv AS text[]))"
            f" UNION ALL {_MOVEMENT_DELTAS} WHERE i.invoice_id = ANY(CAST(:inv AS text[]))"
            f" UNION ALL {_movement_deltas(_BATCH_MOVEMENTS)}")
    await conn.execute(text(_DELTA_UPSERT.format(rows=rows)), {"inv": new_invoices, **moves})
    return inserted


@asynccontextmanager
async def read_snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A read-only REPEATABLE READ transaction: a report's several queries see one snapshot,
    so its totals tie out even while the consumer is committing new facts."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        async with conn.begin():
            yield conn


async def insert_fact(conn: AsyncConnection, table: str, row: dict[str, Any]) -> bool:
    """Insert a fact unless one with the same key (natural key or event_id) is there already.
    Returns whether it was new. The first version of a fact wins: events are immutable, so a
    second one with the same key is a redelivery."""
    return await insert_facts(conn, [(table, row)]) == 1


async def clear_read_model(conn: AsyncConnection, consumer: str) -> dict[str, int]:
    """Empty every fact table and forget what the consumer has handled (its inbox rows and
    stored offsets), so it replays its topics from offset 0. Returns rows removed per table."""
    removed: dict[str, int] = {}
    for table in FACT_TABLES:
        removed[table] = int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
    await conn.execute(text(f"TRUNCATE {', '.join(FACT_TABLES)}"))
    removed.update(await forget_consumer(conn, consumer))
    return removed


async def forget_consumer(conn: AsyncConnection, consumer: str) -> dict[str, int]:
    """Delete the consumer's inbox rows, stored offsets and the stream versions it saw (a replay
    from offset 0 would otherwise look like every stream going backwards). Returns rows removed
    per table."""
    removed: dict[str, int] = {}
    for table in ("inbox", "consumer_offsets", "consumer_stream_versions"):
        result = await conn.execute(text(f"DELETE FROM {table} WHERE consumer = :c"), {"c": consumer})
        removed[table] = result.rowcount
    return removed


async def book_currencies(conn: AsyncConnection) -> list[str]:
    rows = await conn.execute(text(
        "SELECT DISTINCT currency FROM invoices UNION SELECT currency FROM credits UNION SELECT currency FROM applications"
        " UNION SELECT currency FROM payments UNION SELECT currency FROM promises"
        " UNION SELECT currency FROM promise_outcomes UNION SELECT currency FROM disputes"
        " UNION SELECT currency FROM write_offs UNION SELECT currency FROM payment_plans ORDER BY 1"
    ))
    return [r[0] for r in rows]


_OPEN_ITEM_COLUMNS = (
    "i.invoice_id, i.invoice_number, i.customer_id, i.currency, i.amount, i.issue_date, i.due_date,"
    " coalesce(m.credited, 0) AS credited, coalesce(m.applied, 0) AS applied,"
    " coalesce(m.adjusted, 0) AS adjusted, coalesce(m.written_off, 0) AS written_off"
)
_MOVEMENT_SUMS = (
    "sum(amount) FILTER (WHERE kind = 'credit') AS credited, sum(amount) FILTER (WHERE kind = 'cash') AS applied,"
    " sum(amount) FILTER (WHERE kind = 'adjustment') AS adjusted,"
    " sum(amount) FILTER (WHERE kind = 'write_off') AS written_off, sum(amount) AS moved"
)


def _scope(currency: str | None, customer_id: str | list[str] | None) -> str:
    """Invoices issued on or before :d, of :cur and :cust when given (:cust a list: any of those
    customers, a parent account's family). Written out per case (no `:x IS NULL OR ...`), so a
    prepared statement's generic plan still uses the indexes."""
    parts = ["i.issue_date <= :d"]
    if currency is not None:
        parts.append("i.currency = :cur")
    if isinstance(customer_id, list):
        parts.append("i.customer_id = ANY(CAST(:cust AS text[]))")
    elif customer_id is not None:
        parts.append("i.customer_id = :cust")
    return " AND ".join(parts)


async def open_items(conn: AsyncConnection, currency: str | None, as_of: date,
                     customer_id: str | list[str] | None = None) -> list[OpenItem]:
    """Invoices issued on or before as_of with their movements (credits, cash net of
    unapplications, adjustments, write-offs) dated up to as_of; only those whose balance is
    not zero (the rest cannot change a total). currency None: every currency. One customer's
    invoices are summed per invoice through the movement indexes (a lateral join); the whole
    book with one grouped pass over the movements."""
    if customer_id is not None:
        movements = ("LEFT JOIN LATERAL (SELECT " + _MOVEMENT_SUMS + " FROM invoice_movements"
                     " WHERE invoice_id = i.invoice_id AND on_date <= :d) m ON true")
    else:
        movements = ("LEFT JOIN (SELECT invoice_id, " + _MOVEMENT_SUMS + " FROM invoice_movements"
                     " WHERE on_date <= :d GROUP BY invoice_id) m USING (invoice_id)")
    rows = await conn.execute(
        text(
            f"SELECT {_OPEN_ITEM_COLUMNS} FROM invoices i {movements}"
            f" WHERE {_scope(currency, customer_id)} AND i.amount - coalesce(m.moved, 0) <> 0"
        ),
        {"cur": currency, "d": as_of, "cust": customer_id},
    )
    # Positional unpacking: this runs once per open invoice of the book (asyncpg already
    # returns numeric columns as Decimal).
    return [
        OpenItem(invoice_id, customer, cur, amount, issued, due, credited, applied, number, adjusted, written_off)
        for invoice_id, number, customer, cur, amount, issued, due, credited, applied, adjusted, written_off
        in rows
    ]


_BALANCES = (
    "SELECT i.invoice_id, i.customer_id, i.due_date, i.amount - coalesce(m.moved, 0) AS balance FROM invoices i"
    " LEFT JOIN (SELECT invoice_id, sum(amount) AS moved FROM invoice_movements WHERE on_date <= :d"
    "            GROUP BY invoice_id) m USING (invoice_id)"
    " WHERE i.currency = :cur AND i.issue_date <= :d"
)


def balances_sql() -> str:
    """Each invoice of :cur issued on or before :d with its balance on :d (invoice_id,
    customer_id, due_date, balance), for set-based aggregates."""
    return _BALANCES


_AGED_BALANCES = (
    "SELECT i.customer_id, width_bucket(CAST(:d AS date) - i.{column}, CAST(:thresholds AS integer[])) AS k,"
    " i.amount - coalesce(m.moved, 0) AS balance FROM invoices i {movements}"
    " WHERE i.currency = :cur AND i.issue_date <= :d{after}"
)
# Per invoice through the movement indexes, in customer order: a page stops after its customers.
_LATERAL_MOVED = ("LEFT JOIN LATERAL (SELECT sum(amount) AS moved FROM invoice_movements"
                  " WHERE invoice_id = i.invoice_id AND on_date <= :d) m ON true")
# The whole book: one grouped pass over the movements.
_GROUPED_MOVED = ("LEFT JOIN (SELECT invoice_id, sum(amount) AS moved FROM invoice_movements WHERE on_date <= :d"
                  " GROUP BY invoice_id) m USING (invoice_id)")


def aged_balances_sql(basis_column: str, paged: bool = False, after: bool = False) -> str:
    """Each invoice of :cur issued on or before :d (customer_id, k, balance), k its bucket's
    index: the number of bucket bounds below its age, i.e. width_bucket(age, :thresholds) with
    :thresholds = bound + 1 (metrics.BucketSpec.bucket); use bucket_params for them."""
    column = {"due_date": "due_date", "invoice_date": "issue_date"}[basis_column]
    return _AGED_BALANCES.format(column=column, movements=_LATERAL_MOVED if paged else _GROUPED_MOVED,
                                 after=" AND i.customer_id > :after" if after else "")


def bucket_sums_sql(buckets: int) -> str:
    """count(*) AS n and the balance per bucket index (b0, b1, ...) over aged_balances_sql rows."""
    return "count(*) AS n, " + ", ".join(f"coalesce(sum(balance) FILTER (WHERE k = {n}), 0) AS b{n}"
                                         for n in range(buckets))


def bucket_params(currency: str, as_of: date, bounds: tuple[int, ...]) -> dict[str, Any]:
    return {"cur": currency, "d": as_of, "thresholds": [b + 1 for b in bounds]}


def _customer_aging_sql(buckets: int, basis_column: str, after: bool, paged: bool) -> str:
    inner = aged_balances_sql(basis_column, paged, after)
    return (f"SELECT customer_id, {bucket_sums_sql(buckets)} FROM ({inner}) b WHERE balance <> 0"
            " GROUP BY customer_id ORDER BY customer_id" + (" LIMIT :n" if paged else ""))


async def customer_aging(conn: AsyncConnection, currency: str, as_of: date, basis_column: str,
                         bounds: tuple[int, ...], after: str | None = None,
                         limit: int | None = None) -> list[tuple[str, int, list[Decimal]]]:
    """Per customer with an invoice of `currency` open on as_of (issued on or before it,
    balance not zero), in customer_id order after `after`: (customer_id, open invoices, the
    open balance in each bucket). An invoice's age is as_of minus its due date (or issue date,
    basis_column) and its bucket the number of `bounds` below that age, the domain's
    BucketSpec.bucket rule (metrics.BucketSpec.bounds), found by width_bucket over bound + 1.
    With `limit`, the first `limit` such customers, summed invoice by invoice through the
    indexes (cost grows with the page, not the book); without, every customer in one pass.
    The SQL text is written per case (after or not, paged or not): no `:x IS NULL OR`."""
    sql = _customer_aging_sql(len(bounds) + 1, basis_column, after is not None, limit is not None)
    params = bucket_params(currency, as_of, bounds)
    if after is not None:
        params["after"] = after
    if limit is not None:
        params["n"] = limit
    rows = await conn.execute(text(sql), params)
    return [(row[0], int(row[1]), list(row[2:])) for row in rows]


async def open_counts(conn: AsyncConnection, currency: str, as_of: date) -> tuple[int, int]:
    """(invoices with a balance other than zero on as_of, customers with such an invoice), in SQL."""
    row = (await conn.execute(text(
        f"SELECT count(*) AS invoices, count(DISTINCT customer_id) AS customers FROM ({_BALANCES}) b"
        " WHERE balance <> 0"), {"cur": currency, "d": as_of})).one()
    return int(row.invoices), int(row.customers)


async def customer_balances(conn: AsyncConnection, currency: str, as_of: date) -> dict[str, tuple[Decimal, Decimal]]:
    """Per customer with an open balance on as_of: (open balance, the part past due), in SQL."""
    rows = await conn.execute(text(
        f"SELECT customer_id, sum(balance) AS total, coalesce(sum(balance) FILTER (WHERE due_date < :d), 0) AS past_due"
        f" FROM ({_BALANCES}) b WHERE balance <> 0 GROUP BY customer_id"), {"cur": currency, "d": as_of})
    return {r.customer_id: (Decimal(r.total), Decimal(r.past_due)) for r in rows}


async def top_overdue(conn: AsyncConnection, currency: str, as_of: date, limit: int) -> list[Any]:
    """Customers by open balance past due on as_of (due_date < as_of), largest first, in SQL:
    past due, more than 90 days past due, total open, open invoices."""
    return list(await conn.execute(text(
        f"SELECT b.customer_id, c.name, sum(balance) FILTER (WHERE due_date < :d) AS past_due,"
        " coalesce(sum(balance) FILTER (WHERE CAST(:d AS date) - due_date > 90), 0) AS over_90,"
        " sum(balance) AS total, count(*) AS invoices"
        f" FROM ({_BALANCES}) b LEFT JOIN customers c USING (customer_id) WHERE balance <> 0"
        " GROUP BY b.customer_id, c.name HAVING sum(balance) FILTER (WHERE due_date < :d) > 0"
        " ORDER BY past_due DESC, b.customer_id LIMIT :n"), {"cur": currency, "d": as_of, "n": limit}))


async def ledger_totals(conn: AsyncConnection, currency: str | None, as_of: date,
                        customer_id: str | list[str] | None = None) -> dict[str, Decimal]:
    """The tie-out, added up without the per-invoice query: invoiced, and each kind of
    movement dated on or before as_of, on invoices issued on or before as_of."""
    params = {"cur": currency, "d": as_of, "cust": customer_id}
    scope = _scope(currency, customer_id)
    row = (await conn.execute(
        text(
            f"SELECT (SELECT coalesce(sum(i.amount), 0) FROM invoices i WHERE {scope}) AS invoiced, m.*"
            f" FROM (SELECT coalesce(sum(m.amount) FILTER (WHERE kind = 'credit'), 0) AS credited,"
            f"   coalesce(sum(m.amount) FILTER (WHERE kind = 'cash'), 0) AS applied,"
            f"   coalesce(sum(m.amount) FILTER (WHERE kind = 'adjustment'), 0) AS adjusted,"
            f"   coalesce(sum(m.amount) FILTER (WHERE kind = 'write_off'), 0) AS written_off"
            f"  FROM invoice_movements m JOIN invoices i USING (invoice_id) WHERE m.on_date <= :d AND {scope}) m"
        ),
        params,
    )).one()
    return {k: Decimal(getattr(row, k)) for k in ("invoiced", "credited", "applied", "adjusted", "written_off")}


async def snapshot_ledger_totals(conn: AsyncConnection, currency: str, as_of: date) -> dict[str, Decimal]:
    """The book's tie-out (as ledger_totals without a customer) from the ar_deltas snapshot:
    invoiced on its issue date, each kind of movement on greatest(its date, the issue date),
    rows dated on or before as_of. A few thousand rows, however large the book."""
    row = (await conn.execute(text(
        "SELECT coalesce(sum(invoiced), 0) AS invoiced, "
        + ", ".join(f"coalesce(sum({c}), 0) AS {c}" for c in DELTA_KINDS.values())
        + " FROM ar_deltas WHERE currency = :cur AND eff_date <= :d"), {"cur": currency, "d": as_of})).one()
    return {k: Decimal(getattr(row, k)) for k in ("invoiced", *DELTA_KINDS.values())}


async def credit_sales(conn: AsyncConnection, currency: str, start: date, end: date) -> Decimal:
    """Invoice amounts issued in [start, end], from ar_deltas (an invoice's amount sits on its
    issue date's row)."""
    value = (await conn.execute(
        text("SELECT coalesce(sum(invoiced), 0) FROM ar_deltas WHERE currency = :cur AND eff_date BETWEEN :f AND :t"),
        {"cur": currency, "f": start, "t": end},
    )).scalar_one()
    return Decimal(value)


async def recovery_items(conn: AsyncConnection, currency: str, start: date, end: date) -> list[RecoveryItem]:
    """Per invoice past due on some day of [start, end] (first such day p = greatest(start,
    due_date + 1)): balance at the start of p and cash applied in [p, end]."""
    rows = await conn.execute(
        text(
            "WITH past_due AS ("
            "  SELECT invoice_id, customer_id, amount, greatest(CAST(:f AS date), due_date + 1) AS past_due_from"
            "  FROM invoices WHERE currency = :cur AND greatest(CAST(:f AS date), due_date + 1) <= :t"
            "    AND issue_date < greatest(CAST(:f AS date), due_date + 1))"
            " SELECT p.invoice_id, p.customer_id, p.past_due_from,"
            "   p.amount"
            "   - coalesce((SELECT sum(m.amount) FROM invoice_movements m"
            "               WHERE m.invoice_id = p.invoice_id AND m.on_date < p.past_due_from), 0)"
            "   AS past_due_balance,"
            "   coalesce((SELECT sum(m.amount) FROM invoice_movements m WHERE m.invoice_id = p.invoice_id"
            "             AND m.kind = 'cash' AND m.on_date BETWEEN p.past_due_from AND :t), 0) AS collected"
            " FROM past_due p"
            " ORDER BY p.invoice_id"
        ),
        {"cur": currency, "f": start, "t": end},
    )
    return [RecoveryItem(r.invoice_id, r.customer_id, r.past_due_from, Decimal(r.past_due_balance),
                         Decimal(r.collected)) for r in rows]


async def promises(conn: AsyncConnection, currency: str, made_by: date) -> list[PromiseFact]:
    rows = await conn.execute(
        text("SELECT promise_id, customer_id, currency, amount, promise_date, made_on FROM promises"
             " WHERE currency = :cur AND made_on <= :d ORDER BY promise_id"),
        {"cur": currency, "d": made_by},
    )
    return [PromiseFact(r.promise_id, r.customer_id, r.currency, Decimal(r.amount), r.promise_date, r.made_on)
            for r in rows]


async def promise_outcomes(conn: AsyncConnection, currency: str, dated_by: date) -> list[PromiseOutcomeFact]:
    rows = await conn.execute(
        text("SELECT promise_id, outcome, amount, paid_amount, shortfall, outcome_on FROM promise_outcomes"
             " WHERE currency = :cur AND outcome_on <= :d ORDER BY event_id"),
        {"cur": currency, "d": dated_by},
    )
    return [PromiseOutcomeFact(r.promise_id, r.outcome, Decimal(r.amount), Decimal(r.paid_amount),
                               Decimal(r.shortfall), r.outcome_on) for r in rows]


async def cash_totals(conn: AsyncConnection, currency: str, as_of: date) -> dict[str, Decimal]:
    """Cash received with value date on or before as_of net of payments returned and unapplied cash
    refunded by then, and
    what of it was applied by then net of unapplications."""
    row = (await conn.execute(
        text(
            "SELECT (SELECT coalesce(sum(amount), 0) FROM payments WHERE currency = :cur AND value_date <= :d)"
            "     - (SELECT coalesce(sum(amount), 0) FROM payment_returns WHERE currency = :cur AND returned_on <= :d)"
            "     - (SELECT coalesce(sum(amount), 0) FROM refunds WHERE currency = :cur AND refunded_on <= :d)"
            "   AS received,"
            " (SELECT coalesce(sum(a.amount), 0) FROM applications a JOIN payments p USING (payment_id)"
            "  WHERE p.currency = :cur AND p.value_date <= :d AND a.value_date <= :d)"
            " - (SELECT coalesce(sum(u.amount), 0) FROM unapplications u JOIN payments p USING (payment_id)"
            "  WHERE p.currency = :cur AND p.value_date <= :d AND u.unapplied_on <= :d) AS applied"
        ),
        {"cur": currency, "d": as_of},
    )).one()
    return {"received": Decimal(row.received), "applied": Decimal(row.applied)}


async def unapplied_cash(conn: AsyncConnection, currency: str, as_of: date, customer_ids: list[str]) -> Decimal:
    """The customers' cash received by as_of (net of returns and refunds) not applied by then (net
    of unapplications): a statement's unapplied cash."""
    row = (await conn.execute(
        text(
            "SELECT (SELECT coalesce(sum(amount), 0) FROM payments WHERE currency = :cur AND value_date <= :d"
            "        AND customer_id = ANY(CAST(:c AS text[])))"
            "     - (SELECT coalesce(sum(amount), 0) FROM payment_returns WHERE currency = :cur AND returned_on <= :d"
            "        AND customer_id = ANY(CAST(:c AS text[])))"
            "     - (SELECT coalesce(sum(amount), 0) FROM refunds WHERE currency = :cur AND refunded_on <= :d"
            "        AND customer_id = ANY(CAST(:c AS text[])))"
            "     - (SELECT coalesce(sum(a.amount), 0) FROM applications a JOIN payments p USING (payment_id)"
            "        WHERE p.currency = :cur AND p.value_date <= :d AND a.value_date <= :d"
            "        AND p.customer_id = ANY(CAST(:c AS text[])))"
            "     + (SELECT coalesce(sum(u.amount), 0) FROM unapplications u JOIN payments p USING (payment_id)"
            "        WHERE p.currency = :cur AND p.value_date <= :d AND u.unapplied_on <= :d"
            "        AND p.customer_id = ANY(CAST(:c AS text[]))) AS unapplied"
        ),
        {"cur": currency, "d": as_of, "c": list(customer_ids)},
    )).one()
    return Decimal(row.unapplied)


async def open_disputes(conn: AsyncConnection, currency: str, as_of: date) -> dict[str, tuple[int, Decimal]]:
    """Disputes and deductions opened on or before as_of and not resolved by then, per kind."""
    rows = await conn.execute(
        text(
            "SELECT d.kind, count(*) AS n, coalesce(sum(d.amount), 0) AS amount FROM disputes d"
            " LEFT JOIN dispute_resolutions r ON r.dispute_id = d.dispute_id AND r.resolved_on <= :d"
            " WHERE d.currency = :cur AND d.opened_on <= :d AND r.dispute_id IS NULL GROUP BY d.kind"
        ),
        {"cur": currency, "d": as_of},
    )
    found = {r.kind: (int(r.n), Decimal(r.amount)) for r in rows}
    return {kind: found.get(kind, (0, Decimal(0))) for kind in ("dispute", "deduction")}


async def awaiting_invoice(conn: AsyncConnection, currency: str, as_of: date) -> dict[str, tuple[int, Decimal]]:
    """Credits and applications dated on or before as_of whose InvoiceIssued has not arrived
    (or is issued after as_of): they are in no balance yet, so a reconciliation shows them."""
    def unmatched(kind: str, table: str, on: str) -> str:
        return (f"SELECT '{kind}' AS kind, count(*) AS n, coalesce(sum(x.amount), 0) AS amount FROM {table} x"
                " LEFT JOIN invoices i ON i.invoice_id = x.invoice_id AND i.issue_date <= :d"
                f" WHERE x.currency = :cur AND x.{on} <= :d AND i.invoice_id IS NULL")
    rows = await conn.execute(
        text(" UNION ALL ".join((unmatched("credits", "credits", "issue_date"),
                                 unmatched("applications", "applications", "value_date"),
                                 unmatched("adjustments", "adjustments", "value_date"),
                                 unmatched("write_offs", "write_offs", "approved_on")))),
        {"cur": currency, "d": as_of},
    )
    return {r.kind: (int(r.n), Decimal(r.amount)) for r in rows}


async def parent_changes(conn: AsyncConnection, as_of: date) -> list[ParentChange]:
    """Every parent change effective on or before as_of (domain/hierarchy.py picks the latest)."""
    rows = await conn.execute(text("SELECT customer_id, parent_customer_id, effective_on, stream_version"
                                   " FROM customer_parents WHERE effective_on <= :d"), {"d": as_of})
    return [ParentChange(r.customer_id, r.parent_customer_id, r.effective_on, r.stream_version) for r in rows]


async def customer_names(conn: AsyncConnection, customer_ids: Iterable[str]) -> dict[str, str]:
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    rows = await conn.execute(text("SELECT customer_id, name FROM customers WHERE customer_id = ANY(:ids)"),
                              {"ids": ids})
    return {r.customer_id: r.name for r in rows}
