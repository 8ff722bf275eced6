"""The dispute analyst's day: the disputes and deductions queue (open first, by kind and reason),
a dispute's page with its history from its event stream, and resolving it."""
from __future__ import annotations

import asyncio
from datetime import date
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from services.workbench.adapters.backends import BackendError
from services.workbench.api import deps
from services.workbench.domain.disputes import ATTACHMENT_KINDS, TEAMS, WORK_STATUSES, queue_filters
from services.workbench.domain.roles import Permission as P
from services.workbench.domain.worklist import page_size

router = APIRouter()
MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024


@router.get("/disputes")
async def queue(request: Request, cursor: str | None = None, size: int | None = None, start: int = 1) -> Response:
    """The queue filtered by disputes (reason, age, amount, owner, team, kind, status), paged by its cursor."""
    user = deps.require(request, P.VIEW_DISPUTES)
    size = page_size(size)
    today = deps.today(request)
    filters = queue_filters(request.query_params, today)
    b = deps.backends(request)
    body, codes = await asyncio.gather(
        b.get("disputes", "/v1/disputes", user.username, cursor=cursor, limit=size, **filters.query),
        _reason_codes(request, user.username))
    rows = body.get("data", [])
    for r in rows:
        r["age_days"] = (today - date.fromisoformat(r["opened_on"])).days
    link = urlencode({k: v for k, v in filters.values.items() if v})
    return deps.render(request, "disputes_queue.html", rows=rows, next_cursor=body.get("next_cursor"), size=size,
                       status=filters.values["status"], kind=filters.values["kind"], f=filters.values,
                       errors=filters.errors, link=link, codes=codes, teams=TEAMS, start=max(1, start))


async def _reason_codes(request: Request, actor: str) -> list[str]:
    body = await deps.backends(request).get("disputes", "/v1/reason-codes", actor)
    rows = body.get("data", body.get("reason_codes", [])) if isinstance(body, dict) else body
    return [r["code"] if isinstance(r, dict) else str(r) for r in rows]


@router.get("/disputes/{dispute_id}")
async def dispute_page(request: Request, dispute_id: str, saved: str | None = None,
                       error: str | None = None) -> Response:
    user = deps.require(request, P.VIEW_DISPUTES)
    b = deps.backends(request)
    dispute, timeline, notes, attachments = await asyncio.gather(
        b.get("disputes", f"/v1/disputes/{dispute_id}", user.username),
        b.get("disputes", f"/v1/disputes/{dispute_id}/timeline", user.username),
        b.get("disputes", f"/v1/disputes/{dispute_id}/notes", user.username),
        b.get("disputes", f"/v1/disputes/{dispute_id}/attachments", user.username))
    return deps.render(request, "dispute.html", dispute=dispute, timeline=timeline.get("data", []),
                       notes=notes.get("data", []), attachments=attachments.get("data", []), saved=saved,
                       error=error, teams=TEAMS, work_statuses=WORK_STATUSES, attachment_kinds=ATTACHMENT_KINDS)


async def _post(request: Request, dispute_id: str, user, path: str, body: dict, form, saved: str) -> Response:
    return await deps.post_then_back(request, "disputes", f"/v1/disputes/{dispute_id}/{path}", user, body, form,
                                     f"/disputes/{dispute_id}", saved)


@router.post("/disputes/{dispute_id}/assignment")
async def reassign(request: Request, dispute_id: str) -> Response:
    user = deps.require(request, P.WORK_DISPUTE)
    form = await deps.check_csrf(request)
    owner = str(form.get("owner") or "").strip()[:120] or None
    team = str(form.get("team") or "")
    if team not in TEAMS:
        return RedirectResponse(f"/disputes/{dispute_id}?error={quote('choose a team')}", status_code=303)
    return await _post(request, dispute_id, user, "assignment",
                       {"owner": owner, "team": team, "assigned_on": deps.today(request).isoformat()}, form,
                       "assigned")


@router.post("/disputes/{dispute_id}/notes")
async def add_note(request: Request, dispute_id: str) -> Response:
    user = deps.require(request, P.WORK_DISPUTE)
    form = await deps.check_csrf(request)
    text = str(form.get("text") or "").strip()
    if not text:
        return RedirectResponse(f"/disputes/{dispute_id}?error={quote('write the note')}", status_code=303)
    return await _post(request, dispute_id, user, "notes",
                       {"text": text[:10000], "added_on": deps.today(request).isoformat()}, form, "noted")


@router.post("/disputes/{dispute_id}/status")
async def change_status(request: Request, dispute_id: str) -> Response:
    user = deps.require(request, P.WORK_DISPUTE)
    form = await deps.check_csrf(request)
    status = str(form.get("status") or "")
    if status not in WORK_STATUSES:
        return RedirectResponse(f"/disputes/{dispute_id}?error={quote('choose a status')}", status_code=303)
    return await _post(request, dispute_id, user, "status",
                       {"status": status, "changed_on": deps.today(request).isoformat(),
                        "note": str(form.get("note") or "").strip()[:2000] or None}, form, "status")


@router.post("/disputes/{dispute_id}/attachments")
async def upload_attachment(request: Request, dispute_id: str) -> Response:
    user = deps.require(request, P.WORK_DISPUTE)
    form = await deps.check_csrf(request)
    upload = form.get("file")
    kind = str(form.get("kind") or "other")
    back = f"/disputes/{dispute_id}"
    if upload is None or not hasattr(upload, "read") or kind not in ATTACHMENT_KINDS or not upload.filename:
        return RedirectResponse(f"{back}?error={quote('choose a file and its kind')}", status_code=303)
    content = await upload.read(MAX_ATTACHMENT_BYTES + 1)
    if len(content) > MAX_ATTACHMENT_BYTES:
        return RedirectResponse(f"{back}?error={quote('the file is larger than 5 MiB')}", status_code=303)
    try:
        await deps.backends(request).post_bytes(
            "disputes", f"/v1/disputes/{dispute_id}/attachments", user.username, content,
            idempotency_key=str(form.get("idempotency_key") or deps.new_idempotency_key()),
            content_type=upload.content_type or "application/octet-stream", file_name=upload.filename[:200],
            kind=kind)
    except BackendError as exc:
        if 400 <= exc.status < 500:
            return RedirectResponse(f"{back}?error={quote(exc.detail[:300])}", status_code=303)
        raise
    return RedirectResponse(f"{back}?saved=attached", status_code=303)


@router.get("/disputes/{dispute_id}/attachments/{attachment_id}")
async def download_attachment(request: Request, dispute_id: str, attachment_id: str) -> Response:
    user = deps.require(request, P.VIEW_DISPUTES)
    r = await deps.backends(request).get_raw("disputes", f"/v1/disputes/{dispute_id}/attachments/{attachment_id}",
                                             user.username)
    # Always a download (never rendered in the workbench's origin), whatever its type.
    return Response(r.content, media_type=r.headers.get("content-type", "application/octet-stream"),
                    headers={"Content-Disposition": r.headers.get("content-disposition", "attachment"),
                             "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"})


@router.post("/disputes/{dispute_id}/resolution")
async def resolve(request: Request, dispute_id: str) -> Response:
    user = deps.require(request, P.RESOLVE_DISPUTE)
    form = await deps.check_csrf(request)
    resolution = str(form.get("resolution") or "")
    body = {"resolution": resolution, "credit_amount": (form.get("credit_amount") or None)
            if resolution != "rejected" else None, "resolved_on": deps.today(request).isoformat(),
            "note": form.get("note") or None}
    return await _post(request, dispute_id, user, "resolution", body, form, "resolved")
