"""Stripe's itemized payout reconciliation report (`payout_reconciliation.itemized.*`) and the
balance report's itemized CSV, read with the standard csv module.

One row per balance transaction, grouped into payouts by `automatic_payout_id`; a row with
reporting category `payout` (balance reports) states the payout's amount and is checked against
the rows. Amounts are in major units; `net` must equal `gross - fee` on every row."""
from __future__ import annotations

import csv
import io

from shared.money import MoneyError, validate_currency
from services.cash_application.adapters.bank_files.amounts import file_amount
from services.cash_application.adapters.card_reports import data_rows, report_date
from services.cash_application.domain.card_payouts import (
    CHARGE, CHARGEBACK, CHARGEBACK_REVERSAL, FEE, OTHER, REFUND, CardPayout, CardTransaction, ParsedCardReport)
from services.cash_application.domain.receipts import FileRejected

# reporting_category -> kind (https://docs.stripe.com/reports/reporting-categories)
CATEGORIES = {"charge": CHARGE, "refund": REFUND, "dispute": CHARGEBACK, "dispute_reversal": CHARGEBACK_REVERSAL,
              "fee": FEE}
REQUIRED = ("automatic_payout_id", "currency", "gross", "fee", "net", "reporting_category")


def parse(text: str, invoice_column: str) -> ParsedCardReport:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED if c not in header]
    if "automatic_payout_effective_at" not in header and "effective_at" not in header:
        missing.append("automatic_payout_effective_at")
    if missing:
        raise FileRejected("line 1", f"header lacks the column(s) {', '.join(missing)} of Stripe's itemized payout"
                                     " reconciliation report")
    payouts: dict[str, dict] = {}
    for row in reader:
        where = f"line {reader.line_num}"
        if None in row:
            raise FileRejected(where, f"has more fields than the header's {len(header)}")
        if not any((v or "").strip() for v in row.values()):
            continue

        def get(column: str) -> str:
            return (row.get(column) or "").strip()

        payout_id = get("automatic_payout_id")
        if not payout_id:
            raise FileRejected(where, "column automatic_payout_id is empty: only transactions of automatic payouts"
                                      " can be reconciled to a bank credit")
        try:
            currency = validate_currency(get("currency").upper())
        except MoneyError as exc:
            raise FileRejected(where, f"column currency: {exc}") from exc
        gross = file_amount(get("gross") or "0", currency, f"{where} column gross")
        fee = file_amount(get("fee") or "0", currency, f"{where} column fee")
        net = file_amount(get("net") or "0", currency, f"{where} column net")
        if gross - fee != net:
            raise FileRejected(where, f"net {net} is not gross {gross} minus fee {fee}")
        arrival_text = get("automatic_payout_effective_at") or get("effective_at")
        if not arrival_text:
            raise FileRejected(where, "column automatic_payout_effective_at is empty")
        arrival = report_date(arrival_text, where, "automatic_payout_effective_at")
        payout = payouts.setdefault(payout_id, {"currency": currency, "arrival": arrival, "rows": [],
                                                "declared": None, "position": where})
        if payout["currency"] != currency:
            raise FileRejected(where, f"payout {payout_id} is in {payout['currency']}, this row in {currency}")
        category = get("reporting_category")
        if category == "payout":
            payout["declared"] = -net
            payout["position"] = where
            continue
        kind = CATEGORIES.get(category, OTHER)
        created_text = get("created_utc") or get("created") or get("available_on_utc") or arrival_text
        source_id = get("source_id") or get("balance_transaction_id") or where
        charge_id = get("charge_id") or (source_id if kind == CHARGE else None)
        payout["rows"].append(CardTransaction(
            position=where, kind=kind, transaction_id=source_id, charge_id=charge_id or None, gross=gross, fee=fee,
            created=report_date(created_text, where, "created_utc"),
            invoice_number=get(invoice_column) or None if invoice_column else None,
            payer_name=get("customer_name") or get("customer_email") or None, reason=get("dispute_reason") or None,
            description=get("description") or category))
    return ParsedCardReport(
        processor="stripe",
        payouts=tuple(CardPayout(processor="stripe", payout_id=pid, currency=p["currency"], arrival_date=p["arrival"],
                                 transactions=tuple(p["rows"]), declared_amount=p["declared"], position=p["position"])
                      for pid, p in payouts.items()),
        rows=data_rows(text))
