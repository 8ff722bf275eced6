"""Invoice and credit-memo documents (pure content, then the PDF read back with pypdf)."""
from __future__ import annotations

import io
from datetime import date
from decimal import Decimal as D

import pytest
from pypdf import PdfReader

from shared import creditor_reference
from services.invoicing.adapters.pdf import render
from services.invoicing.domain.documents import (
    Document, DocumentLine, Payee, delivery_for, format_amount, language_of, payment_reference)


def test_the_payment_reference_is_an_rf_reference_of_the_invoice_number():
    ref = payment_reference("INV-2024-0001")
    assert ref == creditor_reference.make("INV20240001") and creditor_reference.is_valid(ref)
    assert creditor_reference.reference_of(ref) == "INV20240001"
    assert payment_reference("539007547034") == "RF18539007547034"  # ISO 11649's published example
    assert payment_reference("X" * 22) is None  # too long for RF: the document asks for the number instead
    assert payment_reference("---") is None


@pytest.mark.parametrize("amount, language, text", [
    (D("1234.50"), "en", "1,234.50 EUR"), (D("1234.50"), "fr", "1\u202f234,50 EUR"),
    (D("-5.00"), "en", "-5.00 EUR"), (D("1234567"), "fr", "1\u202f234\u202f567 EUR"),
])
def test_amounts_are_written_the_way_each_language_writes_them(amount, language, text):
    assert format_amount(amount, "EUR", language) == text


def test_language_and_delivery_come_from_the_request_or_the_customer_master():
    assert language_of(None, "fr") == "fr" and language_of("en", "fr") == "en" and language_of("de", "xx") == "en"
    assert delivery_for("portal_upload", [{"email": "ap@x.example"}]).status == "ready"
    email = delivery_for("email_pdf", [{"name": "No mail"}, {"name": "AP", "email": "ap@x.example"}])
    assert (email.status, email.recipient) == ("pending", "ap@x.example")
    assert delivery_for("email_pdf", []).status == "failed"


def _invoice(language: str) -> Document:
    return Document(
        kind="invoice", language=language, number="INV-2024-0001", issue_date=date(2024, 3, 1),
        due_date=date(2024, 3, 31), currency="EUR", customer_name="Épicerie Fine SARL",
        address_lines=("1 rue de la Paix", "75002 Paris", "FR"),
        lines=(DocumentLine("Café en grains", D("10"), D("12.50"), D("125.00")),
               DocumentLine("Thé vert", D("2"), D("37.50"), D("75.00"))),
        taxes=(("TVA", D("20"), D("40.00")),), total=D("240.00"), po_number="PO-7781",
        payment_reference=creditor_reference.printed(payment_reference("INV-2024-0001")),
        payee=Payee("Ledgerline Demo Ltd", "GB33BUKB20201555555555", "BUKBGB22"))


def _text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def test_an_invoice_pdf_has_its_lines_the_erps_tax_and_the_rf_reference_in_english_and_french():
    english = _text(render(_invoice("en")))
    reference = creditor_reference.printed(payment_reference("INV-2024-0001"))
    for expected in ("Invoice INV-2024-0001", "PO-7781", "Café en grains", "125.00 EUR", "Tax TVA 20 %", "40.00 EUR",
                     "Total due", "240.00 EUR", "GB33BUKB20201555555555", reference, "Épicerie Fine SARL"):
        assert expected in english, expected
    french = _text(render(_invoice("fr")))
    for expected in ("Facture INV-2024-0001", "Échéance", "31/03/2024", "Total à payer", "240,00 EUR",
                     "Référence de paiement", reference):
        assert expected in french, expected


def test_the_same_document_renders_to_the_same_bytes():
    assert render(_invoice("en")) == render(_invoice("en"))
