"""BAI2 (and its X9.121 "version 3" twin) read record by record, every error naming its line.

Records are physical lines; an `88` continues the record before it, whatever that is: the field
list of an `03` account identifier (the specification's own example splits a summary's amount
onto the 88, so the continuation is joined with a comma), or a `16` detail, whose fields carry on
until the free text, which then takes the rest of the 88s. A record's field list ends at `/`; the
text of a 16 is not ended by `/` (it may contain one). Funds availability is read as the
specification defines it: 0, 1, 2, Z and blank carry nothing; V carries a value date and time; S
carries immediate, one-day and two-or-more-day amounts, each of which may be blank; D carries a
count and that many (days, amount) pairs.

Direction comes from the type code: the `bai2` package's table of the specification's Appendix A
codes when it knows the code, else the specification's ranges (100-399 credits, 400-699 debits).

Checked, naming the trailer line: account control totals (49: the 03 and 16 amounts) and record
counts, group totals and account counts (98), file totals and group counts (99), and the number of
16 records read against the number of lines starting "16,"."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from bai2.constants import TypeCodes, TypeCodeTransaction

from shared.money import MoneyError, minor_unit, validate_currency
from services.cash_application.domain.receipts import BankLine, BankStatement, FileRejected, ParsedFile

# Debit type codes that take a deposited receipt back (BAI2 type code list).
RETURN_TYPE_CODES = {"552": "CREDIT_REVERSAL", "555": "DEPOSITED_ITEM_RETURNED", "557": "ACH_RETURN",
                     "558": "ACH_REVERSAL", "566": "RETURN_ITEM", "694": "DEPOSIT_REVERSAL"}
_METHODS = {"191": "wire", "142": "ach", "165": "ach", "166": "ach", "169": "ach", "195": "wire", "196": "wire",
            "206": "wire", "208": "wire", "175": "check", "301": "check"}
_RECORDS = ("01", "02", "03", "16", "49", "88", "98", "99")
_ACH_RETURN_REASON = re.compile(r"\bR\d{2}\b")
_NAME_KEYS = re.compile(r"(?:^|\s)(?:OB|ORIG|ORG|B/O|ORIGINATOR|ORIG NAME|PAYER|DBNM)[:=]+\s*(.+?)"
                        r"(?=\s+[A-Z][A-Z0-9/]{0,10}[:=]|$)")
_ACCOUNT_KEYS = re.compile(r"(?:^|\s)(?:OA|ORIG ACCT|ORIGINATOR ACCOUNT|DEBTOR ACCOUNT|DACT)[:=]+\s*([A-Z0-9-]+)")
_REMITTANCE_KEYS = re.compile(r"(?:^|\s)(?:OBI|RMT|RMR|REMIT|REMI|RFB|INV)[:=]+\s*(.+?)"
                              r"(?=\s+[A-Z][A-Z0-9/]{0,10}[:=]|$)")


@dataclass
class _Record:
    code: str
    line: int
    body: str  # the fields after the record code, continuations joined
    last_line: int = 0


@dataclass
class _Account:
    header: _Record
    details: list[_Record] = field(default_factory=list)
    records: int = 1


def count_entry_records(text: str) -> int:
    """The guard's independent count: physical records that are transaction details."""
    return sum(1 for line in text.splitlines() if line.strip().startswith("16,"))


def parse(text: str, default_currency: str = "USD") -> ParsedFile:
    records = _records(text)
    if not records:
        raise FileRejected("file", "is empty")
    if records[0].code != "01":
        raise FileRejected(f"line {records[0].line}", "a BAI2 file starts with a 01 file header")
    statements: list[BankStatement] = []
    file_total = groups = 0
    group: dict | None = None
    account: _Account | None = None
    trailer_seen = False
    physical = 0
    for record in records:
        physical += 1 + record.last_line - record.line if record.last_line else 1
        where = f"line {record.line}"
        if trailer_seen:
            raise FileRejected(where, f"record {record.code} after the 99 file trailer")
        if record.code == "02":
            if group is not None:
                raise FileRejected(where, "a 02 group header before the 98 trailer of the previous group")
            fields = record.body.split(",")
            currency = (_field(fields, 5) or default_currency).upper()
            as_of = _yymmdd(_field(fields, 3), f"{where} (as-of date)")
            group = {"line": record.line, "as_of": as_of, "modifier": _field(fields, 6), "currency": currency,
                     "total": 0, "accounts": 0, "records": 1}
        elif record.code == "03":
            if group is None or account is not None:
                raise FileRejected(where, "a 03 account identifier outside a group or before the 49 of the"
                                          " previous account")
            account = _Account(record)
        elif record.code == "16":
            if account is None:
                raise FileRejected(where, "a 16 transaction detail outside an account (no 03 before it)")
            account.details.append(record)
        elif record.code == "49":
            if account is None or group is None:
                raise FileRejected(where, "a 49 account trailer without its 03 account identifier")
            statement, total = _account(account, record, group)
            statements.append(statement)
            group["total"] += total
            group["accounts"] += 1
            account = None
        elif record.code == "98":
            if group is None or account is not None:
                raise FileRejected(where, "a 98 group trailer outside a group or before the 49 of its last account")
            fields = record.body.split(",")
            total = _integer(_field(fields, 0), f"{where} (group control total)")
            if total != group["total"]:
                raise FileRejected(where, f"group control total {total} does not match the sum of its account"
                                          f" control totals ({group['total']})")
            count = _integer(_field(fields, 1), f"{where} (number of accounts)")
            if count != group["accounts"]:
                raise FileRejected(where, f"group says {count} accounts, has {group['accounts']}")
            records_in_group = record.line - group["line"] + 1
            if _field(fields, 2) and _integer(_field(fields, 2), where) != records_in_group:
                raise FileRejected(where, f"group record count {_field(fields, 2)} does not match the"
                                          f" {records_in_group} records from its 02 to its 98")
            file_total += total
            groups += 1
            group = None
        elif record.code == "99":
            if group is not None:
                raise FileRejected(where, "the 99 file trailer before the 98 trailer of the last group")
            fields = record.body.split(",")
            total = _integer(_field(fields, 0), f"{where} (file control total)")
            if total != file_total:
                raise FileRejected(where, f"file control total {total} does not match the sum of its group"
                                          f" control totals ({file_total})")
            if _integer(_field(fields, 1), where) != groups:
                raise FileRejected(where, f"file says {_field(fields, 1)} groups, has {groups}")
            if _field(fields, 2) and _integer(_field(fields, 2), where) != physical:
                raise FileRejected(where, f"file record count {_field(fields, 2)} does not match the {physical}"
                                          " records")
            trailer_seen = True
    if not trailer_seen:
        raise FileRejected("file", "has no 99 file trailer")
    return ParsedFile("bai2", tuple(statements), entry_records=count_entry_records(text))


def _records(text: str) -> list[_Record]:
    """Physical lines to logical records: each 88 joins the record it continues."""
    records: list[_Record] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        code = line[:2]
        if code not in _RECORDS or line[2:3] != ",":
            raise FileRejected(f"line {number}", f"record code {line[:3]!r} is not a BAI2 record (01, 02, 03, 16, 49,"
                                                 " 88, 98, 99 followed by a comma)")
        body = line[3:]
        if code == "88":
            if not records or records[-1].code not in ("03", "16", "01", "02", "49", "98", "99"):
                raise FileRejected(f"line {number}", "a continuation (88) with no record before it")
            previous = records[-1]
            if previous.code == "16" and _text_started(previous.body):
                previous.body = _open(previous.body) + " " + body
            else:
                previous.body = _open(previous.body) + "," + body
            previous.last_line = number
            continue
        records.append(_Record(code, number, body))
    return records


def _open(body: str) -> str:
    """A record's fields without the `/` that ended them, so a continuation carries on."""
    return body[:-1] if body.endswith("/") else body


def _detail_fields(body: str) -> tuple[list[str], int]:
    """A 16's fields up to the text, and how many fields precede the text."""
    fields = _open(body).split(",")
    funds = fields[2].strip().upper() if len(fields) > 2 else ""
    extra = {"V": 2, "S": 3}.get(funds, 0)
    if funds == "D":
        try:
            extra = 1 + 2 * int(fields[3] or 0) if len(fields) > 3 else 1
        except ValueError:
            extra = 1
    return fields, 3 + extra + 2


def _text_started(body: str) -> bool:
    fields, before_text = _detail_fields(body)
    return len(fields) > before_text


def _field(fields: list[str], index: int) -> str:
    return fields[index].strip().rstrip("/") if len(fields) > index else ""


def _integer(value: str, where: str) -> int:
    try:
        return int(value or 0)
    except ValueError as exc:
        raise FileRejected(where, f"{value!r} is not a whole number") from exc


def _yymmdd(value: str, where: str) -> date:
    try:
        return datetime.strptime(value, "%y%m%d").date()
    except ValueError as exc:
        raise FileRejected(where, f"{value!r} is not a date (YYMMDD)") from exc


def _account(account: _Account, trailer: _Record, group: dict) -> tuple[BankStatement, int]:
    header = account.header
    where = f"line {header.line}"
    fields = _open(header.body).split(",")
    number = _field(fields, 0)
    currency = (_field(fields, 1) or group["currency"]).upper()
    try:
        currency = validate_currency(currency)
        decimals = minor_unit(currency)
    except MoneyError as exc:
        raise FileRejected(f"{where} (currency)", str(exc)) from exc
    summaries: dict[str, int] = {}
    total = 0
    i = 2
    while i < len(fields):
        code = fields[i].strip()
        amount = _field(fields, i + 1)
        funds = _field(fields, i + 3).upper()
        step = 4 + {"V": 2, "S": 3}.get(funds, 0)
        if funds == "D":
            step = 5 + 2 * _integer(_field(fields, i + 4), f"{where} (distributions)")
        if code and amount:
            value = _integer(amount.lstrip("+"), f"{where} (amount of type {code})")
            total += value
            summaries.setdefault(code, value)
        i += step
    lines: list[BankLine] = []
    for detail in account.details:
        line, amount = _detail(detail, decimals, group["as_of"])
        lines.append(line)
        total += amount
    tfields = trailer.body.split(",")
    where49 = f"line {trailer.line}"
    control = _integer(_field(tfields, 0).lstrip("+"), f"{where49} (account control total)")
    if control != total:
        raise FileRejected(where49, f"account control total {control} does not match the account's amounts ({total})")
    physical = trailer.line - header.line + 1
    if _integer(_field(tfields, 1), where49) != physical:
        raise FileRejected(where49, f"account record count {_field(tfields, 1)} does not match the {physical}"
                                    " records from its 03 to its 49")
    opening = _scaled(summaries.get("010", summaries.get("040")), decimals)
    closing = _scaled(summaries.get("015", summaries.get("045")), decimals)
    modifier = group["modifier"]
    statement = BankStatement(
        file_format="bai2", account=number or None,
        # Interim reports (as-of modifiers 1 and 3) are cumulative and sent again with more lines:
        # they have no statement identity; their lines are recognised one by one.
        statement_id=None if modifier in ("1", "3") else f"{group['as_of'].isoformat()}/{modifier}",
        statement_date=group["as_of"], currency=currency, lines=tuple(lines),
        opening_balance=opening, closing_balance=closing, entry_records=len(account.details))
    return statement, control


def _scaled(value: int | None, decimals: int) -> Decimal | None:
    return None if value is None else Decimal(value).scaleb(-decimals)


def _detail(record: _Record, decimals: int, as_of: date) -> tuple[BankLine, int]:
    where = f"line {record.line}"
    fields, before_text = _detail_fields(record.body)
    code = _field(fields, 0)
    if not code.isdigit() or len(code) != 3:
        raise FileRejected(where, f"type code {code!r} is not three digits")
    amount_text = _field(fields, 1)
    if not amount_text:
        raise FileRejected(where, "transaction detail has no amount")
    amount = _integer(amount_text.lstrip("+"), f"{where} (amount)")
    if amount >= 10 ** (16 + decimals):
        raise FileRejected(where, f"amount {amount_text} is larger than any amount the ledger holds"
                                  " (at most 16 digits before the decimal point)")
    funds = _field(fields, 2).upper()
    value_date = as_of
    if funds == "V" and _field(fields, 3):
        value_date = _yymmdd(_field(fields, 3), f"{where} (value date)")
    bank_reference = _field(fields, before_text - 2)
    customer_reference = _field(fields, before_text - 1)
    text = " ".join(",".join(fields[before_text:]).split()).rstrip(",/ ")
    known = TypeCodes.get(code)
    if known is not None and known.transaction in (TypeCodeTransaction.credit, TypeCodeTransaction.debit):
        credit = known.transaction == TypeCodeTransaction.credit
    elif 100 <= int(code) <= 399:
        credit = True
    elif 400 <= int(code) <= 699:
        credit = False
    else:
        raise FileRejected(where, f"type code {code} is neither a credit (100-399) nor a debit (400-699)")
    return_code = None
    if code in RETURN_TYPE_CODES:
        ach = _ACH_RETURN_REASON.search(text)
        return_code = ach.group(0) if ach else RETURN_TYPE_CODES[code]
    name = _NAME_KEYS.search(text)
    account = _ACCOUNT_KEYS.search(text)
    remittance = _REMITTANCE_KEYS.search(text)
    line = BankLine(
        position=where, amount=Decimal(amount).scaleb(-decimals), direction="credit" if credit else "debit",
        value_date=value_date, bank_reference=bank_reference or None,
        payer_name=name.group(1).strip() if name else None, payer_account=account.group(1) if account else None,
        text=" ".join(filter(None, [customer_reference, remittance.group(1) if remittance else text])),
        method=_METHODS.get(code, "other") if credit else "other", return_code=return_code,
        returned_reference=(customer_reference or None) if return_code else None)
    return line, amount
