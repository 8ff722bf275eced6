"""Routes of the period reports and of the sub-ledger inputs. Reports are GETs (scope
reporting:read) answering JSON, or CSV / XLSX with `format` (see api/export.py). FX rates, GL
control totals and period closes are creating POSTs (reporting:write) with an
Idempotency-Key; they are inputs a rebuild keeps."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from fastapi import APIRouter, Depends, Query, Request

from shared.money import quantum
from shared.idempotency import idempotency_key_header, idempotent_create
from shared.problems import ValidationFailed
from shared.service import get_runtime
from services.reporting.adapters import analytics
from services.reporting.adapters.repository import read_snapshot
from services.reporting.api import period_schemas as ps
from services.reporting.api.export import EXPORT_RESPONSES, respond
from services.reporting.application import period_reports as pr
from services.reporting.application import reports
from services.reporting.domain import ledger

router = APIRouter(tags=["reports"])

_CURRENCY = Query(None, min_length=3, max_length=3,
                  description="ISO 4217 code; required when the book holds more than one currency")
_FROM = Query(None, alias="from", description="First day of the period (YYYY-MM-DD), included")
_TO = Query(None, alias="to", description="Last day of the period (YYYY-MM-DD), included")
_PERIOD = Query(None, description="Instead of from/to: YYYY-MM, YYYY-Qn or YYYY")
_FORMAT = Query(None, description="json (default), csv or xlsx; or send Accept: text/csv or the XLSX media type")


def _today(request: Request) -> date:
    return get_runtime(request).definition.state["clock"].today()


def _engine(request: Request):
    return get_runtime(request).engine


@router.get("/v1/reports/kpis", response_model=ps.KpisResponse, responses=EXPORT_RESPONSES)
async def kpis(request: Request, start: date | None = _FROM, end: date | None = _TO, period: str | None = _PERIOD,
               currency: str | None = _CURRENCY, format: str | None = _FORMAT):
    first, last = pr.parse_period(period, start, end)
    async with read_snapshot(_engine(request)) as conn:
        result = await pr.kpis(conn, first, last, currency)
    return respond(request, ps.kpis_out(result), "kpis")


@router.get("/v1/reports/kpis/trend", response_model=ps.KpiTrendResponse, responses=EXPORT_RESPONSES)
async def kpi_trend(request: Request, start: date | None = _FROM, end: date | None = _TO,
                    period: str | None = _PERIOD,
                    interval: str = Query("month", pattern="^(month|quarter)$"),
                    currency: str | None = _CURRENCY, format: str | None = _FORMAT):
    first, last = pr.parse_period(period, start, end)
    async with read_snapshot(_engine(request)) as conn:
        rows = await pr.kpi_trend(conn, first, last, interval, currency)
    body = ps.KpiTrendResponse(start=first, end=last, currency=rows[0].currency, interval=interval,
                               periods=[ps.kpis_out(k) for k in rows])
    return respond(request, body, "kpi-trend", table="periods")


@router.get("/v1/reports/roll-forward", response_model=ps.RollForwardResponse, responses=EXPORT_RESPONSES)
async def roll_forward(request: Request, start: date | None = _FROM, end: date | None = _TO,
                       period: str | None = _PERIOD, currency: str | None = _CURRENCY,
                       format: str | None = _FORMAT):
    first, last = pr.parse_period(period, start, end)
    async with read_snapshot(_engine(request)) as conn:
        result = await pr.roll_forward(conn, first, last, currency)
    return respond(request, ps.roll_forward_out(result), "roll-forward")


@router.get("/v1/reports/reconciliation", response_model=ps.ReconciliationResponse, responses=EXPORT_RESPONSES)
async def reconciliation(request: Request, start: date | None = _FROM, end: date | None = _TO,
                         period: str | None = _PERIOD, currency: str | None = _CURRENCY,
                         format: str | None = _FORMAT):
    first, last = pr.parse_period(period, start, end)
    async with read_snapshot(_engine(request)) as conn:
        result = await pr.reconciliation(conn, first, last, currency)
    return respond(request, ps.reconciliation_out(result), "reconciliation", table="lines")


@router.get("/v1/reports/forecast", response_model=ps.ForecastResponse, responses=EXPORT_RESPONSES)
async def forecast(request: Request,
                   as_of: date | None = Query(None, description="Forecast from the day after; default today"),
                   currency: str | None = _CURRENCY, format: str | None = _FORMAT):
    async with read_snapshot(_engine(request)) as conn:
        result = await pr.forecast(conn, as_of or _today(request), currency, _today(request))
    return respond(request, ps.forecast_out(result), "forecast", table="weeks")


@router.get("/v1/reports/allowance", response_model=ps.AllowanceResponse, responses=EXPORT_RESPONSES)
async def allowance(request: Request, as_of: date | None = Query(None, description="Default today"),
                    basis: str = Query("due_date", pattern="^(due_date|invoice_date)$"),
                    buckets: str | None = Query(None, description="Bucket edges in days, default 30,60,90"),
                    percentages: str | None = Query(None, description="One percent per bucket; default 1,5,10,25,50"),
                    currency: str | None = _CURRENCY, format: str | None = _FORMAT):
    spec = reports.bucket_spec(buckets, basis)
    percents = pr.parse_percents(percentages, len(spec.labels))
    day = as_of or _today(request)
    async with read_snapshot(_engine(request)) as conn:
        totals = await reports.aging_totals(conn, day, currency, spec)  # the book's buckets, from the snapshot
    body = ps.allowance_out(day, totals.currency, basis,
                            ledger.allowance(totals.buckets, percents, quantum(totals.currency)))
    return respond(request, body, "allowance", table="lines")


@router.get("/v1/reports/disputes", response_model=ps.DisputesResponse, responses=EXPORT_RESPONSES)
async def disputes(request: Request, start: date | None = _FROM, end: date | None = _TO,
                   period: str | None = _PERIOD, currency: str | None = _CURRENCY, format: str | None = _FORMAT):
    first, last = pr.parse_period(period, start, end)
    async with read_snapshot(_engine(request)) as conn:
        code, rows = await pr.disputes_by_reason(conn, first, last, currency)
    return respond(request, ps.disputes_out(code, first, last, rows), "disputes", table="reasons")


@router.get("/v1/reports/collectors", response_model=ps.CollectorsResponse, responses=EXPORT_RESPONSES)
async def collectors(request: Request, start: date | None = _FROM, end: date | None = _TO,
                     period: str | None = _PERIOD, currency: str | None = _CURRENCY, format: str | None = _FORMAT):
    first, last = pr.parse_period(period, start, end)
    async with read_snapshot(_engine(request)) as conn:
        code, lines = await pr.collector_performance(conn, first, last, currency)
    return respond(request, ps.collectors_out(code, first, last, lines), "collectors", table="collectors")


@router.get("/v1/reports/recovery-cohorts", response_model=ps.CohortResponse, responses=EXPORT_RESPONSES)
async def recovery_cohorts(request: Request,
                           cohort: str = Query(..., pattern="^(past_due|escalated|written_off)$",
                                               description="past_due, escalated or written_off"),
                           start: date | None = _FROM, end: date | None = _TO, period: str | None = _PERIOD,
                           window_days: int = Query(90, ge=1, le=3650),
                           currency: str | None = _CURRENCY, format: str | None = _FORMAT):
    first, last = pr.parse_period(period, start, end)
    async with read_snapshot(_engine(request)) as conn:
        result = await pr.recovery_cohort(conn, cohort, first, last, window_days, currency)
    return respond(request, ps.cohort_out(result), "recovery-cohort")


# --- inputs -------------------------------------------------------------------------------------

@router.post("/v1/fx-rates", status_code=201)
async def post_fx_rate(request: Request, body: ps.FxRateIn, key: str = Depends(idempotency_key_header)):
    """A rate of `currency` in `reporting_currency` for `rate_date`; a report as of D uses the
    latest rate dated on or before D. Posting the same pair and date again replaces the rate."""
    async def command(conn):
        await analytics.upsert_fx_rate(conn, body.currency, body.reporting_currency, body.rate_date, Decimal(body.rate))
        return body.model_dump(mode="json")
    return await idempotent_create(request, key, body.model_dump(mode="json"), command)


@router.post("/v1/gl-control-totals", status_code=201)
async def post_gl_totals(request: Request, body: ps.GlTotalsIn, key: str = Depends(idempotency_key_header)):
    """General-ledger control totals for a period, by roll-forward line; posting the same
    currency and period again replaces them."""
    lines = {k: str(v) for k, v in body.lines().items()}

    async def command(conn):
        await analytics.upsert_gl_totals(conn, body.currency, body.start, body.end, lines)
        return {"currency": body.currency, "from": body.start.isoformat(), "to": body.end.isoformat(), **lines}
    return await idempotent_create(request, key, body.model_dump(mode="json", by_alias=True), command)


@router.post("/v1/period-closes", status_code=201)
async def post_period_close(request: Request, body: ps.PeriodCloseIn, key: str = Depends(idempotency_key_header)):
    """Close a period: its roll-forward is stored as reported now and answered as such from
    then on. A period overlapping a closed one is a 409."""
    if body.end < body.start:
        raise ValidationFailed("from must be on or before to", field="from")
    actor = getattr(request.state, "actor", "anonymous")

    async def command(conn):
        result = await pr.close_period(conn, body.start, body.end, body.currency, actor)
        return ps.roll_forward_out(result).model_dump(mode="json", by_alias=True)
    return await idempotent_create(request, key, body.model_dump(mode="json", by_alias=True), command)
