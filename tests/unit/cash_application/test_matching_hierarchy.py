"""The matching engine with account hierarchies (pure): a parent account's receipt is matched
across its children's open invoices; remittance references still decide first."""
from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from services.cash_application.domain.matching import Matcher, OpenInvoice, Receipt
from services.cash_application.domain.receipts import RemittanceItem

CUSTOMERS = {"HQ": "Head Office Retail", "S1": "Store One", "S2": "Store Two", "S3": "Store Three",
             "OTHER": "Unrelated Buyer"}
PARENTS = {"S1": "HQ", "S2": "HQ", "S3": "S2"}  # S3 is a grandchild, under S2


def _inv(number: str, customer: str, balance: str, due: str) -> OpenInvoice:
    return OpenInvoice(number.lower(), number, customer, "USD", D(balance), date.fromisoformat(due))


INVOICES = [_inv("INV-1001", "S1", "100.00", "2024-03-01"), _inv("INV-2001", "S2", "200.00", "2024-03-05"),
            _inv("INV-3001", "S3", "300.00", "2024-03-10"), _inv("INV-9001", "OTHER", "600.00", "2024-03-01")]


def _applied(result) -> list[tuple[str, str, str, str]]:
    return [(a.invoice_id, a.customer_id, str(a.applied), a.rule) for a in result.allocations]


def test_a_family_is_the_customer_and_everyone_below_it():
    m = Matcher([], CUSTOMERS, parents=PARENTS)
    assert m.family("HQ") == {"HQ", "S1", "S2", "S3"}
    assert m.family("S2") == {"S2", "S3"}
    assert m.family("S1") == {"S1"}
    assert [i.invoice_id for i in Matcher(INVOICES, CUSTOMERS, parents=PARENTS).open_invoices_of("HQ", "USD")] == [
        "inv-1001", "inv-2001", "inv-3001"]


def test_a_parents_lump_sum_without_references_pays_its_childrens_oldest_invoices():
    m = Matcher(INVOICES, CUSTOMERS, parents=PARENTS)
    result = m.match(Receipt(D("600.00"), "USD", payer_name="HEAD OFFICE RETAIL"))
    assert result.customer_id == "HQ"
    # 600.00 is also INV-9001's amount, but INV-9001 is not the family's: the three children's invoices, oldest first.
    assert _applied(result) == [("inv-1001", "S1", "100.00", "combination"), ("inv-2001", "S2", "200.00", "combination"),
                                ("inv-3001", "S3", "300.00", "combination")]
    assert result.confidence >= D("0.85")


def test_without_the_hierarchy_the_parent_has_nothing_to_match():
    result = Matcher(INVOICES, CUSTOMERS).match(Receipt(D("600.00"), "USD", payer_name="HEAD OFFICE RETAIL"))
    assert result.allocations == [] and result.reason.startswith("customer HQ has no open invoice")


def test_remittance_references_still_win_over_the_amount():
    m = Matcher(INVOICES, CUSTOMERS, parents=PARENTS)
    result = m.match(Receipt(D("300.00"), "USD", payer_name="Head Office Retail", remittance=(
        RemittanceItem("INV-3001", D("300.00")),)))
    assert _applied(result) == [("inv-3001", "S3", "300.00", "remittance_exact")] and result.confidence == D("1.00")
    # Free-text references naming two children's invoices: one family, so not refused as two customers.
    text = m.match(Receipt(D("300.00"), "USD", payer_name="Head Office Retail", text="INV-1001 INV-2001"))
    assert _applied(text) == [("inv-1001", "S1", "100.00", "reference_exact"), ("inv-2001", "S2", "200.00", "reference_exact")]
    assert text.confidence >= D("0.85")


def test_an_invoice_outside_the_family_is_still_suspect():
    m = Matcher(INVOICES, CUSTOMERS, parents=PARENTS)
    result = m.match(Receipt(D("600.00"), "USD", payer_name="Head Office Retail", text="INV-9001"))
    assert _applied(result) == [("inv-9001", "OTHER", "600.00", "reference_exact")]
    assert result.confidence < D("0.85")  # a third party's invoice: a person looks at it
    # A child's receipt does not reach its sibling's invoices.
    sibling = m.match(Receipt(D("200.00"), "USD", payer_name="Store One"))
    assert sibling.allocations == []


# ------------------------------------------------------------------ ISO 11649 RF references

def test_an_rf_reference_in_remittance_text_names_its_invoice():
    from shared import creditor_reference as rf
    from services.cash_application.domain.matching import creditor_references

    invoices = [OpenInvoice("i1", "INV-2024-0001", "S1", "USD", D("480.00"), date(2024, 3, 1)),
                OpenInvoice("i2", "INV-2024-0007", "S2", "USD", D("480.00"), date(2024, 3, 1))]
    printed = rf.printed(rf.make("INV20240007"))
    refs, rest = creditor_references(f"Payment {printed} thank you 480.00")
    assert refs == [rf.make("INV20240007")] and rest == "Payment thank you 480.00"
    m = Matcher(invoices, CUSTOMERS, parents=PARENTS)
    # Nobody identified, two invoices of the amount: the RF reference alone decides, at full confidence.
    result = m.match(Receipt(D("480.00"), "USD", payer_name="Someone Else Entirely", text=f"Payment {printed}"))
    assert _applied(result) == [("i2", "S2", "480.00", "creditor_reference")] and result.confidence == D("1.00")
    # A structured line (camt CdtrRefInf/Ref) carries it compact.
    line = m.match(Receipt(D("480.00"), "USD", remittance=(RemittanceItem(rf.make("INV20240001"), D("480.00")),)))
    assert _applied(line) == [("i1", "S1", "480.00", "creditor_reference")]


def test_an_rf_reference_with_wrong_check_digits_is_not_trusted_as_one():
    from services.cash_application.domain.matching import creditor_references

    refs, rest = creditor_references("RF19 INV2 0240 007")  # a wrong check digit
    assert refs == [] and rest == "RF19 INV2 0240 007"
    invoices = [OpenInvoice("i2", "INV-2024-0007", "S2", "USD", D("480.00"), date(2024, 3, 1))]
    result = Matcher(invoices, CUSTOMERS).match(Receipt(D("480.00"), "USD", text="RF19INV20240007"))
    assert [a.rule for a in result.allocations] != ["creditor_reference"]
