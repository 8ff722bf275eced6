"""/v1/document-deliveries: how each invoice, credit memo and statement of account reached (or
waits to reach) its customer: emailed with the PDF, or ready to be picked up (postal, portal
upload, e-invoice) with the PDF at /v1/document-deliveries/{delivery_id}/pdf."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from shared.idempotency import idempotent_create, idempotency_key_header
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, page
from shared.problems import Conflict, NotFound, ServiceUnavailable
from shared.service import get_runtime, request_metadata
from services.invoicing.adapters import repository as repo
from services.invoicing.adapters.reporting_client import StatementUnavailable
from services.invoicing.application.documents import render_delivery, statement_source_of

router = APIRouter(prefix="/v1", tags=["documents"])


def _out(row: dict[str, Any]) -> dict[str, Any]:
    kind = row["document_kind"]
    path = (f"/v1/invoices/{row['document_id']}/pdf" if kind == "invoice"
            else f"/v1/credit-memos/{row['document_id']}/pdf" if kind == "credit_memo"
            else f"/v1/document-deliveries/{row['delivery_id']}/pdf")
    return {"delivery_id": row["delivery_id"], "document_kind": kind, "document_id": row["document_id"],
            "customer_id": row["customer_id"], "channel": row["channel"], "language": row["language"],
            "recipient": row["recipient"], "status": row["status"], "attempts": row["attempts"],
            "last_error": row["last_error"], "created_on": row["created_on"].isoformat(),
            "delivered_at": row["delivered_at"].isoformat() if row["delivered_at"] else None,
            "picked_up_by": row["picked_up_by"], "pdf": path,
            "as_of": row["as_of"].isoformat() if row.get("as_of") else None,
            "currency": row["currency"].strip() if row.get("currency") else None}


@router.get("/document-deliveries")
async def list_deliveries(request: Request, customer_id: str | None = None, document_id: str | None = None,
                          status: str | None = Query(None, pattern="^(pending|sent|failed|ready|picked_up)$"),
                          channel: str | None = Query(None, pattern="^(email_pdf|postal|portal_upload|e_invoice)$"),
                          cursor: str | None = None,
                          limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)) -> dict[str, Any]:
    """Deliveries in the order the documents were issued; `status=ready&channel=portal_upload` is
    the portal connector's pick-up list."""
    after = decode_cursor(cursor)
    async with get_runtime(request).engine.connect() as conn:
        rows = await repo.list_deliveries(conn, customer_id=customer_id, status=status, channel=channel,
                                          document_id=document_id, after=int(after[0]) if after else None,
                                          limit=limit + 1)
    seqs = [r["created_seq"] for r in rows]
    return page([_out(r) for r in rows], limit, lambda _: [seqs[min(limit, len(seqs)) - 1]])


class PickupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    picked_up_by: str | None = Field(default=None, max_length=100,
                                     description="The connector or print shop; default the caller")


@router.post("/document-deliveries/{delivery_id}/pickups", status_code=201)
async def pick_up(delivery_id: str, body: PickupRequest, request: Request,
                  key: str = Depends(idempotency_key_header)):
    """A portal connector, print shop or e-invoicing network took the document (409 when it is an
    email delivery or was already picked up)."""
    async def command(conn):
        row = await repo.get_delivery(conn, delivery_id, lock=True)
        if row is None:
            raise NotFound(f"document delivery {delivery_id} does not exist", field="delivery_id")
        if row["status"] != "ready":
            raise Conflict(f"delivery {delivery_id} is {row['status']} ({row['channel']}), not ready to be picked up",
                           field="delivery_id")
        await repo.mark_picked_up(conn, delivery_id, body.picked_up_by or request_metadata(request)["actor"])
        return _out(await repo.get_delivery(conn, delivery_id))

    return await idempotent_create(request, key, {"delivery_id": delivery_id, **body.model_dump(mode="json")},
                                   command)


@router.get("/document-deliveries/{delivery_id}", response_model=None)
async def get_delivery(delivery_id: str, request: Request) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        row = await repo.get_delivery(conn, delivery_id)
    if row is None:
        raise NotFound(f"document delivery {delivery_id} does not exist", field="delivery_id")
    return _out(row)


@router.get("/document-deliveries/{delivery_id}/pdf", responses={200: {"content": {
    "application/pdf": {"schema": {"type": "string", "format": "binary"}}}}})
async def delivery_pdf(delivery_id: str, request: Request) -> Response:
    """The delivered document's PDF in the delivery's language (what the print shop, portal
    connector or e-invoicing network picks up); a statement's is reporting's as of its date (503
    with Retry-After while reporting does not answer)."""
    runtime = get_runtime(request)
    async with runtime.engine.connect() as conn:
        row = await repo.get_delivery(conn, delivery_id)
        if row is None:
            raise NotFound(f"document delivery {delivery_id} does not exist", field="delivery_id")
        try:
            rendered = await render_delivery(conn, row, runtime.settings, statement_source_of(runtime))
        except StatementUnavailable as exc:
            raise ServiceUnavailable(f"the statement cannot be fetched from reporting now: {exc}") from exc
    return Response(rendered.content, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{rendered.filename}"'})
