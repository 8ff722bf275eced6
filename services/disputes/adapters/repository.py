"""SQL for disputes' read models: the invoice reference model and the disputes list."""
from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


_INSERT_REFERENCE = text(
    "INSERT INTO invoice_references (invoice_id, customer_id, currency, total_amount, issue_date, due_date,"
    " invoice_number, rebill_of_deduction, product_lines) VALUES (:i, :c, :cur, :t, :issue, :due, :n, :rb,"
    " CAST(:pl AS jsonb)) ON CONFLICT (invoice_id) DO NOTHING")


def invoice_reference_row(*, invoice_id: str, customer_id: str, currency: str, total_amount: Decimal,
                          issue_date: date, due_date: date, invoice_number: str | None = None,
                          rebill_of_deduction: str | None = None,
                          product_lines: list[str | None] | None = None) -> dict[str, Any]:
    return {"i": invoice_id, "c": customer_id, "cur": currency, "t": total_amount, "issue": issue_date,
            "due": due_date, "n": invoice_number, "rb": rebill_of_deduction, "pl": json.dumps(product_lines or [])}


async def record_invoice_reference(conn: AsyncConnection, *, invoice_id: str, customer_id: str, currency: str,
                                   total_amount: Decimal, issue_date: date, due_date: date,
                                   invoice_number: str | None = None, rebill_of_deduction: str | None = None,
                                   product_lines: list[str | None] | None = None) -> None:
    """product_lines: each line's product line in line order (None where the ERP gave none)."""
    await conn.execute(_INSERT_REFERENCE, invoice_reference_row(
        invoice_id=invoice_id, customer_id=customer_id, currency=currency, total_amount=total_amount,
        issue_date=issue_date, due_date=due_date, invoice_number=invoice_number,
        rebill_of_deduction=rebill_of_deduction, product_lines=product_lines))


async def record_invoice_references(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Many invoice_reference_row()s in one round trip (executemany, in order: the first wins)."""
    await conn.execute(_INSERT_REFERENCE, rows)


async def get_invoice_reference(conn: AsyncConnection, invoice_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    """lock: hold the invoice's row until commit, so disputes opened at the same instant on one
    invoice are checked one after the other against what the earlier ones hold."""
    sql = "SELECT * FROM invoice_references WHERE invoice_id = :i" + (" FOR UPDATE" if lock else "")
    row = (await conn.execute(text(sql), {"i": invoice_id})).mappings().first()
    return dict(row) if row else None


async def amount_in_dispute(conn: AsyncConnection, invoice_id: str) -> Decimal:
    """What the invoice's disputes already hold: open amounts plus credits granted."""
    value = (await conn.execute(
        text("SELECT coalesce(sum(CASE WHEN status = 'open' THEN amount ELSE credit_amount END), 0)"
             " FROM disputes WHERE invoice_id = :i"), {"i": invoice_id})).scalar_one()
    return Decimal(value)


async def insert_dispute(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await insert_disputes(conn, [row])


async def insert_disputes(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Open disputes' rows (one statement; executemany for several)."""
    if not rows:
        return
    defaults = {"team": None, "customer_reason_code": None, "external_reference": None, "due_on": None,
                "line_number": None, "description": None, "payment_id": None}
    await conn.execute(
        text("INSERT INTO disputes (dispute_id, kind, invoice_id, customer_id, payment_id, currency, amount,"
             " reason_code, description, opened_on, status, version, team, customer_reason_code, external_reference,"
             " due_on, line_number) VALUES (:dispute_id, :kind, :invoice_id, :customer_id, :payment_id, :currency,"
             " :amount, :reason_code, :description, :opened_on, 'open', :version, :team, :customer_reason_code,"
             " :external_reference, :due_on, :line_number)"),
        [{**defaults, **row} for row in rows],
    )


async def record_resolution(conn: AsyncConnection, *, dispute_id: str, resolution: str, credit_amount: Decimal,
                            resolved_on: date, note: str | None, version: int) -> None:
    await conn.execute(
        text("UPDATE disputes SET status = 'resolved', work_status = 'resolved', resolution = :r, credit_amount = :c,"
             " resolved_on = :on,"
             " resolution_note = :n, version = :v WHERE dispute_id = :d"),
        {"r": resolution, "c": credit_amount, "on": resolved_on, "n": note, "v": version, "d": dispute_id},
    )


async def lock_payment(conn: AsyncConnection, payment_id: str) -> None:
    """Serialise a payment's short pays with its return (transaction-scoped lock), so a
    deduction opened concurrently with the return is seen and withdrawn by it."""
    await lock_payments(conn, [payment_id])


async def record_returned_payment(conn: AsyncConnection, payment_id: str, reason_code: str, returned_on) -> None:
    await conn.execute(text("INSERT INTO returned_payments (payment_id, reason_code, returned_on)"
                            " VALUES (:p, :r, :d) ON CONFLICT (payment_id) DO NOTHING"),
                       {"p": payment_id, "r": reason_code, "d": returned_on})


async def lock_payments(conn: AsyncConnection, payment_ids: list[str]) -> None:
    """lock_payment for many, in one statement, in one order for every caller (the locks' keys
    sorted), so two transactions locking overlapping payments queue up instead of deadlocking."""
    await conn.execute(text(
        "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT DISTINCT hashtextextended('disputes:payment:' || p, 0) AS k"
        " FROM unnest(CAST(:ps AS text[])) AS p ORDER BY k) AS keys"), {"ps": list(payment_ids)})


async def returned_payments(conn: AsyncConnection, payment_ids: list[str]) -> set[str]:
    """Which of these payments the bank returned."""
    rows = await conn.execute(text("SELECT payment_id FROM returned_payments WHERE payment_id = ANY(CAST(:ps AS text[]))"),
                              {"ps": list(payment_ids)})
    return set(rows.scalars())


async def open_deductions_of_payment(conn: AsyncConnection, payment_id: str) -> list[str]:
    rows = await conn.execute(
        text("SELECT dispute_id FROM disputes WHERE payment_id = :p AND kind = 'deduction' AND status = 'open'"
             " AND coalesce(external_reference, '') NOT LIKE 'chargeback:%' ORDER BY dispute_id"), {"p": payment_id})
    return list(rows.scalars())


async def get_dispute(conn: AsyncConnection, dispute_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM disputes WHERE dispute_id = :d"),
                              {"d": dispute_id})).mappings().first()
    return dict(row) if row else None


async def list_disputes(conn: AsyncConnection, *, customer_id: str | None, invoice_id: str | None,
                        status: str | None, kind: str | None, after: int | None, limit: int,
                        reason_code: str | None = None, owner: str | None = None, unassigned: bool = False,
                        team: str | None = None, min_amount=None, max_amount=None, opened_from=None,
                        opened_to=None) -> list[dict[str, Any]]:
    """The queue's filters (each optional): reason, owner (or no owner), team, amount between, opened between."""
    rows = await conn.execute(
        text("SELECT * FROM disputes WHERE (CAST(:c AS text) IS NULL OR customer_id = :c)"
             " AND (CAST(:i AS text) IS NULL OR invoice_id = :i)"
             " AND (CAST(:s AS text) IS NULL OR status = :s)"
             " AND (CAST(:k AS text) IS NULL OR kind = :k)"
             " AND (CAST(:r AS text) IS NULL OR reason_code = :r)"
             " AND (CAST(:o AS text) IS NULL OR owner = :o)"
             " AND (NOT :unassigned OR owner IS NULL)"
             " AND (CAST(:t AS text) IS NULL OR team = :t)"
             " AND (CAST(:min AS numeric) IS NULL OR amount >= :min)"
             " AND (CAST(:max AS numeric) IS NULL OR amount <= :max)"
             " AND (CAST(:from AS date) IS NULL OR opened_on >= :from)"
             " AND (CAST(:to AS date) IS NULL OR opened_on <= :to)"
             " AND (CAST(:after AS bigint) IS NULL OR created_seq > :after)"
             " ORDER BY created_seq LIMIT :limit"),
        {"c": customer_id, "i": invoice_id, "s": status, "k": kind, "r": reason_code, "o": owner,
         "unassigned": unassigned, "t": team, "min": min_amount, "max": max_amount, "from": opened_from,
         "to": opened_to, "after": after, "limit": limit},
    )
    return [dict(r) for r in rows.mappings()]
