"""SQL for cash_application's read models: open items and payments."""
from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import execute_arrays, execute_many

from services.cash_application.domain.model import UNIDENTIFIED_CUSTOMER, OpenItem

# ---------------------------------------------------------------- open items

_OPEN_BALANCE = "(total_amount - credited_amount - applied_amount - written_off_amount - adjusted_amount)"
_OPEN_ITEM_SELECT = f"SELECT *, {_OPEN_BALANCE} AS open_balance FROM open_items"


async def lock_open_items(conn: AsyncConnection, customer_ids: Sequence[str], invoice_ids: Sequence[str],
                          invoice_numbers: Sequence[str]) -> list[OpenItem]:
    """The customers' (a payer's family's) issued invoices named by id or number, locked FOR
    UPDATE until commit.

    Locks are taken in invoice_id order (PostgreSQL locks rows after the sort), so two payments
    naming the same invoices queue up instead of deadlocking; the one that waits then reads the
    balance the first one left."""
    if not invoice_ids and not invoice_numbers:
        return []
    rows = await conn.execute(
        text(f"{_OPEN_ITEM_SELECT} WHERE customer_id = ANY(CAST(:c AS text[])) AND total_amount IS NOT NULL"
             " AND (invoice_id = ANY(CAST(:ids AS text[])) OR invoice_number = ANY(CAST(:nums AS text[])))"
             " ORDER BY invoice_id FOR UPDATE"),
        {"c": list(customer_ids), "ids": list(invoice_ids), "nums": list(invoice_numbers)},
    )
    return [open_item_of(r) for r in rows]


async def lock_customer_open_items(conn: AsyncConnection, customer_ids: Sequence[str]) -> list[Any]:
    """Every open issued invoice of the customers (a payer's family), locked FOR UPDATE in
    invoice_id order: what a payment without remittance is matched against."""
    rows = await conn.execute(
        text(f"{_OPEN_ITEM_SELECT} WHERE customer_id = ANY(CAST(:c AS text[])) AND total_amount IS NOT NULL"
             f" AND {_OPEN_BALANCE} > 0 ORDER BY invoice_id FOR UPDATE"),
        {"c": list(customer_ids)},
    )
    return list(rows)


async def get_open_item(conn: AsyncConnection, invoice_id: str) -> dict[str, Any] | None:
    """An issued invoice's open item (None until its InvoiceIssued has arrived)."""
    row = (await conn.execute(text(f"{_OPEN_ITEM_SELECT} WHERE invoice_id = :i AND total_amount IS NOT NULL"),
                              {"i": invoice_id})).mappings().first()
    return dict(row) if row else None


async def list_open_items(conn: AsyncConnection, *, customer_id: str | None, status: str | None,
                          after: tuple[date, str] | None, limit: int) -> list[dict[str, Any]]:
    """Issued open items, oldest due date first (the order a collector works them)."""
    rows = await conn.execute(
        text(f"{_OPEN_ITEM_SELECT} WHERE total_amount IS NOT NULL"
             " AND (CAST(:c AS text) IS NULL OR customer_id = :c)"
             f" AND (CAST(:status AS text) IS NULL OR (:status = 'open' AND {_OPEN_BALANCE} > 0)"
             f"      OR (:status = 'closed' AND {_OPEN_BALANCE} <= 0))"
             " AND (CAST(:after_due AS date) IS NULL OR (due_date, invoice_id) > (CAST(:after_due AS date), :after_id))"
             " ORDER BY due_date, invoice_id LIMIT :limit"),
        {"c": customer_id, "status": status, "after_due": after[0] if after else None,
         "after_id": after[1] if after else None, "limit": limit},
    )
    return [dict(r) for r in rows.mappings()]


_UPSERT_INVOICE = text(
    "INSERT INTO open_items (invoice_id, invoice_number, customer_id, currency, total_amount, issue_date,"
    " due_date, issued_seen_at) VALUES (:i, :n, :c, :cur, :t, :issue, :due, now())"
    " ON CONFLICT (invoice_id) DO UPDATE SET invoice_number = excluded.invoice_number,"
    " customer_id = excluded.customer_id, currency = excluded.currency,"
    " total_amount = excluded.total_amount, issue_date = excluded.issue_date,"
    " due_date = excluded.due_date,"
    " issued_seen_at = coalesce(open_items.issued_seen_at, excluded.issued_seen_at)")
# The credit as a fact keyed by credit_memo_id, added to the open item only when the fact is new
# (one statement, so a batch of them goes in one executemany). `credited_amount + excluded` runs
# on the latest row version under its lock, so it composes with a payment that holds the row
# FOR UPDATE.
_RECORD_CREDIT = text(
    "WITH fact AS (INSERT INTO open_item_credits (credit_memo_id, invoice_id, customer_id, currency, amount,"
    " issue_date, reason) VALUES (:m, :i, :c, :cur, :a, :d, :r) ON CONFLICT (credit_memo_id) DO NOTHING"
    " RETURNING invoice_id, customer_id, currency, amount),"
    " item AS (INSERT INTO open_items (invoice_id, customer_id, currency, credited_amount)"
    " SELECT invoice_id, customer_id, currency, amount FROM fact ON CONFLICT (invoice_id) DO UPDATE"
    " SET credited_amount = open_items.credited_amount + excluded.credited_amount RETURNING 1)"
    " SELECT count(*) FROM fact")
_UPSERT_CUSTOMER = text(
    "INSERT INTO customers (customer_id, name, currency) VALUES (:c, :n, :cur)"
    " ON CONFLICT (customer_id) DO UPDATE SET name = excluded.name, currency = excluded.currency")


def invoice_row(*, invoice_id: str, invoice_number: str, customer_id: str, currency: str, total_amount: Decimal,
                issue_date: date, due_date: date) -> dict[str, Any]:
    return {"i": invoice_id, "n": invoice_number, "c": customer_id, "cur": currency, "t": total_amount,
            "issue": issue_date, "due": due_date}


def credit_row(*, credit_memo_id: str, invoice_id: str, customer_id: str, currency: str, amount: Decimal,
               issue_date: date, reason: str) -> dict[str, Any]:
    return {"m": credit_memo_id, "i": invoice_id, "c": customer_id, "cur": currency, "a": amount, "d": issue_date,
            "r": reason}


def customer_row(*, customer_id: str, name: str, currency: str) -> dict[str, Any]:
    return {"c": customer_id, "n": name, "cur": currency}


async def record_invoice_issued(conn: AsyncConnection, *, invoice_id: str, invoice_number: str, customer_id: str,
                                currency: str, total_amount: Decimal, issue_date: date, due_date: date) -> None:
    """Upsert: the row may already hold credits (or applications) that arrived first."""
    await conn.execute(_UPSERT_INVOICE, invoice_row(
        invoice_id=invoice_id, invoice_number=invoice_number, customer_id=customer_id, currency=currency,
        total_amount=total_amount, issue_date=issue_date, due_date=due_date))


async def record_credit_memo(conn: AsyncConnection, *, credit_memo_id: str, invoice_id: str, customer_id: str,
                             currency: str, amount: Decimal, issue_date: date, reason: str) -> bool:
    """Store the credit as a fact keyed by credit_memo_id; add it to the open item once.
    Returns False when this credit memo was already recorded."""
    return bool((await conn.execute(_RECORD_CREDIT, credit_row(
        credit_memo_id=credit_memo_id, invoice_id=invoice_id, customer_id=customer_id, currency=currency,
        amount=amount, issue_date=issue_date, reason=reason))).scalar_one())


# The batch forms: one multi-row statement per table (arrays unnested), rows sorted by key so
# concurrent writers lock open items in one order. A key appears once per statement (an upsert
# cannot touch a row twice): record_invoicing_facts keeps what applying the rows one by one
# would leave.
_UPSERT_INVOICES = text(
    "INSERT INTO open_items (invoice_id, invoice_number, customer_id, currency, total_amount, issue_date,"
    " due_date, issued_seen_at) SELECT r.i, r.n, r.c, r.cur, r.t, r.issue, r.due, now()"
    " FROM unnest(CAST(:i AS text[]), CAST(:n AS text[]), CAST(:c AS text[]), CAST(:cur AS text[]),"
    " CAST(:t AS numeric[]), CAST(:issue AS date[]), CAST(:due AS date[])) AS r(i, n, c, cur, t, issue, due)"
    " ORDER BY r.i"
    " ON CONFLICT (invoice_id) DO UPDATE SET invoice_number = excluded.invoice_number,"
    " customer_id = excluded.customer_id, currency = excluded.currency,"
    " total_amount = excluded.total_amount, issue_date = excluded.issue_date,"
    " due_date = excluded.due_date,"
    " issued_seen_at = coalesce(open_items.issued_seen_at, excluded.issued_seen_at)")
# New credit facts, then each invoice's new credits added in one upsert (its customer and
# currency taken from its first new credit, as the first one-by-one insert would).
_RECORD_CREDITS = text(
    "WITH r AS (SELECT * FROM unnest(CAST(:m AS text[]), CAST(:i AS text[]), CAST(:c AS text[]),"
    " CAST(:cur AS text[]), CAST(:a AS numeric[]), CAST(:d AS date[]), CAST(:r AS text[]))"
    " WITH ORDINALITY AS r(m, i, c, cur, a, d, reason, ord)),"
    " fact AS (INSERT INTO open_item_credits (credit_memo_id, invoice_id, customer_id, currency, amount,"
    " issue_date, reason) SELECT m, i, c, cur, a, d, reason FROM r ORDER BY m"
    " ON CONFLICT (credit_memo_id) DO NOTHING RETURNING credit_memo_id),"
    " item AS (INSERT INTO open_items (invoice_id, customer_id, currency, credited_amount)"
    " SELECT r.i, (array_agg(r.c ORDER BY r.ord))[1], (array_agg(r.cur ORDER BY r.ord))[1], sum(r.a)"
    " FROM r JOIN fact ON fact.credit_memo_id = r.m GROUP BY r.i ORDER BY r.i"
    " ON CONFLICT (invoice_id) DO UPDATE"
    " SET credited_amount = open_items.credited_amount + excluded.credited_amount RETURNING 1)"
    " SELECT count(*) FROM fact")
_UPSERT_CUSTOMERS = text(
    "INSERT INTO customers (customer_id, name, currency) SELECT r.c, r.n, r.cur"
    " FROM unnest(CAST(:c AS text[]), CAST(:n AS text[]), CAST(:cur AS text[])) AS r(c, n, cur) ORDER BY r.c"
    " ON CONFLICT (customer_id) DO UPDATE SET name = excluded.name, currency = excluded.currency")


def _columns(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Row dicts (all with the same keys) as one list per key: the arrays a statement unnests."""
    return {key: [row[key] for row in rows] for key in rows[0]}


async def record_invoicing_facts(conn: AsyncConnection, *, invoices: Sequence[dict[str, Any]],
                                 credits: Sequence[dict[str, Any]], customers: Sequence[dict[str, Any]]) -> None:
    """invoice_row()s, credit_row()s and customer_row()s in order, one statement per table.
    Invoices and credits touch different columns of an open item, so the two commute; within
    each, the result is that of applying the rows one by one: an invoice or customer upserted
    twice keeps its last row, a credit memo recorded twice counts once (its first row)."""
    if invoices:
        last = list({row["i"]: row for row in invoices}.values())
        await conn.execute(_UPSERT_INVOICES, _columns(last))
    if credits:
        first: dict[str, dict[str, Any]] = {}
        for row in credits:
            first.setdefault(row["m"], row)
        await conn.execute(_RECORD_CREDITS, _columns(list(first.values())))
    if customers:
        last = list({row["c"]: row for row in customers}.values())
        await conn.execute(_UPSERT_CUSTOMERS, _columns(last))


async def record_invoice_adjustment(conn: AsyncConnection, *, adjustment_id: str, invoice_id: str, customer_id: str,
                                    currency: str, kind: str, lowers_by: Decimal, adjusted_on: date,
                                    reason: str) -> bool:
    """Store invoicing's adjustment or void as a fact keyed by its id and add it to the open item
    once (lowers_by is signed: a debit adjustment raises the balance). Returns whether it was new."""
    inserted = (await conn.execute(
        text("INSERT INTO open_item_adjustments (adjustment_id, invoice_id, customer_id, currency, kind, amount,"
             " adjusted_on, reason) VALUES (:id, :i, :c, :cur, :k, :a, :d, :r)"
             " ON CONFLICT (adjustment_id) DO NOTHING RETURNING 1"),
        {"id": adjustment_id, "i": invoice_id, "c": customer_id, "cur": currency, "k": kind, "a": lowers_by,
         "d": adjusted_on, "r": reason},
    )).first()
    if inserted is None:
        return False
    await conn.execute(
        text("INSERT INTO open_items (invoice_id, customer_id, currency, adjusted_amount) VALUES (:i, :c, :cur, :a)"
             " ON CONFLICT (invoice_id) DO UPDATE SET adjusted_amount = open_items.adjusted_amount + excluded.adjusted_amount"),
        {"i": invoice_id, "c": customer_id, "cur": currency, "a": lowers_by},
    )
    return True


async def lock_open_items_by_id(conn: AsyncConnection, invoice_ids: Sequence[str]) -> dict[str, OpenItem]:
    """Issued invoices by id, locked FOR UPDATE in invoice_id order (the same order every
    command locks in, so concurrent imports and payments queue instead of deadlocking)."""
    if not invoice_ids:
        return {}
    rows = await conn.execute(
        text(f"{_OPEN_ITEM_SELECT} WHERE invoice_id = ANY(CAST(:ids AS text[])) AND total_amount IS NOT NULL"
             " ORDER BY invoice_id FOR UPDATE"),
        {"ids": sorted(set(invoice_ids))},
    )
    return {r.invoice_id: open_item_of(r) for r in rows}


def open_item_of(r: Any) -> OpenItem:
    """An open_items row (with its open_balance) as the deciding transaction sees it."""
    return OpenItem(invoice_id=r.invoice_id, invoice_number=r.invoice_number or "", customer_id=r.customer_id,
                    currency=r.currency.strip(), open_balance=Decimal(r.open_balance))


_MATCHING_COLUMNS = (f"invoice_id, invoice_number, customer_id, currency, due_date, {_OPEN_BALANCE} AS open_balance,"
                     " reference_key")
_ITEM_KEY = "reference_key"  # stored: cash_open_item_key(invoice_number, invoice_id), migrations 0014-0015


async def without_jit(conn: AsyncConnection) -> None:
    """No JIT compilation for the rest of this transaction: the open-item reads of an import are
    planned at costs (arrays of thousands of ids, keys and variants) that would have PostgreSQL
    spend about a second compiling each, for index probes that take milliseconds."""
    await conn.execute(text("SET LOCAL jit = off"))


async def open_invoices_concerned(conn: AsyncConnection, customer_ids: Sequence[str], keys: Sequence[str],
                                  batch: int = 5_000):
    """The open issued invoices (a snapshot, not locked) of these customers, and those whose
    normalised number (cash_reference_key, migration 0011) is one of these keys, through the
    customer and key indexes: what an import's receipts can be matched against. Yields batches of
    rows (invoice_id, invoice_number, customer_id, currency, due_date, open_balance, reference_key) from a
    server-side cursor, so the event loop converts a batch at a time and answers in between."""
    if not customer_ids and not keys:
        return
    result = await conn.stream(text(
        f"SELECT {_MATCHING_COLUMNS} FROM open_items WHERE total_amount IS NOT NULL AND {_OPEN_BALANCE} > 0"
        " AND customer_id = ANY(CAST(:c AS text[]))"
        f" UNION ALL SELECT {_MATCHING_COLUMNS} FROM open_items WHERE total_amount IS NOT NULL"
        f" AND {_OPEN_BALANCE} > 0 AND {_ITEM_KEY} = ANY(CAST(:k AS text[]))"
        " AND customer_id <> ALL(CAST(:c AS text[]))"), {"c": list(customer_ids), "k": list(keys)})
    async for rows in result.partitions(batch):
        yield rows


async def open_invoices_near(conn: AsyncConnection, wanted: Sequence[tuple[str, Decimal, Decimal]]) -> list[Any]:
    """Open issued invoices one edit from some keys whose open balance lies in a range: for each
    (variant, low, high), those whose key shares the variant (a key or a form of it with one
    character deleted: keys one edit apart share one) with a balance from low to high. One GIN
    index probe per variant (migration 0011), each with its one-element array (an overlap with
    thousands of variants at once is planned as a scan of the whole table)."""
    if not wanted:
        return []
    result = await conn.execute(text(
        f"SELECT DISTINCT ON (o.invoice_id) o.* FROM unnest(CAST(:v AS text[]), CAST(:lo AS numeric[]),"
        " CAST(:hi AS numeric[])) AS q(variant, low, high)"
        f" CROSS JOIN LATERAL (SELECT {_MATCHING_COLUMNS} FROM open_items WHERE total_amount IS NOT NULL"
        f" AND cash_reference_variants({_ITEM_KEY}) && ARRAY[q.variant]"
        f" AND {_OPEN_BALANCE} BETWEEN q.low AND q.high) AS o ORDER BY o.invoice_id"),
        {"v": [w[0] for w in wanted], "lo": [w[1] for w in wanted], "hi": [w[2] for w in wanted]})
    return list(result)


async def customer_names(conn: AsyncConnection) -> dict[str, str]:
    return {r.customer_id: r.name for r in await conn.execute(text("SELECT customer_id, name FROM customers"))}


async def record_customer(conn: AsyncConnection, *, customer_id: str, name: str, currency: str) -> None:
    await conn.execute(_UPSERT_CUSTOMER, customer_row(customer_id=customer_id, name=name, currency=currency))


async def record_customer_parent(conn: AsyncConnection, *, customer_id: str, parent_customer_id: str | None) -> None:
    """The customer's parent account now (events of one customer arrive in order: one stream)."""
    if parent_customer_id is None:
        await conn.execute(text("DELETE FROM customer_parents WHERE customer_id = :c"), {"c": customer_id})
        return
    await conn.execute(
        text("INSERT INTO customer_parents (customer_id, parent_customer_id) VALUES (:c, :p)"
             " ON CONFLICT (customer_id) DO UPDATE SET parent_customer_id = excluded.parent_customer_id"),
        {"c": customer_id, "p": parent_customer_id})


async def customer_parents(conn: AsyncConnection) -> dict[str, str]:
    """child -> parent account, for the matching engine's families."""
    return {r.customer_id: r.parent_customer_id
            for r in await conn.execute(text("SELECT customer_id, parent_customer_id FROM customer_parents"))}


async def family_of(conn: AsyncConnection, customer_id: str) -> list[str]:
    """The customer and every customer below it (what it pays for), in customer_id order."""
    rows = await conn.execute(text(
        "WITH RECURSIVE down(customer_id, depth) AS (SELECT CAST(:c AS text), 0"
        "  UNION SELECT p.customer_id, down.depth + 1 FROM customer_parents p"
        "  JOIN down ON p.parent_customer_id = down.customer_id WHERE down.depth < 20)"
        " SELECT DISTINCT customer_id FROM down ORDER BY customer_id"), {"c": customer_id})
    return [r.customer_id for r in rows]


async def payer_aliases(conn: AsyncConnection) -> tuple[dict[str, str], dict[str, str]]:
    """(name aliases, account aliases) learned from manual decisions."""
    names: dict[str, str] = {}
    accounts: dict[str, str] = {}
    for r in await conn.execute(text("SELECT kind, alias, customer_id FROM payer_aliases")):
        (names if r.kind == "name" else accounts)[r.alias] = r.customer_id
    return names, accounts


async def learn_alias(conn: AsyncConnection, *, kind: str, alias: str, customer_id: str, payment_id: str) -> None:
    await conn.execute(
        text("INSERT INTO payer_aliases (kind, alias, customer_id, learned_from) VALUES (:k, :a, :c, :p)"
             " ON CONFLICT (kind, alias) DO UPDATE SET customer_id = excluded.customer_id,"
             " learned_from = excluded.learned_from, learned_at = now()"),
        {"k": kind, "a": alias, "c": customer_id, "p": payment_id})


async def get_payment_source(conn: AsyncConnection, payment_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM payment_sources WHERE payment_id = :p"),
                              {"p": payment_id})).mappings().first()
    return dict(row) if row else None


async def list_aliases(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(text("SELECT * FROM payer_aliases ORDER BY kind, alias"))
    return [dict(r) for r in rows.mappings()]


_INSERT_WRITE_OFF_SQL = (
    "INSERT INTO open_item_write_offs (write_off_id, invoice_id, customer_id, currency, amount, source,"
    " payment_id, reason_code, recorded_on, application_id) VALUES (:w, :i, :c, :cur, :a, :s, :p, :r, :d, :app)"
    " ON CONFLICT (write_off_id) DO NOTHING")
# `written_off_amount + excluded` runs on the latest row version under its lock.
_ADD_WRITTEN_OFF = text(
    "INSERT INTO open_items (invoice_id, customer_id, currency, written_off_amount) VALUES (:i, :c, :cur, :a)"
    " ON CONFLICT (invoice_id) DO UPDATE SET written_off_amount = open_items.written_off_amount"
    " + excluded.written_off_amount")


def write_off_row(*, write_off_id: str, invoice_id: str, customer_id: str, currency: str, amount: Decimal,
                  source: str, payment_id: str | None, reason_code: str | None, recorded_on: date,
                  application_id: str | None = None) -> dict[str, Any]:
    """application_id: the payment's application a small-balance write-off belongs to."""
    return {"w": write_off_id, "i": invoice_id, "c": customer_id, "cur": currency, "a": amount, "s": source,
            "p": payment_id, "r": reason_code, "d": recorded_on, "app": application_id}


async def record_write_off(conn: AsyncConnection, **fields: Any) -> bool:
    """Store the write-off once (keyed) and lower the invoice's open balance by it."""
    row = write_off_row(**fields)
    inserted = (await conn.execute(text(_INSERT_WRITE_OFF_SQL + " RETURNING 1"), row)).first()
    if inserted is None:
        return False
    await conn.execute(_ADD_WRITTEN_OFF, {"i": row["i"], "c": row["c"], "cur": row["cur"], "a": row["a"]})
    if row["p"]:
        await conn.execute(text("UPDATE payments SET written_off_amount = written_off_amount + :a WHERE payment_id = :p"),
                           {"a": row["a"], "p": row["p"]})
    return True


async def reverse_write_off(conn: AsyncConnection, *, write_off_id: str, on: date, reason: str) -> bool:
    """Mark the write-off reversed (once) and give its amount back to the invoice's open balance
    and take it off the payment's written-off total. Returns False when already reversed."""
    row = (await conn.execute(
        text("UPDATE open_item_write_offs SET reversed_on = :d, reversal_reason = :r"
             " WHERE write_off_id = :w AND reversed_on IS NULL RETURNING invoice_id, payment_id, amount"),
        {"d": on, "r": reason, "w": write_off_id})).first()
    if row is None:
        return False
    await conn.execute(text("UPDATE open_items SET written_off_amount = written_off_amount - :a WHERE invoice_id = :i"),
                       {"a": row.amount, "i": row.invoice_id})
    if row.payment_id:
        await conn.execute(text("UPDATE payments SET written_off_amount = written_off_amount - :a"
                                " WHERE payment_id = :p"), {"a": row.amount, "p": row.payment_id})
    return True


async def insert_write_off_rows(conn: AsyncConnection, rows: list[dict[str, Any]],
                                by_invoice: dict[str, tuple[str, str, Decimal]]) -> None:
    """Small-balance write-offs of payments received in this transaction (their totals are in
    the payment rows); by_invoice: invoice -> (customer, currency, total written off)."""
    if not rows:
        return
    await execute_many(conn, _INSERT_WRITE_OFF_SQL, rows)
    await execute_many(conn, _ADD_WRITTEN_OFF.text, [{"i": i, "c": c, "cur": cur, "a": a}
                                                     for i, (c, cur, a) in sorted(by_invoice.items())])


_ADD_APPLIED = text("UPDATE open_items SET applied_amount = applied_amount + :a WHERE invoice_id = :i")


async def add_applied_to_open_item(conn: AsyncConnection, invoice_id: str, amount: Decimal) -> None:
    await conn.execute(_ADD_APPLIED, {"a": amount, "i": invoice_id})


# ---------------------------------------------------------------- payments

_INSERT_PAYMENT = text(
    "INSERT INTO payments (payment_id, customer_id, currency, amount, value_date, method, reference, version,"
    " applied_amount, written_off_amount, unapplied_reason)"
    " VALUES (:p, :c, :cur, :a, :d, :m, :r, :v, :applied, :written_off, :reason) ON CONFLICT (payment_id) DO NOTHING")


def payment_row(*, payment_id: str, customer_id: str, currency: str, amount: Decimal, value_date: date, method: str,
                reference: str | None, version: int) -> dict[str, Any]:
    return {"p": payment_id, "c": customer_id, "cur": currency, "a": amount, "d": value_date, "m": method,
            "r": reference, "v": version, "applied": Decimal(0), "written_off": Decimal(0), "reason": None}


async def insert_payment(conn: AsyncConnection, **fields: Any) -> None:
    await conn.execute(_INSERT_PAYMENT, payment_row(**fields))


_INSERT_PAYMENTS = (
    "INSERT INTO payments (payment_id, customer_id, currency, amount, value_date, method, reference, version,"
    " applied_amount, written_off_amount, unapplied_reason)"
    " SELECT * FROM unnest(CAST(:p AS text[]), CAST(:c AS text[]), CAST(:cur AS text[]), CAST(:a AS numeric[]),"
    " CAST(:d AS date[]), CAST(:m AS text[]), CAST(:r AS text[]), CAST(:v AS integer[]), CAST(:applied AS numeric[]),"
    " CAST(:written_off AS numeric[]), CAST(:reason AS text[])) ON CONFLICT (payment_id) DO NOTHING")


async def insert_payment_rows(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Payments received in this transaction, each with its applied and written-off totals: one
    statement for them all (shared.db.execute_arrays)."""
    await execute_arrays(conn, _INSERT_PAYMENTS, rows)


_INSERT_APPLICATION_SQL = (
    "INSERT INTO payment_applications (event_id, payment_id, invoice_id, customer_id, currency, amount,"
    " value_date, rule, confidence, stream_version, application_id)"
    " VALUES (:e, :p, :i, :c, :cur, :a, :d, :rule, :conf, :v, :app) ON CONFLICT (event_id) DO NOTHING")


def application_row(*, event_id: Any, payment_id: str, invoice_id: str, customer_id: str, currency: str,
                    amount: Decimal, value_date: date, rule: str, confidence: Decimal, stream_version: int,
                    application_id: str) -> dict[str, Any]:
    return {"e": event_id, "p": payment_id, "i": invoice_id, "c": customer_id, "cur": currency, "a": amount,
            "d": value_date, "rule": rule, "conf": confidence, "v": stream_version, "app": application_id}


_INSERT_APPLICATIONS = (
    "INSERT INTO payment_applications (event_id, payment_id, invoice_id, customer_id, currency, amount,"
    " value_date, rule, confidence, stream_version, application_id)"
    " SELECT * FROM unnest(CAST(:e AS uuid[]), CAST(:p AS text[]), CAST(:i AS text[]), CAST(:c AS text[]),"
    " CAST(:cur AS text[]), CAST(:a AS numeric[]), CAST(:d AS date[]), CAST(:rule AS text[]),"
    " CAST(:conf AS numeric[]), CAST(:v AS integer[]), CAST(:app AS text[])) ON CONFLICT (event_id) DO NOTHING")


async def insert_application_rows(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Applications of payments received in this transaction (their totals are in the payment
    rows): one statement for them all."""
    await execute_arrays(conn, _INSERT_APPLICATIONS, rows)


_ADD_APPLIED_TO_MANY = (
    "UPDATE open_items o SET applied_amount = o.applied_amount + r.a"
    " FROM unnest(CAST(:i AS text[]), CAST(:a AS numeric[])) AS r(i, a) WHERE o.invoice_id = r.i")


async def add_applied_to_open_items(conn: AsyncConnection, applied: dict[str, Decimal]) -> None:
    """Per invoice (each once: a mapping), the amount newly applied to it, in one statement. The
    caller holds the rows' locks (taken in invoice_id order)."""
    await execute_arrays(conn, _ADD_APPLIED_TO_MANY, [{"i": i, "a": applied[i]} for i in sorted(applied)])


_INSERT_STATEMENT_LINES = (
    "INSERT INTO statement_lines (import_id, position, account, value_date, currency, amount, direction,"
    " bank_reference, payer_name, payment_id, kind, payout_id)"
    " SELECT * FROM unnest(CAST(:i AS text[]), CAST(:pos AS text[]), CAST(:a AS text[]), CAST(:d AS date[]),"
    " CAST(:c AS text[]), CAST(:amt AS numeric[]), CAST(:dir AS text[]), CAST(:ref AS text[]), CAST(:name AS text[]),"
    " CAST(:p AS text[]), CAST(:k AS text[]), CAST(:po AS text[])) ON CONFLICT DO NOTHING")


async def insert_statement_lines(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """A bank file's lines as read (what each posted, or why not): one statement for them all."""
    await execute_arrays(conn, _INSERT_STATEMENT_LINES, rows)


async def insert_application(conn: AsyncConnection, *, event_id: Any, payment_id: str, invoice_id: str,
                             customer_id: str, currency: str, amount: Decimal, value_date: date, rule: str,
                             confidence: Decimal, stream_version: int, application_id: str) -> bool:
    """Returns False when this PaymentApplied event was already projected."""
    inserted = (await conn.execute(
        text(_INSERT_APPLICATION_SQL + " RETURNING 1"),
        application_row(event_id=event_id, payment_id=payment_id, invoice_id=invoice_id, customer_id=customer_id,
                        currency=currency, amount=amount, value_date=value_date, rule=rule, confidence=confidence,
                        stream_version=stream_version, application_id=application_id),
    )).first()
    if inserted is None:
        return False
    # An unidentified receipt takes its customer from the first invoice a person applies it to.
    await conn.execute(
        text("UPDATE payments SET applied_amount = applied_amount + :a,"
             " customer_id = CASE WHEN customer_id = :unidentified THEN :c ELSE customer_id END WHERE payment_id = :p"),
        {"a": amount, "p": payment_id, "c": customer_id, "unidentified": UNIDENTIFIED_CUSTOMER},
    )
    return True


async def reverse_application(conn: AsyncConnection, *, payment_id: str, application_id: str, amount: Decimal,
                              invoice_id: str, on: date, reason: str) -> bool:
    """Mark the application reversed and give the amount back to the invoice and the payment."""
    updated = (await conn.execute(
        text("UPDATE payment_applications SET reversed_on = :d, reversal_reason = :r"
             " WHERE payment_id = :p AND application_id = :a AND reversed_on IS NULL RETURNING 1"),
        {"d": on, "r": reason, "p": payment_id, "a": application_id})).first()
    if updated is None:
        return False
    await conn.execute(text("UPDATE payments SET applied_amount = applied_amount - :a WHERE payment_id = :p"),
                       {"a": amount, "p": payment_id})
    await conn.execute(text("UPDATE open_items SET applied_amount = applied_amount - :a WHERE invoice_id = :i"),
                       {"a": amount, "i": invoice_id})
    return True


async def find_returnable_payment(conn: AsyncConnection, *, reference: str | None, amount: Decimal,
                                  currency: str) -> str | None:
    """The received, not yet returned payment a returned item takes back: same bank reference and
    amount; the latest when several."""
    if not reference:
        return None
    return (await conn.execute(
        text("SELECT p.payment_id FROM payments p LEFT JOIN payment_sources s USING (payment_id)"
             " WHERE (s.bank_reference = :r OR p.reference = :r) AND p.amount = :a AND p.currency = :c"
             " AND p.returned_on IS NULL ORDER BY p.received_seq DESC LIMIT 1"),
        {"r": reference, "a": amount, "c": currency})).scalar()


async def applied_invoice_ids(conn: AsyncConnection, payment_id: str) -> list[str]:
    """The invoices a payment is applied to now (its reversed applications left out)."""
    rows = await conn.execute(text("SELECT DISTINCT invoice_id FROM payment_applications WHERE payment_id = :p"
                                   " AND reversed_on IS NULL"), {"p": payment_id})
    return [r.invoice_id for r in rows]


async def record_refund(conn: AsyncConnection, *, refund_id: str, payment_id: str, customer_id: str, currency: str,
                        amount: Decimal, method: str, reference: str | None, refunded_on: date,
                        reason: str | None) -> None:
    inserted = (await conn.execute(
        text("INSERT INTO payment_refunds (refund_id, payment_id, customer_id, currency, amount, method, reference,"
             " refunded_on, reason) VALUES (:id, :p, :c, :cur, :a, :m, :ref, :d, :r)"
             " ON CONFLICT (refund_id) DO NOTHING RETURNING 1"),
        {"id": refund_id, "p": payment_id, "c": customer_id, "cur": currency, "a": amount, "m": method,
         "ref": reference, "d": refunded_on, "r": reason})).first()
    if inserted is not None:
        await conn.execute(text("UPDATE payments SET refunded_amount = refunded_amount + :a WHERE payment_id = :p"),
                           {"a": amount, "p": payment_id})


async def refunds_of(conn: AsyncConnection, payment_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(text("SELECT * FROM payment_refunds WHERE payment_id = :p ORDER BY refunded_on, refund_id"),
                              {"p": payment_id})
    return [dict(r) for r in rows.mappings()]


async def payment_customers(conn: AsyncConnection, payment_ids: Sequence[str]) -> dict[str, str]:
    """payment_id -> customer_id of these payments (those that exist)."""
    if not payment_ids:
        return {}
    rows = await conn.execute(text("SELECT payment_id, customer_id FROM payments WHERE payment_id = ANY(CAST(:p AS text[]))"),
                              {"p": sorted(set(payment_ids))})
    return {r.payment_id: r.customer_id for r in rows}


async def mark_returned(conn: AsyncConnection, payment_id: str, on: date, reason_code: str) -> None:
    await conn.execute(text("UPDATE payments SET returned_on = :d, return_reason_code = :r WHERE payment_id = :p"),
                       {"d": on, "r": reason_code, "p": payment_id})


_INSERT_SHORT_PAY = text(
    "INSERT INTO short_pays (event_id, payment_id, invoice_id, customer_id, currency, open_amount,"
    " paid_amount, shortfall, reason_code, value_date, stream_version) VALUES (:e, :p, :i, :c, :cur, :o,"
    " :paid, :s, :rc, :d, :v) ON CONFLICT (event_id) DO NOTHING")


def short_pay_row(*, event_id: Any, payment_id: str, invoice_id: str, customer_id: str, currency: str,
                  open_amount: Decimal, paid_amount: Decimal, shortfall: Decimal, reason_code: str | None,
                  value_date: date, stream_version: int) -> dict[str, Any]:
    return {"e": event_id, "p": payment_id, "i": invoice_id, "c": customer_id, "cur": currency, "o": open_amount,
            "paid": paid_amount, "s": shortfall, "rc": reason_code, "d": value_date, "v": stream_version}


async def insert_short_pay(conn: AsyncConnection, **fields: Any) -> None:
    await conn.execute(_INSERT_SHORT_PAY, short_pay_row(**fields))


async def insert_short_pay_rows(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await execute_many(conn, _INSERT_SHORT_PAY.text, rows)


async def set_unapplied_reason(conn: AsyncConnection, payment_id: str, reason: str) -> None:
    await conn.execute(text("UPDATE payments SET unapplied_reason = :r WHERE payment_id = :p"),
                       {"r": reason, "p": payment_id})


async def set_payment_version(conn: AsyncConnection, payment_id: str, version: int) -> None:
    await conn.execute(text("UPDATE payments SET version = greatest(version, :v) WHERE payment_id = :p"),
                       {"v": version, "p": payment_id})


_PAYMENT_SELECT = ("SELECT payments.*, s.import_id, s.position AS statement_position, s.bank_reference, s.payer_name,"
                   " s.payer_account, s.remittance_text, s.match_reason, s.explanation,"
                   " coalesce(s.suggestions, '[]') AS suggestions"
                   " FROM payments LEFT JOIN payment_sources s USING (payment_id)")


async def get_payment(conn: AsyncConnection, payment_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(text(f"{_PAYMENT_SELECT} WHERE payment_id = :p"), {"p": payment_id})).mappings().first()
    if row is None:
        return None
    payment = dict(row)
    (payment["applications"],), (payment["short_pays"],), (payment["write_offs"],) = await _details(conn, [payment_id])
    return payment


async def list_payments(conn: AsyncConnection, *, customer_id: str | None, unapplied_only: bool,
                        after: int | None, limit: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(f"{_PAYMENT_SELECT} WHERE (CAST(:c AS text) IS NULL OR customer_id = :c)"
             " AND (NOT :unapplied OR (unapplied_amount > 0 AND returned_on IS NULL))"
             " AND (CAST(:after AS bigint) IS NULL OR received_seq > :after)"
             " ORDER BY received_seq LIMIT :limit"),
        {"c": customer_id, "unapplied": unapplied_only, "after": after, "limit": limit},
    )
    payments = [dict(r) for r in rows.mappings()]
    if payments:
        applications, short_pays, write_offs = await _details(conn, [p["payment_id"] for p in payments])
        for payment, apps, shorts, offs in zip(payments, applications, short_pays, write_offs):
            payment["applications"], payment["short_pays"], payment["write_offs"] = apps, shorts, offs
    return payments


# The unapplied-cash queue's orders: the sort key's SQL (ties broken by received_seq, so a keyset
# cursor pages without gaps or repeats). `score` is the top suggestion's (-1 with none).
UNAPPLIED_SORTS = {
    "received": "payments.received_seq",
    "amount": "payments.unapplied_amount",
    "value_date": "payments.value_date",
    "customer": "payments.customer_id",
    "score": "coalesce(CAST(s.suggestions -> 0 ->> 'score' AS numeric), -1)",
}


async def list_unapplied(conn: AsyncConnection, *, customer_id: str | None, sort: str, descending: bool,
                         after: tuple[Any, int] | None, limit: int) -> list[dict[str, Any]]:
    """The unapplied-cash queue in `sort` order (UNAPPLIED_SORTS), after the keyset (key, seq)."""
    key = UNAPPLIED_SORTS[sort]
    op, direction = ("<", "DESC") if descending else (">", "ASC")
    rows = await conn.execute(
        text(f"SELECT * FROM ({_PAYMENT_SELECT.replace('SELECT payments.*', f'SELECT payments.*, {key} AS sort_key', 1)}"
             " WHERE (CAST(:c AS text) IS NULL OR payments.customer_id = :c)"
             " AND payments.unapplied_amount > 0 AND payments.returned_on IS NULL) q"
             f" WHERE (CAST(:has_after AS boolean) IS NOT TRUE OR (q.sort_key, q.received_seq) {op} (:k, :seq))"
             f" ORDER BY q.sort_key {direction}, q.received_seq {direction} LIMIT :limit"),
        {"c": customer_id, "has_after": after is not None, "k": after[0] if after else None,
         "seq": after[1] if after else None, "limit": limit},
    )
    payments = [dict(r) for r in rows.mappings()]
    if payments:
        applications, short_pays, write_offs = await _details(conn, [p["payment_id"] for p in payments])
        for payment, apps, shorts, offs in zip(payments, applications, short_pays, write_offs):
            payment["applications"], payment["short_pays"], payment["write_offs"] = apps, shorts, offs
    return payments


async def _details(conn: AsyncConnection, payment_ids: list[str]
                   ) -> tuple[list[list[dict]], list[list[dict]], list[list[dict]]]:
    """Applications, short pays and small-balance write-offs of each payment, in the order they
    were decided."""
    params = {"ids": payment_ids}
    queries = (
        "SELECT * FROM payment_applications WHERE payment_id = ANY(CAST(:ids AS text[]))"
        " ORDER BY payment_id, stream_version",
        "SELECT * FROM short_pays WHERE payment_id = ANY(CAST(:ids AS text[])) ORDER BY payment_id, stream_version",
        "SELECT * FROM open_item_write_offs WHERE payment_id = ANY(CAST(:ids AS text[]))"
        " AND source = 'small_balance' ORDER BY payment_id, write_off_id",
    )
    out: list[list[list[dict]]] = []
    for query in queries:
        by_payment: dict[str, list[dict]] = {p: [] for p in payment_ids}
        for r in (await conn.execute(text(query), params)).mappings():
            by_payment[r["payment_id"]].append(dict(r))
        out.append([by_payment[p] for p in payment_ids])
    applications, short_pays, write_offs = out
    return applications, short_pays, write_offs


# ---------------------------------------------------------------- reconciliation

async def statement_lines_for(conn: AsyncConnection, day: date, account: str | None, currency: str) -> list[dict]:
    """Credit lines of the day's statements (receipts the bank booked)."""
    rows = await conn.execute(
        text("SELECT import_id, position, account, value_date, currency, amount, direction, bank_reference,"
             " payer_name, kind, payout_id, coalesce('payout:' || payout_id, payment_id) AS payment_id FROM statement_lines"
             " WHERE value_date = :d AND direction = 'credit' AND currency = :c"
             " AND (CAST(:a AS text) IS NULL OR account = :a) ORDER BY import_id, position"),
        {"d": day, "a": account, "c": currency})
    return [dict(r) for r in rows.mappings()]


async def receipts_for(conn: AsyncConnection, day: date, account: str | None, currency: str) -> list[dict]:
    """Payments posted with the day's value date; with an account, only those its statements brought.
    Card charges from a processor's report are not bank receipts: their payout is, on the day the
    bank booked it (or expected, until a statement shows it), as `payout:<processor>:<id>`; a
    receipt the payout's bank line had posted before the report came (returned since) is left out."""
    rows = await conn.execute(
        text("SELECT p.payment_id, p.amount, p.reference FROM payments p"
             " LEFT JOIN statement_lines l ON l.payment_id = p.payment_id AND l.kind = 'receipt'"
             " WHERE p.value_date = :d AND p.currency = :c"
             " AND (CAST(:a AS text) IS NULL OR l.account = :a)"
             " AND NOT EXISTS (SELECT 1 FROM payment_sources s JOIN bank_imports b ON b.import_id = s.import_id"
             "                 WHERE s.payment_id = p.payment_id AND b.file_format LIKE 'card:%')"
             " AND NOT EXISTS (SELECT 1 FROM card_payouts c WHERE c.superseded_payment_id = p.payment_id)"
             " ORDER BY p.received_seq"),
        {"d": day, "a": account, "c": currency})
    payouts = await conn.execute(
        text("SELECT 'payout:' || c.payout_id AS payment_id, c.amount, c.processor_payout_id AS reference"
             " FROM card_payouts c LEFT JOIN statement_lines l ON l.payout_id = c.payout_id"
             " WHERE coalesce(c.bank_value_date, c.arrival_date) = :d AND c.currency = :c"
             " AND (CAST(:a AS text) IS NULL OR l.account = :a) ORDER BY c.payout_id"),
        {"d": day, "a": account, "c": currency})
    return [dict(r) for r in rows.mappings()] + [dict(r) for r in payouts.mappings()]


async def posted_line_keys(conn: AsyncConnection, references: Sequence[str],
                           exclude_import: str | None = None) -> set[tuple]:
    """(account, bank reference, amount, direction, value date) of statement lines already
    imported with one of these bank references (by another import than `exclude_import`: a
    chunked import resuming does not take its own committed chunks for duplicates)."""
    if not references:
        return set()
    rows = await conn.execute(
        text("SELECT coalesce(account, '') AS account, bank_reference, amount, direction, value_date"
             " FROM statement_lines WHERE bank_reference = ANY(CAST(:refs AS text[]))"
             " AND import_id IS DISTINCT FROM CAST(:x AS text)"),
        {"refs": list(references), "x": exclude_import})
    return {(r.account, r.bank_reference, Decimal(r.amount).normalize(), r.direction, r.value_date) for r in rows}


async def record_import_result(conn: AsyncConnection, import_id: str, encoded: str, result: dict[str, Any]) -> None:
    """A finished import's result: the JSON text its POST answered (`encoded`, kept as it is: json,
    migration 0016), and the result without its payments for the list of imports."""
    summary = {key: value for key, value in result.items() if key != "payments"}
    await conn.execute(text("UPDATE bank_imports SET result = CAST(:r AS json), summary = CAST(:s AS jsonb)"
                            " WHERE import_id = :i"),
                       {"r": encoded, "s": json.dumps(summary, default=str), "i": import_id})


async def get_import_result(conn: AsyncConnection, import_id: str) -> str | None:
    """A finished import's result as the JSON text its POST answered, or None."""
    return (await conn.execute(text("SELECT result::text FROM bank_imports WHERE import_id = :i AND result IS NOT NULL"),
                               {"i": import_id})).scalar()


async def list_imports(conn: AsyncConnection, *, before: str | None, limit: int) -> list[dict[str, Any]]:
    """Finished imports, newest first, each with its result without the payments; `before` is the
    cursor "<imported_at>|<import_id>". A file whose statements had all come before answers that
    import and is not listed again."""
    rows = await conn.execute(
        text("SELECT import_id, imported_at, summary FROM bank_imports WHERE summary->>'import_id' = import_id"
             " AND (CAST(:before AS text) IS NULL"
             "      OR (imported_at, import_id) < (CAST(split_part(:before, '|', 1) AS timestamptz),"
             "                                     split_part(:before, '|', 2)))"
             " ORDER BY imported_at DESC, import_id DESC LIMIT :limit"),
        {"before": before, "limit": limit})
    return [{"import_id": r.import_id, "imported_at": r.imported_at,
             "result": r.summary if isinstance(r.summary, dict) else json.loads(r.summary)} for r in rows]
