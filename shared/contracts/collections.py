"""Events published by collections on ledgerline.collections.events."""
from __future__ import annotations

from datetime import date
from typing import ClassVar

from shared.contracts.base import EventContract, event
from shared.money import Amount, CurrencyCode


class _Collections(EventContract):
    context: ClassVar[str] = "collections"


@event
class PromiseToPayMade(_Collections):
    event_type: ClassVar[str] = "PromiseToPayMade"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    promise_id: str
    customer_id: str
    invoice_ids: list[str]
    amount: Amount
    currency: CurrencyCode
    promise_date: date
    made_on: date
    grace_days: int


@event
class PromiseKept(_Collections):
    event_type: ClassVar[str] = "PromiseKept"
    money_fields: ClassVar[tuple[str, ...]] = ("amount", "paid_amount")

    promise_id: str
    customer_id: str
    amount: Amount
    currency: CurrencyCode
    promise_date: date
    paid_amount: Amount
    kept_on: date


@event
class PromiseBroken(_Collections):
    event_type: ClassVar[str] = "PromiseBroken"
    money_fields: ClassVar[tuple[str, ...]] = ("amount", "paid_amount", "shortfall")

    promise_id: str
    customer_id: str
    amount: Amount
    currency: CurrencyCode
    promise_date: date
    paid_amount: Amount
    shortfall: Amount
    broken_on: date
