"""Account hierarchies in invoicing (pure): who may be whose parent, and credit limits at every level."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from shared.contracts import CustomerParentChanged
from services.invoicing.domain.hierarchy import (
    MAX_DEPTH, CreditLevel, HierarchyViolation, available_credit, check_parent)
from services.invoicing.domain.model import Customer, InvoicingRuleViolation
from services.invoicing.domain.terms import PaymentTerms

AT = datetime(2024, 3, 1, tzinfo=timezone.utc)


def _check(**overrides):
    args = dict(customer_id="S1", customer_currency="USD", parent_id="HQ", parent_currency="USD",
                parent_ancestors=[], customer_depth_below=0)
    check_parent(**{**args, **overrides})


@pytest.mark.parametrize("overrides, message", [
    ({"parent_id": "S1"}, "its own parent"),
    ({"parent_currency": None}, "not registered"),
    ({"parent_ancestors": ["REGION", "S1"]}, "cycle"),
    ({"parent_currency": "EUR"}, "bills in EUR"),
    ({"parent_ancestors": ["A", "B", "C"], "customer_depth_below": 1}, f"at most {MAX_DEPTH}"),
])
def test_a_parent_that_would_break_the_hierarchy_is_refused_naming_the_field(overrides, message):
    with pytest.raises(HierarchyViolation, match=message) as caught:
        _check(**overrides)
    assert caught.value.field == "parent_customer_id"


def test_a_cycle_names_the_chain():
    with pytest.raises(HierarchyViolation, match="S1 > REGION > HQ"):
        _check(parent_ancestors=["REGION", "S1"])


def test_a_store_under_a_region_under_a_head_office_is_fine():
    _check(parent_ancestors=["HQ2"], customer_depth_below=0)
    _check(parent_ancestors=["A", "B"], customer_depth_below=1)  # exactly MAX_DEPTH levels


def test_available_credit_is_the_least_headroom_of_every_level():
    own = CreditLevel("S1", Decimal("1000.00"), Decimal("200.00"))
    parent = CreditLevel("HQ", Decimal("5000.00"), Decimal("4900.00"))  # the family's exposure, S1's included
    assert available_credit([own]) == Decimal("800.00")
    assert available_credit([own, parent]) == Decimal("100.00")
    assert available_credit([own, CreditLevel("HQ", Decimal("5000.00"), Decimal("5200.00"))]) == Decimal("-200.00")


def _customer() -> Customer:
    c = Customer("S1")
    c.register("Store One", "USD", PaymentTerms(30), Decimal("1000.00"), date(2024, 1, 1), AT)
    c.version, c.pending = 1, []
    return c


def test_setting_clearing_and_repeating_a_parent():
    c = _customer()
    c.change_parent(parent_customer_id="HQ", effective_on=date(2024, 2, 1), changed_by="ana", at=AT,
                    parent_currency="USD", parent_ancestors=[])
    event = c.pending[-1][0]
    assert isinstance(event, CustomerParentChanged)
    assert (event.parent_customer_id, event.previous_parent_customer_id) == ("HQ", None)
    c.change_parent(parent_customer_id="HQ", effective_on=date(2024, 2, 2), changed_by="ana", at=AT,
                    parent_currency="USD")
    assert len(c.pending) == 1  # already its parent: nothing new
    c.change_parent(parent_customer_id=None, effective_on=date(2024, 3, 1), changed_by="ana", at=AT)
    assert (c.pending[-1][0].parent_customer_id, c.pending[-1][0].previous_parent_customer_id) == (None, "HQ")
    assert c.parent_customer_id is None


def test_a_refused_parent_becomes_a_rule_violation_and_records_nothing():
    c = _customer()
    with pytest.raises(InvoicingRuleViolation) as caught:
        c.change_parent(parent_customer_id="HQ", effective_on=date(2024, 2, 1), changed_by="ana", at=AT,
                        parent_currency="EUR")
    assert caught.value.field == "parent_customer_id" and c.pending == []
    with pytest.raises(InvoicingRuleViolation, match="before the customer was registered"):
        c.change_parent(parent_customer_id="HQ", effective_on=date(2023, 12, 1), changed_by="ana", at=AT,
                        parent_currency="USD")
