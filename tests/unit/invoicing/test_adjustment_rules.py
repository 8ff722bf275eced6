"""Adjustments, voids and returns of an invoice, pure: no database, no HTTP."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from shared.contracts import (
    CreditMemoIssued,
    InvoiceAdjusted,
    InvoiceAdjustmentRejected,
    InvoiceAdjustmentRequested,
    InvoiceVoided,
    registry,
)
from services.invoicing.domain.model import Customer, Invoice, InvoicingConflict, InvoicingRuleViolation
from services.invoicing.domain.terms import PaymentTerms

AT = datetime(2024, 3, 1, tzinfo=timezone.utc)
ZERO = Decimal("0")
LIMIT = Decimal("250.00")


def _saved(agg):
    agg.version += len(agg.pending)
    agg.pending.clear()
    return agg


def invoice() -> Invoice:
    customer = Customer("c-1")
    customer.register("Acme", "USD", PaymentTerms(30), Decimal("10000"), date(2024, 1, 1), AT)
    inv = Invoice("i-1")
    # 10 x 3.33 = 33.30; 3 x 100.00 = 300.00; total 333.30
    inv.issue(invoice_number="INV-1", customer=customer, currency="USD", issue_date=date(2024, 3, 1), due_date=None,
              lines=[("Widgets", Decimal("10"), Decimal("3.33")), ("Gadgets", Decimal("3"), Decimal("100.00"))],
              at=AT)
    return _saved(inv)


def adjust(inv, direction="credit", amount="50.00", reason="PRICING_CORRECTION", paid=ZERO, adjustment_id="a-1",
           requested_by="ann", on=date(2024, 3, 5)):
    inv.adjust(adjustment_id=adjustment_id, direction=direction, amount=Decimal(amount), reason_code=reason,
               adjustment_date=on, requested_by=requested_by, note=None, approval_limit=LIMIT,
               paid_amount=paid, at=AT)
    return inv


def violation(fn) -> InvoicingRuleViolation:
    with pytest.raises(InvoicingRuleViolation) as info:
        fn()
    return info.value


def test_adjustment_within_limit_posts_and_moves_the_open_balance():
    inv = adjust(invoice(), "credit", "50.00")
    (event, _), = inv.pending
    assert isinstance(event, InvoiceAdjusted) and event.direction == "credit" and event.approved_by is None
    assert inv.creditable_amount(ZERO) == Decimal("283.30")
    adjust(_saved(inv), "debit", "20.00", "LATE_FEE", adjustment_id="a-2")
    assert inv.creditable_amount(ZERO) == Decimal("303.30")


def test_credit_adjustment_never_exceeds_the_open_balance_after_payments():
    inv = invoice()
    assert violation(lambda: adjust(inv, "credit", "33.31", paid=Decimal("300.00"))).field == "amount"
    adjust(inv, "credit", "33.30", paid=Decimal("300.00"))
    assert inv.creditable_amount(Decimal("300.00")) == ZERO


def test_debit_adjustment_may_exceed_the_open_balance():
    inv = adjust(invoice(), "debit", "200.00", "FREIGHT", paid=Decimal("333.30"))
    assert inv.creditable_amount(Decimal("333.30")) == Decimal("200.00")


@pytest.mark.parametrize("kwargs, field", [
    ({"reason": "NOPE"}, "reason_code"),
    ({"direction": "credit", "reason": "LATE_FEE"}, "reason_code"),  # late fees are debits only
    ({"direction": "debit", "reason": "GOODWILL"}, "reason_code"),
    ({"amount": "0"}, "amount"),
    ({"amount": "-1.00"}, "amount"),
    ({"amount": "1.005"}, "amount"),
    ({"on": date(2024, 2, 28)}, "adjustment_date"),
    ({"direction": "sideways"}, "direction"),
])
def test_adjustment_rules(kwargs, field):
    inv = invoice()
    assert violation(lambda: adjust(inv, **kwargs)).field == field
    assert not inv.pending


def test_above_the_limit_waits_for_a_second_person_then_posts_on_the_approval_date():
    inv = adjust(invoice(), "credit", "300.00")
    (event, _), = inv.pending
    assert isinstance(event, InvoiceAdjustmentRequested)
    assert inv.creditable_amount(ZERO) == Decimal("333.30")  # nothing moves while pending
    _saved(inv)
    assert violation(lambda: inv.approve_adjustment(adjustment_id="a-1", approved_by="ann", approved_on=date(2024, 3, 6),
                                                    paid_amount=ZERO, at=AT)).field == "approved_by"
    inv.approve_adjustment(adjustment_id="a-1", approved_by="bob", approved_on=date(2024, 3, 6), paid_amount=ZERO,
                           at=AT)
    (posted, _), = inv.pending
    assert isinstance(posted, InvoiceAdjusted)
    assert (posted.approved_by, posted.requested_by, posted.adjustment_date) == ("bob", "ann", date(2024, 3, 6))
    assert inv.creditable_amount(ZERO) == Decimal("33.30")
    _saved(inv)
    with pytest.raises(InvoicingConflict):
        inv.approve_adjustment(adjustment_id="a-1", approved_by="carl", approved_on=date(2024, 3, 7),
                               paid_amount=ZERO, at=AT)


def test_approval_rechecks_the_open_balance():
    inv = _saved(adjust(invoice(), "credit", "300.00"))
    # Paid meanwhile: 100 left open, a 300 credit no longer fits.
    assert violation(lambda: inv.approve_adjustment(adjustment_id="a-1", approved_by="bob", approved_on=date(2024, 3, 6),
                                                    paid_amount=Decimal("233.30"), at=AT)).field == "amount"


def test_rejected_adjustment_moves_nothing_and_cannot_be_approved():
    inv = _saved(adjust(invoice(), "debit", "900.00", "FREIGHT"))
    inv.reject_adjustment(adjustment_id="a-1", rejected_by="bob", rejected_on=date(2024, 3, 6), reason="no", at=AT)
    assert isinstance(inv.pending[0][0], InvoiceAdjustmentRejected)
    _saved(inv)
    assert inv.creditable_amount(ZERO) == Decimal("333.30")
    with pytest.raises(InvoicingConflict):
        inv.approve_adjustment(adjustment_id="a-1", approved_by="bob", approved_on=date(2024, 3, 6),
                               paid_amount=ZERO, at=AT)


def test_void_cancels_what_is_open_of_an_unpaid_invoice():
    inv = _saved(adjust(invoice(), "credit", "33.30"))
    inv.void(voided_on=date(2024, 3, 10), reason="billed in error", paid_amount=ZERO, at=AT)
    (event, _), = inv.pending
    assert isinstance(event, InvoiceVoided) and event.amount == Decimal("300.00")
    _saved(inv)
    assert inv.creditable_amount(ZERO) == ZERO
    # Nothing happens to a voided invoice any more.
    for fn in (lambda: inv.void(voided_on=date(2024, 3, 11), reason="again", paid_amount=ZERO, at=AT),
               lambda: adjust(inv, "debit", "5.00", "FREIGHT", adjustment_id="a-9"),
               lambda: inv.issue_credit_memo(credit_memo_id="m-1", amount=Decimal("1.00"), issue_date=date(2024, 3, 12),
                                             reason="x", paid_amount=ZERO, at=AT)):
        with pytest.raises(InvoicingConflict):
            fn()


def test_a_paid_invoice_cannot_be_voided():
    inv = invoice()
    with pytest.raises(InvoicingConflict):
        inv.void(voided_on=date(2024, 3, 10), reason="x", paid_amount=Decimal("0.01"), at=AT)
    assert violation(lambda: inv.void(voided_on=date(2024, 2, 1), reason="x", paid_amount=ZERO, at=AT)).field == "voided_on"


def ret(inv, lines, rma="RMA-1", memo="m-1", paid=ZERO):
    inv.credit_return(credit_memo_id=memo, rma_number=rma, returned=[(n, Decimal(q)) for n, q in lines],
                      issue_date=date(2024, 3, 15), reason="returned", paid_amount=paid, at=AT)
    return inv


def test_return_credits_the_returned_quantities_at_the_invoiced_prices():
    inv = ret(invoice(), [(1, "3"), (2, "1")])
    (memo, _), = inv.pending
    assert isinstance(memo, CreditMemoIssued)
    assert memo.rma_number == "RMA-1"
    assert [(line.line_number, line.quantity, line.amount) for line in memo.lines] == [
        (1, Decimal("3"), Decimal("9.99")), (2, Decimal("1"), Decimal("100.00"))]
    assert memo.amount == Decimal("109.99")


def test_returns_never_credit_a_line_for_more_than_was_invoiced():
    inv = _saved(ret(invoice(), [(1, "3")]))
    _saved(ret(inv, [(1, "3")], rma="RMA-2", memo="m-2"))
    # 4 of 10 left on line 1: the last return takes what is left of its amount (33.30 - 2 x 9.99),
    # so rounding of the parts never credits more than the line was invoiced at.
    err = violation(lambda: ret(inv, [(1, "5")], rma="RMA-3", memo="m-3"))
    assert err.field == "lines.0.quantity" and "at most 4" in str(err)
    ret(inv, [(1, "4")], rma="RMA-3", memo="m-3")
    assert inv.pending[0][0].lines[0].amount == Decimal("13.32")
    _saved(inv)
    assert inv.returned_amount[1] == Decimal("33.30")


@pytest.mark.parametrize("lines, field", [
    ([(3, "1")], "lines.0.line_number"),
    ([(0, "1")], "lines.0.line_number"),
    ([(1, "0")], "lines.0.quantity"),
    ([(1, "1"), (1, "1")], "lines.1.line_number"),
    ([(2, "4")], "lines.0.quantity"),
])
def test_return_rules(lines, field):
    assert violation(lambda: ret(invoice(), lines)).field == field


def test_return_is_refused_beyond_the_open_balance_and_an_rma_counts_once():
    inv = invoice()
    assert violation(lambda: ret(inv, [(2, "3")], paid=Decimal("100.00"))).field == "lines"
    _saved(ret(inv, [(2, "1")]))
    with pytest.raises(InvoicingConflict):
        ret(inv, [(2, "1")], memo="m-2")


def test_credit_memo_stored_before_returns_parses_without_rma_or_lines():
    memo = registry.parse("CreditMemoIssued", 1, {
        "credit_memo_id": "m", "invoice_id": "i", "customer_id": "c", "currency": "USD", "amount": "5.5",
        "issue_date": "2024-03-01", "reason": "r", "dispute_id": None})
    assert memo.rma_number is None and memo.lines == [] and memo.amount == Decimal("5.50")
