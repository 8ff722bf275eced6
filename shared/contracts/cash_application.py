"""Events published by cash_application on ledgerline.cash_application.events."""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.base import EventContract, event, registry
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
    """Part of a payment applied to an invoice. v2 adds the application's id, the rule that made
    it (a matching rule such as `reference_exact`, or `manual`) and its confidence (0-1)."""

    event_type: ClassVar[str] = "PaymentApplied"
    schema_version: ClassVar[int] = 2
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    payment_id: str
    invoice_id: str
    customer_id: str
    amount: Amount
    currency: CurrencyCode
    value_date: date
    application_id: str
    rule: str
    confidence: Decimal = Field(ge=0, le=1, max_digits=4, decimal_places=3)


@registry.upcaster("PaymentApplied", 1)
def _payment_applied_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # v1 applications were posted from the remittance given with the payment.
    return {
        **payload,
        "application_id": f"{payload['payment_id']}:{payload['invoice_id']}",
        "rule": "remittance",
        "confidence": "1",
    }


@event
class PaymentUnapplied(_CashApplication):
    """An earlier application reversed (manual reversal or re-application, or the payment was
    returned): the invoice's open balance grows by `amount` again. Consumers reopen invoices from
    this event only; PaymentReturned does not repeat the amounts per invoice."""

    event_type: ClassVar[str] = "PaymentUnapplied"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    payment_id: str
    application_id: str
    invoice_id: str
    customer_id: str
    amount: Amount
    currency: CurrencyCode
    unapplied_on: date
    reason: str  # manual_reversal | reapplied | payment_returned | card_refund
    # Why a person reversed or re-applied it, in their words (optional; added without a new version).
    note: str | None = None


@event
class PaymentReturned(_CashApplication):
    """The bank took a received payment back (NSF, recalled wire, ACH return). Its applications
    are reversed first, each by a PaymentUnapplied."""

    event_type: ClassVar[str] = "PaymentReturned"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    payment_id: str
    customer_id: str
    amount: Amount
    currency: CurrencyCode
    returned_on: date
    reason_code: str  # NSF, R01, R02, ..., WIRE_RECALL
    reason: str | None = None


@event
class SmallBalanceWrittenOff(_CashApplication):
    """A difference within the tolerance, written off as a small-balance adjustment so the
    invoice closes: the invoice's open balance falls by `amount`."""

    event_type: ClassVar[str] = "SmallBalanceWrittenOff"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    adjustment_id: str
    payment_id: str
    invoice_id: str
    customer_id: str
    amount: Amount
    currency: CurrencyCode
    value_date: date
    reason_code: str | None = None


@event
class SmallBalanceWriteOffReversed(_CashApplication):
    """A small-balance write-off undone because the application that justified it was reversed
    (the payment was returned, or a person reversed or re-applied it): the invoice's open balance
    grows by `amount` again. Same adjustment_id as the SmallBalanceWrittenOff it reverses."""

    event_type: ClassVar[str] = "SmallBalanceWriteOffReversed"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    adjustment_id: str
    payment_id: str
    invoice_id: str
    customer_id: str
    amount: Amount
    currency: CurrencyCode
    reversed_on: date
    reason: str  # manual_reversal | reapplied | payment_returned | card_refund


@event
class BankStatementImported(_CashApplication):
    """A bank or remittance file was imported (all of it: imports are atomic)."""

    event_type: ClassVar[str] = "BankStatementImported"
    money_fields: ClassVar[tuple[str, ...]] = ("total_credits",)

    import_id: str
    file_format: str  # bai2 | camt.053 | camt.054 | mt940 | csv | edi820
    account: str | None
    statement_date: date
    currency: CurrencyCode
    entries: int
    total_credits: Amount


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


@event
class PaymentRefunded(_CashApplication):
    """Unapplied cash of a payment (an overpayment, a credit balance) paid back to the customer.
    The payment's unapplied amount drops by `amount`; nothing can apply that cash any more."""

    event_type: ClassVar[str] = "PaymentRefunded"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    refund_id: str
    payment_id: str
    customer_id: str
    amount: Amount
    currency: CurrencyCode
    method: str  # ach | wire | check | card | other
    reference: str | None = None
    refunded_on: date
    reason: str | None = None


@event
class ProcessorFeeRecorded(_CashApplication):
    """A card processor's fee, deducted from a payout: an adjustment of its own, never netted into
    the receipt (card charges are received gross). `payment_id` names the charge the fee was taken
    on (empty for a fee the processor charged on its own, such as a monthly or a dispute fee). A
    fee the processor gave back is negative. Consumers: reporting (processor fees as such)."""

    event_type: ClassVar[str] = "ProcessorFeeRecorded"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    fee_id: str
    processor: str  # stripe | adyen
    payout_id: str
    payment_id: str  # "" when the fee belongs to no charge
    customer_id: str  # the charge's customer, "" when none
    amount: Amount
    currency: CurrencyCode
    recorded_on: date
    fee_type: str  # processing (on a charge) | refund | dispute | standalone
    reference: str | None = None  # the processor's transaction id


@event
class ChargebackReceived(_CashApplication):
    """The card holder disputed a charge and the processor took the money back. The charge's
    applications are reversed first (PaymentUnapplied reason `chargeback`, then PaymentReturned
    reason code CHARGEBACK); one event per invoice the charge had paid (`invoice_id` empty when
    it had paid none). Consumers: disputes (opens a deduction to work the chargeback)."""

    event_type: ClassVar[str] = "ChargebackReceived"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    chargeback_id: str
    payment_id: str
    invoice_id: str  # "" when the charge had been applied to no invoice
    customer_id: str
    amount: Amount
    currency: CurrencyCode
    received_on: date
    processor: str
    processor_reason: str | None = None  # the network's / processor's reason (fraudulent, duplicate, ...)
    reference: str | None = None  # the processor's dispute id
