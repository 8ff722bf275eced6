"""Credit limits at issue time, pure: the customer's and each parent's limit in force on the issue
date against its family's exposure; no limit is unlimited; an override is recorded with the
levels it exceeded."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from services.invoicing.domain.credit import (
    CUSTOMER, PARENT, CreditBreach, CreditOverride, LimitLevel, breaches, check_override, levels_for)
from services.invoicing.domain.model import CreditLimitRefused, Customer, Invoice
from services.invoicing.domain.terms import PaymentTerms

AT = datetime(2024, 1, 1, tzinfo=timezone.utc)
D = Decimal


def test_exposure_plus_amount_may_reach_the_limit_but_not_pass_it():
    own = [LimitLevel(CUSTOMER, "C", D("1000.00"), D("600.00"))]
    assert breaches(own, D("400.00")) == []
    [b] = breaches(own, D("400.01"))
    assert (b.level, b.customer_id, b.credit_limit, b.exposure, b.amount, b.available) == (
        CUSTOMER, "C", D("1000.00"), D("600.00"), D("400.01"), D("400.00"))


def test_no_limit_is_unlimited_and_a_zero_limit_allows_nothing_on_credit():
    assert breaches([LimitLevel(CUSTOMER, "C", None, D("1e9"))], D("1e9")) == []
    assert [b.customer_id for b in breaches([LimitLevel(CUSTOMER, "C", D("0"), D("0"))], D("0.01"))] == ["C"]


def test_every_level_is_checked_customer_first_then_parents():
    levels = levels_for(["S1", "REG", "HQ"], {"S1": None, "REG": D("5000"), "HQ": D("9000")},
                        {"S1": D("100"), "REG": D("4900"), "HQ": D("8950")})
    assert [(lv.level, lv.customer_id) for lv in levels] == [(CUSTOMER, "S1"), (PARENT, "REG"), (PARENT, "HQ")]
    assert [b.customer_id for b in breaches(levels, D("50"))] == []  # HQ exactly at its limit
    assert [b.customer_id for b in breaches(levels, D("51"))] == ["HQ"]
    assert [b.customer_id for b in breaches(levels, D("150"))] == ["REG", "HQ"]
    # A customer absent from the exposures owes nothing yet.
    assert levels_for(["X"], {"X": D("10")}, {})[0].exposure == D(0)


def test_an_override_names_who_and_why():
    assert check_override(CreditOverride(" cfo ", " seasonal stock ")) == CreditOverride("cfo", "seasonal stock")
    assert check_override(None) is None
    for bad in (CreditOverride(" ", "why"), CreditOverride("cfo", "")):
        with pytest.raises(ValueError):
            check_override(bad)


def _customer(limit: Decimal | None) -> Customer:
    c = Customer("C")
    c.register("Acme", "EUR", PaymentTerms(30), limit, date(2024, 1, 1), AT)
    return c


def _issue(customer: Customer, levels, override=None, amount="500.00") -> Invoice:
    inv = Invoice("I")
    inv.issue(invoice_number="N", customer=customer, currency="EUR", issue_date=date(2024, 3, 1), due_date=None,
              lines=[("Widgets", D("1"), D(amount))], at=AT, credit_levels=levels, credit_override=override)
    return inv


def test_an_invoice_over_a_limit_is_refused_naming_the_level_and_the_figures():
    c = _customer(D("1000.00"))
    with pytest.raises(CreditLimitRefused) as refused:
        _issue(c, [LimitLevel(CUSTOMER, "C", D("1000.00"), D("600.00"))])
    assert refused.value.field == "customer_id"
    assert (refused.value.breach.level, refused.value.breach.exposure, refused.value.breach.amount) == (
        CUSTOMER, D("600.00"), D("500.00"))
    assert "1000.00" in str(refused.value) and "600.00" in str(refused.value)


def test_an_override_lets_it_through_and_is_recorded_with_what_it_exceeded():
    c = _customer(D("1000.00"))
    levels = [LimitLevel(CUSTOMER, "C", D("1000.00"), D("600.00")), LimitLevel(PARENT, "HQ", D("700"), D("650"))]
    inv = _issue(c, levels, CreditOverride("cfo", "year-end order"))
    recorded = inv.pending[0][0].credit_override
    assert (recorded.approved_by, recorded.reason) == ("cfo", "year-end order")
    assert [(e.level, e.customer_id, e.credit_limit, e.exposure) for e in recorded.exceeded] == [
        ("customer", "C", D("1000.00"), D("600.00")), ("parent", "HQ", D("700.00"), D("650.00"))]


def test_within_limits_an_override_is_not_recorded_and_without_levels_there_is_no_check():
    c = _customer(D("1000.00"))
    inv = _issue(c, [LimitLevel(CUSTOMER, "C", D("1000.00"), D("0"))], CreditOverride("cfo", "just in case"))
    assert inv.pending[0][0].credit_override is None
    assert _issue(c, None, amount="5000.00").pending[0][0].credit_override is None  # a re-bill: no check


def test_the_limit_in_force_on_the_issue_date_applies():
    c = _customer(None)
    c.change_profile(effective_on=date(2024, 2, 1), changed_by="ann", at=AT, credit_limit=D("100.00"))
    assert c.profile_as_of(date(2024, 1, 15)).credit_limit is None
    assert c.profile_as_of(date(2024, 3, 1)).credit_limit == D("100.00")


def test_the_refusal_states_every_figure_at_the_currency_minor_unit() -> None:
    breach = CreditBreach(level=CUSTOMER, customer_id="C1", credit_limit=Decimal("100"), exposure=Decimal(0),
                          amount=Decimal("150.5"))
    text = breach.describe("C1", "USD")
    assert ("issuing 150.50 USD would take customer C1's open exposure of 0.00 over its credit limit of 100.00"
            " (available 100.00)") in text
    assert "issuing 1.500 KWD" in CreditBreach(level=CUSTOMER, customer_id="K", credit_limit=Decimal(1),
                                               exposure=Decimal(0), amount=Decimal("1.5")).describe("K", "KWD")
