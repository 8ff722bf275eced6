"""Returns credit each returned line's share of its tax, pure: tax × returned / invoiced quantity,
half up at the currency's minor unit, the last return of a line taking the remainder, so that
returning everything credits exactly the original tax, never more."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from services.invoicing.domain.model import Customer, Invoice, InvoicingRuleViolation
from services.invoicing.domain.returns import line_taxes, returned_tax
from services.invoicing.domain.terms import PaymentTerms

AT = datetime(2024, 1, 1, tzinfo=timezone.utc)
D = Decimal


def test_a_share_is_rounded_half_up_and_the_last_return_takes_the_remainder():
    # 1.00 of tax over 3 units: 0.33, 0.33, then 0.34, not 0.33 (which would leave 0.01 uncredited).
    credited, returned = D(0), D(0)
    for expected in ("0.33", "0.33", "0.34"):
        tax = returned_tax(line_tax=D("1.00"), invoiced_quantity=D(3), returned_before=returned, quantity=D(1),
                           tax_credited_before=credited, currency="EUR")
        assert tax == D(expected)
        credited, returned = credited + tax, returned + 1
    assert credited == D("1.00")
    # 0.05 over 2: the half rounds up (0.03), the last takes 0.02.
    assert returned_tax(line_tax=D("0.05"), invoiced_quantity=D(2), returned_before=D(0), quantity=D(1),
                        tax_credited_before=D(0), currency="EUR") == D("0.03")
    assert returned_tax(line_tax=D("0.05"), invoiced_quantity=D(2), returned_before=D(1), quantity=D(1),
                        tax_credited_before=D("0.03"), currency="EUR") == D("0.02")


def test_zero_decimal_currencies_and_never_more_than_is_left():
    assert returned_tax(line_tax=D("100"), invoiced_quantity=D(3), returned_before=D(0), quantity=D(2),
                        tax_credited_before=D(0), currency="JPY") == D("67")
    # Rounding up twice cannot over-credit before the last unit: capped at what is left.
    assert returned_tax(line_tax=D("0.05"), invoiced_quantity=D(4), returned_before=D(2), quantity=D(1),
                        tax_credited_before=D("0.04"), currency="EUR") == D("0.01")


@pytest.mark.parametrize("quantities", [(D(1),) * 7, (D("2.5"), D("0.5"), D(4)), (D(7),), (D(3), D(4))])
def test_any_split_of_a_line_credits_exactly_its_tax(quantities):
    credited, returned = D(0), D(0)
    for q in quantities:
        tax = returned_tax(line_tax=D("12.47"), invoiced_quantity=D(7), returned_before=returned, quantity=q,
                           tax_credited_before=credited, currency="USD")
        assert tax >= 0
        credited, returned = credited + tax, returned + q
    assert credited == D("12.47")


def test_line_taxes_as_given_or_the_invoice_tax_split_by_amount():
    assert line_taxes([D("100"), D("50")], [D("20.00"), None], D("20.00"), "EUR") == [D("20.00"), D(0)]
    assert line_taxes([D("100"), D("50")], [None, None], D("10.00"), "EUR") == [D("6.67"), D("3.33")]
    assert sum(line_taxes([D("1"), D("1"), D("1")], [None] * 3, D("0.10"), "EUR")) == D("0.10")
    assert line_taxes([D("100")], [None], D(0), "EUR") == [D(0)]


def _invoice(lines, taxes) -> Invoice:
    c = Customer("C")
    c.register("Acme", "EUR", PaymentTerms(30), None, date(2024, 1, 1), AT)
    inv = Invoice("I")
    inv.issue(invoice_number="N", customer=c, currency="EUR", issue_date=date(2024, 3, 1), due_date=None,
              lines=lines, at=AT, taxes=taxes)
    inv.pending.clear()
    inv.version = 1  # as saved
    return inv


def _return(inv: Invoice, rma: str, returned) -> object:
    inv.credit_return(credit_memo_id=f"cm-{rma}", rma_number=rma, returned=returned, issue_date=date(2024, 3, 5),
                      reason="returned", paid_amount=D(0), at=AT)
    memo = inv.pending[-1][0]
    inv.pending.clear()
    return memo


def test_returns_of_everything_credit_the_whole_invoice_tax_included():
    inv = _invoice([("Chairs", D(3), D("33.33"), None, D("20.00")), ("Lamps", D(1), D("10.00"), None, D("2.00"))],
                   [("VAT", D(20), D("22.00"))])
    first = _return(inv, "R1", [(1, D(1))])
    assert [(line.amount, line.tax_amount) for line in first.lines] == [(D("33.33"), D("6.67"))]
    assert first.amount == D("40.00")
    second = _return(inv, "R2", [(1, D(2)), (2, D(1))])
    assert [(line.amount, line.tax_amount) for line in second.lines] == [(D("66.66"), D("13.33")),
                                                                          (D("10.00"), D("2.00"))]
    assert first.amount + second.amount == inv.total_amount == D("131.99")
    assert inv.creditable_amount(D(0)) == 0


def test_invoice_level_tax_is_split_over_the_lines_by_amount():
    inv = _invoice([("A", D(2), D("50.00")), ("B", D(1), D("50.00"))], [("VAT", D(10), D("15.00"))])
    memo = _return(inv, "R1", [(1, D(1))])
    assert (memo.lines[0].tax_amount, memo.amount) == (D("5.00"), D("55.00"))  # line A's tax is 10.00


def test_lines_taxes_must_agree_with_the_invoice_taxes():
    with pytest.raises(InvoicingRuleViolation) as bad:
        _invoice([("A", D(1), D("100.00"), None, D("20.00"))], [("VAT", D(20), D("19.99"))])
    assert bad.value.field == "taxes"
