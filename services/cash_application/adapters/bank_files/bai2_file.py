"""BAI2 with the `bai2` library (record structure, 88 continuations joined into the detail text,
funds availability, type codes). Its integrity check raises without saying where, so the library
parses with check_integrity=False and the control totals and record counts are checked here,
naming the trailer line that disagrees."""
from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from bai2 import bai2
from bai2.constants import TypeCodeTransaction
from bai2.exceptions import IntegrityException, NotSupportedYetException, ParsingException

from shared.money import MoneyError, minor_unit
from services.cash_application.domain.receipts import BankLine, BankStatement, FileRejected, ParsedFile

# Debit type codes that take a deposited receipt back (BAI2 type code list).
RETURN_TYPE_CODES = {"552": "CREDIT_REVERSAL", "555": "DEPOSITED_ITEM_RETURNED", "557": "ACH_RETURN",
                     "558": "ACH_REVERSAL", "566": "RETURN_ITEM", "694": "DEPOSIT_REVERSAL"}
_METHODS = {"191": "wire", "142": "ach", "165": "ach", "166": "ach", "169": "ach", "195": "wire", "196": "wire", "206": "wire",
            "208": "wire", "175": "check", "301": "check"}
_ACH_RETURN_REASON = re.compile(r"\bR\d{2}\b")
_NAME_KEYS = re.compile(r"(?:^|\s)(?:OB|ORIG|ORG|B/O|ORIGINATOR|ORIG NAME|PAYER)[:=]\s*(.+?)(?=\s+[A-Z][A-Z0-9/]{0,10}[:=]|$)")
_ACCOUNT_KEYS = re.compile(r"(?:^|\s)(?:OA|ORIG ACCT|ORIGINATOR ACCOUNT|DEBTOR ACCOUNT)[:=]\s*([A-Z0-9-]+)")
_REMITTANCE_KEYS = re.compile(r"(?:^|\s)(?:OBI|RMT|RMR|REMIT|RFB|INV)[:=]\s*(.+?)(?=\s+[A-Z][A-Z0-9/]{0,10}[:=]|$)")


def _method(code: str) -> str:
    return _METHODS.get(code, "other")


def parse(text: str, default_currency: str = "USD") -> ParsedFile:
    numbered = [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not numbered:
        raise FileRejected("file", "is empty")
    for lineno, line in numbered:
        code = line[:2]
        if code not in ("01", "02", "03", "16", "49", "88", "98", "99") or (len(line) > 2 and line[2] != ","):
            raise FileRejected(f"line {lineno}", f"record code {line[:3]!r} is not a BAI2 record")
    if numbered[0][1][:2] != "01":
        raise FileRejected(f"line {numbered[0][0]}", "a BAI2 file starts with a 01 file header")
    try:
        parsed = bai2.parse_from_lines((line for _, line in numbered), check_integrity=False)
    except (ParsingException, NotSupportedYetException, IntegrityException, ValueError, KeyError,
            IndexError, StopIteration) as exc:
        raise FileRejected("file", f"not a well-formed BAI2 file: {exc or exc.__class__.__name__}") from exc
    lines_of = {code: [n for n, line in numbered if line.startswith(code + ",")] for code in ("03", "16", "49", "98", "99")}
    account_no = group_no = detail_no = 0
    statements: list[BankStatement] = []
    file_total = 0
    for group in parsed.children:
        group_total = 0
        for account in group.children:
            where = f"line {lines_of['49'][account_no]}"
            account_no += 1
            details = sum(d.amount or 0 for d in account.children)
            summaries = sum(s.amount or 0 for s in account.header.summary_items)
            if details + summaries != account.trailer.account_control_total:
                raise FileRejected(where, f"account control total {account.trailer.account_control_total} does not"
                                          f" match the account's amounts ({details + summaries})")
            if account.trailer.number_of_records != len(account.rows):
                raise FileRejected(where, f"account record count {account.trailer.number_of_records} does not match"
                                          f" the {len(account.rows)} records of the account")
            group_total += account.trailer.account_control_total
            currency = (account.header.currency or group.header.currency or default_currency).upper()
            try:
                decimals = minor_unit(currency)
            except MoneyError as exc:
                raise FileRejected(f"line {lines_of['03'][account_no - 1]}", str(exc)) from exc
            bank_lines = []
            for detail in account.children:
                detail_line = lines_of["16"][detail_no]
                detail_no += 1
                bank_lines.append(_line(detail, detail_line, decimals, group.header.as_of_date))
            opening = _summary(account, "010", decimals) or _summary(account, "040", decimals)
            closing = _summary(account, "015", decimals) or _summary(account, "045", decimals)
            modifier = getattr(group.header.as_of_date_modifier, "value", "") or ""
            statements.append(BankStatement(
                file_format="bai2", account=account.header.customer_account_number,
                # Interim reports (as-of modifiers 1 and 3) are cumulative and sent again with more
                # lines: they have no statement identity; their lines are recognised one by one.
                statement_id=None if modifier in ("1", "3") else f"{group.header.as_of_date.isoformat()}/{modifier}",
                statement_date=group.header.as_of_date, currency=currency, lines=tuple(bank_lines),
                opening_balance=opening, closing_balance=closing))
        where = f"line {lines_of['98'][group_no]}"
        group_no += 1
        if group.trailer.group_control_total != group_total:
            raise FileRejected(where, f"group control total {group.trailer.group_control_total} does not match the"
                                      f" sum of its account control totals ({group_total})")
        if group.trailer.number_of_accounts != len(group.children):
            raise FileRejected(where, f"group says {group.trailer.number_of_accounts} accounts, has {len(group.children)}")
        file_total += group_total
    where = f"line {lines_of['99'][0]}" if lines_of["99"] else "file"
    if parsed.trailer.file_control_total != file_total:
        raise FileRejected(where, f"file control total {parsed.trailer.file_control_total} does not match the sum"
                                  f" of its group control totals ({file_total})")
    if parsed.trailer.number_of_records != len(numbered):
        raise FileRejected(where, f"file record count {parsed.trailer.number_of_records} does not match the"
                                  f" {len(numbered)} records")
    return ParsedFile("bai2", tuple(statements))


def _summary(account, code: str, decimals: int) -> Decimal | None:
    for item in account.header.summary_items:
        if item.type_code and item.type_code.code == code and item.amount is not None:
            return Decimal(item.amount).scaleb(-decimals)
    return None


def _line(detail, lineno: int, decimals: int, as_of: date) -> BankLine:
    code = detail.type_code.code if detail.type_code else ""
    where = f"line {lineno}"
    if detail.amount is None:
        raise FileRejected(where, "transaction detail has no amount")
    text = " ".join((detail.text or "").split())
    return_code = None
    if code in RETURN_TYPE_CODES:
        ach = _ACH_RETURN_REASON.search(text)
        return_code = ach.group(0) if ach else RETURN_TYPE_CODES[code]
    credit = detail.type_code is not None and detail.type_code.transaction == TypeCodeTransaction.credit
    value_date = as_of
    if isinstance(detail.availability, dict) and isinstance(detail.availability.get("date"), date):
        value_date = detail.availability["date"]
    name = _NAME_KEYS.search(text)
    account = _ACCOUNT_KEYS.search(text)
    remittance = _REMITTANCE_KEYS.search(text)
    return BankLine(
        position=where, amount=Decimal(detail.amount).scaleb(-decimals), direction="credit" if credit else "debit",
        value_date=value_date, bank_reference=detail.bank_reference or None,
        payer_name=name.group(1).strip() if name else None, payer_account=account.group(1) if account else None,
        text=" ".join(filter(None, [detail.customer_reference, remittance.group(1) if remittance else text])),
        method=_method(code) if code.isdigit() and credit else "other", return_code=return_code,
        returned_reference=(detail.customer_reference or None) if return_code else None)
