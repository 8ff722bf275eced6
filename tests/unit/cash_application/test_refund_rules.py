"""Refunds of a payment's unapplied cash, pure: no database, no HTTP."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal as D

import pytest

from services.cash_application.domain.model import (
    UNIDENTIFIED_CUSTOMER, CashApplicationRuleViolation, ManualApplication, OpenItem, Payment)

AT = datetime(2024, 3, 10, tzinfo=timezone.utc)
DAY = date(2024, 3, 10)


def _payment(amount="500.00", customer="ACME", applied="300.00") -> Payment:
    payment = Payment("p-1")
    payment.receive(customer_id=customer, amount=D(amount), currency="USD", value_date=DAY, method="wire",
                    reference="W1", remittance=(), open_items=(), at=AT)
    if applied != "0":
        payment.apply_manually([ManualApplication("inv-1", D(applied))],
                               {"inv-1": OpenItem("inv-1", "INV-1", customer, "USD", D("1000.00"))}, DAY, AT)
    payment.version += len(payment.pending)
    payment.pending.clear()
    return payment


def _refund(payment, amount, refund_id="r-1", method="ach", on=DAY):
    payment.refund(refund_id=refund_id, amount=D(amount), method=method, reference="ACH-1", on=on, reason=None,
                   at=AT)


def _field(fn) -> str | None:
    with pytest.raises(CashApplicationRuleViolation) as info:
        fn()
    return info.value.field


def test_refund_takes_unapplied_cash_and_it_cannot_be_applied_any_more():
    payment = _payment()
    _refund(payment, "150.00")
    (event, _), = payment.pending
    assert (event.event_type, event.amount, event.method, event.customer_id) == ("PaymentRefunded", D("150.00"),
                                                                                 "ach", "ACME")
    assert payment.unapplied_amount == D("50.00")
    assert _field(lambda: payment.apply_manually(
        [ManualApplication("inv-1", D("50.01"))],
        {"inv-1": OpenItem("inv-1", "INV-1", "ACME", "USD", D("700.00"))}, DAY, AT)) is not None


@pytest.mark.parametrize("amount, method, on, field", [
    ("200.01", "ach", DAY, "amount"),   # more than the 200.00 unapplied
    ("0", "ach", DAY, "amount"),
    ("1.001", "ach", DAY, "amount"),
    ("10.00", "bitcoin", DAY, "method"),
    ("10.00", "ach", date(2024, 3, 9), "refunded_on"),
])
def test_refund_rules(amount, method, on, field):
    payment = _payment()
    assert _field(lambda: _refund(payment, amount, method=method, on=on)) == field
    assert not payment.pending


def test_all_unapplied_refunded_then_nothing_more():
    payment = _payment(applied="0")
    _refund(payment, "500.00")
    assert payment.unapplied_amount == D("0.00")
    assert _field(lambda: _refund(payment, "0.01", refund_id="r-2")) == "amount"


def test_unidentified_payer_cannot_be_refunded():
    payment = _payment(customer=UNIDENTIFIED_CUSTOMER, applied="0")
    assert _field(lambda: _refund(payment, "1.00")) == "payment_id"
