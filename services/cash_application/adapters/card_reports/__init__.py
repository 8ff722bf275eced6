"""Card processors' payout reports: Stripe's itemized payout reconciliation (or balance) CSV and
Adyen's settlement details report, read into ParsedCardReport (domain/card_payouts.py) or
refused with FileRejected naming the line. Pure: nothing is posted until the whole report read
and added up. docs/cash-application.md lists the columns each reader supports and their sources."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime

from services.cash_application.domain.card_payouts import ParsedCardReport, check_payouts
from services.cash_application.domain.receipts import FileRejected

PROCESSORS = ("stripe", "adyen")
DEFAULT_INVOICE_COLUMNS = {"stripe": "payment_metadata[invoice_number]", "adyen": "Merchant Reference"}


def parse_card_report(content: bytes, processor: str, *, invoice_column: str | None = None) -> ParsedCardReport:
    from services.cash_application.adapters.card_reports import adyen, stripe

    at = content.find(b"\x00")
    if at >= 0:
        line = content.count(b"\n", 0, at) + 1
        raise FileRejected(f"line {line}", "a NUL byte (0x00): the file is damaged or not a text file")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = content.decode("latin-1")
    column = invoice_column or DEFAULT_INVOICE_COLUMNS.get(processor, "")
    if processor == "stripe":
        return check_payouts(stripe.parse(text, column))
    if processor == "adyen":
        return check_payouts(adyen.parse(text, column))
    raise FileRejected("processor", f"unknown processor {processor!r}; one of {', '.join(PROCESSORS)}")


def data_rows(text: str, skip: int = 1) -> int:
    """The report's data rows, counted by a pass of their own (non-blank CSV records after the
    header), for the guard that every one was read."""
    return sum(1 for row in list(csv.reader(io.StringIO(text)))[skip:] if any(cell.strip() for cell in row))


def report_date(value: str, where: str, column: str) -> date:
    """A date or timestamp as the processors write them: 2024-03-15, 2024-03-15 10:22:01,
    2024-03-15T10:22:01Z (the date part is the day)."""
    value = value.strip()
    for candidate in (value[:10], value):
        try:
            return date.fromisoformat(candidate)
        except ValueError:
            pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError as exc:
        raise FileRejected(where, f"column {column}: {value!r} is not a date") from exc
