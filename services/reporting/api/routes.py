"""/v1/reports: read-only GETs over the facts (scope reporting:read, see shared/auth.py).

Every report takes `currency`; it may be left out when the book holds a single currency."""
from __future__ import annotations

from datetime import date
from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from shared.service import get_runtime
from services.reporting.adapters.repository import book_currencies, read_snapshot
from services.reporting.adapters.repository import top_overdue as top_overdue_rows
from services.reporting.api import schemas
from services.reporting.api.export import EXPORT_RESPONSES, respond, wanted_format
from services.reporting.api.period_routes import _FORMAT
from services.reporting.application import reports

router = APIRouter(prefix="/v1/reports", tags=["reports"])

_CURRENCY = Query(None, min_length=3, max_length=3,
                  description="ISO 4217 code; required when the book holds more than one currency")
_FROM = Query(alias="from", description="First day of the period (YYYY-MM-DD), included")
_TO = Query(alias="to", description="Last day of the period (YYYY-MM-DD), included")


def _today(request: Request) -> date:
    return get_runtime(request).definition.state["clock"].today()


@router.get("/aging", response_model=schemas.AgingResponse, responses=EXPORT_RESPONSES)
async def aging(request: Request,
                as_of: date | None = Query(None, description="Age as of the end of this day; default today"),
                customer_id: str | None = Query(None, min_length=1, max_length=64,
                                                description="One customer, with invoice drill-down"),
                currency: str | None = _CURRENCY,
                basis: str = Query("due_date", pattern="^(due_date|invoice_date)$",
                                   description="Age by due date (days past due) or by invoice date"),
                buckets: str | None = Query(None, description="Bucket edges in days, default 30,60,90"),
                group_by: str = Query("customer", pattern="^(customer|collector|segment|currency)$",
                                      description="customer (always listed), collector, segment or currency"),
                reporting_currency: str | None = Query(
                    None, min_length=3, max_length=3,
                    description="Convert to this currency at the latest FX rate on or before as_of; without "
                                "`currency`, every currency of the book"),
                cursor: str | None = Query(None, description="next_cursor of the previous page of customers"),
                limit: int = Query(reports.DEFAULT_CUSTOMER_PAGE, ge=1, le=reports.MAX_CUSTOMER_PAGE,
                                   description="Customers per page (in customer_id order); exports hold them all"),
                format: str | None = _FORMAT):
    spec = reports.bucket_spec(buckets, basis)
    every = wanted_format(request) != "json"  # a CSV / XLSX export lists every customer: no cursor, no limit
    after = None if every else reports.customer_cursor(cursor)
    async with read_snapshot(get_runtime(request).engine) as conn:
        result = await reports.aging_report(conn, as_of or _today(request), currency, customer_id, spec, group_by,
                                            reporting_currency, after, None if every else limit)
    body = schemas.aging_out(result)
    table = "invoices" if customer_id else "groups" if group_by != "customer" else "customers"
    return respond(request, body, "aging", table=table)


@router.get("/aging/summary", response_model=schemas.AgingSummaryResponse, responses=EXPORT_RESPONSES)
async def aging_summary(request: Request,
                        as_of: date | None = Query(None, description="As of the end of this day; default today"),
                        currency: str | None = _CURRENCY,
                        basis: str = Query("due_date", pattern="^(due_date|invoice_date)$"),
                        buckets: str | None = Query(None, description="Bucket edges in days, default 30,60,90"),
                        format: str | None = _FORMAT):
    spec = reports.bucket_spec(buckets, basis)
    async with read_snapshot(get_runtime(request).engine) as conn:
        totals = await reports.aging_totals(conn, as_of or _today(request), currency, spec)
    return respond(request, schemas.aging_summary_out(totals), "aging-summary")


@router.get("/aging/top-overdue", response_model=schemas.TopOverdueResponse, responses=EXPORT_RESPONSES)
async def top_overdue(request: Request,
                      as_of: date | None = Query(None, description="As of the end of this day; default today"),
                      currency: str | None = _CURRENCY, limit: int = Query(10, ge=1, le=500),
                      format: str | None = _FORMAT):
    day = as_of or _today(request)
    async with read_snapshot(get_runtime(request).engine) as conn:
        code = await reports.resolve_currency(conn, currency)
        rows = await top_overdue_rows(conn, code, day, limit)
    body = schemas.TopOverdueResponse(as_of=day, currency=code, customers=[schemas.OverdueCustomer(
        customer_id=r.customer_id, customer_name=r.name, past_due=schemas.money(r.past_due, code),
        over_90=schemas.money(r.over_90, code), total=schemas.money(r.total, code), open_invoices=r.invoices)
        for r in rows])
    return respond(request, body, "top-overdue", table="customers")


@router.get("/dso", response_model=schemas.DsoResponse, responses=EXPORT_RESPONSES)
async def dso(request: Request, start: date = _FROM, end: date = _TO,
              currency: str | None = _CURRENCY, format: str | None = _FORMAT):
    async with read_snapshot(get_runtime(request).engine) as conn:
        result = await reports.dso_report(conn, start, end, currency)
    return respond(request, schemas.dso_out(result), "dso")


@router.get("/recovery-rate", response_model=schemas.RecoveryResponse, responses=EXPORT_RESPONSES)
async def recovery_rate(request: Request, start: date = _FROM, end: date = _TO,
                        currency: str | None = _CURRENCY, format: str | None = _FORMAT):
    async with read_snapshot(get_runtime(request).engine) as conn:
        result = await reports.recovery_report(conn, start, end, currency)
    return respond(request, schemas.recovery_out(result), "recovery-rate")


@router.get("/promises", response_model=schemas.PromisesResponse, responses=EXPORT_RESPONSES)
async def promises(request: Request, start: date = _FROM, end: date = _TO,
                   currency: str | None = _CURRENCY, format: str | None = _FORMAT):
    async with read_snapshot(get_runtime(request).engine) as conn:
        result = await reports.promises_report(conn, start, end, currency)
    return respond(request, schemas.promises_out(result), "promises")


@router.get("/summary", response_model=schemas.SummaryResponse, responses=EXPORT_RESPONSES)
async def summary(request: Request,
                  as_of: date | None = Query(None, description="As of the end of this day; default today"),
                  currency: str | None = _CURRENCY, format: str | None = _FORMAT):
    async with read_snapshot(get_runtime(request).engine) as conn:
        result = await reports.summary(conn, as_of or _today(request), currency)
    return respond(request, schemas.summary_out(result), "summary")


@router.get("/currencies")
async def currencies(request: Request) -> dict[str, list[str]]:
    """The currencies the book holds (for the dashboard's currency picker)."""
    async with read_snapshot(get_runtime(request).engine) as conn:
        return {"currencies": await book_currencies(conn)}


# The dashboard: one static page and its script, no build step, served like any GET (so with
# API keys configured it needs the same Authorization header: see services/reporting/README.md).
DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard"
dashboard_router = APIRouter(tags=["dashboard"])


@dashboard_router.get("/dashboard", include_in_schema=False)
async def dashboard() -> FileResponse:
    return FileResponse(DASHBOARD / "index.html", media_type="text/html; charset=utf-8")


@dashboard_router.get("/dashboard/app.js", include_in_schema=False)
async def dashboard_script() -> FileResponse:
    return FileResponse(DASHBOARD / "app.js", media_type="text/javascript; charset=utf-8")
