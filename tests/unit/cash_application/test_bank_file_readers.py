"""The readers' handling of what banks really send (issue 10): each case is the smallest file that
shows the class of defect; the real files are in tests/fixtures/bank-files."""
from __future__ import annotations

from datetime import date
from decimal import Decimal as D
from pathlib import Path

import pytest

from services.cash_application.adapters.bank_files import parse_file
from services.cash_application.application.imports import statement_keys
from services.cash_application.domain.receipts import (
    BankStatement, FileRejected, ParsedFile, check_every_entry_read)

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "bank-files"

MT940_TWO_STATEMENTS_NO_SEPARATOR = b""":940:
:20:A1
:25:NL00BANK0123456789
:28C:1
:60F:C240101EUR100,00
:61:2401020102C50,00NTRFINV-1
:62F:C240102EUR150,00
:20:A2
:25:NL00BANK0123456789
:28C:2
:60F:C240102EUR150,00
:61:2401030103D20,00NTRFNONREF
:62F:C240103EUR130,00
"""


def _mt940(body: str) -> bytes:
    return (":20:X\n:25:ACC\n:28C:1\n:60F:C240101EUR100,00\n" + body).encode()


def test_mt940_statements_back_to_back_without_a_separator_are_two_statements():
    parsed = parse_file(MT940_TWO_STATEMENTS_NO_SEPARATOR, "mt940")
    assert [(s.statement_id, s.opening_balance, s.closing_balance, len(s.lines)) for s in parsed.statements] == [
        ("1", D("100.00"), D("150.00"), 1), ("2", D("150.00"), D("130.00"), 1)]


def test_an_mt940_entry_after_the_closing_balance_is_refused_with_its_line():
    with pytest.raises(FileRejected) as rejected:
        parse_file(_mt940(":61:2401020102C50,00NTRFA\n:62F:C240102EUR150,00\n:61:2401020102C7,00NTRFB\n-\n"), "mt940")
    assert rejected.value.where == "line 7"
    assert "after the closing balance (line 6)" in rejected.value.reason


def test_mt940_entries_without_a_type_code_stay_separate_entries():
    parsed = parse_file(_mt940(":61:2401020102CN10,00//REF1\n:86:first\n:61:2401020102CN15,00//REF2\n"
                               ":86:second\n:62F:C240102EUR125,00\n"), "mt940")
    lines = parsed.statements[0].lines
    assert [(line.amount, line.bank_reference, line.text) for line in lines] == [
        (D("10.00"), "REF1", "first"), (D("15.00"), "REF2", "second")]


def test_mt940_field_61_variants_are_read_by_their_structure():
    parsed = parse_file(_mt940(
        ":61:240102    C1,5NOVBNL47INGB9999999999\npayer name\n"  # blank entry date, 18-char reference
        ":61:240102D0,5NONREF\n"  # no type code: NONREF is the reference
        ":61:2401020102RC3,00NIT NONREF//B1\n"  # reversal of a credit, type code with a blank
        ":62F:C240102EUR98,00\n"), "mt940")
    lines = parsed.statements[0].lines
    assert [(line.direction, line.amount, line.return_code is not None) for line in lines] == [
        ("credit", D("1.50"), False), ("debit", D("0.50"), False), ("debit", D("3.00"), True)]
    assert lines[0].text.startswith("NL47INGB9999999999")


def test_an_mt940_entry_before_any_statement_is_refused():
    with pytest.raises(FileRejected) as rejected:
        parse_file(b":61:2401020102C50,00NTRFX\n" + _mt940(":62F:C240101EUR100,00\n"), "mt940")
    assert rejected.value.where == "line 1" and ":20:" in rejected.value.reason


def _camt054(ntfctn_created: str = "") -> bytes:
    return f"""<?xml version="1.0"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"><BkToCstmrDbtCdtNtfctn>
<GrpHdr><MsgId>M</MsgId><CreDtTm>2024-05-02T09:00:00</CreDtTm></GrpHdr>
<Ntfctn><Id>N1</Id>{ntfctn_created}<Acct><Id><IBAN>CH0000000000000000000</IBAN></Id></Acct>
<Ntry><Amt Ccy="CHF">12.50</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
<NtryDtls><TxDtls><RmtInf><Ustrd>INV-7</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>""".encode()


def test_a_camt054_entry_without_value_or_booking_date_takes_the_notification_date_and_says_so():
    line = parse_file(_camt054("<CreDtTm>2024-05-01T18:00:00</CreDtTm>"), "camt.054").statements[0].lines[0]
    assert line.value_date == date(2024, 5, 1)
    assert line.value_date_source == "the notification's creation date (Ntfctn/CreDtTm)"


def test_without_a_notification_date_the_message_date_is_used():
    line = parse_file(_camt054(), "camt.054").statements[0].lines[0]
    assert (line.value_date, line.value_date_source) == (
        date(2024, 5, 2), "the message's creation date (GrpHdr/CreDtTm)")


def test_the_bai2_specification_example_reads_its_88_continuations_and_funds_type_s():
    parsed = parse_file((CORPUS / "bai2" / "moov-sample2-spec-example.bai2").read_bytes(), "bai2")
    first, second = parsed.statements[0], parsed.statements[1]
    # 03 split over two 88s: the 190's amount and the 040's are on the continuations.
    assert (second.account, second.opening_balance) == ("9876543210", D("-5000.00"))
    assert [(line.amount, line.text) for line in first.lines] == [(D("4500.00"), "")]
    assert [(line.amount, line.text) for line in second.lines] == [(D("5000.00"), "LOCK BOX NO.68751")]
    assert parsed.statements[2].lines[0].text == "YRC065321 PROCEEDS OF LETTER OF CREDIT FROM THE ARAMCO OIL CO"


def test_a_bai2_error_names_the_line_in_the_projects_words():
    broken = (CORPUS / "bai2" / "moov-spec-section3.bai2").read_text().replace("49,72000000,3/", "49,72000001,3/")
    with pytest.raises(FileRejected) as rejected:
        parse_file(broken.encode(), "bai2")
    assert rejected.value.where == "line 5"
    assert rejected.value.reason == "account control total 72000001 does not match the account's amounts (72000000)"


def test_two_sections_of_one_account_in_one_group_are_two_statements_not_a_duplicate():
    parsed = parse_file((CORPUS / "bai2" / "moov-sample1.bai2").read_bytes(), "bai2")
    keys = statement_keys(parsed.statements)
    assert parsed.statements[0].identity == parsed.statements[1].identity
    assert keys[0] != keys[1] and keys[1] == keys[0] + "#2"
    assert statement_keys(parse_file((CORPUS / "bai2" / "moov-sample1.bai2").read_bytes(), "bai2").statements) == keys


EDI_ENT = ("ISA*00*          *00*          *ZZ*PAYER          *ZZ*PAYEE          *240101*1200*U*00401*000000001*0*P*>~"
           "GS*RA*PAYER*PAYEE*20240101*1200*1*X*004010~ST*820*0001~BPR*C*1450*C*ACH*CTX~TRN*1*T1~N1*PR*ACME~"
           "ENT*1~RMR*IV*INV-1**1000~ENT*2~ADX*-50*01~RMR*IV*INV-2**500~SE*10*0001~GE*1*1~IEA*1*000000001~")


def test_an_entity_level_adjustment_lands_on_its_entitys_invoice_and_counts_in_the_total():
    items = parse_file(EDI_ENT.encode(), "edi820").statements[0].lines[0].remittance
    assert [(i.reference, i.paid_amount, i.adjustment_amount, i.reason_code) for i in items] == [
        ("INV-1", D("1000.00"), None, None), ("INV-2", D("450.00"), D("50.00"), "01")]


@pytest.mark.parametrize("file_format,content,where", [
    ("mt940", _mt940(":61:2401020102C1E+26NTRFX\n:62F:C240102EUR100,00\n"), None),
    ("mt940", _mt940(":61:2401020102C99999999999999999,00NTRFX\n:62F:C240102EUR100,00\n"), "line 5"),
    ("camt.054", _camt054().replace(b">12.50<", b">1E+26<"), "Document/BkToCstmrDbtCdtNtfctn/Ntfctn/Ntry/Amt"),
    ("edi820", EDI_ENT.replace("BPR*C*1450", "BPR*C*1E+26").encode(), "segment 4 (BPR) BPR02"),
    ("csv", b"value_date,amount,currency\n2024-01-02,1E+26,USD\n", "line 2 column amount"),
    ("bai2", (CORPUS / "bai2" / "moov-spec-section3.bai2").read_text().replace("1500000", "9" * 30).encode(),
     "line 4"),
])
def test_an_amount_no_currency_can_hold_is_refused_naming_where(file_format, content, where):
    with pytest.raises(FileRejected) as rejected:
        parse_file(content, file_format)
    if where:
        assert rejected.value.where.startswith(where)
    assert "Decimal(" not in rejected.value.reason and "InvalidOperation" not in rejected.value.reason


def test_fewer_entries_read_than_the_file_holds_is_a_rejection():
    statement = BankStatement(file_format="mt940", account="A", statement_id="1", statement_date=date(2024, 1, 1),
                              currency="EUR", lines=(), entry_records=1)
    with pytest.raises(FileRejected) as rejected:
        check_every_entry_read(ParsedFile("mt940", (statement,), entry_records=2))
    assert rejected.value.reason.startswith("holds 2 entry records but 1 were read")


@pytest.mark.parametrize("file_format", ["bai2", "camt.053", "mt940", "edi820", "csv"])
def test_a_nul_byte_is_refused_with_its_line_in_every_format(file_format):
    content = b"first line\nsecond line\nthird \x00 line\n"
    with pytest.raises(FileRejected) as rejected:
        parse_file(content, file_format)
    assert rejected.value.where == "line 3"
    assert "NUL" in rejected.value.reason
