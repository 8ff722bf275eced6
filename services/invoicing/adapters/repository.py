"""SQL for invoicing's read models."""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import driver_connection
from shared.eventstore import dumps


async def insert_customer(conn: AsyncConnection, c: Any, version: int) -> None:
    await conn.execute(
        text("INSERT INTO customers (customer_id, name, currency, payment_terms, payment_terms_days, credit_limit,"
             " registered_on, version) VALUES (:id, :name, :cur, :code, :terms, :limit, :on, :v)"),
        {"id": c.id, "name": c.name, "cur": c.currency, "code": c.payment_terms.code, "terms": c.payment_terms_days,
         "limit": c.credit_limit, "on": c.registered_on, "v": version},
    )


async def get_customer(conn: AsyncConnection, customer_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM customers WHERE customer_id = :id"), {"id": customer_id})).mappings().first()
    return dict(row) if row else None


async def list_customers(conn: AsyncConnection, after: str | None, limit: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text("SELECT * FROM customers WHERE (CAST(:after AS text) IS NULL OR customer_id > :after)"
             " ORDER BY customer_id LIMIT :limit"),
        {"after": after, "limit": limit},
    )
    return [dict(r) for r in rows.mappings()]


async def invoice_number_taken(conn: AsyncConnection, number: str) -> bool:
    return (await conn.execute(text("SELECT 1 FROM invoices WHERE invoice_number = :n"), {"n": number})).first() is not None


async def insert_invoice(conn: AsyncConnection, inv: Any, lines: list[dict[str, Any]], version: int,
                         taxes: list[dict[str, Any]] | None = None, po_number: str | None = None,
                         credit_override: dict[str, Any] | None = None) -> None:
    await conn.execute(
        text(f"INSERT INTO invoices ({_INSERT_INVOICE_COLUMNS}) VALUES ({_INSERT_INVOICE_VALUES})"),
        _invoice_params(inv, lines, version, taxes, po_number, credit_override),
    )


_INSERT_INVOICE_COLUMNS = (
    "invoice_id, invoice_number, customer_id, currency, issue_date, due_date, total_amount, lines, version, taxes,"
    " po_number, credit_override")
_INSERT_INVOICE_VALUES = (
    ":id, :num, :cust, :cur, :issue, :due, :total, CAST(:lines AS jsonb), :v, CAST(:taxes AS jsonb), :po,"
    " CAST(:co AS jsonb)")
_DELIVERY_FIELDS = ("delivery_id", "document_kind", "document_id", "customer_id", "channel", "language", "recipient",
                    "status", "last_error", "created_on", "as_of", "currency")
_INSERT_DELIVERY_COLUMNS = ", ".join(_DELIVERY_FIELDS)
_INSERT_DELIVERY_VALUES = ", ".join(f":{f}" for f in _DELIVERY_FIELDS)


def _invoice_params(inv: Any, lines: list[dict[str, Any]], version: int, taxes: list[dict[str, Any]] | None,
                    po_number: str | None, credit_override: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": inv.id, "num": inv.invoice_number, "cust": inv.customer_id, "cur": inv.currency,
            "issue": inv.issue_date, "due": inv.due_date, "total": inv.total_amount, "lines": dumps(lines),
            "v": version, "taxes": dumps(taxes or []), "po": po_number,
            "co": dumps(credit_override) if credit_override is not None else None}


# Statements of POST /v1/invoices run on the driver (shared.db.driver_connection): positional.
_ISSUED_INVOICE = (
    "WITH inv AS (INSERT INTO invoices (" + _INSERT_INVOICE_COLUMNS + ") VALUES ($1, $2, $3, $4, $5, $6, $7,"
    " $8::text::jsonb, $9, $10::text::jsonb, $11, $12::text::jsonb) RETURNING *),"
    " delivery AS (INSERT INTO document_deliveries (" + _INSERT_DELIVERY_COLUMNS + ") VALUES ($13, $14, $15, $16,"
    " $17, $18, $19, $20, $21, $22::date, $23::date, $24) ON CONFLICT (document_kind, document_id) DO NOTHING) "
)


async def insert_issued_invoice(conn: AsyncConnection, inv: Any, lines: list[dict[str, Any]], version: int,
                                delivery: dict[str, Any], taxes: list[dict[str, Any]] | None = None,
                                po_number: str | None = None,
                                credit_override: dict[str, Any] | None = None) -> dict[str, Any]:
    """A newly issued invoice's read-model row, its document delivery (insert_delivery's row) and
    the row as get_invoice answers it, in one statement (one round trip instead of three). The
    settlement sums are read as get_invoice reads them: entries may exist before the invoice."""
    p = _invoice_params(inv, lines, version, taxes, po_number, credit_override)
    driver = await driver_connection(conn)
    row = await driver.fetchrow(
        _ISSUED_INVOICE + _invoice_select("inv"),
        p["id"], p["num"], p["cust"], p["cur"], p["issue"], p["due"], p["total"], p["lines"], p["v"], p["taxes"],
        p["po"], p["co"], *(delivery[f] for f in _DELIVERY_FIELDS))
    return _invoice_row(row)


async def next_invoice_numbers(conn: AsyncConnection, count: int) -> list[str]:
    """`count` invoice numbers of the default series (migration 0011), in order: INV- and the
    sequence's next values (eight digits or more), passing over any a caller had given explicitly."""
    driver = await driver_connection(conn)
    numbers: list[str] = []
    for _ in range(1_000):
        if len(numbers) >= count:
            return numbers
        rows = await driver.fetch(
            "SELECT 'INV-' || lpad(v::text, 8, '0') FROM (SELECT nextval('invoice_number_seq') AS v"
            " FROM generate_series(1, $1)) AS s WHERE NOT EXISTS (SELECT 1 FROM invoices"
            " WHERE invoice_number = 'INV-' || lpad(s.v::text, 8, '0')) ORDER BY v", count - len(numbers))
        numbers += [r[0] for r in rows]
    raise RuntimeError("the default invoice number series is taken by numbers callers gave: send invoice numbers")


async def invoice_numbers_taken(conn: AsyncConnection, numbers: list[str]) -> set[str]:
    rows = await (await driver_connection(conn)).fetch(
        "SELECT invoice_number FROM invoices WHERE invoice_number = ANY($1::text[])", numbers)
    return {r[0] for r in rows}


async def get_invoices(conn: AsyncConnection, invoice_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Many invoices as get_invoice answers them, by id (on the driver: a batch reads thousands)."""
    rows = await (await driver_connection(conn)).fetch(_INVOICE_SELECT + " WHERE i.invoice_id = ANY($1::text[])",
                                                       invoice_ids)
    return {r["invoice_id"]: _invoice_row(r) for r in rows}


_ISSUED_INVOICES = (
    "WITH inv AS (INSERT INTO invoices (" + _INSERT_INVOICE_COLUMNS + ")"
    " SELECT i.id, i.num, i.cust, i.cur, i.issue, i.due, i.total, i.lines::jsonb, i.v, i.taxes::jsonb, i.po,"
    " i.co::jsonb"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::date[], $6::date[], $7::numeric[],"
    " $8::text[], $9::int[], $10::text[], $11::text[], $12::text[])"
    " AS i(id, num, cust, cur, issue, due, total, lines, v, taxes, po, co)"
    " ON CONFLICT DO NOTHING RETURNING *),"
    " delivery AS (INSERT INTO document_deliveries (" + _INSERT_DELIVERY_COLUMNS + ")"
    " SELECT * FROM unnest($13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[],"
    " $19::text[], $20::text[], $21::text[], $22::date[], $23::date[], $24::text[])"
    " ON CONFLICT (document_kind, document_id) DO NOTHING) "
)


async def insert_issued_invoices(conn: AsyncConnection,
                                 invoices: list[tuple[Any, list[dict[str, Any]], int, Any, Any, Any]],
                                 deliveries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Many new invoices ((invoice, its lines, version, taxes, PO number, credit override or None)
    each), their document deliveries (insert_delivery's rows) and the invoices as get_invoices
    answers them, in one statement. An invoice whose id
    or number was taken meanwhile (a concurrent request) is not written and not answered: the
    caller compares the count and undoes its batch."""
    rows = await (await driver_connection(conn)).fetch(
        _ISSUED_INVOICES + _invoice_select("inv"),
        [row[0].id for row in invoices], [row[0].invoice_number for row in invoices],
        [row[0].customer_id for row in invoices], [row[0].currency for row in invoices],
        [row[0].issue_date for row in invoices], [row[0].due_date for row in invoices],
        [row[0].total_amount for row in invoices], [dumps(row[1]) for row in invoices],
        [row[2] for row in invoices], [dumps(row[3] or []) for row in invoices], [row[4] for row in invoices],
        [dumps(row[5]) if len(row) > 5 and row[5] is not None else None for row in invoices],
        *([d[f] for d in deliveries] for f in _DELIVERY_FIELDS))
    return {r["invoice_id"]: _invoice_row(r) for r in rows}


async def record_credit_memo(conn: AsyncConnection, memo: dict[str, Any], credited_total: Decimal, version: int) -> None:
    await conn.execute(
        text("INSERT INTO credit_memos (credit_memo_id, invoice_id, customer_id, currency, amount, issue_date,"
             " reason, dispute_id, rma_number, lines) VALUES (:credit_memo_id, :invoice_id, :customer_id, :currency,"
             " :amount, :issue_date, :reason, :dispute_id, :rma_number, CAST(:lines AS jsonb))"),
        {**memo, "rma_number": memo.get("rma_number"), "lines": dumps(memo.get("lines") or [])},
    )
    await conn.execute(
        text("UPDATE invoices SET credited_amount = :c, version = :v WHERE invoice_id = :id"),
        {"c": credited_total, "v": version, "id": memo["invoice_id"]},
    )


async def settled_amount(conn: AsyncConnection, invoice_id: str) -> Decimal:
    """Paid (net of reversals), adjusted and written off: what no credit memo may exceed."""
    value = (await conn.execute(
        text("SELECT coalesce(sum(amount), 0) FROM invoice_settlements WHERE invoice_id = :i"), {"i": invoice_id}
    )).scalar_one()
    return Decimal(value)


def _settled(kind: str) -> str:
    return (f"coalesce((SELECT sum(amount) FROM invoice_settlements s WHERE s.invoice_id = i.invoice_id"
            f" AND s.kind = '{kind}'), 0)")


def _invoice_select(source: str) -> str:
    """The invoice rows of `source` (the table, or a CTE of rows just inserted) with what other
    contexts settled and the open balance."""
    return (
        f"SELECT *, total_amount + debit_adjusted - credited_amount - credit_adjusted - voided_amount - paid_amount"
        f" - adjusted_amount - written_off_amount AS open_balance"
        f" FROM (SELECT i.*, {_settled('payment')} AS paid_amount, {_settled('adjustment')} AS adjusted_amount,"
        f" {_settled('write_off')} AS written_off_amount FROM {source} i) i"
    )


_INVOICE_SELECT = _invoice_select("invoices")


async def get_invoice(conn: AsyncConnection, invoice_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(text(f"{_INVOICE_SELECT} WHERE i.invoice_id = :id"), {"id": invoice_id})).mappings().first()
    return _invoice_row(row) if row else None


async def list_invoices(conn: AsyncConnection, *, customer_id: str | None, status: str | None,
                        issued_from: Any, issued_to: Any, after: int | None, limit: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(f"SELECT * FROM ({_INVOICE_SELECT}) x WHERE (CAST(:c AS text) IS NULL OR customer_id = :c)"
             " AND (CAST(:after AS bigint) IS NULL OR created_seq > :after)"
             " AND (CAST(:f AS date) IS NULL OR issue_date >= :f) AND (CAST(:t AS date) IS NULL OR issue_date <= :t)"
             " AND (CAST(:status AS text) IS NULL OR (:status = 'void' AND voided_on IS NOT NULL)"
             "      OR (:status = 'open' AND open_balance > 0)"
             "      OR (:status = 'closed' AND open_balance <= 0 AND voided_on IS NULL))"
             " ORDER BY created_seq LIMIT :limit"),
        {"c": customer_id, "after": after, "f": issued_from, "t": issued_to, "status": status, "limit": limit},
    )
    return [_invoice_row(r) for r in rows.mappings()]


def _invoice_row(row: Any) -> dict[str, Any]:
    data = dict(row)
    for name in ("lines", "taxes", "credit_override"):
        if isinstance(data.get(name), str):
            data[name] = json.loads(data[name])
    for name in ("paid_amount", "adjusted_amount", "written_off_amount", "open_balance"):
        data[name] = Decimal(data[name])
    return data


async def credit_memos_for(conn: AsyncConnection, invoice_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(text("SELECT * FROM credit_memos WHERE invoice_id = :i ORDER BY issue_date, credit_memo_id"),
                              {"i": invoice_id})
    return [_with_lines(r) for r in rows.mappings()]


def _with_lines(row: Any) -> dict[str, Any]:
    data = dict(row)
    if isinstance(data.get("lines"), str):
        data["lines"] = json.loads(data["lines"])
    return data


async def get_credit_memo(conn: AsyncConnection, credit_memo_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM credit_memos WHERE credit_memo_id = :m"),
                              {"m": credit_memo_id})).mappings().first()
    return _with_lines(row) if row else None


async def record_adjustment_requested(conn: AsyncConnection, e: Any, status: str, version: int) -> None:
    await conn.execute(
        text("INSERT INTO invoice_adjustments (adjustment_id, invoice_id, customer_id, currency, direction, amount,"
             " reason_code, adjustment_date, status, requested_by, approved_by, decided_on, note)"
             " VALUES (:id, :inv, :c, :cur, :dir, :a, :r, :d, :s, :by, :ap, :dec, :n)"),
        {"id": e.adjustment_id, "inv": e.invoice_id, "c": e.customer_id, "cur": e.currency, "dir": e.direction,
         "a": e.amount, "r": e.reason_code, "d": e.adjustment_date, "s": status, "by": e.requested_by,
         "ap": getattr(e, "approved_by", None), "dec": e.adjustment_date if status == "posted" else None,
         "n": e.note})
    await conn.execute(text("UPDATE invoices SET version = :v WHERE invoice_id = :i"), {"v": version, "i": e.invoice_id})


async def record_adjustment_posted(conn: AsyncConnection, e: Any, debit_total: Decimal, credit_total: Decimal,
                                   version: int) -> None:
    """An adjustment posted (at once or on approval): its row and the invoice's sums."""
    await conn.execute(
        text("INSERT INTO invoice_adjustments (adjustment_id, invoice_id, customer_id, currency, direction, amount,"
             " reason_code, adjustment_date, status, requested_by, approved_by, decided_on, note)"
             " VALUES (:id, :inv, :c, :cur, :dir, :a, :r, :d, 'posted', :by, :ap, :d, :n)"
             " ON CONFLICT (adjustment_id) DO UPDATE SET status = 'posted', approved_by = excluded.approved_by,"
             " decided_on = excluded.decided_on, adjustment_date = excluded.adjustment_date"),
        {"id": e.adjustment_id, "inv": e.invoice_id, "c": e.customer_id, "cur": e.currency, "dir": e.direction,
         "a": e.amount, "r": e.reason_code, "d": e.adjustment_date, "by": e.requested_by, "ap": e.approved_by,
         "n": e.note})
    await conn.execute(
        text("UPDATE invoices SET debit_adjusted = :d, credit_adjusted = :c, version = :v WHERE invoice_id = :i"),
        {"d": debit_total, "c": credit_total, "v": version, "i": e.invoice_id})


async def record_adjustment_rejected(conn: AsyncConnection, e: Any, version: int) -> None:
    await conn.execute(
        text("UPDATE invoice_adjustments SET status = 'rejected', rejected_by = :by, decided_on = :on,"
             " rejection_reason = :r WHERE adjustment_id = :id"),
        {"by": e.rejected_by, "on": e.rejected_on, "r": e.reason, "id": e.adjustment_id})
    await conn.execute(text("UPDATE invoices SET version = :v WHERE invoice_id = :i"), {"v": version, "i": e.invoice_id})


async def get_adjustment(conn: AsyncConnection, adjustment_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM invoice_adjustments WHERE adjustment_id = :a"),
                              {"a": adjustment_id})).mappings().first()
    return dict(row) if row else None


async def list_adjustments(conn: AsyncConnection, *, invoice_id: str | None, status: str | None,
                           after: int | None, limit: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text("SELECT * FROM invoice_adjustments WHERE (CAST(:i AS text) IS NULL OR invoice_id = :i)"
             " AND (CAST(:s AS text) IS NULL OR status = :s) AND (CAST(:after AS bigint) IS NULL OR created_seq > :after)"
             " ORDER BY created_seq LIMIT :limit"),
        {"i": invoice_id, "s": status, "after": after, "limit": limit})
    return [dict(r) for r in rows.mappings()]


async def record_void(conn: AsyncConnection, e: Any, version: int) -> None:
    await conn.execute(
        text("UPDATE invoices SET voided_amount = :a, voided_on = :on, void_reason = :r, version = :v"
             " WHERE invoice_id = :i"),
        {"a": e.amount, "on": e.voided_on, "r": e.reason, "v": version, "i": e.invoice_id})


_INSERT_SETTLEMENT = text(
    "INSERT INTO invoice_settlements (entry_id, invoice_id, kind, payment_id, amount, value_date)"
    " VALUES (:entry_id, :invoice_id, :kind, :payment_id, :amount, :value_date) ON CONFLICT (entry_id) DO NOTHING")


async def record_settlement(conn: AsyncConnection, *, entry_id: str, invoice_id: str, kind: str,
                            payment_id: str | None, amount: Decimal, value_date: Any) -> None:
    """One signed entry per producer id; a redelivered event finds its row and changes nothing."""
    await conn.execute(_INSERT_SETTLEMENT, {"entry_id": entry_id, "invoice_id": invoice_id, "kind": kind,
                                            "payment_id": payment_id, "amount": amount, "value_date": value_date})


async def record_settlements(conn: AsyncConnection, entries: list[dict[str, Any]]) -> None:
    """record_settlement for many (its keyword arguments per entry): one executemany, in order."""
    if entries:
        await conn.execute(_INSERT_SETTLEMENT, list(entries))


async def set_credit_hold(conn: AsyncConnection, customer_id: str, hold: dict[str, Any] | None, as_of: Any) -> None:
    """Latest business date wins, so a late-arriving older placement cannot undo a release."""
    await conn.execute(
        text("UPDATE customers SET credit_hold = CAST(:h AS jsonb), credit_hold_version = :d"
             " WHERE customer_id = :c AND (credit_hold_version IS NULL OR credit_hold_version <= :d)"),
        {"h": dumps(hold) if hold is not None else None, "d": as_of, "c": customer_id},
    )


async def record_profile_change(conn: AsyncConnection, customer: Any, change: Any, version: int,
                                latest: Any) -> None:
    """The change for the history, and the customer row set to the latest-effective profile."""
    changes = {k: v for k, v in change.to_payload().items()
               if v is not None and k not in ("customer_id", "currency", "effective_on", "changed_by")}
    await conn.execute(text(
        "INSERT INTO customer_profile_changes (customer_id, version, effective_on, changes, changed_by)"
        " VALUES (:c, :v, :on, CAST(:ch AS jsonb), :by)"),
        {"c": customer.id, "v": version, "on": change.effective_on, "ch": dumps(changes), "by": change.changed_by})
    await conn.execute(text(
        "UPDATE customers SET payment_terms = :code, payment_terms_days = :days, credit_limit = :limit,"
        " language = :lang, delivery_preference = :dp, billing_contacts = CAST(:contacts AS jsonb),"
        " po_number_required = :po,"
        " billing_address = CAST(:address AS jsonb), version = :v WHERE customer_id = :c"),
        {"code": latest.payment_terms.code, "days": latest.payment_terms.days, "limit": latest.credit_limit,
         "lang": latest.language, "dp": latest.delivery_preference, "po": latest.po_number_required,
         "contacts": dumps([c.model_dump(mode="json") for c in latest.billing_contacts]),
         "address": dumps(latest.billing_address.model_dump(mode="json")) if latest.billing_address else None,
         "v": version, "c": customer.id})


async def profile_history(conn: AsyncConnection, customer_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(text("SELECT * FROM customer_profile_changes WHERE customer_id = :c ORDER BY version"),
                              {"c": customer_id})
    out = []
    for r in rows.mappings():
        data = dict(r)
        if isinstance(data["changes"], str):
            data["changes"] = json.loads(data["changes"])
        out.append(data)
    return out


# ---------------------------------------------------------------- account hierarchies

async def lock_hierarchy(conn: AsyncConnection) -> None:
    """Hierarchy changes run one at a time: two concurrent changes (A under B, B under A) would
    each pass the cycle check on a state without the other."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('invoicing:customer-hierarchy'))"))


async def ancestors(conn: AsyncConnection, customer_id: str) -> list[str]:
    """The customer's chain of parents upwards, its parent first (bounded: a cycle never stored)."""
    rows = await conn.execute(text(
        "WITH RECURSIVE up(customer_id, depth) AS ("
        "  SELECT parent_customer_id, 1 FROM customers WHERE customer_id = :c AND parent_customer_id IS NOT NULL"
        "  UNION ALL SELECT c.parent_customer_id, up.depth + 1 FROM customers c JOIN up USING (customer_id)"
        "  WHERE c.parent_customer_id IS NOT NULL AND up.depth < 20)"
        " SELECT customer_id FROM up ORDER BY depth"), {"c": customer_id})
    return [r.customer_id for r in rows]


async def descendants(conn: AsyncConnection, customer_id: str) -> list[dict[str, Any]]:
    """Every customer below this one, with its parent and its depth below it (1: a child)."""
    rows = await conn.execute(text(
        "WITH RECURSIVE down(customer_id, parent_customer_id, depth) AS ("
        "  SELECT customer_id, parent_customer_id, 1 FROM customers WHERE parent_customer_id = :c"
        "  UNION ALL SELECT c.customer_id, c.parent_customer_id, down.depth + 1 FROM customers c"
        "  JOIN down ON c.parent_customer_id = down.customer_id WHERE down.depth < 20)"
        " SELECT d.customer_id, d.parent_customer_id, d.depth, c.name, c.credit_limit FROM down d"
        " JOIN customers c USING (customer_id) ORDER BY d.depth, d.customer_id"), {"c": customer_id})
    return [dict(r) for r in rows.mappings()]


async def set_parent(conn: AsyncConnection, customer_id: str, parent_customer_id: str | None, version: int) -> None:
    await conn.execute(text("UPDATE customers SET parent_customer_id = :p, version = :v WHERE customer_id = :c"),
                       {"p": parent_customer_id, "v": version, "c": customer_id})


async def exposures(conn: AsyncConnection, customer_ids: list[str]) -> dict[str, Decimal]:
    """Open balance per customer, the running figure migration 0010's triggers keep (customers
    never invoiced are absent)."""
    rows = await conn.execute(
        text("SELECT customer_id, exposure FROM customer_exposures WHERE customer_id = ANY(CAST(:ids AS text[]))"),
        {"ids": list(customer_ids)})
    return {r.customer_id: Decimal(r.exposure) for r in rows}


# ---------------------------------------------------------------- document deliveries (an outbox)

async def insert_delivery(conn: AsyncConnection, row: dict[str, Any] | list[dict[str, Any]]) -> None:
    """One delivery per document (a list: many at once); issuing the same document again (a
    replayed command) adds none."""
    await conn.execute(text(
        f"INSERT INTO document_deliveries ({_INSERT_DELIVERY_COLUMNS}) VALUES ({_INSERT_DELIVERY_VALUES})"
        " ON CONFLICT (document_kind, document_id) DO NOTHING"), row[0] if isinstance(row, list) and len(row) == 1 else row)


async def claim_pending_delivery(conn: AsyncConnection) -> dict[str, Any] | None:
    """The oldest email still to send, locked for this transaction; other instances skip it."""
    row = (await conn.execute(text(
        "SELECT * FROM document_deliveries WHERE status = 'pending' ORDER BY created_seq LIMIT 1"
        " FOR UPDATE SKIP LOCKED"))).mappings().first()
    return dict(row) if row else None


async def mark_delivery(conn: AsyncConnection, delivery_id: str, *, status: str, error: str | None) -> None:
    await conn.execute(text(
        "UPDATE document_deliveries SET status = :s, attempts = attempts + 1, last_error = :e,"
        " delivered_at = CASE WHEN :s = 'sent' THEN now() ELSE delivered_at END WHERE delivery_id = :d"),
        {"s": status, "e": error, "d": delivery_id})


async def get_delivery(conn: AsyncConnection, delivery_id: str, lock: bool = False) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM document_deliveries WHERE delivery_id = :d"
                                   + (" FOR UPDATE" if lock else "")), {"d": delivery_id})).mappings().first()
    return dict(row) if row else None


async def mark_picked_up(conn: AsyncConnection, delivery_id: str, picked_up_by: str) -> None:
    await conn.execute(text(
        "UPDATE document_deliveries SET status = 'picked_up', picked_up_by = :by, delivered_at = now()"
        " WHERE delivery_id = :d"), {"by": picked_up_by, "d": delivery_id})


async def list_deliveries(conn: AsyncConnection, *, customer_id: str | None, status: str | None,
                          channel: str | None, document_id: str | None, after: int | None,
                          limit: int) -> list[dict[str, Any]]:
    rows = await conn.execute(text(
        "SELECT * FROM document_deliveries WHERE (CAST(:c AS text) IS NULL OR customer_id = :c)"
        " AND (CAST(:s AS text) IS NULL OR status = :s) AND (CAST(:ch AS text) IS NULL OR channel = :ch)"
        " AND (CAST(:doc AS text) IS NULL OR document_id = :doc)"
        " AND (CAST(:after AS bigint) IS NULL OR created_seq > :after) ORDER BY created_seq LIMIT :limit"),
        {"c": customer_id, "s": status, "ch": channel, "doc": document_id, "after": after, "limit": limit})
    return [dict(r) for r in rows.mappings()]


# ---------------------------------------------------------------- credit checks at issue time

async def lock_credit_chains(conn: AsyncConnection, customer_ids: list[str]) -> dict[str, list[str]]:
    """Each customer's chain upwards (itself first, then its parent, ...), with every customer on
    those chains locked (FOR UPDATE, in customer_id order, one statement, so concurrent issuers
    cannot deadlock) until the transaction ends: two issues against one customer or one parent
    are decided one after the other, the second against the first's exposure. The hierarchy
    lock is taken shared, so no hierarchy change moves a chain meanwhile."""
    driver = await driver_connection(conn)
    await driver.execute("SELECT pg_advisory_xact_lock_shared(hashtext('invoicing:customer-hierarchy'))")
    # The chains are read and their customers locked by one statement (one round trip): its
    # snapshot is taken after the shared hierarchy lock above, so no chain changes meanwhile; the
    # locking subquery is evaluated once, before the chains are returned.
    rows = await driver.fetch(_CHAINS_LOCKED, list(customer_ids))
    chains: dict[str, list[str]] = {}
    for customer_id, level_id in rows:
        chains.setdefault(customer_id, []).append(level_id)
    return chains


_CHAINS_LOCKED = (
    "WITH RECURSIVE up(customer_id, level_id, depth) AS ("
    "  SELECT customer_id, customer_id, 0 FROM customers WHERE customer_id = ANY($1::text[])"
    "  UNION ALL SELECT up.customer_id, c.parent_customer_id, up.depth + 1 FROM up"
    "  JOIN customers c ON c.customer_id = up.level_id"
    "  WHERE c.parent_customer_id IS NOT NULL AND up.depth < 20),"
    " locked AS MATERIALIZED (SELECT customer_id FROM customers WHERE customer_id IN (SELECT level_id FROM up)"
    "  ORDER BY customer_id FOR UPDATE)"
    " SELECT customer_id, level_id FROM up, (SELECT count(*) FROM locked) AS l(n) ORDER BY customer_id, depth"
)


_FAMILY_EXPOSURES = (
    "fam(root, member, depth) AS ("
    "  SELECT customer_id, customer_id, 0 FROM customers WHERE customer_id = ANY($2::text[])"
    "  UNION ALL SELECT fam.root, c.customer_id, fam.depth + 1 FROM fam"
    "  JOIN customers c ON c.parent_customer_id = fam.member WHERE fam.depth < 20),"
    # Each member's own exposure is a running figure (migration 0010's triggers keep it): one row
    # per member, not a sum over its history.
    " exposure AS (SELECT fam.root, sum(coalesce(e.exposure, 0)) AS exposure"
    "  FROM fam LEFT JOIN customer_exposures e ON e.customer_id = fam.member GROUP BY fam.root)"
)


async def credit_context(conn: AsyncConnection, stream_ids: list[str], level_ids: list[str],
                         invoice_id: str | None = None, number: str | None = None
                         ) -> tuple[dict[str, list[tuple[str, int, Any, int]]], dict[str, Decimal], bool, bool]:
    """What an issue decides on, read after its chains are locked, in one statement (one round
    trip instead of three): the customers' event streams ({stream_id: [(event_type,
    schema_version, payload, version)] in version order}); each level's family exposure (its own
    and every descendant's open balance: invoices net of credits, adjustments, voids and what
    other contexts settled, payments applied net of reversals, small-balance adjustments,
    write-offs; levels with nothing open are absent); and whether invoice_id and number are
    taken by an invoice (both False when not asked)."""
    driver = await driver_connection(conn)
    rows = await driver.fetch(_CREDIT_CONTEXT, list(stream_ids), list(level_ids), invoice_id, number)
    streams: dict[str, list[tuple[str, int, Any, int]]] = {}
    exposures: dict[str, Decimal] = {}
    id_taken = number_taken = False
    for kind, key, version, event_type, schema_version, payload, amount in rows:
        if kind == 0:
            payload = payload if isinstance(payload, dict) else json.loads(payload)
            streams.setdefault(key, []).append((event_type, schema_version, payload, version))
        elif kind == 1:
            if amount is not None:
                exposures[key] = Decimal(amount)
        else:
            id_taken = id_taken or "id" in key
            number_taken = number_taken or "number" in key
    return streams, exposures, id_taken, number_taken


_CREDIT_CONTEXT = (
    "WITH RECURSIVE " + _FAMILY_EXPOSURES +
    " SELECT 0 AS kind, stream_id AS key, version, event_type, schema_version, payload, NULL::numeric AS amount"
    "  FROM events WHERE stream_id = ANY($1::text[])"
    " UNION ALL SELECT 1, root, NULL, NULL, NULL, NULL, exposure FROM exposure"
    " UNION ALL SELECT 2, CASE WHEN invoice_id = $3::text THEN 'id' ELSE '' END"
    "  || CASE WHEN invoice_number = $4::text THEN 'number' ELSE '' END, NULL, NULL, NULL, NULL, NULL"
    "  FROM invoices WHERE invoice_id = $3::text OR invoice_number = $4::text"
    " ORDER BY kind, key, version"
)


# ---------------------------------------------------------------- statement schedules

async def insert_schedule(conn: AsyncConnection, row: dict[str, Any]) -> bool:
    """False when the customer already has an active schedule."""
    result = await conn.execute(text(
        "INSERT INTO statement_schedules (schedule_id, customer_id, frequency, next_as_of, created_by, created_on)"
        " VALUES (:schedule_id, :customer_id, :frequency, :next_as_of, :created_by, :created_on)"
        " ON CONFLICT (customer_id) WHERE active DO NOTHING RETURNING 1"), row)
    return result.first() is not None


async def get_schedule(conn: AsyncConnection, schedule_id: str, lock: bool = False) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM statement_schedules WHERE schedule_id = :s"
                                   + (" FOR UPDATE" if lock else "")), {"s": schedule_id})).mappings().first()
    return dict(row) if row else None


async def list_schedules(conn: AsyncConnection, customer_id: str | None) -> list[dict[str, Any]]:
    rows = await conn.execute(text(
        "SELECT * FROM statement_schedules WHERE (CAST(:c AS text) IS NULL OR customer_id = :c)"
        " ORDER BY created_seq"), {"c": customer_id})
    return [dict(r) for r in rows.mappings()]


async def cancel_schedule(conn: AsyncConnection, schedule_id: str) -> None:
    await conn.execute(text("UPDATE statement_schedules SET active = false WHERE schedule_id = :s"),
                       {"s": schedule_id})


async def claim_due_schedule(conn: AsyncConnection, today: Any) -> dict[str, Any] | None:
    """The next active schedule with a statement due before today, locked for this transaction;
    other instances skip it (nothing in-process assumes a single replica)."""
    row = (await conn.execute(text(
        "SELECT * FROM statement_schedules WHERE active AND next_as_of < :d ORDER BY next_as_of, created_seq"
        " LIMIT 1 FOR UPDATE SKIP LOCKED"), {"d": today})).mappings().first()
    return dict(row) if row else None


async def advance_schedule(conn: AsyncConnection, schedule_id: str, next_as_of: Any, last_as_of: Any) -> None:
    await conn.execute(text("UPDATE statement_schedules SET next_as_of = :n, last_as_of = :l WHERE schedule_id = :s"),
                       {"n": next_as_of, "l": last_as_of, "s": schedule_id})
