"""The Promise aggregate: a customer's promise to pay an amount on promised invoices by a date.
Rules are checked in the command methods; state changes only in when_*."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Iterable, Literal

from shared.aggregate import Aggregate
from shared.contracts import PromiseBroken, PromiseKept, PromiseToPayMade
from shared.eventstore import utc_midnight
from shared.money import ZERO, quantize
from services.collections.domain.promise_rule import (
    AppliedPayment,
    Broken,
    Kept,
    Outcome,
    PromiseTerms,
    evaluate_promise,
)

MAX_GRACE_DAYS = 30
MAX_PROMISED_INVOICES = 100


class CollectionsRuleViolation(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class PromisedInvoice:
    """What collections knows of an invoice a promise names; open_balance is what was owed on
    it when the promise was made (payments from that day on count towards the promise)."""

    invoice_id: str
    customer_id: str
    currency: str
    open_balance: Decimal


class Promise(Aggregate):
    stream_type = "promise"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.customer_id = ""
        self.invoice_ids: list[str] = []
        self.amount = ZERO
        self.currency = ""
        self.promise_date: date | None = None
        self.made_on: date | None = None
        self.grace_days = 0
        self.status: Literal["open", "kept", "broken"] | None = None

    @property
    def terms(self) -> PromiseTerms:
        assert self.made_on and self.promise_date
        return PromiseTerms(amount=self.amount, made_on=self.made_on, promise_date=self.promise_date,
                            grace_days=self.grace_days)

    # -- commands -------------------------------------------------------------------------

    def make(self, *, customer_id: str, invoices: list[PromisedInvoice], amount: Decimal, currency: str,
             promise_date: date, made_on: date, grace_days: int, at: datetime) -> None:
        if self.exists:
            raise CollectionsRuleViolation(f"promise {self.id} already exists", "promise_id")
        if not invoices or len(invoices) > MAX_PROMISED_INVOICES:
            raise CollectionsRuleViolation(
                f"a promise names 1 to {MAX_PROMISED_INVOICES} invoices", "invoice_ids")
        seen: set[str] = set()
        for i, invoice in enumerate(invoices):
            if invoice.invoice_id in seen:
                raise CollectionsRuleViolation(f"invoice {invoice.invoice_id} is named twice", f"invoice_ids.{i}")
            seen.add(invoice.invoice_id)
            if invoice.customer_id != customer_id:
                raise CollectionsRuleViolation(
                    f"invoice {invoice.invoice_id} belongs to another customer", f"invoice_ids.{i}")
            if invoice.currency != currency:
                raise CollectionsRuleViolation(
                    f"invoice {invoice.invoice_id} is in {invoice.currency}, not {currency}", "currency")
        if amount <= 0:
            raise CollectionsRuleViolation("a promised amount must be positive", "amount")
        if quantize(amount, currency) != amount:
            raise CollectionsRuleViolation(f"{currency} amounts have at most its minor unit's decimals", "amount")
        owed = quantize(sum((invoice.open_balance for invoice in invoices), ZERO), currency)
        if amount > owed:
            raise CollectionsRuleViolation(
                f"promised amount {amount} exceeds the open balance {owed} of the promised invoices", "amount")
        if promise_date < made_on:
            raise CollectionsRuleViolation("the promise date cannot be before the day it was made", "promise_date")
        if not 0 <= grace_days <= MAX_GRACE_DAYS:
            raise CollectionsRuleViolation(f"grace days must be between 0 and {MAX_GRACE_DAYS}", "grace_days")
        self.trigger(PromiseToPayMade(promise_id=self.id, customer_id=customer_id,
                                      invoice_ids=[invoice.invoice_id for invoice in invoices], amount=amount,
                                      currency=currency, promise_date=promise_date, made_on=made_on,
                                      grace_days=grace_days), at)

    def evaluate(self, payments: Iterable[AppliedPayment], as_of: date, *, keep_only: bool = False) -> Outcome | None:
        """Apply the promise rule as of a date; records PromiseKept or PromiseBroken when the
        promise is decided and returns that outcome. A decided promise is never decided again,
        so evaluating twice emits nothing twice. keep_only: record a kept promise but never a
        broken one (used when a payment arrives, which can only keep a promise)."""
        if self.status != "open" or self.made_on is None or as_of < self.made_on:
            return None
        outcome = evaluate_promise(self.terms, payments, as_of)
        if isinstance(outcome, Kept):
            self.trigger(PromiseKept(promise_id=self.id, customer_id=self.customer_id, amount=self.amount,
                                     currency=self.currency, promise_date=self.promise_date,
                                     paid_amount=quantize(outcome.paid_amount, self.currency),
                                     kept_on=outcome.kept_on), utc_midnight(outcome.kept_on))
            return outcome
        if isinstance(outcome, Broken) and not keep_only:
            self.trigger(PromiseBroken(promise_id=self.id, customer_id=self.customer_id, amount=self.amount,
                                       currency=self.currency, promise_date=self.promise_date,
                                       paid_amount=quantize(outcome.paid_amount, self.currency),
                                       shortfall=quantize(outcome.shortfall, self.currency),
                                       broken_on=outcome.broken_on), utc_midnight(outcome.broken_on))
            return outcome
        return None

    # -- state ----------------------------------------------------------------------------

    def when_PromiseToPayMade(self, e: PromiseToPayMade) -> None:
        self.customer_id = e.customer_id
        self.invoice_ids = list(e.invoice_ids)
        self.amount = e.amount
        self.currency = e.currency
        self.promise_date = e.promise_date
        self.made_on = e.made_on
        self.grace_days = e.grace_days
        self.status = "open"

    def when_PromiseKept(self, e: PromiseKept) -> None:
        self.status = "kept"

    def when_PromiseBroken(self, e: PromiseBroken) -> None:
        self.status = "broken"


def evaluation_date(as_of: date | None, today: date) -> date:
    """The day promises are judged as of: today by default, never a day still to come (a
    promise judged early would be broken before its customer had the chance to pay)."""
    if as_of is None:
        return today
    if as_of > today:
        raise CollectionsRuleViolation(f"as_of {as_of} is after today ({today})", "as_of")
    return as_of
