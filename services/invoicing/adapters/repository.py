"""SQL for invoicing's read models."""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

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


async def customer_exposure(conn: AsyncConnection, customer_id: str) -> Decimal:
    """Open balance across the customer's invoices."""
    value = (await conn.execute(
        text("SELECT coalesce(sum(i.total_amount - i.credited_amount - coalesce(p.paid, 0)), 0)"
             " FROM invoices i LEFT JOIN (SELECT invoice_id, sum(amount) AS paid FROM invoice_payments"
             " GROUP BY invoice_id) p USING (invoice_id) WHERE i.customer_id = :c"),
        {"c": customer_id})).scalar_one()
    return Decimal(value)


async def invoice_number_taken(conn: AsyncConnection, number: str) -> bool:
    return (await conn.execute(text("SELECT 1 FROM invoices WHERE invoice_number = :n"), {"n": number})).first() is not None


async def insert_invoice(conn: AsyncConnection, inv: Any, lines: list[dict[str, Any]], version: int) -> None:
    await conn.execute(
        text("INSERT INTO invoices (invoice_id, invoice_number, customer_id, currency, issue_date, due_date,"
             " total_amount, lines, version) VALUES (:id, :num, :cust, :cur, :issue, :due, :total,"
             " CAST(:lines AS jsonb), :v)"),
        {"id": inv.id, "num": inv.invoice_number, "cust": inv.customer_id, "cur": inv.currency,
         "issue": inv.issue_date, "due": inv.due_date, "total": inv.total_amount, "lines": dumps(lines), "v": version},
    )


async def record_credit_memo(conn: AsyncConnection, memo: dict[str, Any], credited_total: Decimal, version: int) -> None:
    await conn.execute(
        text("INSERT INTO credit_memos (credit_memo_id, invoice_id, customer_id, currency, amount, issue_date,"
             " reason, dispute_id) VALUES (:credit_memo_id, :invoice_id, :customer_id, :currency, :amount,"
             " :issue_date, :reason, :dispute_id)"),
        memo,
    )
    await conn.execute(
        text("UPDATE invoices SET credited_amount = :c, version = :v WHERE invoice_id = :id"),
        {"c": credited_total, "v": version, "id": memo["invoice_id"]},
    )


async def paid_amount(conn: AsyncConnection, invoice_id: str) -> Decimal:
    value = (await conn.execute(
        text("SELECT coalesce(sum(amount), 0) FROM invoice_payments WHERE invoice_id = :i"), {"i": invoice_id}
    )).scalar_one()
    return Decimal(value)


_INVOICE_SELECT = (
    "SELECT i.*, coalesce((SELECT sum(amount) FROM invoice_payments p WHERE p.invoice_id = i.invoice_id), 0)"
    " AS paid_amount FROM invoices i"
)


async def get_invoice(conn: AsyncConnection, invoice_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(text(f"{_INVOICE_SELECT} WHERE i.invoice_id = :id"), {"id": invoice_id})).mappings().first()
    return _invoice_row(row) if row else None


async def list_invoices(conn: AsyncConnection, *, customer_id: str | None, status: str | None,
                        issued_from: Any, issued_to: Any, after: int | None, limit: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(f"SELECT * FROM ({_INVOICE_SELECT}) x WHERE (CAST(:c AS text) IS NULL OR customer_id = :c)"
             " AND (CAST(:after AS bigint) IS NULL OR created_seq > :after)"
             " AND (CAST(:f AS date) IS NULL OR issue_date >= :f) AND (CAST(:t AS date) IS NULL OR issue_date <= :t)"
             " AND (CAST(:status AS text) IS NULL"
             "      OR (:status = 'open' AND total_amount - credited_amount - paid_amount > 0)"
             "      OR (:status = 'closed' AND total_amount - credited_amount - paid_amount <= 0))"
             " ORDER BY created_seq LIMIT :limit"),
        {"c": customer_id, "after": after, "f": issued_from, "t": issued_to, "status": status, "limit": limit},
    )
    return [_invoice_row(r) for r in rows.mappings()]


def _invoice_row(row: Any) -> dict[str, Any]:
    data = dict(row)
    if isinstance(data.get("lines"), str):
        data["lines"] = json.loads(data["lines"])
    data["paid_amount"] = Decimal(data["paid_amount"])
    data["open_balance"] = Decimal(data["total_amount"]) - Decimal(data["credited_amount"]) - data["paid_amount"]
    return data


async def credit_memos_for(conn: AsyncConnection, invoice_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(text("SELECT * FROM credit_memos WHERE invoice_id = :i ORDER BY issue_date, credit_memo_id"),
                              {"i": invoice_id})
    return [dict(r) for r in rows.mappings()]


async def record_payment_applied(conn: AsyncConnection, payment_id: str, invoice_id: str, amount: Decimal, value_date: Any) -> None:
    await conn.execute(
        text("INSERT INTO invoice_payments (payment_id, invoice_id, amount, value_date) VALUES (:p, :i, :a, :d)"
             " ON CONFLICT (payment_id, invoice_id) DO UPDATE SET amount = invoice_payments.amount + excluded.amount"),
        {"p": payment_id, "i": invoice_id, "a": amount, "d": value_date},
    )


