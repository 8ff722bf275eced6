"""The AR manager: the book's figures and the dashboard, write-off approvals, collector
performance, and every table of the workbench as an Excel download."""
from __future__ import annotations

import asyncio
from datetime import date, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.workbench.api import deps
from services.workbench.application import reconciliation, user_admin
from services.workbench.application.export import workbook
from services.workbench.domain.cash import queue_order
from services.workbench.domain.charts import line_chart
from services.workbench.domain.disputes import queue_filters
from services.workbench.domain.roles import Permission as P
from services.workbench.domain.worklist import sort_and_page

router = APIRouter()
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def _currency(request: Request, actor: str) -> str:
    body = await deps.backends(request).get("reporting", "/v1/reports/currencies", actor)
    codes = [c if isinstance(c, str) else c.get("currency") for c in body.get("currencies", body.get("data", []))]
    return (codes or ["USD"])[0]


@router.get("/manager")
async def manager_page(request: Request, saved: str | None = None, error: str | None = None) -> Response:
    user = deps.require(request, P.VIEW_MANAGER)
    b = deps.backends(request)
    today = deps.today(request)
    currency = await _currency(request, user.username)
    month_start = today.replace(day=1)
    summary, write_offs, collectors = await asyncio.gather(
        b.get("reporting", "/v1/reports/summary", user.username, as_of=today.isoformat(), currency=currency),
        b.get("collections", "/v1/write-offs", user.username, status="requested"),
        b.get("reporting", "/v1/reports/collectors", user.username, **{"from": month_start.isoformat(),
                                                                          "to": today.isoformat()},
              currency=currency))
    return deps.render(request, "manager.html", summary=summary, write_offs=write_offs.get("data", []),
                       collectors=collectors.get("collectors", []), currency=currency, saved=saved, error=error,
                       dashboard_url=str(request.app.state.settings.dashboard_url or ""))


def _trend_window(today: date, interval: str, periods: int) -> tuple[date, date]:
    """The last `periods` months (or quarters) up to today, from the first day of the first one."""
    months = periods * (3 if interval == "quarter" else 1)
    first = today.replace(day=1)
    if interval == "quarter":
        first = first.replace(month=(first.month - 1) // 3 * 3 + 1)
        months -= 3
    else:
        months -= 1
    year, month = divmod(first.year * 12 + first.month - 1 - months, 12)
    return date(year, month + 1, 1), today


async def _trend(request: Request, actor: str, interval: str, periods: int, currency: str) -> dict:
    start, end = _trend_window(deps.today(request), interval, periods)
    return await deps.backends(request).get("reporting", "/v1/reports/kpis/trend", actor, interval=interval,
                                            currency=currency, **{"from": start.isoformat(), "to": end.isoformat()})


@router.get("/manager/trends")
async def trends(request: Request, interval: str = "month", periods: int = 12) -> Response:
    """DSO and CEI per month or quarter (reporting's KPI trend): a table and two inline SVG charts."""
    user = deps.require(request, P.VIEW_MANAGER)
    interval = interval if interval in ("month", "quarter") else "month"
    periods = periods if periods in TREND_PERIODS else 12
    currency = await _currency(request, user.username)
    body = await _trend(request, user.username, interval, periods, currency)
    rows = body.get("periods", [])
    labels = [_label(r, interval) for r in rows]
    for row, label in zip(rows, labels):
        row["label"] = label
    return deps.render(request, "manager_trends.html", rows=rows, currency=currency, interval=interval,
                       periods=periods, choices=TREND_PERIODS,
                       dso=line_chart(labels, [r.get("dso") for r in rows]),
                       cei=line_chart(labels, [r.get("cei") for r in rows]))


TREND_PERIODS = (6, 12, 24, 36)


def _label(row: dict, interval: str) -> str:
    start = row["from"]
    return start[:7] if interval == "month" else f"{start[:4]}-Q{(int(start[5:7]) - 1) // 3 + 1}"


async def _decide(request: Request, write_off_id: str, decision: str) -> Response:
    user = deps.require(request, P.APPROVE_WRITE_OFF)
    form = await deps.check_csrf(request)
    if decision == "approval":
        body = {"approved_by": user.username, "approved_on": deps.today(request).isoformat()}
    else:
        body = {"rejected_by": user.username, "reason": str(form.get("reason") or "rejected by the manager"),
                "rejected_on": deps.today(request).isoformat()}
    return await deps.post_then_back(request, "collections", f"/v1/write-offs/{write_off_id}/{decision}", user, body,
                                     form, "/manager", decision)


@router.post("/manager/write-offs/{write_off_id}/approval")
async def approve(request: Request, write_off_id: str) -> Response:
    return await _decide(request, write_off_id, "approval")


@router.post("/manager/write-offs/{write_off_id}/rejection")
async def reject(request: Request, write_off_id: str) -> Response:
    return await _decide(request, write_off_id, "rejection")


EXPORTS = {
    "worklist": (P.VIEW_WORKLIST, [("customer_id", "Customer id", "text"), ("name", "Customer", "text"),
                                   ("priority", "Priority", "text"), ("currency", "Currency", "text"),
                                   ("amount_past_due", "Past due", "money"),
                                   ("oldest_days_past_due", "Oldest days past due", "int"),
                                   ("risk_score", "Risk", "int"), ("reasons", "Why", "text")]),
    "unapplied": (P.VIEW_UNAPPLIED, [("payment_id", "Payment", "text"), ("reference", "Reference", "text"),
                                     ("customer_id", "Customer id", "text"), ("value_date", "Value date", "date"),
                                     ("currency", "Currency", "text"), ("amount", "Amount", "money"),
                                     ("unapplied_amount", "Unapplied", "money"), ("match_reason", "Reason", "text")]),
    "disputes": (P.VIEW_DISPUTES, [("dispute_id", "Dispute", "text"), ("kind", "Kind", "text"),
                                   ("customer_id", "Customer id", "text"), ("invoice_id", "Invoice", "text"),
                                   ("reason_code", "Reason", "text"), ("currency", "Currency", "text"),
                                   ("amount", "Amount", "money"), ("opened_on", "Opened", "date"),
                                   ("status", "Status", "text"), ("owner", "Owner", "text"),
                                   ("team", "Team", "text")]),
    "write-offs": (P.APPROVE_WRITE_OFF, [("write_off_id", "Write-off", "text"), ("invoice_id", "Invoice", "text"),
                                         ("customer_id", "Customer id", "text"), ("currency", "Currency", "text"),
                                         ("amount", "Amount", "money"), ("reason", "Reason", "text"),
                                         ("requested_by", "Requested by", "text"),
                                         ("requested_on", "Requested on", "date"), ("status", "Status", "text")]),
    "collectors": (P.VIEW_MANAGER, [("collector_id", "Collector", "text"), ("customers", "Customers", "int"),
                                    ("open_balance", "Open balance", "money"), ("past_due", "Past due", "money"),
                                    ("collected", "Collected", "money"), ("promises_made", "Promises", "int"),
                                    ("promise_kept_rate", "Kept rate", "text"), ("notices_sent", "Notices", "int")]),
    "trends": (P.VIEW_MANAGER, [("label", "Period", "text"), ("from", "From", "date"), ("to", "To", "date"),
                                ("currency", "Currency", "text"), ("dso", "DSO (days)", "decimal"),
                                ("countback_dso", "Countback DSO (days)", "decimal"),
                                ("best_possible_dso", "Best possible DSO (days)", "decimal"),
                                ("average_days_delinquent", "Average days delinquent", "decimal"),
                                ("cei", "CEI (%)", "decimal"), ("beginning_ar", "Beginning AR", "money"),
                                ("ending_ar", "Ending AR", "money"), ("credit_sales", "Credit sales", "money")]),
    "reconciliation-variances": (P.VIEW_UNAPPLIED, [("date", "Day", "date"), ("account", "Bank account", "text"),
                                                    ("kind", "Kind", "text"), ("amount", "Amount", "money"),
                                                    ("payment_id", "Payment", "text"),
                                                    ("import_id", "Import", "text"),
                                                    ("position", "Statement line", "text"),
                                                    ("detail", "Detail", "text")]),
    "users": (P.MANAGE_USERS, [("username", "Username", "text"), ("display_name", "Display name", "text"),
                               ("role", "Role", "text"), ("locale", "Language", "text"),
                               ("active", "Active", "text"), ("created_at", "Created", "date")]),
    "reconciliation": (P.VIEW_UNAPPLIED, [("date", "Day", "date"), ("account", "Bank account", "text"),
                                          ("currency", "Currency", "text"), ("lines", "Bank lines", "int"),
                                          ("bank_total", "Bank total", "money"), ("receipts", "Receipts", "int"),
                                          ("posted_total", "Posted total", "money"), ("matched", "Matched", "int"),
                                          ("difference", "Difference", "money"), ("variances", "Variances", "int")]),
}
MAX_EXPORT_ROWS = 100_000


async def _all_pages(request: Request, context: str, path: str, actor: str, **params) -> list[dict]:
    rows: list[dict] = []
    cursor = None
    while len(rows) < MAX_EXPORT_ROWS:
        body = await deps.backends(request).get(context, path, actor, cursor=cursor, limit=500, **params)
        rows += body.get("data", [])
        cursor = body.get("next_cursor")
        if not cursor:
            break
    return rows


async def _reconciliation_rows(request: Request, actor: str, day: str | None, account: str | None,
                               currency: str | None, variances: bool = False) -> list[dict]:
    """One row per account (and the whole day's receipts); with variances, the rows whose
    variances the page lists (the account's, or the whole day's), each with its variance list."""
    try:
        chosen = date.fromisoformat(day) if day else deps.today(request)
    except ValueError:
        chosen = deps.today(request)
    _, per_account, overall = await reconciliation.day(deps.backends(request), actor, chosen.isoformat(),
                                                       (currency or "USD").strip().upper()[:3], account or None)
    if variances:
        return per_account if account else [{**overall, "account": "all"}]
    rows = per_account + ([] if account else [{**overall, "account": "all"}])
    return [{**r, "variances": len(r.get("variances", []))} for r in rows]


@router.get("/export/{table}.xlsx")
async def export(request: Request, table: str, collector: str | None = None, status: str | None = None,
                 sort: str | None = None, order: str | None = None, day: str | None = None,
                 account: str | None = None, currency: str | None = None, interval: str = "month",
                 periods: int = 12) -> Response:
    if table not in EXPORTS:
        return Response(status_code=404)
    permission, columns = EXPORTS[table]
    user = deps.require(request, permission)
    actor = user.username
    if table == "worklist":
        collector_id = collector if collector and user.may(P.VIEW_ANY_WORKLIST) else user.username
        entries = await request.app.state.worklists.entries(deps.backends(request), collector_id,
                                                             deps.today(request).isoformat(), actor)
        rows = sort_and_page(entries, "priority", "desc", 1, None, everything=True).rows
    elif table == "unapplied":
        q = queue_order(sort, order)  # as the queue shows it
        rows = await _all_pages(request, "cash_application", "/v1/unapplied-cash", actor, sort=q.api_sort,
                                order=q.api_order)
    elif table == "trends":
        interval = interval if interval in ("month", "quarter") else "month"
        body = await _trend(request, actor, interval, periods if periods in TREND_PERIODS else 12,
                            await _currency(request, actor))
        rows = body.get("periods", [])
        for r in rows:
            r["label"] = _label(r, interval)
    elif table == "reconciliation":
        rows = await _reconciliation_rows(request, actor, day, account, currency)
    elif table == "reconciliation-variances":
        rows = [{**v, "date": r["date"], "account": r["account"]}
                for r in await _reconciliation_rows(request, actor, day, account, currency, variances=True)
                for v in r["variances"]]
    elif table == "users":
        people, _ = await user_admin.overview(request.app.state.engine)
        rows = [{**p, "active": "yes" if p["active"] else "no", "created_at": p["created_at"].date().isoformat()}
                for p in people]
    elif table == "disputes":  # the queue's filters, as it shows them
        query = queue_filters(request.query_params, deps.today(request)).query
        if not status:
            query.pop("status", None)
        rows = await _all_pages(request, "disputes", "/v1/disputes", actor, **query)
    elif table == "write-offs":
        rows = (await deps.backends(request).get("collections", "/v1/write-offs", actor)).get("data", [])
    else:
        today = deps.today(request)
        body = await deps.backends(request).get("reporting", "/v1/reports/collectors", actor,
                                                **{"from": today.replace(day=1).isoformat(), "to": today.isoformat()},
                                                currency=await _currency(request, actor))
        rows = body.get("collectors", [])
    content = workbook(table, columns, rows)
    name = f"{table}-{date.today().isoformat()}.xlsx"
    return Response(content, media_type=XLSX, headers={"Content-Disposition": f'attachment; filename="{name}"'})
