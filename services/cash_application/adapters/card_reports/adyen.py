"""Adyen's settlement details report (one per settlement batch, generated with each payout),
read with the standard csv module.

The header names the columns (their order may be changed by the merchant, so they are read by
name). Rows are grouped into payouts by merchant account and `Batch Number`; the batch's
`MerchantPayout` row states the amount paid to the bank (`Net Debit (NC)`) and is checked against
the other rows. Costs (`Commission`, `Markup`, `Scheme Fees`, `Interchange`, all in the net
currency) are the processor's fee on the row. Only batches settled in the currency the payments
were made in are read (`Gross Currency` = `Net Currency`): a converted settlement is refused with
its line rather than posted at a guessed rate."""
from __future__ import annotations

import csv
import io
from decimal import Decimal

from shared.money import MoneyError, validate_currency
from services.cash_application.adapters.bank_files.amounts import file_amount
from services.cash_application.adapters.card_reports import data_rows, report_date
from services.cash_application.domain.card_payouts import (
    CHARGE, CHARGEBACK, CHARGEBACK_REVERSAL, FEE, OTHER, REFUND, CardPayout, CardTransaction, ParsedCardReport)
from services.cash_application.domain.receipts import FileRejected

# Type (journal type) -> kind (https://docs.adyen.com/reporting/settlement-detail-report)
TYPES = {"Settled": CHARGE, "SettledBulk": CHARGE, "Refunded": REFUND, "RefundedBulk": REFUND,
         "Chargeback": CHARGEBACK, "SecondChargeback": CHARGEBACK, "ChargebackReversed": CHARGEBACK_REVERSAL,
         "ChargebackReversedCorrection": CHARGEBACK, "Fee": FEE, "MiscCosts": FEE, "InvoiceDeduction": FEE,
         "PaymentCost": FEE}
COSTS = ("Commission (NC)", "Markup (NC)", "Scheme Fees (NC)", "Interchange (NC)")
REQUIRED = ("Merchant Account", "Psp Reference", "Creation Date", "Type", "Net Currency", "Net Debit (NC)",
            "Net Credit (NC)", "Batch Number")


def parse(text: str, invoice_column: str) -> ParsedCardReport:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise FileRejected("line 1", f"header lacks the column(s) {', '.join(missing)} of Adyen's settlement details"
                                     " report")
    payouts: dict[str, dict] = {}
    for row in reader:
        where = f"line {reader.line_num}"
        if None in row:
            raise FileRejected(where, f"has more fields than the header's {len(header)}")
        if not any((v or "").strip() for v in row.values()):
            continue

        def get(column: str) -> str:
            return (row.get(column) or "").strip()

        batch = get("Batch Number")
        if not batch:
            raise FileRejected(where, "column Batch Number is empty")
        payout_id = f"{get('Merchant Account')}:batch-{batch}"
        try:
            currency = validate_currency(get("Net Currency").upper())
        except MoneyError as exc:
            raise FileRejected(where, f"column Net Currency: {exc}") from exc

        def amount(column: str) -> Decimal:
            return file_amount(get(column) or "0", currency, f"{where} column {column}")

        created = report_date(get("Creation Date"), where, "Creation Date")
        payout = payouts.setdefault(payout_id, {"currency": currency, "arrival": created, "rows": [],
                                                "declared": None, "position": where})
        if payout["currency"] != currency:
            raise FileRejected(where, f"batch {batch} is settled in {payout['currency']}, this row in {currency}")
        payout["arrival"] = max(payout["arrival"], created)
        record_type = get("Type")
        net = amount("Net Credit (NC)") - amount("Net Debit (NC)")
        if record_type == "MerchantPayout":
            payout["declared"] = -net
            payout["position"] = where
            payout["arrival"] = created
            continue
        kind = TYPES.get(record_type, OTHER)
        fee = sum((amount(c) for c in COSTS if c in header), Decimal(0))
        if kind in (CHARGE, REFUND, CHARGEBACK, CHARGEBACK_REVERSAL):
            gross_currency = get("Gross Currency").upper()
            if gross_currency and gross_currency != currency:
                raise FileRejected(where, f"paid in {gross_currency} and settled in {currency}: converted"
                                          " settlements are not read (the rate would be a guess)")
            gross = net + fee
            stated = (amount("Gross Credit (GC)") if "Gross Credit (GC)" in header else Decimal(0)) - (
                amount("Gross Debit (GC)") if "Gross Debit (GC)" in header else Decimal(0))
            if stated and stated != gross:
                raise FileRejected(where, f"gross {stated} is not net {net} plus costs {fee}")
        else:
            gross, fee = net, Decimal(0)
        psp = get("Psp Reference")
        payout["rows"].append(CardTransaction(
            position=where, kind=kind, transaction_id=get("Modification Reference") or psp or where,
            charge_id=psp or None, gross=gross, fee=fee, created=created,
            invoice_number=(get(invoice_column) or None) if invoice_column else None,
            # The report gives no network reason for a chargeback (disputes opens it UNSPECIFIED).
            reason=None,
            description=record_type))
    return ParsedCardReport(
        processor="adyen",
        payouts=tuple(CardPayout(processor="adyen", payout_id=pid, currency=p["currency"], arrival_date=p["arrival"],
                                 transactions=tuple(p["rows"]), declared_amount=p["declared"], position=p["position"])
                      for pid, p in payouts.items()),
        rows=data_rows(text))
