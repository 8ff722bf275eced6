"""Events published by disputes on ledgerline.disputes.events."""
from __future__ import annotations

from datetime import date
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

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
    # The invoice line disputed (1-based), when the customer names one: root-cause reports count
    # the dispute under that line's product line. Optional, added without a version change.
    line_number: int | None = None


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
    # The retailer's own code as its remittance or deduction report gave it (mapped to reason_code).
    customer_reason_code: str | None = None
    # The retailer's deduction number, when the deduction came from its portal's report.
    external_reference: str | None = None


@event
class DisputeResolved(_Disputes):
    event_type: ClassVar[str] = "DisputeResolved"
    money_fields: ClassVar[tuple[str, ...]] = ("credit_amount", "rebill_amount")

    dispute_id: str
    invoice_id: str
    customer_id: str
    currency: CurrencyCode
    credit_amount: Amount
    resolution: str
    resolved_on: date
    # A deduction found (partly) invalid: this much is re-billed to the customer as a new invoice
    # (resolution `invalid` or `partial`; credit_amount is the valid part).
    rebill_amount: Amount | None = None


@event
class DisputeReclassified(_Disputes):
    """An analyst moved a dispute or deduction to another reason code of the catalogue."""

    event_type: ClassVar[str] = "DisputeReclassified"

    dispute_id: str
    invoice_id: str
    customer_id: str
    from_reason_code: str
    to_reason_code: str
    reclassified_on: date
    reclassified_by: str


@event
class DisputeAssigned(_Disputes):
    """Who works the dispute: an owner in a team (sales, customer_service, billing, logistics)."""

    event_type: ClassVar[str] = "DisputeAssigned"

    dispute_id: str
    customer_id: str
    owner: str | None
    team: str
    assigned_on: date
    assigned_by: str


class ReasonCodeMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_reason_code: str
    reason_code: str


@event
class DeductionCodesMapped(_Disputes):
    """A customer's (retailer's) own deduction codes mapped to the catalogue; replaces the
    customer's previous mapping from mapped_on."""

    event_type: ClassVar[str] = "DeductionCodesMapped"

    customer_id: str
    mappings: list[ReasonCodeMapping]
    mapped_on: date
    mapped_by: str


@event
class DisputeStatusChanged(_Disputes):
    """Where the work stands: new, in_review, waiting_on_customer, waiting_on_internal (resolved
    is DisputeResolved)."""

    event_type: ClassVar[str] = "DisputeStatusChanged"

    dispute_id: str
    customer_id: str
    from_status: str
    to_status: str
    changed_on: date
    changed_by: str


@event
class DisputeNoteAdded(_Disputes):
    event_type: ClassVar[str] = "DisputeNoteAdded"

    dispute_id: str
    note_id: str
    text: str
    author: str
    added_on: date


@event
class DisputeAttachmentAdded(_Disputes):
    """A document kept with the dispute (proof of delivery, pricing agreement); its bytes stay in
    disputes' database, the event names it and its SHA-256."""

    event_type: ClassVar[str] = "DisputeAttachmentAdded"

    dispute_id: str
    attachment_id: str
    file_name: str
    content_type: str
    size_bytes: int
    sha256: str
    kind: str
    added_by: str
    added_on: date


@event
class DisputeEscalated(_Disputes):
    """Still open after its due date (set by reason code): escalated once per due date."""

    event_type: ClassVar[str] = "DisputeEscalated"

    dispute_id: str
    customer_id: str
    reason_code: str
    team: str
    owner: str | None
    due_on: date
    escalated_on: date
