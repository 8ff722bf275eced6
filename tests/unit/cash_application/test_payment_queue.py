"""The Payment aggregate's bank-receipt and work-queue rules: applying a matcher's proposal only
against locked balances, manual application limits, reversal and return."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal as D

import pytest

from services.cash_application.domain.matching import Allocation, MatchResult
from services.cash_application.domain.model import (
    UNIDENTIFIED_CUSTOMER, CashApplicationRuleViolation, ManualApplication, OpenItem, Payment)

AT = datetime(2024, 3, 10, tzinfo=timezone.utc)
DAY = date(2024, 3, 10)


def _item(invoice_id: str, balance: str, customer: str = "ACME") -> OpenItem:
    return OpenItem(invoice_id, invoice_id.upper(), customer, "USD", D(balance))


def _result(*allocations: Allocation, reason: str = "") -> MatchResult:
    return MatchResult(customer_id="ACME", customer_rule="payer_name", customer_confidence=D("0.97"),
                       allocations=list(allocations), reason=reason)


def _alloc(invoice_id: str, applied: str, open_balance: str, write_off: str = "0", short: str = "0",
           confidence: str = "0.97") -> Allocation:
    return Allocation(invoice_id, "ACME", D(applied), D(open_balance), "reference_normalised", D(confidence),
                      write_off=D(write_off), short_pay=D(short), reason_code="DAMAGED")


def _received(amount: str, result: MatchResult, locked: dict[str, OpenItem], auto: bool = True) -> Payment:
    payment = Payment("p-1")
    payment.receive_matched(customer_id="ACME", amount=D(amount), currency="USD", value_date=DAY, method="wire",
                            reference="B1", result=result, auto_apply=auto, at=AT, locked=locked)
    return payment


def _types(payment: Payment) -> list[str]:
    return [e.event_type for e, _ in payment.pending]


def test_a_proposal_is_applied_with_write_off_short_pay_and_the_rest_unapplied():
    locked = {"a": _item("a", "100.00"), "b": _item("b", "300.00")}
    payment = _received("400.00", _result(_alloc("a", "97.00", "100.00", write_off="3.00"),
                                          _alloc("b", "250.00", "300.00", short="50.00")), locked)
    assert _types(payment) == ["PaymentReceived", "PaymentApplied", "SmallBalanceWrittenOff", "PaymentApplied",
                               "ShortPayDetected", "UnappliedCashRecorded"]
    applied = [e for e, _ in payment.pending if e.event_type == "PaymentApplied"]
    assert [(e.invoice_id, e.amount, e.rule, e.confidence) for e in applied] == [
        ("a", D("97.00"), "reference_normalised", D("0.97")), ("b", D("250.00"), "reference_normalised", D("0.97"))]
    short = next(e for e, _ in payment.pending if e.event_type == "ShortPayDetected")
    assert (short.open_amount, short.paid_amount, short.shortfall, short.reason_code) == (
        D("300.00"), D("250.00"), D("50.00"), "DAMAGED")
    assert payment.unapplied_amount == D("53.00")
    assert (locked["a"].open_balance, locked["b"].open_balance) == (D("0.00"), D("50.00"))


def test_a_proposal_is_not_applied_below_the_threshold_or_when_a_balance_moved():
    below = _received("100.00", _result(_alloc("a", "100.00", "100.00", confidence="0.70")),
                      {"a": _item("a", "100.00")}, auto=False)
    assert _types(below) == ["PaymentReceived", "UnappliedCashRecorded"]
    assert "below the auto-apply threshold" in below.pending[-1][0].reason
    moved = _received("100.00", _result(_alloc("a", "100.00", "100.00")), {"a": _item("a", "40.00")})
    assert _types(moved) == ["PaymentReceived", "UnappliedCashRecorded"]
    assert moved.pending[-1][0].reason == "an invoice's open balance changed while matching"
    unlocked = _received("100.00", _result(_alloc("a", "100.00", "100.00")), {})
    assert unlocked.applied_amount == 0


def _unapplied_payment() -> Payment:
    payment = _received("100.00", _result(reason="unidentified receipt"), {})
    payment.version, payment.pending = 2, []
    return payment


def test_manual_application_limits_name_the_field():
    items = {"a": _item("a", "60.00"), "b": _item("b", "80.00"), "e": OpenItem("e", "E", "ACME", "EUR", D("5.00"))}
    for applications, field in (
        ([ManualApplication("a", D("61.00"))], "applications.0.amount"),
        ([ManualApplication("zz", D("1.00"))], "applications.0.invoice_id"),
        ([ManualApplication("e", D("1.00"))], "applications.0.invoice_id"),
        ([ManualApplication("a", D("60.00")), ManualApplication("b", D("40.01"))], "applications"),
        ([ManualApplication("a", D("0.001"))], "applications.0.amount"),
        ([], "applications"),
    ):
        payment = _unapplied_payment()
        with pytest.raises(CashApplicationRuleViolation) as caught:
            payment.apply_manually(applications, dict(items), DAY, AT)
        assert caught.value.field == field and payment.pending == []
    payment = _unapplied_payment()
    payment.apply_manually([ManualApplication("a", D("60.00")), ManualApplication("b", D("40.00"))], dict(items), DAY, AT)
    assert [(e.rule, e.confidence, e.amount) for e, _ in payment.pending] == [
        ("manual", D("1"), D("60.00")), ("manual", D("1"), D("40.00"))]
    assert payment.unapplied_amount == 0


def test_reverse_then_reapply_gets_a_new_application_id_and_return_reverses_all():
    payment = _unapplied_payment()
    items = {"a": _item("a", "100.00")}
    payment.apply_manually([ManualApplication("a", D("100.00"))], dict(items), DAY, AT)
    (first,) = payment.applications
    payment.reverse(None, "manual_reversal", DAY, AT)
    assert payment.applications == {} and payment.unapplied_amount == D("100.00")
    with pytest.raises(CashApplicationRuleViolation):
        payment.reverse(["nope"], "manual_reversal", DAY, AT)
    payment.apply_manually([ManualApplication("a", D("70.00"))], dict(items), DAY, AT)
    (second,) = payment.applications
    assert second != first and second.startswith(first)
    payment.return_payment("R01", "NSF", DAY, AT)
    assert [e.event_type for e, _ in payment.pending][-2:] == ["PaymentUnapplied", "PaymentReturned"]
    assert payment.pending[-2][0].reason == "payment_returned" and payment.returned
    with pytest.raises(CashApplicationRuleViolation):
        payment.return_payment("R01", None, DAY, AT)
    with pytest.raises(CashApplicationRuleViolation):
        payment.apply_manually([ManualApplication("a", D("1.00"))], dict(items), DAY, AT)


def test_a_proposal_exceeding_the_payment_is_not_applied():
    payment = _received("50.00", _result(_alloc("a", "60.00", "60.00")), {"a": _item("a", "60.00")})
    assert payment.applied_amount == 0 and payment.pending[-1][0].reason == "the proposed applications exceed the payment"


def _with_write_off() -> tuple[Payment, dict[str, OpenItem]]:
    """A receipt of 347.00: 97.00 closes a (3.00 written off), 250.00 pays b in full."""
    locked = {"a": _item("a", "100.00"), "b": _item("b", "250.00")}
    payment = _received("347.00", _result(_alloc("a", "97.00", "100.00", write_off="3.00"),
                                          _alloc("b", "250.00", "250.00")), locked)
    return payment, locked


def test_a_write_off_is_named_after_its_application_and_reversed_right_after_it():
    payment, _ = _with_write_off()
    written_off = next(e for e, _ in payment.pending if e.event_type == "SmallBalanceWrittenOff")
    assert written_off.adjustment_id == "p-1:a:wo"  # "<application id>:wo"; the first application is "p-1:a"
    assert set(payment.write_offs) == {"p-1:a"} and payment.written_off_amount == D("3.00")
    already = len(payment.pending)

    # Reversing b (no write-off) reverses nothing else; reversing a reverses its write-off right after it.
    assert payment.reverse(["p-1:b"], "manual_reversal", DAY, AT) == {"b": D("250.00")}
    assert payment.reverse(["p-1:a"], "manual_reversal", DAY, AT) == {"a": D("100.00")}
    new = [e for e, _ in payment.pending[already:]]
    assert [e.event_type for e in new] == ["PaymentUnapplied", "PaymentUnapplied", "SmallBalanceWriteOffReversed"]
    reversed_ = new[2]
    assert (reversed_.adjustment_id, reversed_.payment_id, reversed_.invoice_id, reversed_.customer_id,
            reversed_.amount, reversed_.currency, reversed_.reversed_on, reversed_.reason) == (
        "p-1:a:wo", "p-1", "a", "ACME", D("3.00"), "USD", DAY, "manual_reversal")
    assert payment.write_offs == {} and payment.written_off_amount == 0

    # Applied again by hand to a, then reversed: no write-off is left to reverse a second time.
    payment.apply_manually([ManualApplication("a", D("100.00"))], {"a": _item("a", "100.00")}, DAY, AT)
    (again,) = payment.applications
    assert again != "p-1:a"  # so a write-off it justified would be named differently ("p-1:a:2:wo")
    payment.reverse(None, "reapplied", DAY, AT)
    assert [e.event_type for e, _ in payment.pending][-1] == "PaymentUnapplied"


def test_a_returned_payment_reverses_its_write_offs_with_its_applications():
    payment, _ = _with_write_off()
    payment.return_payment("R01", "NSF", DAY, AT)
    tail = [(e.event_type, getattr(e, "invoice_id", None), getattr(e, "reason", None))
            for e, _ in payment.pending][-4:]
    assert tail == [("PaymentUnapplied", "a", "payment_returned"), ("SmallBalanceWriteOffReversed", "a", "payment_returned"),
                    ("PaymentUnapplied", "b", "payment_returned"), ("PaymentReturned", None, "NSF")]


def test_write_offs_in_force_are_rebuilt_from_the_stream():
    payment, _ = _with_write_off()
    replayed = Payment("p-1")
    for e, _ in payment.pending:
        replayed.apply(e)
    assert replayed.write_offs == payment.write_offs and replayed.written_off_amount == D("3.00")
    payment.reverse(["p-1:a"], "manual_reversal", DAY, AT)
    replayed = Payment("p-1")
    for e, _ in payment.pending:
        replayed.apply(e)
    assert replayed.write_offs == {} and set(replayed.applications) == {"p-1:b"}


def test_an_unidentified_receipt_takes_the_customer_of_the_first_invoice_applied():
    payment = Payment("p-2")
    payment.receive_matched(customer_id=UNIDENTIFIED_CUSTOMER, amount=D("100.00"), currency="USD", value_date=DAY,
                            method="wire", reference="B2", result=MatchResult(None, None, D("0"), reason="unidentified receipt"),
                            auto_apply=False, at=AT, locked={})
    received = payment.pending[0][0]
    assert (received.event_type, received.customer_id, payment.customer_id) == ("PaymentReceived", "", "")
    payment.apply_manually([ManualApplication("a", D("60.00")), ManualApplication("g", D("40.00"))],
                           {"a": _item("a", "60.00", "GLOBEX"), "g": _item("g", "50.00", "ACME")}, DAY, AT)
    assert payment.customer_id == "GLOBEX"
    payment.return_payment("R01", None, DAY, AT)
    assert payment.pending[-1][0].customer_id == "GLOBEX"
