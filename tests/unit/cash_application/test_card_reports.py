"""Card processors' payout reports (pure parsing and the Payment rules they drive): each fixture
gives the figures of tests/fixtures/card-reports/manifest.json; what does not add up is refused
with its line."""
from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from services.cash_application.adapters.card_reports import parse_card_report
from services.cash_application.domain.card_payouts import (
    CHARGE, CHARGEBACK, REFUND, mentions_payout, payout_breakdown)
from services.cash_application.domain.matching import Allocation, MatchResult
from services.cash_application.domain.model import CardSettlement, CashApplicationRuleViolation, OpenItem, Payment
from services.cash_application.domain.receipts import FileRejected

FIXTURES = Path(__file__).parents[2] / "fixtures" / "card-reports"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
AT = datetime(2024, 3, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("name", sorted(n for n, e in MANIFEST.items() if "payouts" in e))
def test_each_report_gives_its_figures(name):
    expected = MANIFEST[name]
    report = parse_card_report((FIXTURES / name).read_bytes(), expected["processor"])
    assert {p.payout_id for p in report.payouts} == set(expected["payouts"])
    for payout in report.payouts:
        want = expected["payouts"][payout.payout_id]
        got = payout_breakdown(payout)
        assert payout.currency == want["currency"]
        assert payout.arrival_date.isoformat() == want["arrival_date"]
        assert len(payout.transactions) == want["transactions"]
        for key in ("charges", "fees", "refunds", "chargebacks", "standalone_fees", "net"):
            assert got[key] == Decimal(want[key]), key
        # one bank credit = charges - fees - refunds - chargebacks - fees charged on their own
        assert got["charges"] - got["fees"] - got["refunds"] - got["chargebacks"] - got["standalone_fees"] \
            + got["chargeback_reversals"] + got["other"] == payout.amount


@pytest.mark.parametrize("name", sorted(n for n, e in MANIFEST.items() if "rejected_at" in e))
def test_reports_that_do_not_add_up_are_refused_with_their_line(name):
    with pytest.raises(FileRejected) as exc:
        parse_card_report((FIXTURES / name).read_bytes(), MANIFEST[name]["processor"])
    assert exc.value.where == MANIFEST[name]["rejected_at"]


def test_invoice_numbers_come_from_the_configured_metadata_column():
    content = (FIXTURES / "stripe-payout-reconciliation-po1.csv").read_bytes()
    charges = [t for t in parse_card_report(content, "stripe").payouts[0].transactions if t.kind == CHARGE]
    assert [t.invoice_number for t in charges] == ["INV-5001", "INV-5002", "INV-5003", "INV-5004"]
    other = parse_card_report(content.replace(b"payment_metadata[invoice_number]", b"payment_metadata[erp_doc]"),
                              "stripe", invoice_column="payment_metadata[erp_doc]")
    assert [t.invoice_number for t in other.payouts[0].transactions if t.kind == CHARGE][0] == "INV-5001"
    refund = next(t for t in parse_card_report(content, "stripe").payouts[0].transactions if t.kind == REFUND)
    assert (refund.charge_id, refund.gross, refund.fee) == ("ch_3P1aCcLdgLn0003", Decimal("-80.00"), Decimal("0.00"))


def test_a_dispute_row_is_a_chargeback_with_its_reason_and_fee():
    report = parse_card_report((FIXTURES / "stripe-balance-itemized-po2.csv").read_bytes(), "stripe")
    dispute = next(t for t in report.payouts[0].transactions if t.kind == CHARGEBACK)
    assert (dispute.charge_id, dispute.gross, dispute.fee, dispute.reason) == (
        "ch_3P1aDdLdgLn0004", Decimal("-2500.00"), Decimal("15.00"), "product_not_received")
    assert report.payouts[0].declared_amount == Decimal("1014.64")


@pytest.mark.parametrize("mutate, where, reason", [
    (lambda s: s.replace("1164.90", "1164.91"), "line 2", "is not gross"),
    (lambda s: s.replace("2024-03-14 15:02:11,2024-03-18", "yesterday,2024-03-18"), "line 2", "not a date"),
    (lambda s: s.replace(",1200.00,35.10", ",1E+26,35.10"), "line 2 column gross", "is not an amount"),
    (lambda s: s.replace("automatic_payout_id,", "payout,", 1), "line 1", "automatic_payout_id"),
    (lambda s: s.replace("po_1P2qRsTLdgLn0001,2024-03-18 00:00:00,txn_3P1aEe", ",2024-03-18 00:00:00,txn_3P1aEe"),
     "line 6", "automatic_payout_id is empty"),
])
def test_a_malformed_stripe_row_names_its_line(mutate, where, reason):
    text = (FIXTURES / "stripe-payout-reconciliation-po1.csv").read_text()
    with pytest.raises(FileRejected) as exc:
        parse_card_report(mutate(text).encode(), "stripe")
    assert exc.value.where == where and reason in exc.value.reason


def test_a_payout_that_nets_to_nothing_or_less_is_refused():
    text = (FIXTURES / "stripe-payout-reconciliation-po1.csv").read_text().splitlines()
    only_refund = "\n".join([text[0], text[5]]) + "\n"
    with pytest.raises(FileRejected, match="a payout is a credit"):
        parse_card_report(only_refund.encode(), "stripe")


def test_adyen_costs_are_the_fee_and_the_batch_is_the_payout():
    report = parse_card_report((FIXTURES / "adyen-settlement-detail-batch-118.csv").read_bytes(), "adyen")
    payout = report.payouts[0]
    first = payout.transactions[0]
    assert (first.kind, first.gross, first.fee, first.net, first.invoice_number, first.charge_id) == (
        CHARGE, Decimal("1500.00"), Decimal("11.52"), Decimal("1488.48"), "INV-7001", "8815711450220001")
    refund = payout.transactions[3]
    assert (refund.kind, refund.gross, refund.fee, refund.charge_id, refund.transaction_id) == (
        REFUND, Decimal("-20.00"), Decimal("0.12"), "8815711450220003", "8815711450229903")
    assert payout.declared_amount == Decimal("1959.07")


def test_an_unknown_processor_is_refused():
    with pytest.raises(FileRejected) as exc:
        parse_card_report(b"a,b\n1,2\n", "paypal")
    assert exc.value.where == "processor"


def test_bank_text_names_the_payout_or_the_processor():
    assert mentions_payout("STRIPE PAYMENTS UK LTD", "po_1", "stripe")
    assert mentions_payout("TRANSFER REF PO_1P2QRSTLDGLN0001", "po_1P2qRsTLdgLn0001", "stripe")
    assert not mentions_payout("ACME TOOLS INC INV-5001", "po_1", "stripe")


def _applied_charge(amount="100.00") -> Payment:
    payment = Payment("card-stripe-ch_1")

    result = MatchResult(customer_id="cus-1", customer_rule="remittance_customer", customer_confidence=Decimal(1),
                         allocations=[Allocation(invoice_id="inv-1", customer_id="cus-1", applied=Decimal(amount),
                                                 open_balance=Decimal(amount), rule="remittance_exact",
                                                 confidence=Decimal(1))])
    payment.receive_matched(customer_id="cus-1", amount=Decimal(amount), currency="USD", value_date=date(2024, 3, 1),
                            method="card", reference="ch_1", result=result, auto_apply=True, at=AT,
                            locked={"inv-1": OpenItem("inv-1", "INV-1", "cus-1", "USD", Decimal(amount))})
    payment.version, payment.pending = len(payment.pending), []  # as if saved and loaded again
    return payment


def test_a_chargeback_returns_the_charge_and_names_each_invoice_it_had_paid():
    payment = _applied_charge()
    payment.charge_back(chargeback_id="dp_1", amount=Decimal("100.00"), on=date(2024, 3, 20), processor="stripe",
                        processor_reason="fraudulent", reference="dp_1", at=AT)
    kinds = [type(e).__name__ for e, _ in payment.pending]
    assert kinds == ["PaymentUnapplied", "PaymentReturned", "ChargebackReceived"]
    chargeback = payment.pending[-1][0]
    assert (chargeback.invoice_id, chargeback.amount, chargeback.customer_id) == ("inv-1", Decimal("100.00"), "cus-1")
    assert payment.pending[1][0].reason_code == "CHARGEBACK"


def test_a_partial_chargeback_is_left_to_a_person_and_changes_nothing():
    payment = _applied_charge()
    with pytest.raises(CashApplicationRuleViolation):
        payment.charge_back(chargeback_id="dp_1", amount=Decimal("40.00"), on=date(2024, 3, 20), processor="stripe",
                            processor_reason=None, reference="dp_1", at=AT)
    assert payment.pending == [] and payment.applied_amount == Decimal("100.00")


def test_a_card_refund_reverses_the_application_when_nothing_is_unapplied():
    payment = _applied_charge()
    payment.refund_to_card(refund_id="re_1", amount=Decimal("30.00"), on=date(2024, 3, 5), reason=None, at=AT)
    kinds = [type(e).__name__ for e, _ in payment.pending]
    assert kinds == ["PaymentUnapplied", "PaymentRefunded", "UnappliedCashRecorded"]
    assert payment.pending[0][0].reason == "card_refund"
    assert (payment.applied_amount, payment.refunded_amount, payment.unapplied_amount) == (
        Decimal(0), Decimal("30.00"), Decimal("70.00"))
    with pytest.raises(CashApplicationRuleViolation):
        payment.refund_to_card(refund_id="re_2", amount=Decimal("70.01"), on=date(2024, 3, 5), reason=None, at=AT)


def test_fees_are_recorded_once_each():
    settlement = CardSettlement("stripe:po_1")
    for _ in range(2):
        settlement.record_fee(fee_id="txn_1:fee", processor="stripe", payout_id="po_1", payment_id="p", customer_id="c",
                              amount=Decimal("2.90"), currency="USD", on=date(2024, 3, 1), fee_type="processing",
                              reference="txn_1", at=AT)
    assert len(settlement.pending) == 1 and settlement.pending[0][0].amount == Decimal("2.90")
