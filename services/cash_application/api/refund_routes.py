"""/v1 routes of refunds: unapplied cash (an overpayment, a credit balance) paid back."""
from __future__ import annotations

import uuid
from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from shared.idempotency import idempotent_create, idempotency_key_header
from shared.money import Amount, money_str
from shared.problems import NotFound
from shared.service import get_runtime, request_metadata
from services.cash_application.adapters import repository as repo
from services.cash_application.application import refunds

router = APIRouter(prefix="/v1")


class RefundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    amount: Amount = Field(description="At most the payment's unapplied amount, in its currency")
    method: Literal["ach", "wire", "check", "card", "cash", "other"]
    reference: str | None = Field(default=None, max_length=120, description="Check number, wire reference, ...")
    refunded_on: date | None = Field(default=None, description="Defaults to today")
    reason: str | None = Field(default=None, max_length=500)


def refund_out(row: dict[str, Any]) -> dict[str, Any]:
    currency = row["currency"].strip()
    out = {"refund_id": row["refund_id"], "payment_id": row["payment_id"], "customer_id": row["customer_id"],
           "currency": currency, "amount": money_str(row["amount"], currency), "method": row["method"],
           "reference": row["reference"], "refunded_on": row["refunded_on"].isoformat(), "reason": row["reason"]}
    if "unapplied_amount" in row:
        out["payment_unapplied_amount"] = money_str(row["unapplied_amount"], currency)
    return out


@router.post("/payments/{payment_id}/refunds", status_code=201, tags=["refunds"])
async def refund_payment(payment_id: str, body: RefundRequest, request: Request,
                         key: str = Depends(idempotency_key_header)):
    """Refund unapplied cash of a payment; 422 above what is unapplied, 409 when another refund or
    application on the payment committed first (retry to see what is left)."""
    today = get_runtime(request).definition.state["clock"].today()
    cmd = refunds.RefundPayment(payment_id=payment_id, refund_id=f"rf_{uuid.uuid4().hex[:16]}", amount=body.amount,
                                method=body.method, reference=body.reference, on=body.refunded_on or today,
                                reason=body.reason)

    async def command(conn):
        return refund_out(await refunds.refund_payment(conn, cmd, request_metadata(request)))

    return await idempotent_create(request, key, {"payment_id": payment_id, **body.model_dump(mode="json")}, command)


@router.get("/payments/{payment_id}/refunds", tags=["refunds"])
async def list_refunds(payment_id: str, request: Request) -> dict[str, Any]:
    async with get_runtime(request).engine.connect() as conn:
        if await repo.get_payment(conn, payment_id) is None:
            raise NotFound(f"payment {payment_id} does not exist", field="payment_id")
        rows = await repo.refunds_of(conn, payment_id)
    return {"data": [refund_out(r) for r in rows]}
