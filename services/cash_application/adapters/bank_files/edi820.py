"""X12 EDI 820 (payment order / remittance advice), read by a small segment parser.

No well-kept Python X12 library fits: pyx12 is built around HIPAA transaction sets and is not
in the pinned dependencies, and the 820 parts cash application needs are few. Delimiters come
from the ISA header (element separator at position 3, segment terminator after ISA16). Each
ST..SE transaction is one receipt: BPR (amount, method, date), TRN (trace number), N1*PR (payer
name and id), RMR (invoice reference, paid and invoice amounts, RMR06 discount taken: reason
DISCOUNT), ADX (adjustment amount and reason code). Version 003010 interchanges say BPS for BPR
and RMT for RMR (RMT*IX lines itemise the invoice above them and are not documents of their own).

An ADX belongs to the loop it sits in: after an RMR it explains that invoice (its paid amount
already nets it); before any RMR of the transaction, or of an ENT entity loop, it is an
adjustment of the payment or of that entity, which BPR02 includes: it counts in the total and is
carried on the entity's (or the payment's) first invoice. An ENT segment closes the previous
remittance, so an entity's ADX never lands on the previous entity's invoice.

Delimiters are read from the ISA by its structure: the element separator follows "ISA", ISA16
(the component separator) follows the sixteenth element separator, and the segment terminator
follows ISA16, whether or not the ISA is padded to its standard 106 characters. Checked: SE01
counts the segments, the RMR paid amounts plus the payment- and entity-level adjustments add up
to BPR02, GE/IEA count their groups, and the receipts read equal the ST segments."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from services.cash_application.adapters.bank_files.amounts import file_amount
from services.cash_application.domain.receipts import (
    BankLine, BankStatement, FileRejected, ParsedFile, RemittanceItem)

_METHODS = {"ACH": "ach", "CHK": "check", "FWT": "wire", "BOP": "card", "FEW": "wire", "SWT": "wire"}


def _segments(text: str) -> list[tuple[int, list[str]]]:
    text = text.lstrip("\ufeff").lstrip()
    if not text.startswith("ISA") or len(text) < 20:
        raise FileRejected("segment 1", "an X12 interchange starts with an ISA segment")
    element = text[3]
    position = 3
    for _ in range(15):
        position = text.find(element, position + 1)
        if position < 0:
            raise FileRejected("segment 1 (ISA)", "an ISA segment has 16 elements; this one ends before ISA16")
    if len(text) < position + 3:
        raise FileRejected("segment 1 (ISA)", "the interchange ends inside the ISA segment")
    terminator = text[position + 2]  # ISA16 is one character; the segment terminator follows it
    if terminator in "\r\n":
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        terminator = "\n"
    segments = []
    for number, raw in enumerate(text.split(terminator), start=1):
        raw = raw.strip("\r\n ")
        if raw:
            segments.append((number, raw.split(element)))
    return segments


def count_entry_records(segments: list[tuple[int, list[str]]]) -> int:
    """The guard's count: transaction sets (ST segments), each one receipt."""
    return sum(1 for _, seg in segments if seg[0].strip() == "ST")


def _money(value: str, currency: str, where: str) -> Decimal:
    return file_amount(value, currency, where)


def _date(value: str, where: str) -> date:
    try:
        return datetime.strptime(value, "%Y%m%d" if len(value) == 8 else "%y%m%d").date()
    except ValueError:
        pass
    raise FileRejected(where, f"{value!r} is not a date (CCYYMMDD)")


def _el(segment: list[str], index: int) -> str:
    return segment[index].strip() if len(segment) > index else ""


def parse(text: str, default_currency: str = "USD") -> ParsedFile:
    segments = _segments(text)
    isa = segments[0][1]
    control = _el(isa, 13)
    interchange_date = _date(_el(isa, 9), "segment 1 (ISA09)")
    lines: list[BankLine] = []
    currencies_seen: set[str] = set()
    current: dict | None = None
    groups = 0
    transactions_in_group = 0
    for number, seg in segments[1:]:
        tag = seg[0].strip()
        where = f"segment {number} ({tag})"
        if tag == "GS":
            groups += 1
            transactions_in_group = 0
        elif tag == "GE":
            if _el(seg, 1) and int(_el(seg, 1)) != transactions_in_group:
                raise FileRejected(where, f"GE01 says {_el(seg, 1)} transactions, the group has {transactions_in_group}")
        elif tag == "IEA":
            if _el(seg, 1) and int(_el(seg, 1)) != groups:
                raise FileRejected(where, f"IEA01 says {_el(seg, 1)} groups, the interchange has {groups}")
        elif tag == "ST":
            if _el(seg, 1) != "820":
                raise FileRejected(where, f"transaction set {_el(seg, 1)!r} is not an 820")
            current = {"start": number, "count": 1, "items": [], "payer": None, "hint": None, "trace": None,
                       "amount": None, "currency": default_currency, "date": interchange_date, "method": "other",
                       "payer_account": None, "where": where, "pending": None, "adjustments": [],
                       "carried": []}
            transactions_in_group += 1
        elif current is None:
            if tag not in ("ISA",):
                raise FileRejected(where, "segment outside an ST..SE transaction set")
        else:
            current["count"] += 1
            _segment(current, tag, seg, where)
            if tag == "SE":
                lines.append(_finish(current, seg, where))
                currencies_seen.add(current["currency"])
                current = None
    if current is not None:
        raise FileRejected(current["where"], "transaction set has no SE trailer")
    if not lines:
        raise FileRejected("file", "holds no 820 transaction set")
    currencies = {line_currency for line_currency in currencies_seen} or {default_currency}
    if len(currencies) > 1:
        raise FileRejected("file", f"transaction sets in several currencies ({', '.join(sorted(currencies))})")
    currency = currencies.pop()
    return ParsedFile("edi820", (BankStatement(file_format="edi820", account=None, statement_id=f"ISA{control}",
                                               statement_date=interchange_date, currency=currency,
                                               lines=tuple(lines), entry_records=len(lines)),),
                      entry_records=count_entry_records(segments))


def _flush(current: dict) -> None:
    pending = current["pending"]
    if pending is None:
        return
    if current["carried"]:
        # Payment- or entity-level adjustments land on the first invoice after them: BPR02 nets
        # them, so that invoice is paid that much less (a deduction with its reason code).
        carried = sum((a for a, _ in current["carried"]), Decimal(0))
        if pending["paid"] is not None:
            pending["paid"] -= carried
        pending["adjustments"][:0] = current["carried"]
        current["carried"] = []
    adjustment = sum((a for a, _ in pending["adjustments"]), Decimal(0)) if pending["adjustments"] else None
    # An ADX reason code says more than the discount RMR06 implies.
    codes = [code for _, code in pending["adjustments"] if code]
    reason = next((code for code in codes if code != "DISCOUNT"), codes[0] if codes else None)
    current["items"].append(RemittanceItem(
        reference=pending["reference"], paid_amount=pending["paid"], invoice_amount=pending["invoice"],
        adjustment_amount=adjustment, reason_code=reason))
    current["pending"] = None


def _segment(current: dict, tag: str, seg: list[str], where: str) -> None:
    currency = current["currency"]
    if tag in ("BPR", "BPS"):  # BPS: the 003010 name of the segment (01 method, 02 amount)
        current["amount"] = _money(_el(seg, 2), currency, f"{where} {tag}02")
        if tag == "BPS":
            return
        if _el(seg, 3) not in ("C", "D", ""):
            raise FileRejected(f"{where} BPR03", f"credit/debit flag {_el(seg, 3)!r} is not C or D")
        current["method"] = _METHODS.get(_el(seg, 4), "other")
        if _el(seg, 16):
            current["date"] = _date(_el(seg, 16), f"{where} BPR16")
        if _el(seg, 9):
            current["payer_account"] = _el(seg, 9)
    elif tag == "CUR" and _el(seg, 2):
        current["currency"] = _el(seg, 2).upper()
    elif tag == "TRN":
        current["trace"] = _el(seg, 2) or None
    elif tag == "N1" and _el(seg, 1) == "PR":
        current["payer"] = _el(seg, 2) or None
        current["hint"] = _el(seg, 4) or None
    elif tag == "ENT":
        _flush(current)  # a new entity closes the previous entity's remittance
        # An entity's adjustment with no invoice of its own stays with the payment as a whole.
        current["adjustments"].extend(current["carried"])
        current["carried"] = []
    elif tag == "RMT" and _el(seg, 1) == "IX":
        return  # 003010 item detail of the invoice above it
    elif tag in ("RMR", "RMT"):
        _flush(current)
        reference = _el(seg, 2)
        if not reference:
            raise FileRejected(f"{where} {tag}02", "remittance line names no document")
        # RMR: 04 paid, 05 invoice amount; RMT (003010): 03 paid, 04 invoice amount.
        paid_at, invoice_at = (4, 5) if tag == "RMR" else (3, 4)
        paid = _money(_el(seg, paid_at), currency, f"{where} {tag}0{paid_at}") if _el(seg, paid_at) else None
        invoice = (_money(_el(seg, invoice_at), currency, f"{where} {tag}0{invoice_at}")
                   if _el(seg, invoice_at) else None)
        current["pending"] = {"reference": reference, "paid": paid, "invoice": invoice, "adjustments": []}
        if tag == "RMR" and _el(seg, 6):  # RMR06: the early-payment discount the payer took on this invoice
            discount = _money(_el(seg, 6), currency, f"{where} RMR06")
            if discount:
                current["pending"]["adjustments"].append((discount, "DISCOUNT"))
    elif tag == "ADX":
        amount = _money(_el(seg, 1), currency, f"{where} ADX01")
        # ADX01 is signed from the payee's view: a deduction the payer took is negative.
        entry = (-amount, _el(seg, 2) or None)
        if current["pending"] is not None:
            current["pending"]["adjustments"].append(entry)
        else:
            # Before any RMR of the payment or of an entity: BPR02 includes it.
            current["carried"].append(entry)


def _finish(current: dict, se: list[str], where: str) -> BankLine:
    _flush(current)
    current["adjustments"].extend(current["carried"])
    current["carried"] = []
    if _el(se, 1) and int(_el(se, 1)) != current["count"]:
        raise FileRejected(where, f"SE01 says {_el(se, 1)} segments, the transaction set has {current['count']}")
    if current["amount"] is None:
        raise FileRejected(current["where"], "transaction set has no BPR payment amount")
    paid = [item.paid_amount for item in current["items"] if item.paid_amount is not None]
    if paid and len(paid) == len(current["items"]):
        whole_adjustment = sum((a for a, _ in current["adjustments"]), Decimal(0))
        if sum(paid, Decimal(0)) - whole_adjustment != current["amount"]:
            raise FileRejected(where, f"RMR paid amounts total {sum(paid, Decimal(0))}"
                                      f"{f' and the adjustments {-whole_adjustment}' if whole_adjustment else ''},"
                                      f" BPR02 says {current['amount']}")
    if current["amount"] <= 0:
        raise FileRejected(current["where"], "BPR02 payment amount must be positive")
    return BankLine(position=current["where"], amount=current["amount"], direction="credit",
                    value_date=current["date"], bank_reference=current["trace"], payer_name=current["payer"],
                    payer_account=current["payer_account"], customer_hint=current["hint"],
                    remittance=tuple(current["items"]), method=current["method"])
