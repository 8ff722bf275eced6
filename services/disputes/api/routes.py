"""/v1 routes of disputes."""
from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from shared.idempotency import idempotent_create, idempotency_key_header
from shared.money import MoneyError, exact_amount
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, page
from shared.problems import NotFound, Problem, Unprocessable, ValidationFailed
from shared.service import get_runtime, request_metadata
from services.disputes.adapters import repository as repo
from services.disputes.api.schemas import OpenDisputeRequest, ResolveDisputeRequest, dispute_out
from services.disputes.application import handlers
from services.disputes.domain.reason_codes import CATALOGUE

router = APIRouter(prefix="/v1")


def _exact(value, currency: str, field: str):
    try:
        return exact_amount(value, currency)
    except MoneyError as exc:
        raise ValidationFailed(str(exc), field=field) from exc


def _if_match_version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    try:
        return int(if_match.strip().removeprefix("W/").strip('"'))
    except ValueError as exc:
        raise Problem("If-Match must be the ETag returned by GET (the dispute version)", field="If-Match") from exc


@router.get("/reason-codes", tags=["reason codes"])
async def list_reason_codes() -> dict[str, Any]:
    return {"data": [{"code": r.code, "description": r.description, "selectable": r.selectable} for r in CATALOGUE]}


@router.post("/disputes", status_code=201, tags=["disputes"])
async def open_dispute(body: OpenDisputeRequest, request: Request, key: str = Depends(idempotency_key_header)):
    runtime = get_runtime(request)
    today = runtime.definition.state["clock"].today()
    dispute_id = body.dispute_id or str(uuid.uuid4())

    async def command(conn):
        ref = await repo.get_invoice_reference(conn, body.invoice_id)
        if ref is None:
            raise Unprocessable(f"invoice {body.invoice_id} is not known to disputes", field="invoice_id")
        amount = _exact(body.amount, ref["currency"].strip(), "amount")
        dispute = await handlers.open_dispute(conn, handlers.OpenDispute(
            dispute_id=dispute_id, invoice_id=body.invoice_id, amount=amount, reason_code=body.reason_code,
            opened_on=body.opened_on or today, description=body.description, line_number=body.line_number),
            request_metadata(request))
        return dispute_out(dispute)

    return await idempotent_create(request, key, body.model_dump(mode="json"), command)


@router.post("/disputes/{dispute_id}/resolution", status_code=201, tags=["disputes"])
async def resolve_dispute(dispute_id: str, body: ResolveDisputeRequest, request: Request,
                          key: str = Depends(idempotency_key_header),
                          if_match: str | None = Header(default=None, alias="If-Match")):
    runtime = get_runtime(request)
    today = runtime.definition.state["clock"].today()
    expected = _if_match_version(if_match)

    async def command(conn):
        current = await repo.get_dispute(conn, dispute_id)
        if current is None:
            raise NotFound(f"dispute {dispute_id} does not exist", field="dispute_id")
        credit = None if body.credit_amount is None else _exact(body.credit_amount, current["currency"].strip(),
                                                                 "credit_amount")
        dispute = await handlers.resolve_dispute(conn, handlers.ResolveDispute(
            dispute_id=dispute_id, resolution=body.resolution, credit_amount=credit,
            resolved_on=body.resolved_on or today, note=body.note, expected_version=expected),
            request_metadata(request))
        return dispute_out(dispute)

    return await idempotent_create(request, key, {"dispute_id": dispute_id, **body.model_dump(mode="json")}, command)


@router.get("/disputes/{dispute_id}", tags=["disputes"])
async def get_dispute(dispute_id: str, request: Request, response: Response) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        dispute = await repo.get_dispute(conn, dispute_id)
    if dispute is None:
        raise NotFound(f"dispute {dispute_id} does not exist", field="dispute_id")
    response.headers["ETag"] = f'"{dispute["version"]}"'
    return dispute_out(dispute)


@router.get("/disputes", tags=["disputes"])
async def list_disputes(request: Request, customer_id: str | None = None, invoice_id: str | None = None,
                        status: str | None = Query(None, pattern="^(open|resolved)$"),
                        kind: str | None = Query(None, pattern="^(dispute|deduction)$"),
                        reason_code: str | None = Query(None, max_length=64),
                        owner: str | None = Query(None, max_length=120,
                                                  description="the owner's name; `-` for disputes without one"),
                        team: str | None = Query(None, pattern="^(sales|customer_service|billing|logistics)$"),
                        min_amount: Decimal | None = Query(None, ge=0, le=Decimal("999999999999999"),
                                                           description="at least this amount (decimal string)"),
                        max_amount: Decimal | None = Query(None, ge=0, le=Decimal("999999999999999")),
                        opened_from: date | None = None, opened_to: date | None = None,
                        cursor: str | None = None,
                        limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)) -> dict[str, Any]:
    after = decode_cursor(cursor)
    try:
        after_seq = int(after[0]) if after else None
    except (TypeError, ValueError, IndexError) as exc:
        raise Problem("cursor is not one this API returned", field="cursor") from exc
    async with get_runtime(request).engine.connect() as conn:
        rows = await repo.list_disputes(conn, customer_id=customer_id, invoice_id=invoice_id, status=status,
                                        kind=kind, after=after_seq, limit=limit + 1, reason_code=reason_code,
                                        owner=None if owner == "-" else owner, unassigned=owner == "-", team=team,
                                        min_amount=min_amount, max_amount=max_amount, opened_from=opened_from,
                                        opened_to=opened_to)
    seqs = [r["created_seq"] for r in rows]
    return page([dispute_out(r) for r in rows], limit, lambda _: [seqs[min(limit, len(seqs)) - 1]])
