"""Request bodies and responses of adjustments, voids and returns. Amounts are decimal strings."""
from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.money import Amount, money_str

_ID = r"^[A-Za-z0-9._:-]+$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AdjustInvoiceRequest(_Request):
    adjustment_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=_ID,
                                      description="Your own reference; generated when omitted")
    direction: Literal["debit", "credit"] = Field(description="debit raises the open balance, credit lowers it")
    amount: Amount = Field(description="Positive decimal string in the invoice's currency")
    reason_code: str = Field(min_length=1, max_length=40, description="One of GET /v1/adjustment-reason-codes")
    adjustment_date: date | None = Field(default=None, description="Defaults to today")
    requested_by: str | None = Field(default=None, min_length=1, max_length=120,
                                     description="Defaults to the caller (API key actor or X-Actor)")
    note: str | None = Field(default=None, max_length=2000)

    @field_validator("reason_code")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class ApproveAdjustmentRequest(_Request):
    approved_by: str | None = Field(default=None, min_length=1, max_length=120,
                                    description="Defaults to the caller; must differ from the requester")
    approved_on: date | None = Field(default=None, description="Defaults to today; the adjustment posts on it")


class RejectAdjustmentRequest(_Request):
    rejected_by: str | None = Field(default=None, min_length=1, max_length=120)
    rejected_on: date | None = None
    reason: str = Field(min_length=1, max_length=2000)


class VoidInvoiceRequest(_Request):
    voided_on: date | None = Field(default=None, description="Defaults to today")
    reason: str = Field(min_length=1, max_length=500)


class ReturnLineRequest(_Request):
    line_number: int = Field(ge=1, description="The invoice line, counted from 1 in the invoice's order")
    quantity: Amount = Field(description="Quantity returned, decimal string")


class CreditReturnRequest(_Request):
    rma_number: str = Field(min_length=1, max_length=64, description="Return merchandise authorisation number")
    return_date: date | None = Field(default=None, description="The credit memo's issue date; defaults to today")
    reason: str = Field(default="goods returned", min_length=1, max_length=500)
    lines: list[ReturnLineRequest] = Field(min_length=1, max_length=1000)


def adjustment_out(row: dict[str, Any]) -> dict[str, Any]:
    currency = row["currency"].strip()
    return {
        "adjustment_id": row["adjustment_id"], "invoice_id": row["invoice_id"], "customer_id": row["customer_id"],
        "currency": currency, "direction": row["direction"], "amount": money_str(row["amount"], currency),
        "reason_code": row["reason_code"], "adjustment_date": row["adjustment_date"].isoformat(),
        "status": row["status"], "requested_by": row["requested_by"], "approved_by": row["approved_by"],
        "rejected_by": row["rejected_by"], "decided_on": row["decided_on"].isoformat() if row["decided_on"] else None,
        "rejection_reason": row["rejection_reason"], "note": row["note"],
    }


class AdjustmentOut(BaseModel):
    adjustment_id: str
    invoice_id: str
    customer_id: str
    currency: str
    direction: str
    amount: str
    reason_code: str
    adjustment_date: date = Field(description="When the adjustment moves the balance (the approval date once approved)")
    status: str = Field(description="posted, pending_approval or rejected")
    requested_by: str
    approved_by: str | None
    rejected_by: str | None
    decided_on: date | None
    rejection_reason: str | None
    note: str | None


class AdjustmentPage(BaseModel):
    data: list[AdjustmentOut]
    next_cursor: str | None
