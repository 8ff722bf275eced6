"""Saving a payment and projecting what it just appended, in the caller's transaction; where a
receipt came from and how the engine explained its match (the work queue reads both)."""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from shared import aggregate
from shared.db import execute_arrays
from shared.money import money_str, to_str
from services.cash_application.domain.matching import MatchResult
from services.cash_application.domain.model import Payment
from services.cash_application.projections import payments as payments_projection


async def project_saved(conn: AsyncConnection, payment: Payment, meta: dict[str, Any]) -> None:
    """Append the payment's new events and project them, so the read model (and the open items'
    balances) move in the same transaction, under the same row locks, as the decision."""
    loaded_at = payment.version
    new_events = await aggregate.save(conn, payment, meta)
    await payments_projection.project(conn, payments_projection.appended(loaded_at, new_events))


_INSERT_SOURCES = (
    "INSERT INTO payment_sources (payment_id, import_id, position, bank_reference, payer_name, payer_account,"
    " remittance_text, match_reason, suggestions, explanation)"
    " SELECT r.p, r.i, r.pos, r.ref, r.name, r.acct, r.txt, r.why, CAST(r.s AS jsonb), r.explanation"
    " FROM unnest(CAST(:p AS text[]), CAST(:i AS text[]), CAST(:pos AS text[]), CAST(:ref AS text[]),"
    " CAST(:name AS text[]), CAST(:acct AS text[]), CAST(:txt AS text[]), CAST(:why AS text[]), CAST(:s AS text[]),"
    " CAST(:explanation AS text[])) AS r(p, i, pos, ref, name, acct, txt, why, s, explanation)")

async def record_sources(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Where each receipt came from (an import's line, or "api") with the engine's reason,
    suggestions and explanation."""
    await execute_arrays(conn, _INSERT_SOURCES, rows)


def source_row(payment: Any, result: MatchResult, *, import_id: str, position: str, bank_reference: str | None,
               payer_name: str | None, payer_account: str | None, remittance_text: str | None) -> dict[str, Any]:
    return {"p": payment.id, "i": import_id, "pos": position, "ref": bank_reference, "name": payer_name,
            "acct": payer_account, "txt": remittance_text,
            "why": payment.unapplied_reasons[-1] if payment.unapplied_reasons else None,
            "s": json.dumps([] if payment.unapplied_amount == 0 else suggestions(result, payment.currency)),
            "explanation": explanation(result) if payment.applications else None}


def explanation(result: MatchResult) -> str:
    customer = (f"customer {result.customer_id} by {result.customer_rule}"
                f" ({to_str(result.customer_confidence)})") if result.customer_id else "customer unknown"
    return "; ".join([customer] + [f"{a.explanation}, confidence {to_str(a.confidence)}" for a in result.allocations])


def suggestions(result: MatchResult, currency: str) -> list[dict[str, Any]]:
    """Ranked suggestions for the work queue: the below-threshold proposal first, then the rest."""
    out = []
    if result.allocations:
        out.append({"invoice_ids": [a.invoice_id for a in result.allocations], "customer_id": result.customer_id,
                    "amount": money_str(sum((a.applied for a in result.allocations), Decimal(0)), currency),
                    "score": to_str(result.confidence), "rule": result.allocations[0].rule,
                    "reason": "; ".join(a.explanation for a in result.allocations)})
    for s in sorted(result.suggestions, key=lambda s: s.score, reverse=True):
        out.append({"invoice_ids": list(s.invoice_ids), "customer_id": s.customer_id,
                    "amount": money_str(s.amount, currency), "score": to_str(s.score), "rule": None,
                    "reason": s.reason})
    return out[:5]
