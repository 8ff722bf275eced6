"""Invoice and credit-memo documents, pure: what they say (in English or French), the payment
instructions with the ISO 11649 creditor reference that makes the remittance come back
matchable, and how a document reaches the customer. Rendering to PDF is an adapter's job."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from shared import creditor_reference

LANGUAGES = ("en", "fr")

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "invoice": "Invoice", "credit_memo": "Credit memo", "number": "Number", "date": "Date",
        "due_date": "Due date", "po_number": "Your order", "customer": "Customer", "bill_to": "Bill to",
        "description": "Description", "quantity": "Qty", "unit_price": "Unit price", "amount": "Amount",
        "subtotal": "Subtotal", "tax": "Tax", "total": "Total due", "credit_total": "Total credited",
        "original_invoice": "Credits invoice", "rma": "Return (RMA)", "reason": "Reason",
        "payment_instructions": "Payment instructions", "payee": "Pay to", "iban": "IBAN", "bic": "BIC",
        "reference": "Payment reference (quote it with your payment)",
        "reference_missing": "Quote the invoice number with your payment",
        "credit_note": "This credit will be applied to your account.",
    },
    "fr": {
        "invoice": "Facture", "credit_memo": "Avoir", "number": "Numéro", "date": "Date",
        "due_date": "Échéance", "po_number": "Votre commande", "customer": "Client", "bill_to": "Facturé à",
        "description": "Désignation", "quantity": "Qté", "unit_price": "Prix unitaire", "amount": "Montant",
        "subtotal": "Total HT", "tax": "Taxe", "total": "Total à payer", "credit_total": "Total de l'avoir",
        "original_invoice": "Avoir sur la facture", "rma": "Retour (RMA)", "reason": "Motif",
        "payment_instructions": "Modalités de paiement", "payee": "Bénéficiaire", "iban": "IBAN", "bic": "BIC",
        "reference": "Référence de paiement (à rappeler avec votre règlement)",
        "reference_missing": "Rappelez le numéro de facture avec votre règlement",
        "credit_note": "Ce montant sera porté au crédit de votre compte.",
    },
}


def payment_reference(invoice_number: str) -> str | None:
    """The RF creditor reference of an invoice: RF, check digits, the invoice number's letters and
    digits (cash application maps it back to the invoice). None when the number has more than 21
    of them: the document then asks for the invoice number instead."""
    body = re.sub(r"[^0-9A-Z]", "", invoice_number.upper())
    if not 1 <= len(body) <= creditor_reference.MAX_REFERENCE:
        return None
    return creditor_reference.make(body)


def format_amount(amount: Decimal, currency: str, language: str) -> str:
    """1234.50 -> "1,234.50 USD" in English, "1 234,50 USD" in French (the amount is already at
    its currency's minor unit)."""
    sign = "-" if amount < 0 else ""
    whole, _, fraction = f"{abs(amount):f}".partition(".")
    groups = f"{int(whole):,}"
    if language == "fr":
        text = groups.replace(",", "\u202f") + ("," + fraction if fraction else "")
    else:
        text = groups + ("." + fraction if fraction else "")
    return f"{sign}{text} {currency}"


def format_date(day: date, language: str) -> str:
    return day.strftime("%d/%m/%Y") if language == "fr" else day.isoformat()


@dataclass(frozen=True)
class Payee:
    name: str
    iban: str | None = None
    bic: str | None = None


@dataclass(frozen=True)
class DocumentLine:
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Document:
    """What an invoice or credit memo says, in one language; the PDF adapter lays it out."""

    kind: str  # invoice | credit_memo
    language: str
    number: str
    issue_date: date
    currency: str
    customer_name: str
    address_lines: tuple[str, ...]
    lines: tuple[DocumentLine, ...]
    taxes: tuple[tuple[str, Decimal | None, Decimal], ...]
    total: Decimal
    due_date: date | None = None
    po_number: str | None = None
    payment_reference: str | None = None  # printed form
    payee: Payee | None = None
    original_invoice_number: str | None = None
    rma_number: str | None = None
    reason: str | None = None
    header: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> dict[str, str]:
        return LABELS[self.language]

    @property
    def subtotal(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))

    def money(self, amount: Decimal) -> str:
        return format_amount(amount, self.currency, self.language)


def language_of(requested: str | None, customer_language: str) -> str:
    """The document's language: the one asked for, else the customer's, else English."""
    for candidate in (requested, customer_language):
        if candidate in LANGUAGES:
            return candidate
    return "en"


def address_lines(billing_address: dict | None) -> tuple[str, ...]:
    if not billing_address:
        return ()
    city = " ".join(p for p in (billing_address.get("postal_code"), billing_address.get("city")) if p)
    return tuple([*billing_address.get("lines", []), city, billing_address.get("country", "")])


@dataclass(frozen=True)
class Delivery:
    """How a new document reaches the customer, from its delivery preference on the issue date."""

    channel: str
    status: str  # pending (email to send) | ready (to be picked up) | failed
    recipient: str | None
    last_error: str | None = None


def delivery_for(preference: str, billing_contacts: list[dict]) -> Delivery:
    """email_pdf goes to the first billing contact with an email address (none: failed, a person
    fixes the master); postal, portal_upload and e_invoice are recorded ready to be picked up by
    the print shop, the customer's portal connector or the e-invoicing network."""
    if preference != "email_pdf":
        return Delivery(preference, "ready", None)
    emails = [c.get("email") for c in billing_contacts if c.get("email")]
    if not emails:
        return Delivery(preference, "failed", None, "no billing contact with an email address")
    return Delivery(preference, "pending", emails[0])
