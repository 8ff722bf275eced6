"""/v1/reports: read-only GETs over the facts (scope reporting:read, see shared/auth.py).

Every report takes `currency`; it may be left out when the book holds a single currency."""
from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Query, Request

from shared.service import get_runtime
from services.reporting.adapters.repository import read_snapshot
from services.reporting.api import schemas
from services.reporting.application import reports

router = APIRouter(prefix="/v1/reports", tags=["reports"])

_CURRENCY = Query(None, min_length=3, max_length=3,
                  description="ISO 4217 code; required when the book holds more than one currency")
_FROM = Query(alias="from", description="First day of the period (YYYY-MM-DD), included")
_TO = Query(alias="to", description="Last day of the period (YYYY-MM-DD), included")


def _today(request: Request) -> date:
    return get_runtime(request).definition.state["clock"].today()


@router.get("/aging", response_model=schemas.AgingResponse)
async def aging(request: Request,
                as_of: date | None = Query(None, description="Age as of the end of this day; default today"),
                customer_id: str | None = Query(None, min_length=1, max_length=64,
                                                description="One customer, with invoice drill-down"),
                currency: str | None = _CURRENCY) -> schemas.AgingResponse:
    async with read_snapshot(get_runtime(request).engine) as conn:
        result = await reports.aging_report(conn, as_of or _today(request), currency, customer_id)
    return schemas.aging_out(result)


@router.get("/dso", response_model=schemas.DsoResponse)
async def dso(request: Request, start: date = _FROM, end: date = _TO,
              currency: str | None = _CURRENCY) -> schemas.DsoResponse:
    async with read_snapshot(get_runtime(request).engine) as conn:
        result = await reports.dso_report(conn, start, end, currency)
    return schemas.dso_out(result)


@router.get("/recovery-rate", response_model=schemas.RecoveryResponse)
async def recovery_rate(request: Request, start: date = _FROM, end: date = _TO,
                        currency: str | None = _CURRENCY) -> schemas.RecoveryResponse:
    async with read_snapshot(get_runtime(request).engine) as conn:
        result = await reports.recovery_report(conn, start, end, currency)
    return schemas.recovery_out(result)


@router.get("/promises", response_model=schemas.PromisesResponse)
async def promises(request: Request, start: date = _FROM, end: date = _TO,
                   currency: str | None = _CURRENCY) -> schemas.PromisesResponse:
    async with read_snapshot(get_runtime(request).engine) as conn:
        result = await reports.promises_report(conn, start, end, currency)
    return schemas.promises_out(result)


@router.get("/summary", response_model=schemas.SummaryResponse)
async def summary(request: Request,
                  as_of: date | None = Query(None, description="As of the end of this day; default today"),
                  currency: str | None = _CURRENCY) -> schemas.SummaryResponse:
    async with read_snapshot(get_runtime(request).engine) as conn:
        result = await reports.summary(conn, as_of or _today(request), currency)
    return schemas.summary_out(result)
