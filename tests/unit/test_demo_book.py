"""The demo book `make run` loads (scripts/demo_book.py): the AR sample moved so that its as-of
day is today, and the lockbox file that pays what was settled, read by cash application's own
CSV reader."""
from __future__ import annotations

import importlib.util
from datetime import date
from decimal import Decimal
from pathlib import Path

from services.cash_application.adapters.bank_files import csv_file

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("demo_book", ROOT / "scripts" / "demo_book.py")
demo_book = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo_book)

TODAY = date(2026, 12, 2)


def sample() -> list[dict]:
    return demo_book.read_sample(demo_book.DEFAULT_CSV)


def test_the_book_ends_today_with_what_was_open_on_the_samples_day():
    rows = sample()
    invoices, by_customer = demo_book.book_as_of(rows, TODAY)
    shift = TODAY - demo_book.SAMPLE_AS_OF
    issued_by_then = [r for r in rows if r["issued"] <= demo_book.SAMPLE_AS_OF]
    assert len(invoices) == len(issued_by_then) < len(rows)
    assert max(r["issued"] for r in invoices) <= TODAY
    for before, after in zip(issued_by_then, invoices):
        # Dates move alike: terms and lateness are the sample's own.
        assert (after["issued"] - before["issued"], after["due"] - before["due"],
                after["settled"] - before["settled"]) == (shift, shift, shift)
        assert after["open"] == (after["settled"] > TODAY)
    assert 0 < sum(r["open"] for r in invoices) < len(invoices)
    assert any(r["open"] and r["due"] < TODAY for r in invoices)  # something past due to collect
    assert sum(len(v) for v in by_customer.values()) == len(invoices)


def test_the_lockbox_file_pays_each_settled_invoice_and_brings_three_unknown_wires():
    invoices, _ = demo_book.book_as_of(sample(), TODAY)
    paid = [r for r in invoices if not r["open"]]
    parsed = csv_file.parse(demo_book.lockbox_file(paid, TODAY).decode(), csv_file.DEFAULT_PROFILE)
    lines = [line for statement in parsed.statements for line in statement.lines]
    assert len(lines) == len(paid) + 3 == parsed.entry_records
    checks = {line.remittance[0].reference: line for line in lines if line.remittance}
    assert set(checks) == {r["number"] for r in paid}
    for r in paid:
        line = checks[r["number"]]
        assert (line.amount, line.value_date, line.customer_hint) == (r["amount"], r["settled"], r["customer"])
        assert line.remittance[0].paid_amount in (None, r["amount"])
    unknown = [line for line in lines if not line.remittance]
    assert [(line.amount, line.customer_hint) for line in unknown] == \
        [(Decimal("137.50"), None), (Decimal("274.50"), None), (Decimal("411.50"), None)]
    assert all(line.value_date == TODAY for line in unknown)
