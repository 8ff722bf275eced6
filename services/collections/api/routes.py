"""/v1 routes of collections."""
from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response

from shared.idempotency import idempotent_create, idempotency_key_header
from shared.money import MoneyError, exact_amount
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, page
from shared.problems import NotFound, ValidationFailed
from shared.service import get_runtime, request_metadata
from services.collections.adapters import repository as repo
from services.collections.api.schemas import (
    EvaluatePromisesRequest,
    MakePromiseRequest,
    after_sequence,
    evaluation_out,
    promise_out,
)
from services.collections.application import handlers

router = APIRouter(prefix="/v1")


@router.post("/promises", status_code=201, tags=["promises"])
async def make_promise(body: MakePromiseRequest, request: Request, key: str = Depends(idempotency_key_header)):
    runtime = get_runtime(request)
    today = runtime.definition.state["clock"].today()
    try:
        amount = exact_amount(body.amount, body.currency)
    except MoneyError as exc:
        raise ValidationFailed(str(exc), field="amount") from exc
    cmd = handlers.MakePromise(
        promise_id=body.promise_id or str(uuid.uuid4()), customer_id=body.customer_id, invoice_ids=body.invoice_ids,
        amount=amount, currency=body.currency, promise_date=body.promise_date, made_on=body.made_on or today,
        grace_days=runtime.settings.promise_grace_days if body.grace_days is None else body.grace_days)

    async def command(conn):
        return promise_out(await handlers.make_promise(conn, cmd, request_metadata(request)))

    return await idempotent_create(request, key, body.model_dump(mode="json"), command)


@router.post("/promise-evaluations", status_code=200, tags=["promises"])
async def evaluate_promises(body: EvaluatePromisesRequest, request: Request,
                            key: str = Depends(idempotency_key_header)):
    """Judge open promises as of a day (default today): returns those kept and those broken now."""
    today = get_runtime(request).definition.state["clock"].today()

    async def command(conn):
        return evaluation_out(await handlers.evaluate_promises(conn, body.as_of, today, request_metadata(request)))

    return await idempotent_create(request, key, body.model_dump(mode="json"), command, status_code=200)


@router.get("/promises/{promise_id}", tags=["promises"])
async def get_promise(promise_id: str, request: Request, response: Response) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        promise = await repo.get_promise(conn, promise_id)
    if promise is None:
        raise NotFound(f"promise {promise_id} does not exist", field="promise_id")
    response.headers["ETag"] = f'"{promise["version"]}"'
    return promise_out(promise)


@router.get("/promises", tags=["promises"])
async def list_promises(request: Request, customer_id: str | None = None,
                        status: str | None = Query(None, pattern="^(open|kept|broken)$"),
                        cursor: str | None = None,
                        limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)) -> dict[str, Any]:
    after_seq = after_sequence(cursor)
    async with get_runtime(request).engine.connect() as conn:
        rows = await repo.list_promises(conn, customer_id=customer_id, status=status, after=after_seq,
                                        limit=limit + 1)
    seqs = [r["created_seq"] for r in rows]
    return page([promise_out(r) for r in rows], limit, lambda _: [seqs[min(limit, len(seqs)) - 1]])
