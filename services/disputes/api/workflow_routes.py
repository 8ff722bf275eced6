"""/v1 routes of the dispute workflow: status, notes, attachments and the escalation run."""
from __future__ import annotations

import hashlib
import uuid
from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from shared.idempotency import idempotent_create, idempotency_key_header
from shared.problems import NotFound, Problem
from shared.service import get_runtime, request_metadata
from services.disputes.adapters import deductions as repo_d
from services.disputes.api.routes import _if_match_version
from services.disputes.api.schemas import dispute_out
from services.disputes.application import deductions
from services.disputes.domain.model import ATTACHMENT_KINDS

router = APIRouter(prefix="/v1")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class StatusRequest(_Request):
    status: Literal["in_review", "waiting_on_customer", "waiting_on_internal"]
    changed_on: date | None = None
    note: str | None = Field(default=None, max_length=2000)


class NoteRequest(_Request):
    text: str = Field(min_length=1, max_length=10000)
    added_on: date | None = None


class EscalationRunRequest(_Request):
    as_of: date | None = Field(default=None, description="Defaults to today")


def _today(request: Request) -> date:
    return get_runtime(request).definition.state["clock"].today()


def _actor(request: Request) -> str:
    return getattr(request.state, "actor", None) or "anonymous"


@router.post("/disputes/{dispute_id}/status", status_code=201, tags=["disputes"])
async def change_status(dispute_id: str, body: StatusRequest, request: Request,
                        key: str = Depends(idempotency_key_header),
                        if_match: str | None = Header(default=None, alias="If-Match")):
    expected = _if_match_version(if_match)

    async def command(conn):
        return dispute_out(await deductions.change_status(conn, dispute_id, body.status,
                                                          body.changed_on or _today(request), _actor(request),
                                                          body.note, expected, request_metadata(request)))

    return await idempotent_create(request, key, {"dispute_id": dispute_id, **body.model_dump(mode="json")}, command)


@router.post("/disputes/{dispute_id}/notes", status_code=201, tags=["disputes"])
async def add_note(dispute_id: str, body: NoteRequest, request: Request, key: str = Depends(idempotency_key_header)):
    note_id = f"note_{uuid.uuid4().hex[:16]}"

    async def command(conn):
        return await deductions.add_note(conn, dispute_id, note_id, body.text, body.added_on or _today(request),
                                         _actor(request), request_metadata(request))

    return await idempotent_create(request, key, {"dispute_id": dispute_id, **body.model_dump(mode="json")}, command)


@router.get("/disputes/{dispute_id}/notes", tags=["disputes"])
async def list_notes(dispute_id: str, request: Request) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        rows = await repo_d.notes(conn, dispute_id)
    return {"data": [{**r, "added_on": r["added_on"].isoformat()} for r in rows]}


@router.post("/disputes/{dispute_id}/attachments", status_code=201, tags=["disputes"],
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
async def add_attachment(dispute_id: str, request: Request, key: str = Depends(idempotency_key_header),
                         file_name: str = Query(..., min_length=1, max_length=200),
                         kind: str = Query("other", description=", ".join(ATTACHMENT_KINDS))):
    """A document kept with the dispute: the raw body, at most LEDGERLINE_DISPUTES_ATTACHMENT_MAX_BYTES
    (413 when Content-Length says more, 422 when the body turns out larger)."""
    limit = get_runtime(request).settings.attachment_max_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Problem(f"the attachment has {declared} bytes; at most {limit} are kept", field="body", status=413,
                      type_name="payload-too-large", title="Attachment too large")
    content = await request.body()
    content_type = request.headers.get("content-type", "application/octet-stream").split(";")[0].strip()
    attachment_id = f"att_{uuid.uuid4().hex[:16]}"
    fingerprint = {"dispute_id": dispute_id, "file_name": file_name, "kind": kind,
                   "sha256": hashlib.sha256(content).hexdigest()}

    async def command(conn):
        return await deductions.add_attachment(conn, dispute_id, attachment_id, file_name, content_type, kind,
                                               content, limit, _today(request), _actor(request),
                                               request_metadata(request))

    return await idempotent_create(request, key, fingerprint, command)


@router.get("/disputes/{dispute_id}/attachments", tags=["disputes"])
async def list_attachments(dispute_id: str, request: Request) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        rows = await repo_d.attachments(conn, dispute_id)
    return {"data": [{**r, "added_on": r["added_on"].isoformat()} for r in rows]}


@router.get("/disputes/{dispute_id}/attachments/{attachment_id}", tags=["disputes"],
            responses={200: {"content": {"application/octet-stream": {}}}})
async def download_attachment(dispute_id: str, attachment_id: str, request: Request) -> Response:
    async with get_runtime(request).engine.connect() as conn:
        row = await repo_d.attachment_content(conn, dispute_id, attachment_id)
    if row is None:
        raise NotFound(f"no attachment {attachment_id} on dispute {dispute_id}", field="attachment_id")
    safe = row["file_name"].replace('"', "")
    return Response(bytes(row["content"]), media_type=row["content_type"],
                    headers={"Content-Disposition": f'attachment; filename="{safe}"'})


@router.post("/dispute-escalations", status_code=201, tags=["disputes"])
async def run_escalations(body: EscalationRunRequest, request: Request, key: str = Depends(idempotency_key_header)):
    """Escalate every open dispute past its due date (the reason code's days after opening) as of a
    date: DisputeEscalated each, once per due date."""
    as_of = body.as_of or _today(request)

    async def command(conn):
        escalated = await deductions.escalate_overdue(conn, as_of, request_metadata(request))
        return {"as_of": as_of.isoformat(), "escalated": escalated}

    return await idempotent_create(request, key, body.model_dump(mode="json"), command)
