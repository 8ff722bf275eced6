"""/v1 routes of bulk intake: a batch of invoices per request and CSV/XLSX invoice imports."""
from __future__ import annotations

import hashlib
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from shared.idempotency import idempotent_create, idempotent_request, idempotency_key_header
from shared.service import request_metadata
from services.invoicing.api.routes import _invoice_out
from services.invoicing.api.schemas import IssueInvoiceRequest
from services.invoicing.application import bulk

router = APIRouter(prefix="/v1")


class InvoiceBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    invoices: list[dict[str, Any]] = Field(
        description=f"Up to {bulk.MAX_ITEMS} bodies of POST /v1/invoices, each with its invoice_id; each is "
                    "validated and issued on its own")


@router.post("/invoice-batches", status_code=201, tags=["invoices"])
async def issue_batch(body: InvoiceBatchRequest, request: Request, key: str = Depends(idempotency_key_header)):
    """Issue many invoices: per-invoice results (`issued`, `already_issued` when that invoice_id was
    issued before with the same content, or `error` with its fields), each all or nothing."""
    async def command(conn):
        return await bulk.issue_batch(conn, body.invoices, request_metadata(request),
                                      parse=IssueInvoiceRequest.model_validate, invoice_out=_invoice_out)

    return await idempotent_create(request, key, body.model_dump(mode="json"), command)


@router.post("/invoice-imports", status_code=201, tags=["invoices"],
             openapi_extra={"requestBody": {"required": True, "content": {
                 "text/csv": {"schema": {"type": "string"}},
                 "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":
                     {"schema": {"type": "string", "format": "binary"}}}}})
async def import_invoices(request: Request, key: str = Depends(idempotency_key_header),
                          format: Literal["csv", "xlsx"] = Query(...)):
    """A CSV or XLSX file (raw body), one row per invoice line: invoice_number, customer_id,
    issue_date, description, quantity, unit_price, optional invoice_id, due_date, currency. Rows of
    one invoice_number make one invoice. Answers the validation report, invoice by invoice."""
    content = await request.body()
    rows = bulk.rows_from_file(content, format)
    grouped = bulk.items_from_rows(rows)
    fingerprint = {"format": format, "sha256": hashlib.sha256(content).hexdigest()}

    async def command(conn):
        report = await bulk.issue_batch(conn, [item for _, item in grouped], request_metadata(request),
                                        parse=IssueInvoiceRequest.model_validate, invoice_out=_invoice_out)
        for (row_numbers, _), result in zip(grouped, report["results"]):
            result["rows"] = row_numbers
            result.pop("invoice", None)
        return 201, {"format": format, "rows": len(rows), **report}

    status, body, replayed = await idempotent_request(request, key, fingerprint, command)
    return JSONResponse(body, status_code=status, headers={"Idempotent-Replayed": "true"} if replayed else {})
