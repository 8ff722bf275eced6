"""Statements of account (pure), and their PDF read back with pypdf."""
from __future__ import annotations

import io
from datetime import date
from decimal import Decimal as D

from pypdf import PdfReader

from services.reporting.adapters.statement_pdf import render
from services.reporting.domain import metrics
from services.reporting.domain.facts import OpenItem
from services.reporting.domain.statements import statement

AS_OF = date(2024, 5, 15)
ITEMS = [OpenItem("i1", "S1", "EUR", D("100.00"), date(2024, 3, 1), date(2024, 3, 31), D(0), D("40.00"),
                  invoice_number="F-1"),
         OpenItem("i2", "S2", "EUR", D("250.00"), date(2024, 5, 1), date(2024, 5, 31), D(0), D(0),
                  invoice_number="F-2"),
         OpenItem("i3", "S2", "EUR", D("80.00"), date(2024, 2, 1), date(2024, 3, 1), D("80.00"), D(0),
                  invoice_number="F-3")]  # fully credited: not on the statement


def _statement(language: str = "en"):
    return statement(customer_id="HQ", customer_name="Head Office", as_of=AS_OF, currency="EUR", language=language,
                     members=["HQ", "S1", "S2"], aging=metrics.aging(ITEMS, AS_OF), unapplied_cash=D("30.00"))


def test_open_items_aged_and_the_balance_due_net_of_unapplied_cash():
    s = _statement()
    assert [(line.invoice_number, line.customer_id, line.days_past_due, line.open_balance) for line in s.lines] == [
        ("F-1", "S1", 45, D("60.00")), ("F-2", "S2", -16, D("250.00"))]
    assert s.open_total == D("310.00") == sum(s.buckets.values())
    assert s.buckets["current"] == D("250.00") and s.buckets["31-60"] == D("60.00")
    assert s.balance_due == D("280.00")


def test_the_pdf_in_english_and_french():
    english = PdfReader(io.BytesIO(render(_statement()))).pages[0].extract_text()
    for expected in ("Statement of account", "Head Office (HQ)", "HQ, S1, S2", "F-1", "60.00 EUR", "-30.00 EUR",
                     "Balance due", "280.00 EUR"):
        assert expected in english, expected
    french = PdfReader(io.BytesIO(render(_statement("fr")))).pages[0].extract_text()
    for expected in ("Relevé de compte", "15/05/2024", "Solde à payer", "280,00 EUR"):
        assert expected in french, expected
