"""SQL for collections' read models: receivables facts and promises."""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, Iterable, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# Serialises promise evaluations (API, CLI, consumer) across replicas: a second evaluation
# waits, then sees the first one's outcomes and decides nothing twice.
EVALUATION_LOCK = "SELECT pg_advisory_xact_lock(hashtext('ledgerline:collections:promise-evaluation'))"


_INSERT_INVOICE = text(
    "INSERT INTO invoices (invoice_id, customer_id, currency, total_amount, issue_date, due_date,"
    " invoice_number) VALUES (:i, :c, :cur, :t, :issue, :due, :n) ON CONFLICT (invoice_id) DO NOTHING")
_INSERT_PAYMENT_APPLIED = (
    "INSERT INTO payments_applied (event_id, payment_id, invoice_id, customer_id, currency, amount,"
    " value_date) VALUES (:e, :p, :i, :c, :cur, :a, :d) ON CONFLICT (event_id) DO NOTHING")
_INSERT_CREDIT_MEMO = text(
    "INSERT INTO credit_memos (credit_memo_id, invoice_id, amount, issue_date)"
    " VALUES (:m, :i, :a, :d) ON CONFLICT (credit_memo_id) DO NOTHING")


def invoice_row(*, invoice_id: str, customer_id: str, currency: str, total_amount: Decimal, issue_date: date,
                due_date: date, invoice_number: str | None = None) -> dict[str, Any]:
    return {"i": invoice_id, "c": customer_id, "cur": currency, "t": total_amount, "issue": issue_date,
            "due": due_date, "n": invoice_number}


def payment_applied_row(*, event_id: str, payment_id: str, invoice_id: str, customer_id: str, currency: str,
                        amount: Decimal, value_date: date) -> dict[str, Any]:
    return {"e": event_id, "p": payment_id, "i": invoice_id, "c": customer_id, "cur": currency, "a": amount,
            "d": value_date}


def credit_memo_row(*, credit_memo_id: str, invoice_id: str, amount: Decimal, issue_date: date) -> dict[str, Any]:
    return {"m": credit_memo_id, "i": invoice_id, "a": amount, "d": issue_date}


async def record_invoice(conn: AsyncConnection, *, invoice_id: str, customer_id: str, currency: str,
                         total_amount: Decimal, issue_date: date, due_date: date,
                         invoice_number: str | None = None) -> None:
    await conn.execute(_INSERT_INVOICE, invoice_row(
        invoice_id=invoice_id, customer_id=customer_id, currency=currency, total_amount=total_amount,
        issue_date=issue_date, due_date=due_date, invoice_number=invoice_number))


async def record_payment_applied(conn: AsyncConnection, *, event_id: str, payment_id: str, invoice_id: str,
                                 customer_id: str, currency: str, amount: Decimal, value_date: date) -> bool:
    inserted = (await conn.execute(text(_INSERT_PAYMENT_APPLIED + " RETURNING 1"), payment_applied_row(
        event_id=event_id, payment_id=payment_id, invoice_id=invoice_id, customer_id=customer_id,
        currency=currency, amount=amount, value_date=value_date))).first()
    return inserted is not None


async def record_credit_memo(conn: AsyncConnection, *, credit_memo_id: str, invoice_id: str, amount: Decimal,
                             issue_date: date) -> None:
    await conn.execute(_INSERT_CREDIT_MEMO, credit_memo_row(credit_memo_id=credit_memo_id, invoice_id=invoice_id,
                                                            amount=amount, issue_date=issue_date))


# The batch forms: one multi-row statement per table (arrays unnested), keyed inserts that read
# nothing, rows sorted by key.
_INSERT_INVOICES = text(
    "INSERT INTO invoices (invoice_id, customer_id, currency, total_amount, issue_date, due_date, invoice_number)"
    " SELECT * FROM unnest(CAST(:i AS text[]), CAST(:c AS text[]), CAST(:cur AS text[]), CAST(:t AS numeric[]),"
    " CAST(:issue AS date[]), CAST(:due AS date[]), CAST(:n AS text[])) AS r ORDER BY 1"
    " ON CONFLICT (invoice_id) DO NOTHING")
_INSERT_CREDIT_MEMOS = text(
    "INSERT INTO credit_memos (credit_memo_id, invoice_id, amount, issue_date)"
    " SELECT * FROM unnest(CAST(:m AS text[]), CAST(:i AS text[]), CAST(:a AS numeric[]), CAST(:d AS date[])) AS r"
    " ORDER BY 1 ON CONFLICT (credit_memo_id) DO NOTHING")
_INSERT_PAYMENTS_APPLIED = text(
    "INSERT INTO payments_applied (event_id, payment_id, invoice_id, customer_id, currency, amount, value_date)"
    " SELECT * FROM unnest(CAST(:e AS text[]), CAST(:p AS text[]), CAST(:i AS text[]), CAST(:c AS text[]),"
    " CAST(:cur AS text[]), CAST(:a AS numeric[]), CAST(:d AS date[])) AS r ORDER BY 1"
    " ON CONFLICT (event_id) DO NOTHING")


def columns(rows: Sequence[dict[str, Any]], key: str) -> dict[str, list[Any]]:
    """Row dicts (all with the same keys) as one list per key, the first row of each `key` only
    (what inserting them one by one with ON CONFLICT DO NOTHING keeps): a statement's arrays."""
    first: dict[Any, dict[str, Any]] = {}
    for row in rows:
        first.setdefault(row[key], row)
    kept = list(first.values())
    return {name: [row[name] for row in kept] for name in kept[0]}


async def record_receivables_facts(conn: AsyncConnection, *, invoices: Sequence[dict[str, Any]],
                                   credit_memos: Sequence[dict[str, Any]],
                                   payments: Sequence[dict[str, Any]]) -> None:
    """invoice_row()s, credit_memo_row()s and payment_applied_row()s, one statement per table
    (keyed inserts into three tables that read nothing, so the three commute)."""
    if invoices:
        await conn.execute(_INSERT_INVOICES, columns(invoices, "i"))
    if credit_memos:
        await conn.execute(_INSERT_CREDIT_MEMOS, columns(credit_memos, "m"))
    if payments:
        await conn.execute(_INSERT_PAYMENTS_APPLIED, columns(payments, "e"))


async def promised_invoices(conn: AsyncConnection, invoice_ids: Iterable[str]) -> set[str]:
    """Those of the invoices that some promise to pay names (whatever its status)."""
    ids = sorted(set(invoice_ids))
    if not ids:
        return set()
    rows = await conn.execute(text("SELECT DISTINCT invoice_id FROM promise_invoices"
                                   " WHERE invoice_id = ANY(CAST(:ids AS text[]))"), {"ids": ids})
    return {r[0] for r in rows}


async def invoices_with_open_balance(conn: AsyncConnection, invoice_ids: Sequence[str],
                                     at_start_of: date) -> dict[str, dict[str, Any]]:
    """The invoices with what was owed on them at the start of a day: payments valued and
    credit memos issued before it are taken off."""
    rows = await conn.execute(
        text("SELECT i.invoice_id, i.customer_id, i.currency, i.total_amount, i.total_amount"
             " - coalesce((SELECT sum(amount) FROM payments_applied p"
             "             WHERE p.invoice_id = i.invoice_id AND p.value_date < :d), 0)"
             " - coalesce((SELECT sum(amount) FROM credit_memos m"
             "             WHERE m.invoice_id = i.invoice_id AND m.issue_date < :d), 0) AS open_balance"
             " FROM invoices i WHERE i.invoice_id = ANY(:ids)"),
        {"ids": list(invoice_ids), "d": at_start_of},
    )
    return {r.invoice_id: dict(r._mapping) for r in rows}


async def payments_on(conn: AsyncConnection, invoice_ids: Sequence[str]) -> list[tuple[Decimal, date]]:
    rows = await conn.execute(
        text("SELECT amount, value_date FROM payments_applied WHERE invoice_id = ANY(:ids) ORDER BY value_date"),
        {"ids": list(invoice_ids)},
    )
    return [(Decimal(r.amount), r.value_date) for r in rows]


async def insert_promise(conn: AsyncConnection, row: dict[str, Any], invoice_ids: Sequence[str]) -> None:
    await conn.execute(
        text("INSERT INTO promises (promise_id, customer_id, currency, amount, promise_date, made_on, grace_days,"
             " status, version) VALUES (:promise_id, :customer_id, :currency, :amount, :promise_date, :made_on,"
             " :grace_days, 'open', :version)"),
        row,
    )
    await conn.execute(
        text("INSERT INTO promise_invoices (promise_id, invoice_id, position) VALUES (:p, :i, :n)"),
        [{"p": row["promise_id"], "i": invoice_id, "n": n} for n, invoice_id in enumerate(invoice_ids)],
    )


async def record_outcome(conn: AsyncConnection, *, promise_id: str, status: str, paid_amount: Decimal,
                         shortfall: Decimal | None, kept_on: date | None, broken_on: date | None,
                         version: int) -> None:
    await conn.execute(
        text("UPDATE promises SET status = :s, paid_amount = :paid, shortfall = :short, kept_on = :kept,"
             " broken_on = :broken, version = :v WHERE promise_id = :p"),
        {"s": status, "paid": paid_amount, "short": shortfall, "kept": kept_on, "broken": broken_on,
         "v": version, "p": promise_id},
    )


async def open_promise_ids(conn: AsyncConnection, *, made_by: date) -> list[str]:
    rows = await conn.execute(
        text("SELECT promise_id FROM promises WHERE status = 'open' AND made_on <= :d ORDER BY created_seq"),
        {"d": made_by},
    )
    return [r.promise_id for r in rows]


async def open_promise_ids_for_invoice(conn: AsyncConnection, invoice_id: str) -> list[str]:
    rows = await conn.execute(
        text("SELECT p.promise_id FROM promises p JOIN promise_invoices pi USING (promise_id)"
             " WHERE pi.invoice_id = :i AND p.status = 'open' ORDER BY p.created_seq"),
        {"i": invoice_id},
    )
    return [r.promise_id for r in rows]


_PROMISE_SELECT = (
    "SELECT p.*, (SELECT array_agg(pi.invoice_id ORDER BY pi.position) FROM promise_invoices pi"
    " WHERE pi.promise_id = p.promise_id) AS invoice_ids FROM promises p"
)


async def get_promise(conn: AsyncConnection, promise_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(text(f"{_PROMISE_SELECT} WHERE p.promise_id = :p"),
                              {"p": promise_id})).mappings().first()
    return dict(row) if row else None


async def get_promises(conn: AsyncConnection, promise_ids: Sequence[str]) -> list[dict[str, Any]]:
    rows = await conn.execute(text(f"{_PROMISE_SELECT} WHERE p.promise_id = ANY(:ids) ORDER BY p.created_seq"),
                              {"ids": list(promise_ids)})
    return [dict(r) for r in rows.mappings()]


async def list_promises(conn: AsyncConnection, *, customer_id: str | None, status: str | None,
                        after: int | None, limit: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(f"{_PROMISE_SELECT} WHERE (CAST(:c AS text) IS NULL OR p.customer_id = :c)"
             " AND (CAST(:s AS text) IS NULL OR p.status = :s)"
             " AND (CAST(:after AS bigint) IS NULL OR p.created_seq > :after)"
             " ORDER BY p.created_seq LIMIT :limit"),
        {"c": customer_id, "s": status, "after": after, "limit": limit},
    )
    return [dict(r) for r in rows.mappings()]
