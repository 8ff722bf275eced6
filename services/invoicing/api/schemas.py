"""Request and response bodies. Amounts are decimal strings."""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.invoicing.domain.credit import CreditOverride
from services.invoicing.domain.terms import PaymentTerms, UnknownTerms
from shared.money import Amount, CurrencyCode, MoneyError, check_magnitude, exact_amount, money_str


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class RegisterCustomerRequest(_Request):
    customer_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$",
                                    description="Your own customer number; generated when omitted")
    name: str = Field(min_length=1, max_length=200)
    currency: CurrencyCode
    payment_terms: str | None = Field(default=None, max_length=20,
                                      description="NET30, NET45, NET30_EOM (after month end), DUE_ON_RECEIPT")
    payment_terms_days: int | None = Field(default=None, ge=0, le=365,
                                           description="Net-N terms as a day count (instead of payment_terms); default 30")
    credit_limit: Amount | None = Field(default=None, description="Decimal string in the customer's currency;"
                                        " omitted or null: no credit limit (unlimited)")
    registered_on: date | None = None

    def terms(self) -> PaymentTerms:
        return PaymentTerms.parse(self.payment_terms) if self.payment_terms else PaymentTerms(
            30 if self.payment_terms_days is None else self.payment_terms_days)

    @model_validator(mode="after")
    def _terms_known(self) -> "RegisterCustomerRequest":
        if self.payment_terms:
            try:
                terms = PaymentTerms.parse(self.payment_terms)
            except UnknownTerms as exc:
                raise ValueError(f"payment_terms: {exc}") from exc
            if self.payment_terms_days is not None and self.payment_terms_days != terms.days:
                raise ValueError(f"payment_terms_days: {self.payment_terms_days} contradicts {terms.code}")
        return self

    @model_validator(mode="after")
    def _limit_in_currency(self) -> "RegisterCustomerRequest":
        if self.credit_limit is None:
            return self
        try:
            self.credit_limit = exact_amount(self.credit_limit, self.currency)
        except MoneyError as exc:
            raise ValueError(f"credit_limit: {exc}") from exc
        if self.credit_limit < 0:
            raise ValueError("credit_limit: cannot be negative")
        return self


class InvoiceLineRequest(_Request):
    description: str = Field(min_length=1, max_length=500)
    quantity: Amount = Field(description="Decimal string, e.g. \"1\" or \"2.5\"")
    unit_price: Amount
    product_line: str | None = Field(default=None, min_length=1, max_length=64,
                                     description="The product line (root-cause reports by product line)")
    tax_amount: Amount | None = Field(default=None, description="The line's tax as the ERP computed it (optional;"
                                      " when lines carry it, they sum to the invoice's taxes). A return credits"
                                      " its share of it")


class InvoiceTaxRequest(_Request):
    code: str = Field(min_length=1, max_length=32, description="VAT, GST, QST, ... as the ERP names it")
    rate: Amount | None = Field(default=None, description="Percent, printed on the document only")
    amount: Amount = Field(description="The tax amount as the ERP computed it; added to the invoice total")


class CreditOverrideRequest(_Request):
    approved_by: str = Field(min_length=1, max_length=200, description="Who approved issuing above the credit limit")
    reason: str = Field(min_length=1, max_length=500, description="Why the limit may be exceeded")


class IssueInvoiceRequest(_Request):
    invoice_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
    invoice_number: str | None = Field(default=None, min_length=1, max_length=64)
    customer_id: str = Field(min_length=1, max_length=64)
    currency: CurrencyCode | None = Field(default=None, description="Defaults to the customer's currency")
    issue_date: date
    due_date: date | None = Field(default=None, description="Defaults to issue date + the customer's terms")
    lines: list[InvoiceLineRequest] = Field(min_length=1, max_length=1000)
    taxes: list[InvoiceTaxRequest] = Field(default_factory=list, max_length=20)
    po_number: str | None = Field(default=None, min_length=1, max_length=64,
                                  description="The customer's purchase order number (required by some customers)")
    credit_override: CreditOverrideRequest | None = Field(
        default=None, description="Issue even if the invoice takes the customer's or a parent account's exposure over"
                                  " its credit limit: who approved it and why (recorded on InvoiceIssued)")

    def override(self) -> CreditOverride | None:
        return CreditOverride(self.credit_override.approved_by, self.credit_override.reason) \
            if self.credit_override else None

    def line_tuples(self) -> list[tuple]:
        return [(line.description, line.quantity, line.unit_price, line.product_line, line.tax_amount)
                for line in self.lines]

    def tax_tuples(self) -> list[tuple]:
        return [(tax.code, tax.rate, tax.amount) for tax in self.taxes]

    @model_validator(mode="after")
    def _prices_in_currency(self) -> "IssueInvoiceRequest":
        total = Decimal(0)
        for i, line in enumerate(self.lines):  # quantity x price must fit an amount column too
            try:
                total += check_magnitude(line.quantity * line.unit_price)
                check_magnitude(total)
            except MoneyError as exc:
                raise ValueError(f"lines.{i}.quantity: quantity x unit_price: {exc}") from exc
        if self.currency:
            for i, line in enumerate(self.lines):
                try:
                    exact_amount(line.unit_price, self.currency)
                except MoneyError as exc:
                    raise ValueError(f"lines.{i}.unit_price: {exc}") from exc
        return self


class IssueCreditMemoRequest(_Request):
    amount: Amount
    issue_date: date
    reason: str = Field(min_length=1, max_length=500)


def money_out(data: dict[str, Any], *names: str) -> dict[str, Any]:
    """Decimal columns -> strings at the currency's minor unit."""
    out = dict(data)
    for name in names:
        out[name] = money_str(out.get(name), out["currency"])
    return out


# --- responses (documented in the OpenAPI so ERP integrators can generate clients) ---------------

MoneyString = Annotated[str, Field(pattern=r"^-?\d+(\.\d+)?$",
                                   description="Decimal string at the currency's minor unit")]


class CreditHoldOut(BaseModel):
    hold_id: str
    reason: str
    placed_on: date


class CustomerOut(BaseModel):
    customer_id: str
    name: str
    currency: str
    payment_terms: str | None
    payment_terms_days: int
    credit_limit: MoneyString | None = Field(description="None: no credit limit")
    registered_on: date
    version: int
    credit_hold: CreditHoldOut | None = None
    language: str = "en"
    delivery_preference: str = "email_pdf"
    billing_contacts: list[dict[str, Any]] = Field(default_factory=list)
    billing_address: dict[str, Any] | None = None
    open_balance: str | None = Field(default=None, description="Only on GET /v1/customers/{customer_id}")
    parent_customer_id: str | None = Field(default=None, description="The account that pays for this one")
    family_open_balance: str | None = Field(
        default=None, description="Its own and every descendant's open balance (GET one)")
    available_credit: str | None = Field(
        default=None, description="The least of credit_limit − family_open_balance over the customer and each of its"
                                  " ancestors (GET one): a child's exposure counts against its parent's limit too")


class CustomerPage(BaseModel):
    data: list[CustomerOut]
    next_cursor: str | None


class InvoiceLineOut(BaseModel):
    description: str
    quantity: str
    unit_price: str
    amount: str
    product_line: str | None = None
    tax_amount: str | None = None


class InvoiceTaxOut(BaseModel):
    code: str
    rate: str | None = None
    amount: str


class CreditMemoLineOut(BaseModel):
    line_number: int
    description: str
    quantity: str
    unit_price: str
    amount: str = Field(description="The returned goods, priced as invoiced")
    tax_amount: str = Field(default="0", description="The returned quantity's share of the line's tax")


class CreditMemoOut(BaseModel):
    credit_memo_id: str
    invoice_id: str
    customer_id: str
    currency: str
    amount: MoneyString
    issue_date: date
    reason: str
    dispute_id: str | None = None
    rma_number: str | None = None
    lines: list[CreditMemoLineOut] = Field(default_factory=list, description="Returned lines (returns only)")


class InvoiceOut(BaseModel):
    invoice_id: str
    invoice_number: str
    customer_id: str
    currency: str
    issue_date: date
    due_date: date
    lines: list[InvoiceLineOut]
    taxes: list[InvoiceTaxOut] = Field(default_factory=list, description="Tax amounts as the ERP gave them")
    po_number: str | None = None
    credit_override: dict[str, Any] | None = Field(
        default=None, description="Set when issued above a credit limit on approval: approved_by, reason, exceeded"
                                  " (level customer|parent, customer_id, credit_limit, exposure)")
    payment_reference: str | None = Field(
        default=None, description="ISO 11649 RF creditor reference printed on the invoice (from its number)")
    total_amount: MoneyString
    credited_amount: MoneyString
    paid_amount: MoneyString = Field(description="Applications net of reversals")
    adjusted_amount: MoneyString = Field(description="Small-balance write-offs")
    written_off_amount: MoneyString = Field(description="Approved bad-debt write-offs")
    debit_adjusted: MoneyString = Field(description="Posted debit adjustments (raise the balance)")
    credit_adjusted: MoneyString = Field(description="Posted credit adjustments (lower the balance)")
    voided_amount: MoneyString = Field(description="The open balance a void cancelled")
    voided_on: date | None = None
    open_balance: MoneyString = Field(description="total + debit_adjusted − credited − credit_adjusted − voided − "
                                                  "paid − adjusted − written_off")
    status: str = Field(description="open, closed or void")
    version: int
    credit_memos: list[CreditMemoOut] | None = Field(default=None, description="Only on GET /v1/invoices/{invoice_id}")


class InvoicePage(BaseModel):
    data: list[InvoiceOut]
    next_cursor: str | None


class CreditMemoIssuedOut(BaseModel):
    credit_memo_id: str
    invoice_id: str
    customer_id: str | None = None
    currency: str | None = None
    amount: str | None = None
    issue_date: date | None = None
    reason: str | None = None
    dispute_id: str | None = None
    rma_number: str | None = None
    lines: list[CreditMemoLineOut] | None = None
    invoice_version: int | None = None
    already_issued: bool | None = None
