"""Events published by collections on ledgerline.collections.events."""
from __future__ import annotations

from datetime import date
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

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


class Installment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    number: int
    due_date: date
    amount: Amount


@event
class PaymentPlanAgreed(_Collections):
    event_type: ClassVar[str] = "PaymentPlanAgreed"
    money_fields: ClassVar[tuple[str, ...]] = ("total_amount",)

    plan_id: str
    customer_id: str
    invoice_ids: list[str]
    currency: CurrencyCode
    total_amount: Amount
    installments: list[Installment]
    agreed_on: date


@event
class InstallmentPaid(_Collections):
    event_type: ClassVar[str] = "InstallmentPaid"
    money_fields: ClassVar[tuple[str, ...]] = ("amount", "paid_amount")

    plan_id: str
    customer_id: str
    installment_number: int
    due_date: date
    amount: Amount
    paid_amount: Amount
    currency: CurrencyCode
    paid_on: date


@event
class InstallmentMissed(_Collections):
    event_type: ClassVar[str] = "InstallmentMissed"
    money_fields: ClassVar[tuple[str, ...]] = ("amount", "paid_amount")

    plan_id: str
    customer_id: str
    installment_number: int
    due_date: date
    amount: Amount
    paid_amount: Amount
    currency: CurrencyCode
    missed_on: date


@event
class PaymentPlanCompleted(_Collections):
    event_type: ClassVar[str] = "PaymentPlanCompleted"

    plan_id: str
    customer_id: str
    completed_on: date


@event
class PaymentPlanBroken(_Collections):
    event_type: ClassVar[str] = "PaymentPlanBroken"

    plan_id: str
    customer_id: str
    broken_on: date
    reason: str


@event
class CollectorAssigned(_Collections):
    """A customer's account was given to a collector (reporting ages by collector)."""

    event_type: ClassVar[str] = "CollectorAssigned"

    customer_id: str
    collector_id: str
    assigned_on: date


@event
class CustomerSegmented(_Collections):
    """A customer's risk score and segment as of a date, with the factors that made it."""

    event_type: ClassVar[str] = "CustomerSegmented"

    customer_id: str
    segment: str
    risk_score: int  # 0 (no risk) - 100
    factors: dict[str, str]
    scored_on: date


@event
class DunningNoticeSent(_Collections):
    """One notice (email or letter) to a customer listing every invoice it covers."""

    event_type: ClassVar[str] = "DunningNoticeSent"
    money_fields: ClassVar[tuple[str, ...]] = ("total_amount",)

    notice_id: str
    customer_id: str
    strategy_id: str
    strategy_version: int
    step_id: str
    channel: str  # email | letter
    template: str
    language: str
    invoice_ids: list[str]
    currency: CurrencyCode
    total_amount: Amount
    sent_on: date


@event
class CallTaskCreated(_Collections):
    event_type: ClassVar[str] = "CallTaskCreated"

    task_id: str
    customer_id: str
    strategy_id: str
    step_id: str
    invoice_ids: list[str]
    collector_id: str | None
    due_on: date


@event
class DunningActionBlocked(_Collections):
    """The compliance guard stopped a step (frequency cap, quiet hours, do-not-contact, consent,
    dispute): recorded so nobody wonders why a notice did not go."""

    event_type: ClassVar[str] = "DunningActionBlocked"

    customer_id: str
    strategy_id: str
    step_id: str
    channel: str
    invoice_ids: list[str]
    reason: str
    blocked_on: date


@event
class AccountEscalated(_Collections):
    event_type: ClassVar[str] = "AccountEscalated"
    money_fields: ClassVar[tuple[str, ...]] = ("overdue_amount",)

    escalation_id: str
    customer_id: str
    escalated_to: str
    summary: str
    recommended_action: str  # call_manager | legal | write_off | credit_hold | payment_plan
    invoice_ids: list[str]
    currency: CurrencyCode
    overdue_amount: Amount
    escalated_on: date


@event
class CreditHoldPlaced(_Collections):
    """ERPs consume this to stop taking new orders from the customer."""

    event_type: ClassVar[str] = "CreditHoldPlaced"

    hold_id: str
    customer_id: str
    reason: str
    placed_on: date


@event
class CreditHoldReleased(_Collections):
    event_type: ClassVar[str] = "CreditHoldReleased"

    hold_id: str
    customer_id: str
    reason: str
    released_on: date


@event
class WriteOffRequested(_Collections):
    event_type: ClassVar[str] = "WriteOffRequested"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    write_off_id: str
    invoice_id: str
    customer_id: str
    amount: Amount
    currency: CurrencyCode
    reason: str
    requested_by: str
    requested_on: date


@event
class WriteOffApproved(_Collections):
    """Bad debt: the invoice's open balance falls by `amount` (to zero) in every read model."""

    event_type: ClassVar[str] = "WriteOffApproved"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    write_off_id: str
    invoice_id: str
    customer_id: str
    amount: Amount
    currency: CurrencyCode
    reason: str
    requested_by: str
    approved_by: str
    approved_on: date


@event
class WriteOffRejected(_Collections):
    event_type: ClassVar[str] = "WriteOffRejected"

    write_off_id: str
    invoice_id: str
    customer_id: str
    rejected_by: str
    reason: str
    rejected_on: date
