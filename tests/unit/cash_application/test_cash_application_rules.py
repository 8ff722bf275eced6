"""Pure rules of cash application: a remittance line against an open balance, and the Payment
aggregate's decisions. No database."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from shared.money import MoneyError
from services.cash_application.domain.model import (
    CashApplicationRuleViolation,
    OpenItem,
    Payment,
    RemittanceLine,
    apply_remittance,
)

D = Decimal
AT = datetime(2024, 3, 1, tzinfo=timezone.utc)


def _assert_exact(value: Decimal, decimals: int) -> None:
    assert type(value) is Decimal
    assert value.as_tuple().exponent == -decimals


def test_full_payment_applies_everything_and_leaves_nothing():
    outcome = apply_remittance(D("100.00"), D("100.00"), "USD")
    assert (outcome.applied, outcome.shortfall, outcome.excess) == (D("100.00"), D("0.00"), D("0.00"))


def test_short_payment_applies_what_was_paid_and_names_the_shortfall():
    outcome = apply_remittance(D("72.45"), D("100.00"), "USD")
    assert (outcome.applied, outcome.shortfall, outcome.excess) == (D("72.45"), D("27.55"), D("0.00"))


def test_overpayment_applies_the_open_balance_and_keeps_the_excess():
    outcome = apply_remittance(D("130.01"), D("100.00"), "USD")
    assert (outcome.applied, outcome.shortfall, outcome.excess) == (D("100.00"), D("0.00"), D("30.01"))


def test_closed_item_takes_nothing():
    outcome = apply_remittance(D("5.00"), D("0.00"), "USD")
    assert (outcome.applied, outcome.shortfall, outcome.excess) == (D("0.00"), D("0.00"), D("5.00"))


@pytest.mark.parametrize("currency, decimals, remitted, open_balance", [
    ("USD", 2, "0.10", "0.30"),
    ("USD", 2, "33.33", "100"),
    ("JPY", 0, "3333", "10000"),
    ("BHD", 3, "0.333", "1.000"),
])
def test_results_are_exact_decimals_at_the_minor_unit(currency, decimals, remitted, open_balance):
    outcome = apply_remittance(D(remitted), D(open_balance), currency)
    for value in (outcome.applied, outcome.shortfall, outcome.excess):
        _assert_exact(value, decimals)
    # Exact arithmetic: the parts add back to what went in (0.1 + 0.2 style float errors would not).
    assert outcome.applied + outcome.shortfall == D(open_balance)
    assert outcome.applied + outcome.excess == D(remitted)


@pytest.mark.parametrize("remitted, open_balance", [
    (0.1, D("1.00")),          # float refused, not converted
    (D("1.00"), 0.3),
    (D("10.005"), D("20.00")),  # more decimals than USD has: refused, not rounded
])
def test_floats_and_extra_decimals_are_refused(remitted, open_balance):
    with pytest.raises(MoneyError):
        apply_remittance(remitted, open_balance, "USD")


def _item(invoice_id="inv-1", number="INV-1", balance="100.00", customer="cus-1", currency="USD"):
    return OpenItem(invoice_id=invoice_id, invoice_number=number, customer_id=customer, currency=currency,
                    open_balance=D(balance))


def _receive(amount, lines, items, currency="USD"):
    payment = Payment("pay-1")
    payment.receive(customer_id="cus-1", amount=D(amount), currency=currency, value_date=date(2024, 3, 1),
                    method="wire", reference="W-1", remittance=lines, open_items=items, at=AT)
    return payment, [event for event, _ in payment.pending]


def _types(events):
    return [e.event_type for e in events]


def test_payment_with_short_pay_over_pay_unknown_and_unremitted_cash():
    items = [_item("inv-1", "INV-1", "100.00"), _item("inv-2", "INV-2", "50.00")]
    lines = [RemittanceLine(D("80.00"), invoice_id="inv-1", reason_code="DAMAGED"),
             RemittanceLine(D("60.00"), invoice_number="INV-2"),
             RemittanceLine(D("30.00"), invoice_number="INV-9")]
    payment, events = _receive("200.00", lines, items)
    assert _types(events) == ["PaymentReceived", "PaymentApplied", "ShortPayDetected", "PaymentApplied",
                              "UnappliedCashRecorded"]
    short = events[2]
    assert (short.invoice_id, short.open_amount, short.paid_amount, short.shortfall, short.reason_code) == (
        "inv-1", D("100.00"), D("80.00"), D("20.00"), "DAMAGED")
    assert events[3].amount == D("50.00")
    unapplied = events[4]
    assert unapplied.amount == D("70.00")  # 10.00 over on INV-2 + 30.00 unknown + 30.00 without remittance
    assert unapplied.reason == ("invoice INV-9 not found: 30.00; overpayment of invoice INV-2: 10.00; "
                                "no remittance: 30.00")
    assert payment.applied_amount == D("130.00") and payment.unapplied_amount == D("70.00")


def test_lines_naming_the_same_invoice_are_one_instruction():
    lines = [RemittanceLine(D("40.00"), invoice_id="inv-1"),
             RemittanceLine(D("30.00"), invoice_number="INV-1", reason_code="PRICING")]
    _, events = _receive("70.00", lines, [_item()])
    assert _types(events) == ["PaymentReceived", "PaymentApplied", "ShortPayDetected"]
    assert events[1].amount == D("70.00")
    assert (events[2].shortfall, events[2].reason_code) == (D("30.00"), "PRICING")


@pytest.mark.parametrize("item, reason", [
    (_item(customer="cus-2"), "invoice INV-1 not found"),
    (_item(currency="EUR"), "invoice INV-1 is in EUR, the payment in USD"),
    (_item(balance="0.00"), "invoice INV-1 is closed"),
])
def test_lines_that_name_no_open_item_of_the_customer_apply_nothing(item, reason):
    _, events = _receive("10.00", [RemittanceLine(D("10.00"), invoice_number="INV-1")], [item])
    assert _types(events) == ["PaymentReceived", "UnappliedCashRecorded"]
    assert events[1].reason == reason and events[1].amount == D("10.00")


def test_a_full_payment_records_no_unapplied_cash():
    payment, events = _receive("100.00", [RemittanceLine(D("100.00"), invoice_id="inv-1")], [_item()])
    assert _types(events) == ["PaymentReceived", "PaymentApplied"]
    assert payment.unapplied_amount == D("0.00")


@pytest.mark.parametrize("amount, lines, field", [
    ("100.00", [RemittanceLine(D("60.00"), invoice_id="a"), RemittanceLine(D("40.01"), invoice_id="b")], "remittance"),
    ("0.00", [], "amount"),
    ("10.001", [], "amount"),
    ("10.00", [RemittanceLine(D("-1.00"), invoice_id="a")], "remittance.0.amount"),
    ("10.00", [RemittanceLine(D("1.00"))], "remittance.0"),
])
def test_rule_violations_name_the_field_and_record_nothing(amount, lines, field):
    payment = Payment("pay-1")
    with pytest.raises(CashApplicationRuleViolation) as caught:
        payment.receive(customer_id="cus-1", amount=D(amount), currency="USD", value_date=date(2024, 3, 1),
                        method="check", reference=None, remittance=lines, open_items=[], at=AT)
    assert caught.value.field == field
    assert payment.pending == [] and not payment.exists


def test_aggregate_state_is_rebuilt_from_its_events():
    payment, events = _receive("150.00", [RemittanceLine(D("100.00"), invoice_id="inv-1")], [_item()])
    rebuilt = Payment("pay-1")
    for event in events:
        rebuilt.apply(event)
    assert {a.invoice_id: a.amount for a in rebuilt.applications.values()} == {"inv-1": D("100.00")}
    assert rebuilt.applications == payment.applications
    assert rebuilt.unapplied_amount == D("50.00") and rebuilt.unapplied_reasons == ["no remittance"]


# Property: whatever the amounts, applying never creates or loses a minor unit.
_cents = st.integers(min_value=0, max_value=10**10).map(lambda n: Decimal(n).scaleb(-2))


@given(remitted=_cents, open_balance=_cents)
def test_application_conserves_every_cent(remitted, open_balance):
    outcome = apply_remittance(remitted, open_balance, "USD")
    assert outcome.applied <= remitted and outcome.applied <= max(open_balance, D(0))
    assert outcome.applied + outcome.excess == remitted
    if open_balance > 0:
        assert outcome.applied + outcome.shortfall == open_balance
    assert min(outcome.applied, outcome.shortfall, outcome.excess) >= 0
    assert outcome.shortfall == 0 or outcome.excess == 0  # never short and over at once
    for value in (outcome.applied, outcome.shortfall, outcome.excess):
        _assert_exact(value, 2)


@given(amount=_cents.filter(lambda a: a > 0), parts=st.lists(_cents.filter(lambda a: a > 0), max_size=6),
       balances=st.lists(_cents, min_size=6, max_size=6))
def test_a_payment_is_always_applied_plus_unapplied(amount, parts, balances):
    items = [_item(f"inv-{i}", f"INV-{i}", str(b)) for i, b in enumerate(balances)]
    lines = [RemittanceLine(p, invoice_number=f"INV-{i % 8}") for i, p in enumerate(parts)]  # INV-6/7 unknown
    if sum(parts, D(0)) > amount:
        return
    payment, events = _receive(str(amount), lines, items)
    unapplied = sum((e.amount for e in events if e.event_type == "UnappliedCashRecorded"), D(0))
    assert payment.applied_amount + unapplied == amount
    for application in payment.applications.values():
        assert application.amount <= next(i.open_balance for i in items if i.invoice_id == application.invoice_id)
