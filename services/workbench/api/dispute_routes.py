"""The dispute analyst's day: the disputes and deductions queue (open first, by kind and reason),
a dispute's page with its history from its event stream, and resolving it."""
from __future__ import annotations

import asyncio
from datetime import date
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from services.workbench.adapters.backends import BackendError
from services.workbench.api import deps
from services.workbench.domain.roles import Permission as P
from services.workbench.domain.worklist import page_size

router = APIRouter()


@router.get("/disputes")
async def queue(request: Request, status: str = "open", kind: str | None = None, cursor: str | None = None,
                size: int | None = None, start: int = 1) -> Response:
    user = deps.require(request, P.VIEW_DISPUTES)
    status = status if status in ("open", "resolved") else "open"
    kind = kind if kind in ("dispute", "deduction") else None
    size = page_size(size)
    body = await deps.backends(request).get("disputes", "/v1/disputes", user.username, status=status, kind=kind,
                                            cursor=cursor, limit=size)
    today = deps.today(request)
    rows = body.get("data", [])
    for r in rows:
        r["age_days"] = (today - date.fromisoformat(r["opened_on"])).days
    return deps.render(request, "disputes_queue.html", rows=rows, next_cursor=body.get("next_cursor"), size=size,
                       status=status, kind=kind or "", start=max(1, start))


@router.get("/disputes/{dispute_id}")
async def dispute_page(request: Request, dispute_id: str, saved: str | None = None,
                       error: str | None = None) -> Response:
    user = deps.require(request, P.VIEW_DISPUTES)
    b = deps.backends(request)
    dispute, timeline, notes = await asyncio.gather(
        b.get("disputes", f"/v1/disputes/{dispute_id}", user.username),
        b.get("disputes", f"/v1/disputes/{dispute_id}/timeline", user.username),
        b.get("disputes", f"/v1/disputes/{dispute_id}/notes", user.username))
    return deps.render(request, "dispute.html", dispute=dispute, timeline=timeline.get("data", []),
                       notes=notes.get("data", []), saved=saved, error=error)


@router.post("/disputes/{dispute_id}/resolution")
async def resolve(request: Request, dispute_id: str) -> Response:
    user = deps.require(request, P.RESOLVE_DISPUTE)
    form = await deps.check_csrf(request)
    resolution = str(form.get("resolution") or "")
    body = {"resolution": resolution, "credit_amount": (form.get("credit_amount") or None)
            if resolution != "rejected" else None, "resolved_on": deps.today(request).isoformat(),
            "note": form.get("note") or None}
    try:
        await deps.backends(request).post("disputes", f"/v1/disputes/{dispute_id}/resolution", user.username, body,
                                          idempotency_key=str(form.get("idempotency_key") or deps.new_idempotency_key()))
    except BackendError as exc:
        if 400 <= exc.status < 500:
            return RedirectResponse(f"/disputes/{dispute_id}?error={quote(exc.detail[:300])}", status_code=303)
        raise
    return RedirectResponse(f"/disputes/{dispute_id}?saved=resolved", status_code=303)
