"""The bank and remittance file parsers, on the sample files: what they read, and that a
malformed or inconsistent file is rejected naming the line or element and the reason."""
from __future__ import annotations

from datetime import date
from decimal import Decimal as D
from pathlib import Path

import pytest

from services.cash_application.adapters.bank_files import parse_file
from services.cash_application.adapters.bank_files.mt940_file import details_86
from services.cash_application.domain.receipts import FileRejected
from tests.fixtures.bank.bai2_builder import bai2

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "bank"
ROOT = Path(__file__).resolve().parents[3]
CITI = ROOT.parent / "shared" / "data" / "bank-files" / "citi_example.bai2"


def _read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _rejected(content: bytes | str, fmt: str) -> FileRejected:
    with pytest.raises(FileRejected) as caught:
        parse_file(content.encode() if isinstance(content, str) else content, fmt)
    return caught.value


def test_the_bank_sample_bai2_parses_with_its_88_continuations_and_totals():
    (statement,) = parse_file(CITI.read_bytes(), "bai2").statements
    (line,) = statement.lines
    assert (statement.account, statement.currency, statement.statement_date) == ("77777777", "GBP", date(2015, 7, 15))
    assert (line.amount, line.direction, line.bank_reference, line.method) == (D("0.01"), "credit", "1234567890", "wire")
    assert "BUCKINGHAM PALACE" in line.text and line.payer_name == "111111 BUCKINGHAM PALACE"
    assert statement.opening_balance == D("100.00")


def test_bai2_return_type_codes_are_returns_with_their_ach_reason():
    text = bai2([("165", 5000, "B1", "INV-1", []), ("555", 5000, "B9", "B1", ["RETURN R01 NSF"])])
    credit, returned = parse_file(text.encode(), "bai2").statements[0].lines
    assert credit.is_receipt and not credit.is_return
    assert (returned.return_code, returned.returned_reference, returned.direction) == ("R01", "B1", "debit")


@pytest.mark.parametrize("broken, where, reason", [
    (lambda t: t.replace("49,1162345,8/", "49,1162345,9/"), "line 10", "account record count"),
    (lambda t: t.replace("98,1162345,1,10/", "98,1162346,1,10/"), "line 11", "group control total"),
    (lambda t: t.replace("99,1162345,1,12/", "99,1162345,1,13/"), "line 12", "file record count"),
    (lambda t: t.replace("88,OB:ACME CORPORATION", "77,OB:ACME"), "line 5", "not a BAI2 record"),
    (lambda t: t.replace("01,BANKUS", "02,BANKUS", 1), "line 1", "starts with a 01"),
])
def test_bai2_inconsistencies_name_the_line(broken, where, reason):
    error = _rejected(broken(_read("statement.bai2").decode()), "bai2")
    assert error.where == where and reason in error.reason


# Versions 001.02-001.07 share the v02 layout for what is read here (Dbtr/Nm, RmtInf); 001.08
# moved the party under Dbtr/Pty. Each version's namespace is read by the same parser.
CAMT053_VERSIONS = [("camt053_v02.xml", f"camt.053.001.0{n}") for n in range(2, 8)] + [
    ("camt053_v08.xml", "camt.053.001.08")]


@pytest.mark.parametrize("name, version", CAMT053_VERSIONS)
def test_camt053_versions_read_alike(name, version):
    content = _read(name)
    for original in (b"camt.053.001.02", b"camt.053.001.08"):
        content = content.replace(original, version.encode())
    (statement,) = parse_file(content, "camt.053").statements
    assert (statement.opening_balance, statement.closing_balance, statement.currency) == (D("10000.00"), D("11725.00"),
                                                                                          "EUR")
    first, second, fee = statement.lines
    assert (first.payer_name, first.payer_account, first.text) == (
        "Euro Widgets GmbH", "FR1420041010050500013M02606", "Rechnung INV-3001 danke")
    (item,) = second.remittance
    assert (item.reference, item.paid_amount, item.invoice_amount, item.adjustment_amount, item.reason_code) == (
        "INV-3002", D("750.00"), D("800.00"), D("50.00"), "DAMAGED")
    assert fee.direction == "debit" and not fee.is_receipt


def test_camt_balance_mismatch_and_bad_amounts_are_rejected_naming_the_element():
    xml = _read("camt053_v02.xml").decode()
    error = _rejected(xml.replace("11725.00", "11725.01"), "camt.053")
    assert "Bal[2]" in error.where and "closing balance 11725.01" in error.reason
    error = _rejected(xml.replace('<Amt Ccy="EUR">750.00</Amt><CdtDbtInd>CRDT', '<Amt Ccy="EUR">750.001</Amt><CdtDbtInd>CRDT'),
                      "camt.053")
    assert "Ntry[2]/Amt" in error.where and "750.001" in error.reason
    assert _rejected(xml[:200], "camt.053").where.startswith("line ")
    assert "camt.053" in _rejected("<Document xmlns='urn:other'/>", "camt.053").reason


def test_camt054_reversal_is_a_return_with_its_reason_code():
    (statement,) = parse_file(_read("camt054_v06.xml"), "camt.054").statements
    (line,) = statement.lines
    assert (line.return_code, line.returned_reference, line.amount) == ("AC04", "E2E-1", D("1000.00"))


def test_mt940_reads_both_field_86_styles_and_checks_the_balance():
    (statement,) = parse_file(_read("statement.mt940"), "mt940").statements
    sepa, german, fee = statement.lines
    assert (sepa.payer_name, sepa.payer_account, sepa.text, sepa.position) == (
        "Euro Widgets GmbH", "FR1420041010050500013M02606", "INV 3003", "line 5")
    assert (german.payer_name, german.text) == ("NORDIC SUPPLIES AB", "INVOICE 0003004")
    assert fee.direction == "debit"
    error = _rejected(_read("statement.mt940").decode().replace(":62F:C240313EUR1475,00", ":62F:C240313EUR1475,50"),
                      "mt940")
    assert "closing balance 1475.50" in error.reason


def test_mt940_rc_is_a_returned_credit():
    details = details_86("/RTRN/MS03/EREF/E2E-9/NAME/Someone")
    assert details["RTRN"] == "MS03" and details["NAME"] == "Someone"
    text = (":20:R1\n:25:ACC\n:28C:1/1\n:60F:C240313EUR500,00\n:61:2403130313RC200,00NTRFNONREF//MT-1\n"
            ":86:/RTRN/AC04/EREF/E2E-MT-1\n:62F:C240313EUR300,00\n-\n")
    (line,) = parse_file(text.encode(), "mt940").statements[0].lines
    assert (line.direction, line.return_code, line.returned_reference) == ("debit", "AC04", "MT-1")


def test_edi820_remittance_lines_adjustments_and_control_counts():
    (statement,) = parse_file(_read("remittance.edi820"), "edi820").statements
    (line,) = statement.lines
    assert (line.amount, line.payer_name, line.customer_hint, line.bank_reference, line.value_date) == (
        D("1230.00"), "GLOBEX INC", "GLOBEX", "EDI-TRACE-1", date(2024, 3, 14))
    assert [(i.reference, i.paid_amount, i.adjustment_amount, i.reason_code) for i in line.remittance] == [
        ("INV-2001", D("500.00"), None, None), ("INV2002", D("730.00"), D("20.00"), "CM")]
    edi = _read("remittance.edi820").decode()
    error = _rejected(edi.replace("SE*10*0001", "SE*9*0001"), "edi820")
    assert error.where == "segment 12 (SE)" and "SE01 says 9" in error.reason
    error = _rejected(edi.replace("BPR*C*1230.00", "BPR*C*1240.00"), "edi820")
    assert "RMR paid amounts total 1230.00" in error.reason
    error = _rejected(edi.replace("RMR*IV*INV-2001**500.00", "RMR*IV*INV-2001**5x0.00"), "edi820")
    assert error.where == "segment 9 (RMR) RMR04"


def test_csv_groups_rows_by_receipt_and_maps_columns_by_profile():
    statement, = parse_file(_read("lockbox.csv"), "csv").statements
    first, second = statement.lines
    assert (first.amount, first.customer_hint, [i.reference for i in first.remittance]) == (
        D("650.00"), "ACME", ["INV-1002", "INV-1003"])
    assert second.remittance == () and second.amount == D("99.99")
    profile = {"columns": {"value_date": "Buchungstag", "amount": "Betrag", "payer_name": "Auftraggeber",
                           "text": "Verwendungszweck", "currency": "Waehrung"},
               "date_format": "%d.%m.%Y", "decimal_separator": ",", "delimiter": ";"}
    text = "Buchungstag;Betrag;Waehrung;Auftraggeber;Verwendungszweck\n11.03.2024;1.234,50;EUR;Euro Widgets;RE 3001\n"
    (line,) = parse_file(text.encode(), "csv", csv_profile=profile).statements[0].lines
    assert (line.amount, line.value_date, line.payer_name, line.text) == (
        D("1234.50"), date(2024, 3, 11), "Euro Widgets", "RE 3001")
    error = _rejected("value_date,amount\n2024-03-01,12.345\n", "csv")
    assert error.where == "line 2 column amount"
    error = _rejected("value_date,amount\n2024-13-01,12.34\n", "csv")
    assert error.where == "line 2 column value_date"
    assert _rejected("date,amount\n", "csv").where == "line 1"


def test_edi820_discount_taken_and_netted_credit_memo():
    edi = _read("remittance.edi820").decode()
    edi = edi.replace("RMR*IV*INV-2001**500.00*500.00~", "RMR*IV*INV-2001**490.00*500.00*10.00~RMR*CM*CM-9**-260.00~")
    edi = edi.replace("BPR*C*1230.00", "BPR*C*960.00").replace("SE*10*0001", "SE*11*0001")
    first, memo, second = parse_file(edi.encode(), "edi820").statements[0].lines[0].remittance
    assert (first.paid_amount, first.adjustment_amount, first.reason_code) == (D("490.00"), D("10.00"), "DISCOUNT")
    assert (memo.reference, memo.paid_amount) == ("CM-9", D("-260.00"))
    assert second.reason_code == "CM"
