"""/v1/reports/aging/rollup: the aging of a parent account's family (account hierarchies)."""
from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from shared.service import get_runtime
from services.reporting.adapters.repository import read_snapshot
from services.reporting.api.schemas import MoneyString, money
from services.reporting.application import reports
from services.reporting.application.hierarchy import rollup_aging

router = APIRouter(prefix="/v1/reports", tags=["reports"])


class RollupMember(BaseModel):
    customer_id: str
    customer_name: str | None
    parent_customer_id: str | None
    buckets: dict[str, MoneyString]
    total: MoneyString
    invoice_count: int


class RollupAgingResponse(BaseModel):
    as_of: date
    currency: str
    customer_id: str
    members: int
    buckets: dict[str, MoneyString]
    total: MoneyString
    ledger_net: MoneyString
    ties_out: bool
    customers: list[RollupMember]


@router.get("/aging/rollup", response_model=RollupAgingResponse)
async def aging_rollup(request: Request,
                       customer_id: str = Query(min_length=1, max_length=64,
                                                description="The parent account: itself and every customer below it"),
                       as_of: date | None = Query(None, description="As of the end of this day; default today"),
                       currency: str | None = Query(None, min_length=3, max_length=3),
                       basis: str = Query("due_date", pattern="^(due_date|invoice_date)$"),
                       buckets: str | None = Query(None, description="Bucket edges in days, default 30,60,90")):
    """The family's open invoices aged together, with one line per member that has open items.
    The hierarchy is the one in force on as_of; ties_out: buckets = open balances = the family's
    invoiced − credits − cash applied − adjustments − write-offs."""
    spec = reports.bucket_spec(buckets, basis)
    runtime = get_runtime(request)
    day = as_of or runtime.definition.state["clock"].today()
    async with read_snapshot(runtime.engine) as conn:
        result = await rollup_aging(conn, customer_id, day, currency, spec)
    code = result.currency
    return RollupAgingResponse(
        as_of=day, currency=code, customer_id=customer_id, members=len(result.members),
        buckets={k: money(v, code) for k, v in result.aging.buckets.items()}, total=money(result.aging.total, code),
        ledger_net=money(result.ledger_net, code), ties_out=result.ties_out,
        customers=[RollupMember(customer_id=c.customer_id, customer_name=result.names.get(c.customer_id),
                                parent_customer_id=result.parents.get(c.customer_id),
                                buckets={k: money(v, code) for k, v in c.buckets.items()}, total=money(c.total, code),
                                invoice_count=c.invoice_count) for c in result.aging.customers])
