"""Events published by disputes on ledgerline.disputes.events."""
from __future__ import annotations

from datetime import date
from typing import ClassVar

from shared.contracts.base import EventContract, event
from shared.money import Amount, CurrencyCode


class _Disputes(EventContract):
    context: ClassVar[str] = "disputes"


@event
class DisputeOpened(_Disputes):
    event_type: ClassVar[str] = "DisputeOpened"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    dispute_id: str
    invoice_id: str
    customer_id: str
    currency: CurrencyCode
    amount: Amount
    reason_code: str
    opened_on: date
    description: str | None = None


@event
class DeductionOpened(_Disputes):
    """A customer paid short and the shortfall is being worked as a deduction."""

    event_type: ClassVar[str] = "DeductionOpened"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    dispute_id: str
    invoice_id: str
    customer_id: str
    payment_id: str
    currency: CurrencyCode
    amount: Amount
    reason_code: str
    opened_on: date


@event
class DisputeResolved(_Disputes):
    event_type: ClassVar[str] = "DisputeResolved"
    money_fields: ClassVar[tuple[str, ...]] = ("credit_amount",)

    dispute_id: str
    invoice_id: str
    customer_id: str
    currency: CurrencyCode
    credit_amount: Amount
    resolution: str
    resolved_on: date
