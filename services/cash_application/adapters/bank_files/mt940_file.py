"""SWIFT MT940 with the `mt940` library (mt-940 on PyPI): tags 20/25/28C/60/61/86/62, amounts as
Decimal, the RC/RD reversal marks of field 61. It does not check that the balances add up, so
that is checked here: opening (60F/60M) + entries = closing (62F/62M). Field 86 has no single
structure; the two common ones are read: SEPA-style /KEY/value (/ORDP/, /NAME/, /REMI/, /IBAN/,
/EREF/, /RTRN/) and the German ?nn subfields (?20-?29 remittance, ?31 account, ?32-?33 name)."""
from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import mt940

from shared.money import MoneyError, exact_amount, validate_currency
from services.cash_application.domain.receipts import BankLine, BankStatement, FileRejected, ParsedFile

_SUBFIELD = re.compile(r"\?(\d{2})")
_SLASH_KEYS = ("EREF", "KREF", "MREF", "CRED", "DEBT", "ORDP", "BENM", "NAME", "REMI", "IBAN", "BIC", "RTRN", "PURP",
               "USTD", "STRD", "ADDR", "ID", "CSID", "ISDT", "ULTD", "ULTC", "OCMT")
_SLASH = re.compile(r"/(" + "|".join(_SLASH_KEYS) + r")/")


def parse(text: str) -> ParsedFile:
    if ":20:" not in text or ":61:" not in text and ":62" not in text:
        raise FileRejected("file", "not an MT940 statement (no :20: or :62: field)")
    lines = text.splitlines()
    tag61_lines = [i for i, line in enumerate(lines, start=1) if line.startswith(":61:")]
    # The library treats a file as one statement stream; split on the message separator "-".
    chunks: list[tuple[int, str]] = []
    start, buf = 1, []
    for i, line in enumerate(lines, start=1):
        if line.strip() == "-" or line.startswith("{"):
            if any(l.startswith(":20:") for l in buf):
                chunks.append((start, "\n".join(buf)))
            buf, start = [], i + 1
            continue
        buf.append(line)
    if any(l.startswith(":20:") for l in buf):
        chunks.append((start, "\n".join(buf)))
    statements = []
    seen_61 = 0
    for first_line, chunk in chunks:
        transactions = mt940.models.Transactions()
        try:
            transactions.parse(chunk)
        except Exception as exc:  # the library raises bare RuntimeError/ValueError on bad tags
            raise FileRejected(f"statement starting at line {first_line}", f"not valid MT940: {exc}") from exc
        data = transactions.data
        opening = data.get("final_opening_balance") or data.get("intermediate_opening_balance")
        closing = data.get("final_closing_balance") or data.get("intermediate_closing_balance")
        if opening is None or closing is None:
            raise FileRejected(f"statement starting at line {first_line}", "needs an opening (:60F:/:60M:) and a"
                                                                           " closing (:62F:/:62M:) balance")
        currency = opening.amount.currency
        try:
            currency = validate_currency(currency)
        except MoneyError as exc:
            raise FileRejected(f"statement starting at line {first_line} field 60F", str(exc)) from exc
        net = Decimal(0)
        bank_lines = []
        for tx in transactions:
            where = f"line {tag61_lines[seen_61]}" if seen_61 < len(tag61_lines) else "field 61"
            seen_61 += 1
            # The sign follows the mark: C and RD (a debit reversed) credit the account, D and RC
            # (a credit reversed: a returned receipt) debit it, whatever the library's sign.
            magnitude = abs(tx.data["amount"].amount)
            amount = -magnitude if (tx.data.get("status") or "") in ("D", "RC") else magnitude
            try:
                amount = exact_amount(amount, currency)
            except MoneyError as exc:
                raise FileRejected(where, str(exc)) from exc
            if tx.data["amount"].currency != currency:
                raise FileRejected(where, f"entry in {tx.data['amount'].currency}, the statement in {currency}")
            net += amount
            bank_lines.append(_line(tx.data, where, amount))
        if opening.amount.amount + net != closing.amount.amount:
            raise FileRejected(f"statement starting at line {first_line}",
                               f"closing balance {closing.amount.amount} is not the opening balance"
                               f" {opening.amount.amount} plus the entries ({net:+})")
        statement_number = "/".join(filter(None, [data.get("statement_number"), data.get("sequence_number")]))
        closing_date = closing.date
        statements.append(BankStatement(
            file_format="mt940", account=data.get("account_identification"),
            statement_id=statement_number or data.get("transaction_reference"),
            statement_date=date(closing_date.year, closing_date.month, closing_date.day), currency=currency,
            lines=tuple(bank_lines), opening_balance=opening.amount.amount, closing_balance=closing.amount.amount))
    if not statements:
        raise FileRejected("file", "holds no statement")
    return ParsedFile("mt940", tuple(statements))


def details_86(text: str) -> dict[str, str]:
    """Field 86 as keys: NAME, ACCOUNT, REMI (remittance), RTRN (return reason), EREF."""
    text = (text or "").replace("\n", "")
    if _SUBFIELD.search(text):
        parts: dict[str, list[str]] = {}
        pieces = _SUBFIELD.split(text)
        for code, value in zip(pieces[1::2], pieces[2::2]):
            parts.setdefault(code, []).append(value)
        remi = "".join("".join(parts.get(str(n), [])) for n in range(20, 30))
        remi += "".join("".join(parts.get(str(n), [])) for n in range(60, 64))
        return {"NAME": " ".join(parts.get("32", []) + parts.get("33", [])).strip(),
                "ACCOUNT": "".join(parts.get("31", [])).strip(), "REMI": remi.strip()}
    found: dict[str, str] = {}
    pieces = _SLASH.split(text)
    for key, value in zip(pieces[1::2], pieces[2::2]):
        found[key] = value.strip("/ ").strip()
    name = found.get("NAME") or found.get("ORDP", "").lstrip("/").split("/")[0]
    remi = found.get("REMI", "")
    remi = remi.split("//", 1)[1] if "//" in remi else remi
    return {"NAME": name.strip(), "ACCOUNT": found.get("IBAN", ""), "REMI": (remi or found.get("USTD", "")).strip(),
            "RTRN": found.get("RTRN", ""), "EREF": found.get("EREF", ""), "RAW": "" if found else text}


def _line(data: dict, where: str, amount: Decimal) -> BankLine:
    status = data.get("status") or ""
    details = details_86(data.get("transaction_details") or "")
    reversal = status == "RC"  # a credit reversed: the receipt went back
    direction = "credit" if amount > 0 else "debit"
    customer_reference = data.get("customer_reference") or ""
    if customer_reference.upper() == "NONREF":
        customer_reference = ""
    value = data["date"]
    text = " ".join(filter(None, [customer_reference, details.get("REMI"), details.get("RAW")]))
    return BankLine(
        position=where, amount=abs(amount), direction=direction, value_date=date(value.year, value.month, value.day),
        bank_reference=data.get("bank_reference") or details.get("EREF") or None,
        payer_name=details.get("NAME") or None, payer_account=details.get("ACCOUNT") or None, text=text,
        method={"NTRF": "wire", "NDDT": "ach", "NCHK": "check"}.get(data.get("id") or "", "other"),
        return_code=(details.get("RTRN") or "REVERSAL") if reversal or (details.get("RTRN") and amount < 0) else None,
        returned_reference=(customer_reference or data.get("bank_reference")) if reversal else None)
