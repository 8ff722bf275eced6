"""CSV lockbox files and bank exports, read with the standard csv module and a column mapping.

A profile maps Ledgerline's fields to the file's column headers (banks name them differently)
and says how dates and decimals are written. Rows sharing a receipt id (a check number, a
transaction id) are one receipt with one remittance line per row, as lockbox files list each
invoice a check pays; without a receipt-id column every row is a receipt."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime
from decimal import Decimal

from shared.money import MoneyError, validate_currency
from services.cash_application.adapters.bank_files.amounts import file_amount
from services.cash_application.domain.receipts import (
    BankLine, BankStatement, FileRejected, ParsedFile, RemittanceItem)

FIELDS = ("receipt_id", "value_date", "amount", "currency", "payer_name", "payer_account", "customer_id",
          "invoice_reference", "invoice_amount", "reason_code", "text", "account", "direction", "return_code")

DEFAULT_PROFILE = {
    "columns": {field: field for field in FIELDS},
    "date_format": "%Y-%m-%d",
    "decimal_separator": ".",
    "delimiter": ",",
}


def parse(text: str, profile: dict, default_currency: str = "USD") -> ParsedFile:
    columns: dict[str, str] = profile.get("columns") or DEFAULT_PROFILE["columns"]
    date_format = profile.get("date_format", "%Y-%m-%d")
    separator = profile.get("decimal_separator", ".")
    reader = csv.reader(io.StringIO(text), delimiter=profile.get("delimiter", ","))
    header = next(reader, None) or []
    missing = [columns[f] for f in ("value_date", "amount") if columns.get(f) not in header]
    if missing:
        raise FileRejected("line 1", f"header lacks the column(s) {', '.join(missing)} the profile maps")
    # Each field's cell by position (a header named twice is its last column, as csv.DictReader
    # reads it); a field the profile leaves out, or a column a short row lacks, reads as "".
    column_at = {name: i for i, name in enumerate(header)}
    positions = tuple(column_at.get(columns[field], -1) if columns.get(field) else -1 for field in FIELDS)
    width = len(header)
    dates: dict[str, date] = {}  # a file holds few distinct dates: each parsed once
    currencies: set[str] = set()
    groups: dict[str, dict] = {}
    order: list[str] = []
    for row in reader:
        if not row:
            continue
        lineno = reader.line_num
        where = f"line {lineno}"
        if len(row) > width:
            raise FileRejected(where, f"has {len(row)} fields, the header {width}")
        if not any(cell.strip() for cell in row):
            continue
        n = len(row)
        (receipt_id, value_date_text, amount_text, currency, payer_name, payer_account, customer_id,
         invoice_reference, invoice_amount_text, reason_code, line_text, bank_account, direction,
         return_code) = [row[i].strip() if 0 <= i < n else "" for i in positions]
        currency = currency.upper() or default_currency
        if currency not in currencies:
            try:
                validate_currency(currency)
            except MoneyError as exc:
                raise FileRejected(f"{where} column {columns.get('currency')}", str(exc)) from exc
            currencies.add(currency)
        amount = _amount(amount_text, separator, currency, f"{where} column {columns['amount']}")
        value_date = dates.get(value_date_text)
        if value_date is None:
            try:
                value_date = dates[value_date_text] = datetime.strptime(value_date_text, date_format).date()
            except ValueError as exc:
                raise FileRejected(f"{where} column {columns['value_date']}",
                                   f"{value_date_text!r} is not a date in the format {date_format}") from exc
        direction = (direction or "credit").lower()
        if direction in ("c", "cr", "crdt"):
            direction = "credit"
        if direction in ("d", "dr", "dbit"):
            direction = "debit"
        if direction not in ("credit", "debit"):
            raise FileRejected(f"{where} column {columns.get('direction')}", f"{direction!r} is not credit or debit")
        if amount < 0:
            amount, direction = -amount, "debit"
        key = receipt_id or f"row-{lineno}"
        group = groups.get(key)
        if group is None:
            group = groups[key] = {"where": where, "amount": Decimal(0), "date": value_date, "currency": currency,
                                   "payer": payer_name, "account": payer_account, "hint": customer_id,
                                   "items": [], "text": [], "direction": direction, "return_code": return_code,
                                   "bank_account": bank_account, "receipt_id": receipt_id, "rows": 0}
            order.append(key)
        elif group["currency"] != currency or group["date"] != value_date:
            raise FileRejected(where, f"receipt {key} has rows with different dates or currencies")
        group["rows"] += 1
        group["amount"] += amount
        if invoice_reference:
            invoice_amount = (_amount(invoice_amount_text, separator, currency,
                                      f"{where} column {columns.get('invoice_amount')}") if invoice_amount_text else None)
            group["items"].append(RemittanceItem(reference=invoice_reference, paid_amount=amount,
                                                 invoice_amount=invoice_amount, reason_code=reason_code or None))
        if line_text:
            group["text"].append(line_text)
    if not order:
        raise FileRejected("file", "holds no rows")
    by_statement: dict[tuple, list[BankLine]] = {}
    rows_of: dict[tuple, int] = {}
    for key in order:
        g = groups[key]
        line = BankLine(position=g["where"], amount=g["amount"], direction=g["direction"], value_date=g["date"],
                        bank_reference=g["receipt_id"] or None, payer_name=g["payer"] or None,
                        payer_account=g["account"] or None, customer_hint=g["hint"] or None,
                        text=" ".join(g["text"]), remittance=tuple(g["items"]),
                        method=profile.get("method", "other"), return_code=g["return_code"] or None,
                        returned_reference=(g["receipt_id"] or None) if g["return_code"] else None)
        by_statement.setdefault((g["bank_account"], g["currency"]), []).append(line)
        rows_of[(g["bank_account"], g["currency"])] = rows_of.get((g["bank_account"], g["currency"]), 0) + g["rows"]
    statements = tuple(
        BankStatement(file_format="csv", account=account or None, statement_id=None,
                      statement_date=max(line.value_date for line in lines), currency=currency, lines=tuple(lines),
                      entry_records=rows_of[(account, currency)])
        for (account, currency), lines in by_statement.items())
    return ParsedFile("csv", statements, entry_records=count_entry_records(text, profile))


def count_entry_records(text: str, profile: dict) -> int:
    """The guard's independent count: data rows with any value, under the header."""
    rows = list(csv.reader(io.StringIO(text), delimiter=profile.get("delimiter", ",")))
    return sum(1 for row in rows[1:] if any(cell.strip() for cell in row))


def _amount(value: str, separator: str, currency: str, where: str) -> Decimal:
    cleaned = value.replace(" ", "")
    if separator == ",":
        cleaned = cleaned.replace(".", "").replace(",", ".")
    else:
        cleaned = cleaned.replace(",", "")
    return file_amount(cleaned, currency, where)
