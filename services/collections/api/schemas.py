"""Request bodies and response shaping. Amounts are decimal strings."""
from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.money import Amount, CurrencyCode, money_str
from services.collections.domain.model import MAX_GRACE_DAYS, MAX_PROMISED_INVOICES


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MakePromiseRequest(_Request):
    promise_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$",
                                   description="Your own reference; generated when omitted")
    customer_id: str = Field(min_length=1, max_length=64)
    invoice_ids: list[str] = Field(min_length=1, max_length=MAX_PROMISED_INVOICES)
    amount: Amount = Field(description="Promised amount, e.g. \"1500.00\"")
    currency: CurrencyCode
    promise_date: date = Field(description="The day the customer promised to pay by")
    made_on: date | None = Field(default=None, description="The day the promise was made; defaults to today")
    grace_days: int | None = Field(default=None, ge=0, le=MAX_GRACE_DAYS,
                                   description="Days after the promise date a payment still keeps it; "
                                               "defaults to the service's promise_grace_days")


class EvaluatePromisesRequest(_Request):
    as_of: date | None = Field(default=None, description="Judge promises as of this day; defaults to today")


def promise_out(row: dict[str, Any]) -> dict[str, Any]:
    currency = row["currency"].strip()

    def money(value: Any) -> str | None:
        return money_str(value, currency)

    def day(value: date | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "promise_id": row["promise_id"],
        "customer_id": row["customer_id"],
        "invoice_ids": list(row["invoice_ids"] or []),
        "currency": currency,
        "amount": money(row["amount"]),
        "promise_date": day(row["promise_date"]),
        "made_on": day(row["made_on"]),
        "grace_days": row["grace_days"],
        "window_ends_on": day(row["promise_date"] + timedelta(days=row["grace_days"])),
        "status": row["status"],
        "paid_amount": money(row["paid_amount"]),
        "shortfall": money(row["shortfall"]),
        "kept_on": day(row["kept_on"]),
        "broken_on": day(row["broken_on"]),
        "version": row["version"],
    }


def evaluation_out(evaluation: Any) -> dict[str, Any]:
    return {"as_of": evaluation.as_of.isoformat(),
            "kept": [promise_out(p) for p in evaluation.kept],
            "broken": [promise_out(p) for p in evaluation.broken]}
