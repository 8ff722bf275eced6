"""Events published by invoicing on ledgerline.invoicing.events."""
from __future__ import annotations

from datetime import date
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from shared.contracts.base import EventContract, event
from shared.money import Amount, CurrencyCode


class _Invoicing(EventContract):
    context: ClassVar[str] = "invoicing"


@event
class CustomerRegistered(_Invoicing):
    event_type: ClassVar[str] = "CustomerRegistered"
    money_fields: ClassVar[tuple[str, ...]] = ("credit_limit",)

    customer_id: str
    name: str
    currency: CurrencyCode
    payment_terms_days: int
    credit_limit: Amount
    registered_on: date
    # The terms code (NET30, NET30_EOM, DUE_ON_RECEIPT); payment_terms_days is its day count.
    payment_terms: str | None = None


class InvoiceLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str
    quantity: Amount
    unit_price: Amount
    amount: Amount


@event
class InvoiceIssued(_Invoicing):
    event_type: ClassVar[str] = "InvoiceIssued"
    money_fields: ClassVar[tuple[str, ...]] = ("total_amount",)

    invoice_id: str
    invoice_number: str
    customer_id: str
    currency: CurrencyCode
    issue_date: date
    due_date: date
    lines: list[InvoiceLine]
    total_amount: Amount


@event
class CreditMemoIssued(_Invoicing):
    event_type: ClassVar[str] = "CreditMemoIssued"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    credit_memo_id: str
    invoice_id: str
    customer_id: str
    currency: CurrencyCode
    amount: Amount
    issue_date: date
    reason: str
    dispute_id: str | None = None
