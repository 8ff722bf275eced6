"""Customer and Invoice aggregates. Rules are checked here; state changes only in when_*."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from shared.aggregate import Aggregate
from shared.contracts import (
    CreditMemoIssued,
    CreditLimitExceeded,
    CreditMemoLine,
    CreditOverride as CreditOverrideRecord,
    CustomerParentChanged,
    CustomerProfileChanged,
    CustomerRegistered,
    InvoiceAdjusted,
    InvoiceAdjustmentRejected,
    InvoiceAdjustmentRequested,
    InvoiceIssued,
    InvoiceLine,
    InvoiceTax,
    InvoiceVoided,
)
from shared.money import ZERO, quantize
from services.invoicing.domain.credit import CreditBreach, CreditOverride, LimitLevel, breaches
from services.invoicing.domain.hierarchy import HierarchyViolation, check_parent
from services.invoicing.domain.returns import line_taxes, returned_tax
from services.invoicing.domain.adjustments import BY_CODE as ADJUSTMENT_REASONS, CREDIT, DEBIT, DIRECTIONS
from services.invoicing.domain.terms import PaymentTerms


class InvoicingRuleViolation(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class CreditLimitRefused(InvoicingRuleViolation):
    """Issuing would take the customer's or a parent's exposure over its credit limit, and no
    override was given. breach: the first level exceeded (the customer's own before a parent's);
    all: every level exceeded."""

    def __init__(self, message: str, breach: CreditBreach, all_breaches: list[CreditBreach]) -> None:
        super().__init__(message, "customer_id")
        self.breach = breach
        self.all = all_breaches


class InvoicingConflict(InvoicingRuleViolation):
    """The command conflicts with the invoice's current state (already voided, already
    decided, RMA already credited): HTTP 409, not a bad request."""


@dataclass(frozen=True)
class PendingAdjustment:
    adjustment_id: str
    direction: str
    amount: Decimal
    reason_code: str
    adjustment_date: date
    requested_by: str
    note: str | None


LANGUAGES = ("en", "fr")
DELIVERY_PREFERENCES = ("email_pdf", "postal", "portal_upload", "e_invoice")


@dataclass(frozen=True)
class CustomerProfile:
    """The customer master as it stood on a date."""

    payment_terms: PaymentTerms
    credit_limit: Decimal | None  # None: no limit
    billing_contacts: tuple = ()
    billing_address: Any = None
    language: str = "en"
    delivery_preference: str = "email_pdf"
    po_number_required: bool = False


class Customer(Aggregate):
    stream_type = "customer"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.name = ""
        self.currency = ""
        self.payment_terms = PaymentTerms(30)
        self.credit_limit: Decimal | None = None
        self.registered_on: date | None = None
        # Profile changes in the order recorded, each effective from its date.
        self.changes: list[CustomerProfileChanged] = []
        self.parent_customer_id: str | None = None
        self.parent_changes: list[CustomerParentChanged] = []
        self._profiles: dict[tuple, CustomerProfile] = {}

    def profile_as_of(self, on: date) -> CustomerProfile:
        """Registration, then every change effective on or before `on`, by effective date and, on
        one date, in the order recorded (a later correction of a date wins). Remembered per date
        and state (a batch of invoices asks for the same customers' profiles thousands of times;
        the profile is immutable, and any event applied since gives another key)."""
        key = (on, len(self.changes), self.payment_terms, self.credit_limit)
        profile = self._profiles.get(key)
        if profile is None:
            profile = self._profiles[key] = self._profile_as_of(on)
        return profile

    def _profile_as_of(self, on: date) -> CustomerProfile:
        profile = CustomerProfile(self.payment_terms, self.credit_limit)
        ordered = sorted(enumerate(self.changes), key=lambda pair: (pair[1].effective_on, pair[0]))
        for _, c in ordered:
            if c.effective_on > on:
                break
            profile = CustomerProfile(
                payment_terms=PaymentTerms.parse(c.payment_terms) if c.payment_terms else profile.payment_terms,
                credit_limit=profile.credit_limit if c.credit_limit is None else c.credit_limit,
                billing_contacts=profile.billing_contacts if c.billing_contacts is None else tuple(c.billing_contacts),
                billing_address=profile.billing_address if c.billing_address is None else c.billing_address,
                language=c.language or profile.language,
                delivery_preference=c.delivery_preference or profile.delivery_preference,
                po_number_required=(profile.po_number_required if c.po_number_required is None
                                    else c.po_number_required))
        return profile

    def change_profile(self, *, effective_on: date, changed_by: str, at: datetime,
                       payment_terms: PaymentTerms | None = None, credit_limit: Decimal | None = None,
                       billing_contacts: list | None = None, billing_address: Any = None,
                       language: str | None = None, delivery_preference: str | None = None,
                       po_number_required: bool | None = None) -> None:
        if not self.exists:
            raise InvoicingRuleViolation(f"customer {self.id} is not registered", "customer_id")
        if self.registered_on and effective_on < self.registered_on:
            raise InvoicingRuleViolation("a change cannot take effect before the customer was registered",
                                         "effective_on")
        if payment_terms is not None and not 0 <= payment_terms.days <= 365:
            raise InvoicingRuleViolation("payment terms must be between 0 and 365 days", "payment_terms")
        if credit_limit is not None:
            if credit_limit < 0:
                raise InvoicingRuleViolation("credit limit cannot be negative", "credit_limit")
            if quantize(credit_limit, self.currency) != credit_limit:
                raise InvoicingRuleViolation(f"{self.currency} amounts have at most its minor unit's decimals",
                                             "credit_limit")
        if language is not None and language not in LANGUAGES:
            raise InvoicingRuleViolation(f"language must be one of {', '.join(LANGUAGES)}", "language")
        if delivery_preference is not None and delivery_preference not in DELIVERY_PREFERENCES:
            raise InvoicingRuleViolation(f"delivery_preference must be one of {', '.join(DELIVERY_PREFERENCES)}",
                                         "delivery_preference")
        for i, contact in enumerate(billing_contacts or []):
            if contact.email is not None and "@" not in contact.email:
                raise InvoicingRuleViolation(f"{contact.email!r} is not an email address",
                                             f"billing_contacts.{i}.email")
        if all(v is None for v in (payment_terms, credit_limit, billing_contacts, billing_address, language,
                                   delivery_preference, po_number_required)):
            raise InvoicingRuleViolation("name at least one field to change", "body")
        self.trigger(CustomerProfileChanged(
            customer_id=self.id, currency=self.currency, effective_on=effective_on,
            payment_terms=payment_terms.code if payment_terms else None,
            payment_terms_days=payment_terms.days if payment_terms else None, credit_limit=credit_limit,
            billing_contacts=billing_contacts, billing_address=billing_address, language=language,
            delivery_preference=delivery_preference, changed_by=changed_by,
            po_number_required=po_number_required), at)

    def when_CustomerProfileChanged(self, e: CustomerProfileChanged) -> None:
        self.changes.append(e)

    def change_parent(self, *, parent_customer_id: str | None, effective_on: date, changed_by: str, at: datetime,
                      parent_currency: str | None = None, parent_ancestors: list[str] | None = None,
                      depth_below: int = 0) -> None:
        """Set (or, with None, clear) the account that pays for this customer. Setting the
        parent it already has changes nothing. The caller hands in what the database knows of the
        parent: its currency (None: not registered) and its ancestors, parent first."""
        if not self.exists:
            raise InvoicingRuleViolation(f"customer {self.id} is not registered", "customer_id")
        if self.registered_on and effective_on < self.registered_on:
            raise InvoicingRuleViolation("a change cannot take effect before the customer was registered",
                                         "effective_on")
        if parent_customer_id == self.parent_customer_id:
            return
        if parent_customer_id is not None:
            try:
                check_parent(customer_id=self.id, customer_currency=self.currency, parent_id=parent_customer_id,
                             parent_currency=parent_currency, parent_ancestors=parent_ancestors or [],
                             customer_depth_below=depth_below)
            except HierarchyViolation as exc:
                raise InvoicingRuleViolation(str(exc), exc.field) from exc
        self.trigger(CustomerParentChanged(customer_id=self.id, parent_customer_id=parent_customer_id,
                                           previous_parent_customer_id=self.parent_customer_id,
                                           effective_on=effective_on, changed_by=changed_by), at)

    def when_CustomerParentChanged(self, e: CustomerParentChanged) -> None:
        self.parent_customer_id = e.parent_customer_id
        self.parent_changes.append(e)

    @property
    def payment_terms_days(self) -> int:
        return self.payment_terms.days

    def register(self, name: str, currency: str, payment_terms: PaymentTerms, credit_limit: Decimal | None,
                 registered_on: date, at: datetime) -> None:
        if self.exists:
            raise InvoicingRuleViolation(f"customer {self.id} is already registered", "customer_id")
        if payment_terms.days < 0 or payment_terms.days > 365:
            raise InvoicingRuleViolation("payment terms must be between 0 and 365 days", "payment_terms")
        if credit_limit is not None and credit_limit < 0:
            raise InvoicingRuleViolation("credit limit cannot be negative", "credit_limit")
        self.trigger(CustomerRegistered(customer_id=self.id, name=name, currency=currency,
                                        payment_terms_days=payment_terms.days, payment_terms=payment_terms.code,
                                        credit_limit=None if credit_limit is None else quantize(credit_limit, currency),
                                        registered_on=registered_on), at)

    def when_CustomerRegistered(self, e: CustomerRegistered) -> None:
        self.name = e.name
        self.currency = e.currency
        # Events from before payment_terms existed carry only the day count (net N).
        self.payment_terms = PaymentTerms.parse(e.payment_terms) if e.payment_terms else PaymentTerms(e.payment_terms_days)
        self.credit_limit = e.credit_limit
        self.registered_on = e.registered_on


def line_amount(quantity: Decimal, unit_price: Decimal, currency: str) -> Decimal:
    return quantize(quantity * unit_price, currency)


class Invoice(Aggregate):
    stream_type = "invoice"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.customer_id = ""
        self.invoice_number = ""
        self.currency = ""
        self.total_amount = ZERO
        self.credited_amount = ZERO
        self.issue_date: date | None = None
        self.due_date: date | None = None
        self.credit_memo_ids: set[str] = set()
        self.lines: list[InvoiceLine] = []
        # Posted adjustments, each direction summed; pending ones wait for approval.
        self.debit_adjusted = ZERO
        self.credit_adjusted = ZERO
        self.adjustment_ids: set[str] = set()
        self.pending_adjustments: dict[str, PendingAdjustment] = {}
        self.voided_on: date | None = None
        self.voided_amount = ZERO
        self.rma_numbers: set[str] = set()
        self.returned_quantity: dict[int, Decimal] = {}
        self.returned_amount: dict[int, Decimal] = {}
        self.returned_tax: dict[int, Decimal] = {}
        self.tax_total = ZERO

    def issue(self, *, invoice_number: str, customer: Customer, currency: str, issue_date: date,
              due_date: date | None, lines: list[tuple], at: datetime,
              rebill_of_deduction: str | None = None, original_invoice_id: str | None = None,
              taxes: list[tuple[str, Decimal | None, Decimal]] = (), po_number: str | None = None,
              credit_levels: list[LimitLevel] | None = None, credit_override: CreditOverride | None = None) -> None:
        """lines: (description, quantity, unit_price[, product_line[, tax_amount]]); taxes: (code,
        rate or None, amount) as the ERP computed them, added to the total; a line's tax_amount (the
        ERP's per-line tax, optional) is part of those: the lines' tax amounts sum to the taxes. A customer whose master requires a
        purchase order number on the issue date gets no invoice without one.

        credit_levels: the customer's and each ancestor's credit limit in force on the issue date
        against its family's exposure (None: no credit check, as for a re-bill, which moves an
        amount already owed). An invoice taking any level over its limit is refused
        (CreditLimitRefused) unless credit_override names who approved it and why; the override
        is then recorded on the event with the levels it exceeded."""
        if self.exists:
            raise InvoicingRuleViolation(f"invoice {self.id} already exists", "invoice_id")
        if not customer.exists:
            raise InvoicingRuleViolation(f"customer {customer.id} is not registered", "customer_id")
        if not lines:
            raise InvoicingRuleViolation("an invoice needs at least one line", "lines")
        # The terms as they stood on the issue date (the customer master changes over time).
        profile = customer.profile_as_of(issue_date)
        if profile.po_number_required and not (po_number or "").strip():
            raise InvoicingRuleViolation(f"customer {customer.id} requires its purchase order number on every"
                                         " invoice", "po_number")
        due = due_date or profile.payment_terms.due_date(issue_date)
        if due < issue_date:
            raise InvoicingRuleViolation("due date cannot be before the issue date", "due_date")
        invoice_lines = []
        for i, (description, quantity, unit_price, *rest) in enumerate(lines):
            if quantity <= 0:
                raise InvoicingRuleViolation("quantity must be positive", f"lines.{i}.quantity")
            if unit_price < 0:
                raise InvoicingRuleViolation("unit price cannot be negative", f"lines.{i}.unit_price")
            line_tax = rest[1] if len(rest) > 1 else None
            if line_tax is not None and (line_tax < 0 or quantize(line_tax, currency) != line_tax):
                raise InvoicingRuleViolation(f"a line's tax is a non-negative {currency} amount at its minor unit",
                                             f"lines.{i}.tax_amount")
            invoice_lines.append(InvoiceLine(description=description, quantity=quantity, unit_price=unit_price,
                                             amount=line_amount(quantity, unit_price, currency),
                                             product_line=rest[0] if rest else None, tax_amount=line_tax))
        invoice_taxes = []
        for i, (code, rate, amount) in enumerate(taxes):
            if amount < 0:
                raise InvoicingRuleViolation("a tax amount cannot be negative", f"taxes.{i}.amount")
            if quantize(amount, currency) != amount:
                raise InvoicingRuleViolation(f"{currency} amounts have at most its minor unit's decimals",
                                             f"taxes.{i}.amount")
            invoice_taxes.append(InvoiceTax(code=code, rate=rate, amount=amount))
        tax_total = sum((t.amount for t in invoice_taxes), ZERO)
        if any(line.tax_amount is not None for line in invoice_lines):
            line_tax_total = sum((line.tax_amount or ZERO for line in invoice_lines), ZERO)
            if line_tax_total != tax_total:
                raise InvoicingRuleViolation(f"the lines' tax amounts sum to {line_tax_total}, the invoice's taxes to"
                                             f" {tax_total}: they must agree", "taxes")
        total = sum((line.amount for line in invoice_lines), ZERO) + tax_total
        if total <= 0:
            raise InvoicingRuleViolation("invoice total must be positive", "lines")
        exceeded = breaches(credit_levels or [], total)
        override_record = None
        if exceeded:
            if credit_override is None:
                first = exceeded[0]
                raise CreditLimitRefused(first.describe(customer.id, currency), first, exceeded)
            override_record = CreditOverrideRecord(
                approved_by=credit_override.approved_by, reason=credit_override.reason,
                exceeded=[CreditLimitExceeded(level=b.level, customer_id=b.customer_id,
                                              credit_limit=quantize(b.credit_limit, currency),
                                              exposure=quantize(b.exposure, currency)) for b in exceeded])
        self.trigger(InvoiceIssued(invoice_id=self.id, invoice_number=invoice_number, customer_id=customer.id,
                                   currency=currency, issue_date=issue_date, due_date=due,
                                   lines=invoice_lines, total_amount=total, rebill_of_deduction=rebill_of_deduction,
                                   original_invoice_id=original_invoice_id, taxes=invoice_taxes,
                                   po_number=(po_number or "").strip() or None, credit_override=override_record), at)

    def creditable_amount(self, paid_amount: Decimal) -> Decimal:
        """What a credit memo or a credit adjustment may still take off: the invoice's open
        balance (paid_amount: what other contexts settled, net of reversals)."""
        return (self.total_amount + self.debit_adjusted - self.credited_amount - self.credit_adjusted
                - self.voided_amount - paid_amount)

    @property
    def voided(self) -> bool:
        return self.voided_on is not None

    def _must_be_live(self) -> None:
        if not self.exists:
            raise InvoicingRuleViolation(f"invoice {self.id} does not exist", "invoice_id")
        if self.voided:
            raise InvoicingConflict(f"invoice {self.id} was voided on {self.voided_on}", "invoice_id")

    def _check_money(self, amount: Decimal, field: str) -> None:
        if amount <= 0:
            raise InvoicingRuleViolation(f"{field} must be positive", field)
        if quantize(amount, self.currency) != amount:
            raise InvoicingRuleViolation(f"{self.currency} amounts have at most its minor unit's decimals", field)

    def _check_date(self, on: date, field: str, what: str) -> None:
        if self.issue_date and on < self.issue_date:
            raise InvoicingRuleViolation(f"{what} cannot predate the invoice's issue date {self.issue_date}", field)

    # -- adjustments ----------------------------------------------------------------------

    def adjust(self, *, adjustment_id: str, direction: str, amount: Decimal, reason_code: str,
               adjustment_date: date, requested_by: str, note: str | None, approval_limit: Decimal,
               paid_amount: Decimal, at: datetime) -> None:
        """A debit or credit adjustment. Up to approval_limit it is posted at once
        (InvoiceAdjusted); above it, it waits for a second person (InvoiceAdjustmentRequested).
        A credit never takes off more than is open. The same adjustment_id again changes nothing."""
        self._must_be_live()
        if adjustment_id in self.adjustment_ids or adjustment_id in self.pending_adjustments:
            return
        if direction not in DIRECTIONS:
            raise InvoicingRuleViolation(f"direction must be one of {', '.join(DIRECTIONS)}", "direction")
        reason = ADJUSTMENT_REASONS.get(reason_code)
        if reason is None:
            raise InvoicingRuleViolation(
                f"reason code {reason_code!r} is not one of {', '.join(ADJUSTMENT_REASONS)}", "reason_code")
        if direction not in reason.directions:
            raise InvoicingRuleViolation(f"reason code {reason_code} allows only {'/'.join(reason.directions)}"
                                         " adjustments", "reason_code")
        self._check_money(amount, "amount")
        self._check_date(adjustment_date, "adjustment_date", "an adjustment")
        if direction == CREDIT:
            self._check_credit_fits(amount, paid_amount, "amount")
        if amount > approval_limit:
            self.trigger(InvoiceAdjustmentRequested(
                adjustment_id=adjustment_id, invoice_id=self.id, customer_id=self.customer_id,
                currency=self.currency, direction=direction, amount=amount, reason_code=reason_code,
                adjustment_date=adjustment_date, requested_by=requested_by, note=note), at)
            return
        self.trigger(InvoiceAdjusted(
            adjustment_id=adjustment_id, invoice_id=self.id, customer_id=self.customer_id, currency=self.currency,
            direction=direction, amount=amount, reason_code=reason_code, adjustment_date=adjustment_date,
            requested_by=requested_by, approved_by=None, note=note), at)

    def _pending(self, adjustment_id: str) -> PendingAdjustment:
        pending = self.pending_adjustments.get(adjustment_id)
        if pending is None:
            if adjustment_id in self.adjustment_ids:
                raise InvoicingConflict(f"adjustment {adjustment_id} was already approved or rejected",
                                        "adjustment_id")
            raise InvoicingConflict(f"adjustment {adjustment_id} is not waiting for approval on invoice {self.id}",
                                    "adjustment_id")
        return pending

    def approve_adjustment(self, *, adjustment_id: str, approved_by: str, approved_on: date,
                           paid_amount: Decimal, at: datetime) -> None:
        """A second person posts a pending adjustment, effective on the approval date (it moved
        no balance before). Four eyes: the requester cannot approve their own adjustment."""
        self._must_be_live()
        pending = self._pending(adjustment_id)
        if approved_by == pending.requested_by:
            raise InvoicingRuleViolation(
                f"{approved_by} requested adjustment {adjustment_id}; another person must approve it", "approved_by")
        if approved_on < pending.adjustment_date:
            raise InvoicingRuleViolation(
                f"approval cannot predate the adjustment date {pending.adjustment_date}", "approved_on")
        if pending.direction == CREDIT:
            self._check_credit_fits(pending.amount, paid_amount, "amount")
        self.trigger(InvoiceAdjusted(
            adjustment_id=adjustment_id, invoice_id=self.id, customer_id=self.customer_id, currency=self.currency,
            direction=pending.direction, amount=pending.amount, reason_code=pending.reason_code,
            adjustment_date=approved_on, requested_by=pending.requested_by, approved_by=approved_by,
            note=pending.note), at)

    def reject_adjustment(self, *, adjustment_id: str, rejected_by: str, rejected_on: date, reason: str,
                          at: datetime) -> None:
        if not self.exists:
            raise InvoicingRuleViolation(f"invoice {self.id} does not exist", "invoice_id")
        self._pending(adjustment_id)
        self.trigger(InvoiceAdjustmentRejected(adjustment_id=adjustment_id, invoice_id=self.id,
                                               customer_id=self.customer_id, rejected_by=rejected_by,
                                               rejected_on=rejected_on, reason=reason), at)

    def _check_credit_fits(self, amount: Decimal, paid_amount: Decimal, field: str) -> None:
        available = self.creditable_amount(paid_amount)
        if amount > available:
            raise InvoicingRuleViolation(
                f"credit of {amount} exceeds the invoice's open balance of {available}", field)

    # -- void -----------------------------------------------------------------------------

    def void(self, *, voided_on: date, reason: str, paid_amount: Decimal, at: datetime) -> None:
        """Cancel an unpaid invoice: nothing applied, adjusted or written off against it by
        another context (net of reversals: paid_amount). Its open balance (after credits and
        adjustments) drops to zero."""
        self._must_be_live()
        if paid_amount != ZERO:
            raise InvoicingConflict(
                f"invoice {self.id} has payments or write-offs against it; only an unpaid invoice can be voided"
                " (credit it instead)", "invoice_id")
        self._check_date(voided_on, "voided_on", "a void")
        open_amount = self.creditable_amount(ZERO)
        if open_amount <= 0:
            raise InvoicingConflict(f"invoice {self.id} has nothing open to void", "invoice_id")
        self.trigger(InvoiceVoided(invoice_id=self.id, customer_id=self.customer_id, currency=self.currency,
                                   amount=open_amount, voided_on=voided_on, reason=reason), at)

    # -- returns --------------------------------------------------------------------------

    def credit_return(self, *, credit_memo_id: str, rma_number: str, returned: list[tuple[int, Decimal]],
                      issue_date: date, reason: str, paid_amount: Decimal, at: datetime) -> None:
        """Goods returned under an RMA: a credit memo for the returned quantities of the
        invoice's lines, priced as invoiced, with their share of each line's tax (domain.returns).
        No line is ever credited for more than was invoiced, goods or tax (all returns together),
        and the credit never exceeds the open balance."""
        self._must_be_live()
        if credit_memo_id in self.credit_memo_ids:
            return
        if rma_number in self.rma_numbers:
            raise InvoicingConflict(f"RMA {rma_number} is already credited on invoice {self.id}", "rma_number")
        if not returned:
            raise InvoicingRuleViolation("a return needs at least one line", "lines")
        seen: set[int] = set()
        memo_lines = []
        taxes = line_taxes([line.amount for line in self.lines], [line.tax_amount for line in self.lines],
                           self.tax_total, self.currency)
        for i, (line_number, quantity) in enumerate(returned):
            if not 1 <= line_number <= len(self.lines):
                raise InvoicingRuleViolation(
                    f"invoice {self.id} has lines 1 to {len(self.lines)}, not {line_number}", f"lines.{i}.line_number")
            if line_number in seen:
                raise InvoicingRuleViolation(f"line {line_number} is named twice", f"lines.{i}.line_number")
            seen.add(line_number)
            if quantity <= 0:
                raise InvoicingRuleViolation("returned quantity must be positive", f"lines.{i}.quantity")
            line = self.lines[line_number - 1]
            before = self.returned_quantity.get(line_number, ZERO)
            if before + quantity > line.quantity:
                raise InvoicingRuleViolation(
                    f"line {line_number} invoiced {line.quantity}, {before} already returned: at most"
                    f" {line.quantity - before} more", f"lines.{i}.quantity")
            if before + quantity == line.quantity:
                # The last return of a line takes what is left of its amount, so rounding of
                # partial returns can never credit a line for more than it was invoiced at.
                amount = line.amount - self.returned_amount.get(line_number, ZERO)
            else:
                amount = line_amount(quantity, line.unit_price, self.currency)
            tax = returned_tax(line_tax=taxes[line_number - 1], invoiced_quantity=line.quantity,
                               returned_before=before, quantity=quantity,
                               tax_credited_before=self.returned_tax.get(line_number, ZERO), currency=self.currency)
            memo_lines.append(CreditMemoLine(line_number=line_number, description=line.description,
                                             quantity=quantity, unit_price=line.unit_price, amount=amount,
                                             tax_amount=tax))
        total = sum((line.amount + line.tax_amount for line in memo_lines), ZERO)
        if total <= 0:
            raise InvoicingRuleViolation("the returned lines are worth nothing to credit", "lines")
        self._check_date(issue_date, "return_date", "a return's credit memo")
        self._check_credit_fits(total, paid_amount, "lines")
        self.trigger(CreditMemoIssued(credit_memo_id=credit_memo_id, invoice_id=self.id, customer_id=self.customer_id,
                                      currency=self.currency, amount=total, issue_date=issue_date, reason=reason,
                                      rma_number=rma_number, lines=memo_lines), at)

    def issue_credit_memo(self, *, credit_memo_id: str, amount: Decimal, issue_date: date, reason: str,
                          paid_amount: Decimal, at: datetime, dispute_id: str | None = None) -> None:
        if credit_memo_id in self.credit_memo_ids:
            return  # already issued: a redelivered request changes nothing
        self._must_be_live()
        if amount <= 0:
            raise InvoicingRuleViolation("credit memo amount must be positive", "amount")
        if quantize(amount, self.currency) != amount:
            raise InvoicingRuleViolation(f"{self.currency} amounts have at most its minor unit's decimals", "amount")
        available = self.creditable_amount(paid_amount)
        if amount > available:
            raise InvoicingRuleViolation(
                f"credit of {amount} exceeds the invoice's open balance of {available}", "amount")
        if self.issue_date and issue_date < self.issue_date:
            raise InvoicingRuleViolation("a credit memo cannot predate its invoice", "issue_date")
        self.trigger(CreditMemoIssued(credit_memo_id=credit_memo_id, invoice_id=self.id,
                                      customer_id=self.customer_id, currency=self.currency, amount=amount,
                                      issue_date=issue_date, reason=reason, dispute_id=dispute_id), at)

    def when_InvoiceIssued(self, e: InvoiceIssued) -> None:
        self.customer_id = e.customer_id
        self.invoice_number = e.invoice_number
        self.currency = e.currency
        self.total_amount = e.total_amount
        self.issue_date = e.issue_date
        self.due_date = e.due_date
        self.lines = list(e.lines)
        self.tax_total = sum((t.amount for t in e.taxes), ZERO)

    def when_CreditMemoIssued(self, e: CreditMemoIssued) -> None:
        self.credited_amount += e.amount
        self.credit_memo_ids.add(e.credit_memo_id)
        if e.rma_number:
            self.rma_numbers.add(e.rma_number)
        for line in e.lines:
            self.returned_quantity[line.line_number] = self.returned_quantity.get(line.line_number, ZERO) + line.quantity
            self.returned_amount[line.line_number] = self.returned_amount.get(line.line_number, ZERO) + line.amount
            self.returned_tax[line.line_number] = self.returned_tax.get(line.line_number, ZERO) + line.tax_amount

    def when_InvoiceAdjustmentRequested(self, e: InvoiceAdjustmentRequested) -> None:
        self.pending_adjustments[e.adjustment_id] = PendingAdjustment(
            e.adjustment_id, e.direction, e.amount, e.reason_code, e.adjustment_date, e.requested_by, e.note)

    def when_InvoiceAdjustmentRejected(self, e: InvoiceAdjustmentRejected) -> None:
        self.pending_adjustments.pop(e.adjustment_id, None)
        self.adjustment_ids.add(e.adjustment_id)

    def when_InvoiceAdjusted(self, e: InvoiceAdjusted) -> None:
        self.pending_adjustments.pop(e.adjustment_id, None)
        self.adjustment_ids.add(e.adjustment_id)
        if e.direction == DEBIT:
            self.debit_adjusted += e.amount
        else:
            self.credit_adjusted += e.amount

    def when_InvoiceVoided(self, e: InvoiceVoided) -> None:
        self.voided_on = e.voided_on
        self.voided_amount = e.amount
