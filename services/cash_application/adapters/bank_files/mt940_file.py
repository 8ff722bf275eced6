"""SWIFT MT940 customer statements, read by a tolerant, checked tag reader.

Banks' exports bend the standard in a few well-known ways, and each is read as the standard's
structure allows rather than as a special case per bank:
- envelopes and prose around the statements (SWIFT blocks `{1:...}{4:`, `-}`, ABN AMRO's
  "ABNANL2A / 940" header lines, a `:940:` line, an example file's introduction) are skipped;
- a statement starts at `:20:`, so statements back to back without a `-` separator line (Dutch
  `:940:` exports, Danske Bank) are read as separate statements;
- field 61 is read by its structure: value date, optional entry date (digits or blanks), mark
  (C, D, RC, RD, EC, ED), optional funds code, amount with a decimal comma (or point), optional
  transaction type (N/F/S + 3), customer reference of any length (some banks put an 18-character
  account there), `//` bank reference, and the supplementary details on the next line. An entry
  without a type code is still one entry; "NONREF" is the reference, not a type;
- tags that are not MT940 fields (`:12:` inside a wrapped time) continue the field they are in.

Checked: every `:61:` is an entry of the statement it sits in; one after the statement's closing
balance, or before any `:20:`, rejects the file with its line. Opening (60F/60M) + entries =
closing (62F/62M), in the statement's currency. The number of entries read equals the number
of `:61:` lines in the file. Field 86: SEPA-style /KEY/value and the German ?nn subfields are read
(?20-?29 remittance, ?31 account, ?32-?33 name)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from shared.money import MoneyError, validate_currency
from services.cash_application.adapters.bank_files.amounts import file_amount
from services.cash_application.domain.receipts import BankLine, BankStatement, FileRejected, ParsedFile

_FIELD = re.compile(r"^:(\d{2}[A-Z]?|NS):")
_FIELDS = {"20", "21", "13", "13D", "25", "25P", "28", "28C", "34F", "60F", "60M", "61", "86", "62F", "62M",
           "64", "65", "90C", "90D", "NS"}
_BALANCE = re.compile(r"^(?P<mark>[CD])(?P<date>\d{6})(?P<ccy>[A-Za-z]{3})(?P<amount>\d[\d,.]*)\s*$")
_ENTRY = re.compile(r"^(?P<value>\d{6})(?P<entry>\d{4}| {4})?(?P<mark>RC|RD|EC|ED|C|D)(?P<funds>[A-Z](?=\d))?"
                    r"(?P<amount>\d[\d,.]*)(?P<rest>.*)$")
_TYPE = re.compile(r"^[NFS][A-Z0-9 ]{3}")
_SUBFIELD = re.compile(r"\?(\d{2})")
_SLASH_KEYS = ("EREF", "KREF", "MREF", "CRED", "DEBT", "ORDP", "BENM", "NAME", "REMI", "IBAN", "BIC", "RTRN", "PURP",
               "USTD", "STRD", "ADDR", "ID", "CSID", "ISDT", "ULTD", "ULTC", "OCMT", "TRTP", "MARF")
_SLASH = re.compile(r"/(" + "|".join(_SLASH_KEYS) + r")/")
_METHODS = {"TRF": "wire", "DDT": "ach", "CHK": "check"}


@dataclass
class _Field:
    tag: str
    line: int
    value: str


@dataclass
class _Statement:
    line: int
    reference: str
    fields: list[_Field] = field(default_factory=list)


def count_entry_records(text: str) -> int:
    """The guard's independent count: lines that open a field 61."""
    return sum(1 for line in text.splitlines() if line.startswith(":61:"))


def parse(text: str) -> ParsedFile:
    statements = [_statement(s) for s in _statements(_fields(text))]
    if not statements:
        raise FileRejected("file", "not an MT940 statement: no :20: field opens a statement")
    return ParsedFile("mt940", tuple(statements), entry_records=count_entry_records(text))


def _fields(text: str) -> list[_Field]:
    fields: list[_Field] = []
    current: _Field | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FIELD.match(line)
        if match and match.group(1) in _FIELDS:
            current = _Field(match.group(1), number, line[match.end():])
            fields.append(current)
        elif line == "" or line.strip() in ("-", "-}") or line.startswith("-}") or line.startswith("{"):
            current = None  # a message separator or an envelope block ends the field
        elif current is not None:
            current.value += "\n" + line
        # else: envelope or prose between statements
    return fields


def _statements(fields: list[_Field]) -> list[_Statement]:
    statements: list[_Statement] = []
    for f in fields:
        if f.tag == "20":
            statements.append(_Statement(f.line, f.value.strip()))
        elif not statements:
            raise FileRejected(f"line {f.line}", f"field :{f.tag}: comes before the :20: that opens a statement")
        else:
            statements[-1].fields.append(f)
    return statements


def _statement(s: _Statement) -> BankStatement:
    where = f"statement starting at line {s.line}"
    account = number = None
    opening = closing = None
    closing_line = 0
    entries: list[tuple[_Field, list[_Field]]] = []
    for f in s.fields:
        if f.tag == "25":
            account = f.value.strip() or None
        elif f.tag in ("28", "28C"):
            number = f.value.strip() or None
        elif f.tag in ("60F", "60M"):
            if opening is not None:
                raise FileRejected(f"line {f.line}", f"a second opening balance in the {where}")
            opening = _balance(f)
        elif f.tag == "61":
            if closing is not None:
                raise FileRejected(f"line {f.line}", f"entry after the closing balance (line {closing_line}) of the"
                                                     f" {where}: every entry must come before :62F:/:62M:")
            entries.append((f, []))
        elif f.tag == "86":
            if entries and closing is None:
                entries[-1][1].append(f)
        elif f.tag in ("62F", "62M"):
            if closing is not None:
                raise FileRejected(f"line {f.line}", f"a second closing balance in the {where}")
            closing, closing_line = _balance(f), f.line
    if opening is None or closing is None:
        raise FileRejected(where, "needs an opening (:60F:/:60M:) and a closing (:62F:/:62M:) balance")
    currency = opening[2]
    if closing[2] != currency:
        raise FileRejected(f"line {closing_line}", f"closing balance in {closing[2]}, the opening balance in {currency}")
    lines: list[BankLine] = []
    net = Decimal(0)
    for entry, details in entries:
        line = _entry(entry, details, currency)
        net += line.amount if line.direction == "credit" else -line.amount
        lines.append(line)
    if opening[0] + net != closing[0]:
        raise FileRejected(f"line {closing_line}", f"closing balance {closing[0]} is not the opening balance"
                                                   f" {opening[0]} plus the entries ({net:+}) of the {where}")
    return BankStatement(file_format="mt940", account=account, statement_id=number or s.reference or None,
                         statement_date=closing[1], currency=currency, lines=tuple(lines),
                         opening_balance=opening[0], closing_balance=closing[0], entry_records=len(entries))


def _date(yymmdd: str, where: str) -> date:
    year, month, day = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:6])
    try:
        return date(2000 + year if year < 70 else 1900 + year, month, day)
    except ValueError as exc:
        raise FileRejected(where, f"{yymmdd!r} is not a date (YYMMDD)") from exc


def _number(text: str, currency: str, where: str) -> Decimal:
    if "," in text and "." in text:
        raise FileRejected(where, f"amount {text!r} has both a decimal comma and a point")
    return file_amount(text.replace(",", "."), currency, where)


def _balance(f: _Field) -> tuple[Decimal, date, str]:
    where = f"line {f.line} (:{f.tag}:)"
    match = _BALANCE.match(f.value.split("\n", 1)[0])
    if match is None:
        raise FileRejected(where, f"{f.value.strip()[:40]!r} is not a balance: C or D, YYMMDD, currency, amount")
    try:
        currency = validate_currency(match.group("ccy"))
    except MoneyError as exc:
        raise FileRejected(where, str(exc)) from exc
    amount = _number(match.group("amount"), currency, where)
    return (-amount if match.group("mark") == "D" else amount), _date(match.group("date"), where), currency


def _entry(f: _Field, details: list[_Field], currency: str) -> BankLine:
    where = f"line {f.line}"
    first, _, supplementary = f.value.partition("\n")
    match = _ENTRY.match(first)
    if match is None:
        raise FileRejected(where, f"field :61: {first.strip()[:40]!r} is not value date (YYMMDD), optional entry"
                                  " date, C/D/RC/RD mark and amount")
    value_date = _date(match.group("value"), where)
    amount = _number(match.group("amount"), currency, where)
    mark = match.group("mark")
    credit = mark in ("C", "RD", "EC")
    rest = match.group("rest")
    type_code = ""
    if not rest.startswith("NONREF") and _TYPE.match(rest):
        type_code, rest = rest[:4], rest[4:]
    customer_reference, _, bank_reference = rest.partition("//")
    customer_reference, bank_reference = customer_reference.strip(), bank_reference.strip()
    if customer_reference.upper() == "NONREF":
        customer_reference = ""
    info = details_86(" ".join(d.value for d in details))
    reversal = mark == "RC"  # a credit reversed: the receipt went back
    text = " ".join(filter(None, [customer_reference, " ".join(supplementary.split()), info.get("REMI"),
                                  info.get("RAW")]))
    return BankLine(
        position=where, amount=amount, direction="credit" if credit else "debit", value_date=value_date,
        bank_reference=bank_reference or info.get("EREF") or None, payer_name=info.get("NAME") or None,
        payer_account=info.get("ACCOUNT") or None, text=text,
        method=_METHODS.get(type_code[1:].strip(), "other") if type_code else "other",
        return_code=(info.get("RTRN") or "REVERSAL") if reversal or (info.get("RTRN") and not credit) else None,
        returned_reference=(customer_reference or bank_reference or None) if reversal else None)


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
            "RTRN": found.get("RTRN", ""), "EREF": found.get("EREF", ""),
            "RAW": "" if found else " ".join(text.split())}
