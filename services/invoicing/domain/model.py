"""Customer and Invoice aggregates. Rules are checked here; state changes only in when_*."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from shared.aggregate import Aggregate
from shared.contracts import CreditMemoIssued, CustomerRegistered, InvoiceIssued, InvoiceLine
from shared.money import ZERO, quantize
from services.invoicing.domain.terms import PaymentTerms


class InvoicingRuleViolation(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Customer(Aggregate):
    stream_type = "customer"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.name = ""
        self.currency = ""
        self.payment_terms = PaymentTerms(30)
        self.credit_limit = ZERO
        self.registered_on: date | None = None

    @property
    def payment_terms_days(self) -> int:
        return self.payment_terms.days

    def register(self, name: str, currency: str, payment_terms: PaymentTerms, credit_limit: Decimal,
                 registered_on: date, at: datetime) -> None:
        if self.exists:
            raise InvoicingRuleViolation(f"customer {self.id} is already registered", "customer_id")
        if payment_terms.days < 0 or payment_terms.days > 365:
            raise InvoicingRuleViolation("payment terms must be between 0 and 365 days", "payment_terms")
        if credit_limit < 0:
            raise InvoicingRuleViolation("credit limit cannot be negative", "credit_limit")
        self.trigger(CustomerRegistered(customer_id=self.id, name=name, currency=currency,
                                        payment_terms_days=payment_terms.days, payment_terms=payment_terms.code,
                                        credit_limit=quantize(credit_limit, currency),
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

    def issue(self, *, invoice_number: str, customer: Customer, currency: str, issue_date: date,
              due_date: date | None, lines: list[tuple[str, Decimal, Decimal]], at: datetime) -> None:
        if self.exists:
            raise InvoicingRuleViolation(f"invoice {self.id} already exists", "invoice_id")
        if not customer.exists:
            raise InvoicingRuleViolation(f"customer {customer.id} is not registered", "customer_id")
        if not lines:
            raise InvoicingRuleViolation("an invoice needs at least one line", "lines")
        due = due_date or customer.payment_terms.due_date(issue_date)
        if due < issue_date:
            raise InvoicingRuleViolation("due date cannot be before the issue date", "due_date")
        invoice_lines = []
        for i, (description, quantity, unit_price) in enumerate(lines):
            if quantity <= 0:
                raise InvoicingRuleViolation("quantity must be positive", f"lines.{i}.quantity")
            if unit_price < 0:
                raise InvoicingRuleViolation("unit price cannot be negative", f"lines.{i}.unit_price")
            invoice_lines.append(InvoiceLine(description=description, quantity=quantity, unit_price=unit_price,
                                             amount=line_amount(quantity, unit_price, currency)))
        total = sum((line.amount for line in invoice_lines), ZERO)
        if total <= 0:
            raise InvoicingRuleViolation("invoice total must be positive", "lines")
        self.trigger(InvoiceIssued(invoice_id=self.id, invoice_number=invoice_number, customer_id=customer.id,
                                   currency=currency, issue_date=issue_date, due_date=due,
                                   lines=invoice_lines, total_amount=total), at)

    def creditable_amount(self, paid_amount: Decimal) -> Decimal:
        """What a credit memo may still take off: the invoice's open balance."""
        return self.total_amount - self.credited_amount - paid_amount

    def issue_credit_memo(self, *, credit_memo_id: str, amount: Decimal, issue_date: date, reason: str,
                          paid_amount: Decimal, at: datetime, dispute_id: str | None = None) -> None:
        if not self.exists:
            raise InvoicingRuleViolation(f"invoice {self.id} does not exist", "invoice_id")
        if credit_memo_id in self.credit_memo_ids:
            return  # already issued: a redelivered request changes nothing
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

    def when_CreditMemoIssued(self, e: CreditMemoIssued) -> None:
        self.credited_amount += e.amount
        self.credit_memo_ids.add(e.credit_memo_id)
