"""SQL for deductions: customers' code mappings, report profiles, re-bills and what they
recovered, the timeline of every dispute and the root-cause report's sums."""
from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection



async def code_mapping(conn: AsyncConnection, customer_id: str) -> dict[str, str]:
    return (await code_mappings(conn, [customer_id])).get(customer_id, {})


async def code_mappings(conn: AsyncConnection, customer_ids: list[str]) -> dict[str, dict[str, str]]:
    """code_mapping for many customers: {customer_id: mapping}; a customer without one is absent."""
    rows = await conn.execute(text("SELECT customer_id, customer_reason_code, reason_code FROM customer_deduction_codes"
                                   " WHERE customer_id = ANY(CAST(:cs AS text[]))"), {"cs": list(customer_ids)})
    mappings: dict[str, dict[str, str]] = {}
    for r in rows:
        mappings.setdefault(r.customer_id, {})[r.customer_reason_code] = r.reason_code
    return mappings


async def replace_code_mapping(conn: AsyncConnection, customer_id: str, mapping: dict[str, str]) -> None:
    await conn.execute(text("DELETE FROM customer_deduction_codes WHERE customer_id = :c"), {"c": customer_id})
    if mapping:
        await conn.execute(text("INSERT INTO customer_deduction_codes (customer_id, customer_reason_code, reason_code)"
                                " VALUES (:c, :k, :v)"),
                           [{"c": customer_id, "k": k, "v": v} for k, v in mapping.items()])


async def put_profile(conn: AsyncConnection, *, profile_id: str, customer_id: str, columns: dict[str, str],
                      delimiter: str, date_format: str) -> None:
    await conn.execute(text(
        "INSERT INTO deduction_report_profiles (profile_id, customer_id, columns, delimiter, date_format)"
        " VALUES (:p, :c, CAST(:cols AS jsonb), :d, :f) ON CONFLICT (profile_id) DO UPDATE SET"
        " customer_id = excluded.customer_id, columns = excluded.columns, delimiter = excluded.delimiter,"
        " date_format = excluded.date_format, updated_at = now()"),
        {"p": profile_id, "c": customer_id, "cols": json.dumps(columns), "d": delimiter, "f": date_format})


async def get_profile(conn: AsyncConnection, profile_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM deduction_report_profiles WHERE profile_id = :p"),
                              {"p": profile_id})).mappings().first()
    if row is None:
        return None
    data = dict(row)
    if isinstance(data["columns"], str):
        data["columns"] = json.loads(data["columns"])
    return data


async def invoice_by_number(conn: AsyncConnection, customer_id: str, number: str) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM invoice_references WHERE customer_id = :c"
                                   " AND (invoice_number = :n OR invoice_id = :n) ORDER BY invoice_id LIMIT 1"),
                              {"c": customer_id, "n": number})).mappings().first()
    return dict(row) if row else None


async def open_deduction_to_match(conn: AsyncConnection, invoice_id: str, amount: Decimal) -> str | None:
    """An open deduction on the invoice, of the amount, that no report line claimed yet."""
    return (await conn.execute(text(
        "SELECT dispute_id FROM disputes WHERE invoice_id = :i AND kind = 'deduction' AND status = 'open'"
        " AND amount = :a AND external_reference IS NULL ORDER BY created_seq LIMIT 1 FOR UPDATE"),
        {"i": invoice_id, "a": amount})).scalar()


async def dispute_by_reference(conn: AsyncConnection, customer_id: str, reference: str) -> str | None:
    return (await conn.execute(text("SELECT dispute_id FROM disputes WHERE customer_id = :c AND external_reference = :r"),
                               {"c": customer_id, "r": reference})).scalar()


async def set_reference(conn: AsyncConnection, dispute_id: str, reference: str, customer_code: str | None) -> None:
    await conn.execute(text("UPDATE disputes SET external_reference = :r,"
                            " customer_reason_code = coalesce(customer_reason_code, :cc) WHERE dispute_id = :d"),
                       {"r": reference, "cc": customer_code, "d": dispute_id})


async def lock_escalation_run(conn: AsyncConnection) -> None:
    """One escalation run at a time across the service's instances (released at commit)."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('disputes:escalation-run', 0))"))


async def update_dispute(conn: AsyncConnection, dispute_id: str, version: int, **columns: Any) -> None:
    sets = ", ".join(f"{name} = :{name}" for name in columns)
    await conn.execute(text(f"UPDATE disputes SET {sets}{', ' if sets else ''}version = :version"
                            " WHERE dispute_id = :dispute_id"), {**columns, "version": version, "dispute_id": dispute_id})


async def record_rebill_invoice(conn: AsyncConnection, *, dispute_id: str, invoice_id: str) -> None:
    await conn.execute(text("UPDATE disputes SET rebill_invoice_id = :i WHERE dispute_id = :d"),
                       {"i": invoice_id, "d": dispute_id})
    # Cash that reached the re-bill before its InvoiceIssued was seen counts too.
    await refresh_recovered(conn, invoice_id)


async def record_collection(conn: AsyncConnection, *, application_id: str, invoice_id: str, amount: Decimal,
                            value_date: date) -> None:
    """Cash applied (or, negative, unapplied) on an invoice: kept for every invoice, because a
    PaymentApplied may arrive before the InvoiceIssued that says the invoice is a re-bill."""
    await conn.execute(text("INSERT INTO rebill_collections (application_id, invoice_id, amount, value_date)"
                            " VALUES (:a, :i, :amt, :d) ON CONFLICT (application_id) DO NOTHING"),
                       {"a": application_id, "i": invoice_id, "amt": amount, "d": value_date})
    await refresh_recovered(conn, invoice_id)


async def record_collections(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """record_collection for many (rows: a application id, i invoice, amt signed amount, d value
    date): one executemany, then each re-bill's recovered amount once per invoice touched."""
    await conn.execute(text("INSERT INTO rebill_collections (application_id, invoice_id, amount, value_date)"
                            " VALUES (:a, :i, :amt, :d) ON CONFLICT (application_id) DO NOTHING"), rows)
    await conn.execute(text(
        "UPDATE disputes d SET recovered_amount = (SELECT coalesce(sum(c.amount), 0) FROM rebill_collections c"
        " WHERE c.invoice_id = d.rebill_invoice_id) WHERE d.rebill_invoice_id = ANY(CAST(:ids AS text[]))"),
        {"ids": sorted({r["i"] for r in rows})})


async def refresh_recovered(conn: AsyncConnection, invoice_id: str) -> None:
    await conn.execute(text(
        "UPDATE disputes SET recovered_amount = (SELECT coalesce(sum(amount), 0) FROM rebill_collections"
        " WHERE invoice_id = :i) WHERE rebill_invoice_id = :i"), {"i": invoice_id})


# A dispute's product line: its named line's, else the invoice's when every line has the same one
# (a short pay names no line), else unassigned. Read from the invoice's lines at report time, so
# the answer is the same whichever of InvoiceIssued and the dispute arrived first.
_PRODUCT_LINE = (
    "coalesce(r.product_lines ->> (d.line_number - 1),"
    " CASE WHEN d.line_number IS NULL THEN (SELECT min(x) FROM jsonb_array_elements_text(r.product_lines) x"
    "  HAVING count(DISTINCT x) = 1 AND count(x) = count(*)) END, 'unassigned')")
_GROUPS = {"reason": "reason_code", "customer": "d.customer_id", "owner_team": "coalesce(team, 'unassigned')",
           "owner": "coalesce(owner, 'unassigned')", "product_line": _PRODUCT_LINE}


async def root_cause(conn: AsyncConnection, *, group_by: str, kind: str | None, currency: str,
                     opened_from: date | None, opened_to: date | None) -> list[dict[str, Any]]:
    """Deductions and disputes opened in the window, grouped: counts and amounts opened, open,
    credited (valid), re-billed (invalid) and recovered (cash applied to the re-bills), and the
    average days from opening to resolution of those resolved."""
    group = _GROUPS[group_by]
    rows = await conn.execute(text(
        f"SELECT {group} AS key, count(*) AS opened, sum(amount) AS opened_amount,"
        " count(*) FILTER (WHERE status = 'open') AS still_open,"
        " coalesce(sum(amount) FILTER (WHERE status = 'open'), 0) AS open_amount,"
        " count(*) FILTER (WHERE status = 'resolved') AS resolved,"
        " coalesce(sum(credit_amount) FILTER (WHERE status = 'resolved'), 0) AS credited_amount,"
        " coalesce(sum(rebill_amount), 0) AS rebilled_amount,"
        " coalesce(sum(recovered_amount), 0) AS recovered_amount,"
        " avg(resolved_on - opened_on) FILTER (WHERE status = 'resolved') AS avg_cycle_days,"
        " max(resolved_on - opened_on) FILTER (WHERE status = 'resolved') AS max_cycle_days"
        " FROM disputes d LEFT JOIN invoice_references r USING (invoice_id)"
        " WHERE d.currency = :cur AND (CAST(:k AS text) IS NULL OR kind = :k)"
        " AND (CAST(:f AS date) IS NULL OR opened_on >= :f) AND (CAST(:t AS date) IS NULL OR opened_on <= :t)"
        " GROUP BY 1 ORDER BY sum(amount) DESC, 1"),
        {"cur": currency, "k": kind, "f": opened_from, "t": opened_to})
    return [dict(r) for r in rows.mappings()]


async def add_note(conn: AsyncConnection, *, note_id: str, dispute_id: str, text_: str, author: str,
                   added_on: date) -> None:
    await conn.execute(text("INSERT INTO dispute_notes (note_id, dispute_id, text, author, added_on)"
                            " VALUES (:n, :d, :t, :a, :on) ON CONFLICT DO NOTHING"),
                       {"n": note_id, "d": dispute_id, "t": text_, "a": author, "on": added_on})


async def notes(conn: AsyncConnection, dispute_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(text("SELECT note_id, text, author, added_on FROM dispute_notes WHERE dispute_id = :d"
                                   " ORDER BY created_seq"), {"d": dispute_id})
    return [dict(r) for r in rows.mappings()]


async def add_attachment(conn: AsyncConnection, *, attachment_id: str, dispute_id: str, file_name: str,
                         content_type: str, kind: str, content: bytes, sha256: str, added_by: str,
                         added_on: date) -> None:
    await conn.execute(text(
        "INSERT INTO dispute_attachments (attachment_id, dispute_id, file_name, content_type, kind, size_bytes,"
        " sha256, content, added_by, added_on) VALUES (:id, :d, :f, :ct, :k, :n, :h, :c, :by, :on)"
        " ON CONFLICT DO NOTHING"),
        {"id": attachment_id, "d": dispute_id, "f": file_name, "ct": content_type, "k": kind, "n": len(content),
         "h": sha256, "c": content, "by": added_by, "on": added_on})


async def attachments(conn: AsyncConnection, dispute_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(text(
        "SELECT attachment_id, file_name, content_type, kind, size_bytes, sha256, added_by, added_on"
        " FROM dispute_attachments WHERE dispute_id = :d ORDER BY created_seq"), {"d": dispute_id})
    return [dict(r) for r in rows.mappings()]


async def attachment_content(conn: AsyncConnection, dispute_id: str, attachment_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(text(
        "SELECT file_name, content_type, content FROM dispute_attachments WHERE dispute_id = :d"
        " AND attachment_id = :a"), {"d": dispute_id, "a": attachment_id})).mappings().first()
    return dict(row) if row else None


async def overdue_open_disputes(conn: AsyncConnection, as_of: date) -> list[str]:
    return list((await conn.execute(text(
        "SELECT dispute_id FROM disputes WHERE status = 'open' AND due_on < :d ORDER BY due_on, dispute_id"),
        {"d": as_of})).scalars())
