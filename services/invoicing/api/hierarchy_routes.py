"""/v1 routes of account hierarchies: a customer's parent account (set, cleared) and the family
below and above a customer with its credit check at every level."""
from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, ConfigDict, Field

from shared.idempotency import idempotent_create, idempotency_key_header
from shared.money import money_str
from shared.problems import NotFound
from shared.service import get_runtime, request_metadata
from services.invoicing.adapters import repository as repo
from services.invoicing.api.routes import _customer_out, _if_match_version
from services.invoicing.application import handlers

router = APIRouter(prefix="/v1")


class ParentChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    parent_customer_id: str | None = Field(min_length=1, max_length=64,
                                           description="The paying account; null takes the customer out of its family")
    effective_on: date | None = Field(default=None, description="From when; defaults to today")


@router.post("/customers/{customer_id}/parent", status_code=201, tags=["customers"])
async def change_parent(customer_id: str, body: ParentChangeRequest, request: Request,
                        key: str = Depends(idempotency_key_header),
                        if_match: str | None = Header(default=None, alias="If-Match")):
    """Set or clear the account that pays for this customer (CustomerParentChanged). 422 names
    parent_customer_id when the parent is unknown, in another currency, below the customer (a
    cycle) or the hierarchy would grow too deep."""
    expected = _if_match_version(if_match)
    runtime = get_runtime(request)
    today = runtime.definition.state["clock"].now().date()

    async def command(conn):
        meta = request_metadata(request)
        row = await handlers.change_parent(conn, handlers.ChangeParent(
            customer_id=customer_id, parent_customer_id=body.parent_customer_id,
            effective_on=body.effective_on or today, changed_by=meta["actor"], expected_version=expected), meta)
        return _customer_out(row)

    return await idempotent_create(request, key, {"customer_id": customer_id, **body.model_dump(mode="json")},
                                   command)


@router.get("/customers/{customer_id}/hierarchy", tags=["customers"])
async def hierarchy(customer_id: str, request: Request) -> dict[str, Any]:
    """The customer's ancestors (parent first), every descendant with its open balance, and the
    credit check at each level (a limit against its family's exposure)."""
    async with get_runtime(request).engine.connect() as conn:
        customer = await repo.get_customer(conn, customer_id)
        if customer is None:
            raise NotFound(f"customer {customer_id} is not registered", field="customer_id")
        below = await repo.descendants(conn, customer_id)
        credit = await handlers.credit_position(conn, customer_id)
        balances = await repo.exposures(conn, [d["customer_id"] for d in below])
    currency = customer["currency"].strip()
    return {
        "customer_id": customer_id, "currency": currency,
        "parent_customer_id": customer.get("parent_customer_id"),
        "ancestors": [level.customer_id for level in credit["levels"][1:]],
        "descendants": [{"customer_id": d["customer_id"], "name": d["name"], "parent_customer_id": d["parent_customer_id"],
                         "depth": d["depth"], "open_balance": money_str(balances.get(d["customer_id"], 0), currency)}
                        for d in below],
        "open_balance": money_str(credit["own_exposure"], currency),
        "family_open_balance": money_str(credit["levels"][0].exposure, currency),
        "credit_levels": [{"customer_id": level.customer_id, "credit_limit": money_str(level.credit_limit, currency),
                           "exposure": money_str(level.exposure, currency),
                           "available": money_str(level.available, currency)} for level in credit["levels"]],
        "available_credit": money_str(credit["available"], currency),
    }
