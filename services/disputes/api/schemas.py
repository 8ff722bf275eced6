"""Request bodies and response shaping. Amounts are decimal strings."""
from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.money import Amount, money_str


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OpenDisputeRequest(_Request):
    dispute_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$",
                                   description="Your own reference; generated when omitted")
    invoice_id: str = Field(min_length=1, max_length=64)
    amount: Amount = Field(description="Disputed amount in the invoice's currency, e.g. \"120.00\"")
    reason_code: str = Field(min_length=1, max_length=40, description="One of GET /v1/reason-codes")
    description: str | None = Field(default=None, max_length=2000)
    opened_on: date | None = Field(default=None, description="Defaults to today")
    line_number: int | None = Field(default=None, ge=1, le=1000,
                                    description="The invoice line disputed (from 1): root cause by its product line")

    @field_validator("reason_code")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class ResolveDisputeRequest(_Request):
    resolution: Literal["credit", "rejected", "partial_credit"]
    credit_amount: Amount | None = Field(
        default=None,
        description="Credit granted: the disputed amount for credit (may be omitted), less for partial_credit, "
                    "0 (or omitted) for rejected")
    resolved_on: date | None = Field(default=None, description="Defaults to today")
    note: str | None = Field(default=None, max_length=2000)


def dispute_out(row: dict[str, Any]) -> dict[str, Any]:
    currency = row["currency"].strip()

    def money(value: Any) -> str | None:
        return money_str(value, currency)

    return {
        "dispute_id": row["dispute_id"],
        "kind": row["kind"],
        "invoice_id": row["invoice_id"],
        "customer_id": row["customer_id"],
        "payment_id": row["payment_id"],
        "currency": currency,
        "amount": money(row["amount"]),
        "reason_code": row["reason_code"],
        "description": row["description"],
        "opened_on": row["opened_on"].isoformat(),
        "status": row["status"],
        "resolution": row["resolution"],
        "credit_amount": money(row["credit_amount"]),
        "resolved_on": row["resolved_on"].isoformat() if row["resolved_on"] else None,
        "resolution_note": row["resolution_note"],
        "owner": row.get("owner"),
        "team": row.get("team"),
        "customer_reason_code": row.get("customer_reason_code"),
        "external_reference": row.get("external_reference"),
        "rebill_amount": money(row.get("rebill_amount")),
        "rebill_invoice_id": row.get("rebill_invoice_id"),
        "recovered_amount": money(row.get("recovered_amount") or 0),
        "work_status": row.get("work_status"),
        "due_on": row["due_on"].isoformat() if row.get("due_on") else None,
        "escalated_on": row["escalated_on"].isoformat() if row.get("escalated_on") else None,
        "version": row["version"],
    }
