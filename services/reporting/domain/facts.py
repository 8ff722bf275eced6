"""The facts reporting keeps, in the language of an AR team. Each is one event's business
content; balances are never facts, they are computed from these as of a date."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal


@dataclass(frozen=True)
class InvoiceFact:
    invoice_id: str
    customer_id: str
    currency: str
    amount: Decimal
    issue_date: date
    due_date: date
    invoice_number: str = ""


@dataclass(frozen=True)
class CreditFact:
    """A credit memo against an invoice; reduces the invoice's balance from its issue date."""

    credit_memo_id: str
    invoice_id: str
    amount: Decimal
    issue_date: date


@dataclass(frozen=True)
class ApplicationFact:
    """Cash applied to an invoice; reduces the invoice's balance from its value date."""

    payment_id: str
    invoice_id: str
    amount: Decimal
    value_date: date


@dataclass(frozen=True)
class OpenItem:
    """An invoice with what was credited, applied (net of unapplications), adjusted (small
    balances written off) and written off (bad debt) against it up to some date."""

    invoice_id: str
    customer_id: str
    currency: str
    amount: Decimal
    issue_date: date
    due_date: date
    credited: Decimal
    applied: Decimal
    invoice_number: str = ""
    adjusted: Decimal = Decimal(0)
    written_off: Decimal = Decimal(0)

    @property
    def open_balance(self) -> Decimal:
        return self.amount - self.credited - self.applied - self.adjusted - self.written_off


@dataclass(frozen=True)
class RecoveryItem:
    """An invoice that was past due within a period: its balance when it was (or became) past
    due in the period, and the cash applied to it from then until the period's end."""

    invoice_id: str
    customer_id: str
    past_due_from: date
    past_due_balance: Decimal
    collected: Decimal


@dataclass(frozen=True)
class PromiseFact:
    promise_id: str
    customer_id: str
    currency: str
    amount: Decimal
    promise_date: date
    made_on: date


@dataclass(frozen=True)
class PromiseOutcomeFact:
    promise_id: str
    outcome: Literal["kept", "broken"]
    amount: Decimal
    paid_amount: Decimal
    shortfall: Decimal
    outcome_on: date
