"""/v1/reports/statements/{customer_id}: a statement of account as of a date, for one customer or
a parent account with every customer below it, as JSON or PDF (English or French)."""
from __future__ import annotations

import asyncio
from datetime import date
from typing import Literal

from fastapi import APIRouter, Query, Request, Response

from shared.money import money_str
from shared.service import get_runtime
from services.reporting.adapters import statement_pdf
from services.reporting.adapters.repository import read_snapshot
from services.reporting.application.hierarchy import statement_of_account

router = APIRouter(prefix="/v1/reports", tags=["reports"])


@router.get("/statements/{customer_id}", responses={200: {"content": {
    "application/json": {}, "application/pdf": {"schema": {"type": "string", "format": "binary"}}}}})
async def statement(customer_id: str, request: Request,
                    as_of: date | None = Query(None, description="As of the end of this day; default today"),
                    currency: str | None = Query(None, min_length=3, max_length=3),
                    language: Literal["en", "fr"] = Query("en"),
                    format: Literal["json", "pdf"] = Query("json")):
    """Open items (invoice, issue and due dates, days past due, open balance) aged by due date,
    unapplied cash and the balance due (open items − unapplied cash). A parent account's
    statement covers its family as of the date (the hierarchy from CustomerParentChanged)."""
    runtime = get_runtime(request)
    day = as_of or runtime.definition.state["clock"].today()
    async with read_snapshot(runtime.engine) as conn:
        s = await statement_of_account(conn, customer_id, day, currency, language)
    if format == "pdf":
        content = await asyncio.to_thread(statement_pdf.render, s)
        return Response(content, media_type="application/pdf", headers={
            "Content-Disposition": f'inline; filename="statement-{customer_id}-{day.isoformat()}.pdf"',
            "Content-Language": s.language})
    code = s.currency
    return {"customer_id": s.customer_id, "customer_name": s.customer_name, "as_of": day.isoformat(),
            "currency": code, "members": list(s.members),
            "open_items": [{"customer_id": line.customer_id, "invoice_number": line.invoice_number,
                            "issue_date": line.issue_date.isoformat(), "due_date": line.due_date.isoformat(),
                            "days_past_due": line.days_past_due, "open_balance": money_str(line.open_balance, code)}
                           for line in s.lines],
            "buckets": {k: money_str(v, code) for k, v in s.buckets.items()},
            "open_total": money_str(s.open_total, code), "unapplied_cash": money_str(s.unapplied_cash, code),
            "balance_due": money_str(s.balance_due, code)}
