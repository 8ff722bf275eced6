"""Events published by invoicing on ledgerline.invoicing.events."""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import ClassVar, Literal

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
    # None: the customer has no credit limit (unlimited). Optional since schema 1 was extended
    # (a minor change: every earlier event carries a limit).
    credit_limit: Amount | None
    registered_on: date
    # The terms code (NET30, NET30_EOM, DUE_ON_RECEIPT); payment_terms_days is its day count.
    payment_terms: str | None = None


class InvoiceLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str
    quantity: Amount
    unit_price: Amount
    amount: Amount
    # The product line the goods belong to (root-cause reports by product line); optional.
    product_line: str | None = None
    # The line's tax as the ERP computed it (optional; when given, the lines' taxes sum to the
    # invoice's taxes). Returns credit their share of it.
    tax_amount: Amount | None = None


class InvoiceTax(BaseModel):
    """A tax amount as the ERP computed it (Ledgerline never recomputes tax): VAT 20 %, GST, ..."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    rate: Amount | None = None  # percent, for the document only
    amount: Amount


class CreditLimitExceeded(BaseModel):
    """One level whose credit limit an invoice took the exposure over: the invoiced customer's own
    (level customer) or an account above it that pays for it (level parent); exposure is that
    level's family open balance before the invoice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    level: Literal["customer", "parent"]
    customer_id: str
    credit_limit: Amount
    exposure: Amount


class CreditOverride(BaseModel):
    """An invoice issued above a credit limit on someone's explicit approval."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approved_by: str
    reason: str
    exceeded: list[CreditLimitExceeded]


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
    # A re-bill of an invalid deduction: the deduction (dispute_id) and the invoice it was taken on.
    rebill_of_deduction: str | None = None
    original_invoice_id: str | None = None
    # Tax amounts as given by the ERP (total_amount = the lines + these); the customer's purchase
    # order number. Optional fields added without a version change.
    taxes: list[InvoiceTax] = []
    po_number: str | None = None
    # Issued above the customer's or a parent's credit limit on an explicit approval (optional
    # field added without a version change: absent on every invoice issued within its limits).
    credit_override: CreditOverride | None = None


class CreditMemoLine(BaseModel):
    """A returned quantity of one invoice line (line_number counts the invoice's lines from 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line_number: int
    description: str
    quantity: Amount
    unit_price: Amount
    amount: Amount  # the returned goods, priced as invoiced
    # The returned quantity's share of the line's tax (optional, 0 on memos from before returns
    # credited tax). The memo's amount is its lines' amounts plus their tax.
    tax_amount: Amount = Decimal(0)


@event
class CreditMemoIssued(_Invoicing):
    """A credit memo for returned goods names its RMA and the invoice lines and quantities it
    credits (optional fields, added without a version change: lines is empty for a credit memo
    of an amount)."""

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
    rma_number: str | None = None
    lines: list[CreditMemoLine] = []


@event
class InvoiceAdjustmentRequested(_Invoicing):
    """An adjustment above the approval limit, waiting for a second person's approval. It moves
    no balance; InvoiceAdjusted (approved) or InvoiceAdjustmentRejected closes it."""

    event_type: ClassVar[str] = "InvoiceAdjustmentRequested"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    adjustment_id: str
    invoice_id: str
    customer_id: str
    currency: CurrencyCode
    direction: Literal["debit", "credit"]
    amount: Amount
    reason_code: str
    adjustment_date: date
    requested_by: str
    note: str | None = None


@event
class InvoiceAdjustmentRejected(_Invoicing):
    event_type: ClassVar[str] = "InvoiceAdjustmentRejected"

    adjustment_id: str
    invoice_id: str
    customer_id: str
    rejected_by: str
    rejected_on: date
    reason: str


@event
class InvoiceAdjusted(_Invoicing):
    """A posted adjustment: a debit raises the invoice's open balance by amount from
    adjustment_date, a credit lowers it. amount is always positive; direction gives the sign."""

    event_type: ClassVar[str] = "InvoiceAdjusted"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    adjustment_id: str
    invoice_id: str
    customer_id: str
    currency: CurrencyCode
    direction: Literal["debit", "credit"]
    amount: Amount
    reason_code: str
    adjustment_date: date
    requested_by: str
    approved_by: str | None = None
    note: str | None = None


@event
class InvoiceVoided(_Invoicing):
    """An unpaid invoice cancelled: its open balance (amount) drops to zero from voided_on."""

    event_type: ClassVar[str] = "InvoiceVoided"
    money_fields: ClassVar[tuple[str, ...]] = ("amount",)

    invoice_id: str
    customer_id: str
    currency: CurrencyCode
    amount: Amount
    voided_on: date
    reason: str



class BillingContact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    email: str | None = None
    phone: str | None = None
    role: str | None = None  # ap_clerk, ap_manager, controller, ...


class BillingAddress(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lines: list[str]
    city: str
    postal_code: str | None = None
    region: str | None = None
    country: str  # ISO 3166-1 alpha-2


@event
class CustomerProfileChanged(_Invoicing):
    """The customer master changed from effective_on: only the fields given change (None = as
    before). Each change is a new version of the customer's stream; reads as of a date replay them."""

    event_type: ClassVar[str] = "CustomerProfileChanged"
    money_fields: ClassVar[tuple[str, ...]] = ("credit_limit",)

    customer_id: str
    currency: CurrencyCode
    effective_on: date
    payment_terms: str | None = None
    payment_terms_days: int | None = None
    credit_limit: Amount | None = None
    billing_contacts: list[BillingContact] | None = None
    billing_address: BillingAddress | None = None
    language: str | None = None  # en | fr
    delivery_preference: str | None = None  # email_pdf | postal | portal_upload | e_invoice
    changed_by: str
    # Customer-specific issue rule: every invoice must carry the customer's PO number.
    po_number_required: bool | None = None


@event
class CustomerParentChanged(_Invoicing):
    """The customer's parent account from effective_on: the parent pays for it, its open items
    roll up to the parent's aging and statements, and its exposure counts against the parent's
    credit limit too. parent_customer_id None: the customer stands alone again. The parent is a
    registered customer of the same currency, and no customer is ever its own ancestor."""

    event_type: ClassVar[str] = "CustomerParentChanged"

    customer_id: str
    parent_customer_id: str | None
    previous_parent_customer_id: str | None = None
    effective_on: date
    changed_by: str
