"""/v1 routes of statement of account delivery: a statement requested as of a date, and monthly
statement runs per customer or parent account, delivered by the customer's delivery preference
through the document outbox (see /v1/document-deliveries)."""
from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from shared.idempotency import idempotent_create, idempotency_key_header
from shared.service import get_runtime, request_metadata
from services.invoicing.adapters import repository as repo
from services.invoicing.api.delivery_routes import _out as delivery_out
from services.invoicing.application import statements

router = APIRouter(prefix="/v1", tags=["documents"])


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class StatementDeliveryRequest(_Request):
    as_of: date | None = Field(default=None, description="The statement's date (end of day); default today")


class StatementScheduleRequest(_Request):
    frequency: Literal["monthly"] = "monthly"
    first_as_of: date | None = Field(default=None, description="The first statement's month (its month end);"
                                                                " default this month")


def _today(request: Request) -> date:
    return get_runtime(request).definition.state["clock"].today()


def _schedule_out(row: dict[str, Any]) -> dict[str, Any]:
    return {"schedule_id": row["schedule_id"], "customer_id": row["customer_id"], "frequency": row["frequency"],
            "next_as_of": row["next_as_of"].isoformat(), "active": row["active"],
            "last_as_of": row["last_as_of"].isoformat() if row["last_as_of"] else None,
            "created_by": row["created_by"], "created_on": row["created_on"].isoformat()}


@router.post("/customers/{customer_id}/statement-deliveries", status_code=201)
async def request_statement(customer_id: str, body: StatementDeliveryRequest, request: Request,
                            key: str = Depends(idempotency_key_header)):
    """Deliver the customer's statement of account (a parent's covers its family) as of a date,
    by its delivery preference today: emailed with the PDF by the outbox, or ready to be picked up.
    The same customer and date again is the same delivery (sent once)."""
    today = _today(request)

    async def command(conn):
        return delivery_out(await statements.request_statement(conn, customer_id, body.as_of or today, today))

    return await idempotent_create(request, key, {"customer_id": customer_id, **body.model_dump(mode="json")},
                                   command)


@router.post("/customers/{customer_id}/statement-schedules", status_code=201)
async def schedule_statements(customer_id: str, body: StatementScheduleRequest, request: Request,
                              key: str = Depends(idempotency_key_header)):
    """A monthly statement run for the customer or parent: its statement as of each month end is
    queued once the month is over (by the invoicing worker), then delivered by preference. One
    active schedule per customer (409 for a second)."""
    today = _today(request)

    async def command(conn):
        return _schedule_out(await statements.schedule_statements(
            conn, customer_id, body.frequency, body.first_as_of, today, request_metadata(request)["actor"]))

    return await idempotent_create(request, key, {"customer_id": customer_id, **body.model_dump(mode="json")},
                                   command)


@router.get("/statement-schedules")
async def list_schedules(request: Request, customer_id: str | None = None) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        rows = await repo.list_schedules(conn, customer_id)
    return {"data": [_schedule_out(r) for r in rows]}


@router.post("/statement-schedules/{schedule_id}/cancellation", status_code=201)
async def cancel_schedule(schedule_id: str, request: Request, key: str = Depends(idempotency_key_header)):
    """Stop a statement run (statements already queued are still delivered)."""
    async def command(conn):
        return _schedule_out(await statements.cancel_schedule(conn, schedule_id))

    return await idempotent_create(request, key, {"schedule_id": schedule_id}, command)
