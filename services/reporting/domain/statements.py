"""Statements of account, pure: a customer's (or a parent account's family's) open items as of a
date, aged, beside its unapplied cash, in English or French. The PDF adapter lays it out."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from services.reporting.domain import metrics

LABELS: dict[str, dict[str, str]] = {
    "en": {"title": "Statement of account", "as_of": "As of", "customer": "Customer", "account": "Account",
           "invoice": "Invoice", "issued": "Issued", "due": "Due", "days": "Days past due", "open": "Open balance",
           "aging": "Aging", "open_total": "Open items", "unapplied": "Unapplied cash (payments not yet applied)",
           "balance": "Balance due", "members": "Accounts included", "none": "No open items."},
    "fr": {"title": "Relevé de compte", "as_of": "Au", "customer": "Client", "account": "Compte",
           "invoice": "Facture", "issued": "Émise le", "due": "Échéance", "days": "Jours de retard",
           "open": "Solde dû", "aging": "Balance âgée", "open_total": "Pièces ouvertes",
           "unapplied": "Paiements non affectés", "balance": "Solde à payer", "members": "Comptes inclus",
           "none": "Aucune pièce ouverte."},
}


@dataclass(frozen=True)
class StatementLine:
    customer_id: str
    invoice_number: str
    issue_date: date
    due_date: date
    days_past_due: int
    open_balance: Decimal


@dataclass(frozen=True)
class Statement:
    customer_id: str
    customer_name: str
    as_of: date
    currency: str
    language: str
    members: tuple[str, ...]  # the customer and, for a parent account, everyone below it
    lines: tuple[StatementLine, ...]
    buckets: dict[str, Decimal]
    unapplied_cash: Decimal

    @property
    def open_total(self) -> Decimal:
        return sum((line.open_balance for line in self.lines), Decimal(0))

    @property
    def balance_due(self) -> Decimal:
        return self.open_total - self.unapplied_cash

    @property
    def labels(self) -> dict[str, str]:
        return LABELS[self.language]


def statement(*, customer_id: str, customer_name: str, as_of: date, currency: str, language: str,
              members: list[str], aging: metrics.Aging, unapplied_cash: Decimal) -> Statement:
    """The aged open items (oldest due first, then by account) and the unapplied cash: balance due
    = open items - unapplied cash, and the buckets add up to the open items."""
    lines = sorted((StatementLine(a.item.customer_id, a.item.invoice_number or a.item.invoice_id, a.item.issue_date,
                                  a.item.due_date, a.days_past_due, a.item.open_balance) for a in aging.items),
                   key=lambda line: (line.due_date, line.customer_id, line.invoice_number))
    return Statement(customer_id, customer_name, as_of, currency, language if language in LABELS else "en",
                     tuple(members), tuple(lines), dict(aging.buckets), unapplied_cash)
