"""/v1 routes of card processors' payout reports (Stripe, Adyen): charges posted gross, fees as
their own events, refunds, chargebacks, each payout tied to the bank credit that carried it."""
from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from shared.idempotency import idempotent_request, idempotency_key_header
from shared.problems import NotFound
from shared.service import get_runtime, request_metadata
from services.cash_application.adapters import card_payout_store
from services.cash_application.api.routes import body_within
from services.cash_application.application import card_payouts

router = APIRouter(prefix="/v1")


@router.post("/card-payouts", status_code=201, tags=["card payouts"],
             openapi_extra={"requestBody": {"required": True, "content": {
                 "text/csv": {"schema": {"type": "string"}},
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
async def import_card_report(request: Request, key: str = Depends(idempotency_key_header),
                             processor: str = Query(..., description="stripe | adyen"),
                             invoice_column: str | None = Query(
                                 None, max_length=200, description="the report column holding the invoice number the"
                                 " ERP put on the charge (default per processor from the settings)"),
                             file_name: str | None = Query(None, max_length=200)) -> JSONResponse:
    """Import a payout report sent as the raw request body (`curl --data-binary @payouts.csv`):
    all of it posts or none of it; the same report again answers the first import (200)."""
    runtime = get_runtime(request)
    content = await body_within(request, runtime.settings.max_file_bytes)
    cmd = card_payouts.ImportCardReport(content=content, processor=processor, invoice_column=invoice_column,
                                        file_name=file_name)
    parsed = await card_payouts.parse(cmd, runtime.settings)
    fingerprint = {"processor": processor, "invoice_column": invoice_column,
                   "sha256": hashlib.sha256(content).hexdigest()}

    async def command(conn):
        result = await card_payouts.import_card_report(conn, cmd, parsed, runtime.settings,
                                                       request_metadata(request))
        return (200 if result["replayed"] else 201), result

    status, body, replayed = await idempotent_request(request, key, fingerprint, command)
    return JSONResponse(body, status_code=status, headers={"Idempotent-Replayed": "true"} if replayed else {})


@router.get("/card-payouts/{processor}/{payout_id}", tags=["card payouts"])
async def get_card_payout(processor: str, payout_id: str, request: Request) -> dict[str, Any]:
    """A payout's composition and the bank line that carried it (null until a statement shows it)."""
    async with get_runtime(request).engine.connect() as conn:
        row = await card_payout_store.get_payout(conn, f"{processor}:{payout_id}")
    if row is None:
        raise NotFound(f"no {processor} payout {payout_id}", field="payout_id")
    return row
