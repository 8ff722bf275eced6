"""Card payouts' rows and the queries that tie a payout to the bank line that carried it."""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.money import money_str
from services.cash_application.adapters.repository import _OPEN_BALANCE

# A bank books a payout on or a few days after the processor's expected arrival date.
EARLIEST = timedelta(days=3)
LATEST = timedelta(days=5)


async def lock_payouts(conn: AsyncConnection) -> None:
    """Payout reports and bank files that may carry payouts take turns, so a payout is tied to
    one line and a line to one payout."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('cash_application:card-payouts'))"))


async def claim_payout(conn: AsyncConnection, row: dict[str, Any]) -> bool:
    inserted = (await conn.execute(text(
        "INSERT INTO card_payouts (payout_id, processor, processor_payout_id, import_id, currency, amount, arrival_date,"
        " charges, fees, refunds, chargebacks, other) VALUES (:payout_id, :processor, :processor_payout_id,"
        " :import_id, :currency, :amount, :arrival_date, :charges, :fees, :refunds, :chargebacks, :other)"
        " ON CONFLICT (payout_id) DO NOTHING RETURNING 1"), row)).first()
    return inserted is not None


async def payout_import(conn: AsyncConnection, payout_id: str) -> str:
    return (await conn.execute(text("SELECT import_id FROM card_payouts WHERE payout_id = :p"),
                               {"p": payout_id})).scalar_one()


async def open_invoices_named(conn: AsyncConnection, numbers: Sequence[str]) -> list[dict[str, Any]]:
    """The open invoices whose number is one of these (what a card report's charges name), for
    the matching engine: only the invoices a report can concern are read, never every open item."""
    if not numbers:
        return []
    rows = await conn.execute(text(
        f"SELECT invoice_id, invoice_number, customer_id, currency, due_date, {_OPEN_BALANCE} AS open_balance"
        " FROM open_items WHERE total_amount IS NOT NULL AND invoice_number = ANY(CAST(:n AS text[]))"
        " ORDER BY invoice_id"), {"n": sorted(set(numbers))})
    return [dict(r) for r in rows.mappings()]


async def existing_payments(conn: AsyncConnection, payment_ids: Sequence[str]) -> set[str]:
    if not payment_ids:
        return set()
    rows = await conn.execute(text("SELECT payment_id FROM payments WHERE payment_id = ANY(CAST(:p AS text[]))"),
                              {"p": list(payment_ids)})
    return set(rows.scalars())


async def unreconciled_payouts(conn: AsyncConnection, currencies_amounts: Sequence[tuple[str, Decimal]]
                               ) -> list[dict[str, Any]]:
    """Payouts not yet tied to a bank line, with one of these currency and amount pairs."""
    if not currencies_amounts:
        return []
    rows = await conn.execute(text(
        "SELECT payout_id, processor, processor_payout_id, currency, amount, arrival_date FROM card_payouts"
        " WHERE bank_import_id IS NULL AND amount = ANY(CAST(:a AS numeric[])) ORDER BY arrival_date, payout_id"),
        {"a": sorted({a for _, a in currencies_amounts})})
    wanted = {(c, Decimal(a).normalize()) for c, a in currencies_amounts}
    return [dict(r) for r in rows.mappings()
            if (r.currency.strip(), Decimal(r.amount).normalize()) in wanted]


async def receipt_lines_for_payout(conn: AsyncConnection, *, currency: str, amount: Decimal, arrival: date
                                   ) -> list[dict[str, Any]]:
    """Credit lines an earlier bank import posted as receipts that could be this payout (same
    currency and amount, booked around its arrival date), with the receipt's text and state."""
    rows = await conn.execute(text(
        "SELECT l.import_id, l.position, l.value_date, l.bank_reference, l.payer_name, l.payment_id,"
        " s.remittance_text, p.applied_amount, p.refunded_amount, p.returned_on"
        " FROM statement_lines l JOIN payments p ON p.payment_id = l.payment_id"
        " LEFT JOIN payment_sources s ON s.payment_id = l.payment_id"
        " WHERE l.direction = 'credit' AND l.kind = 'receipt' AND l.payout_id IS NULL AND l.currency = :c"
        " AND l.amount = :a AND l.value_date BETWEEN :lo AND :hi ORDER BY l.value_date, l.import_id, l.position"),
        {"c": currency, "a": amount, "lo": arrival - EARLIEST, "hi": arrival + LATEST})
    return [dict(r) for r in rows.mappings()]


async def tie_line(conn: AsyncConnection, *, payout_id: str, import_id: str, position: str, value_date: date,
                   superseded_payment_id: str | None = None) -> None:
    await conn.execute(text(
        "UPDATE card_payouts SET bank_import_id = :i, bank_position = :pos, bank_value_date = :d,"
        " superseded_payment_id = :p WHERE payout_id = :po"),
        {"i": import_id, "pos": position, "d": value_date, "p": superseded_payment_id, "po": payout_id})
    await conn.execute(text(
        "UPDATE statement_lines SET kind = 'card_payout', payout_id = :po WHERE import_id = :i AND position = :pos"),
        {"i": import_id, "pos": position, "po": payout_id})


async def get_payout(conn: AsyncConnection, payout_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM card_payouts WHERE payout_id = :p"), {"p": payout_id})).mappings().first()
    if row is None:
        return None
    currency = row["currency"].strip()
    money = {k: money_str(Decimal(row[k]), currency) for k in ("amount", "charges", "fees", "refunds", "chargebacks",
                                                              "other")}
    return {"processor": row["processor"], "payout_id": row["processor_payout_id"], "currency": currency,
            "arrival_date": row["arrival_date"].isoformat(), "import_id": row["import_id"], **money,
            "bank_line": None if row["bank_import_id"] is None else {
                "import_id": row["bank_import_id"], "position": row["bank_position"],
                "value_date": row["bank_value_date"].isoformat(),
                "superseded_payment_id": row["superseded_payment_id"]}}
