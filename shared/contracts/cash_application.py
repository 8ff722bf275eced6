"""Events published by cash_application on ledgerline.cash_application.events."""
from __future__ import annotations

from datetime import date
from typing import ClassVar

from shared.contracts.base import EventContract, event
from shared.money import Amount, CurrencyCode


class _CashApplication(EventContract):
    context: ClassVar[str] = "cash_application"


@event
class PaymentReceived(_CashApplication):
    event_type: ClassVar[str] = "PaymentReceived"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    payment_id: str
    customer_id: str
    amount: Amount
    currency: CurrencyCode
    value_date: date
    method: str
    reference: str | None = None


@event
class PaymentApplied(_CashApplication):
    event_type: ClassVar[str] = "PaymentApplied"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    payment_id: str
    invoice_id: str
    customer_id: str
    amount: Amount
    currency: CurrencyCode
    value_date: date


@event
class ShortPayDetected(_CashApplication):
    event_type: ClassVar[str] = "ShortPayDetected"
    money_fields: ClassVar[tuple[str, ...]] = ("open_amount", "paid_amount", "shortfall")

    payment_id: str
    invoice_id: str
    customer_id: str
    currency: CurrencyCode
    open_amount: Amount
    paid_amount: Amount
    shortfall: Amount
    value_date: date
    reason_code: str | None = None


@event
class UnappliedCashRecorded(_CashApplication):
    event_type: ClassVar[str] = "UnappliedCashRecorded"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    payment_id: str
    customer_id: str
    amount: Amount
    currency: CurrencyCode
    value_date: date
    reason: str
