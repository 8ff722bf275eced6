"""Deductions as retailers take them, pure: code mapping, reclassification, assignment and the
validity decision (valid credited, invalid re-billed, partial)."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from services.disputes.domain.deduction_codes import CustomerDeductionCodes
from services.disputes.domain.model import Dispute, DisputeAlreadyResolved, DisputeRuleViolation
from services.disputes.domain.reason_codes import mapped_reason_code, team_for

AT = datetime(2024, 3, 1, tzinfo=timezone.utc)
ON = date(2024, 3, 10)


def deduction(amount="120.00", code="UNSPECIFIED") -> Dispute:
    d = Dispute("d-1")
    d.open_deduction(invoice_id="inv-1", customer_id="RETAIL", payment_id="p-1", currency="USD",
                     shortfall=Decimal(amount), reason_code=code, opened_on=ON, at=AT,
                     customer_reason_code="S01")
    d.version, d.pending = 1, []
    return d


def field(fn) -> str | None:
    with pytest.raises(DisputeRuleViolation) as info:
        fn()
    return info.value.field


def test_mapping_takes_the_customers_code_then_the_catalogue_then_unspecified():
    mapping = {"S01": "QUANTITY", "PRC": "PRICING"}
    assert mapped_reason_code(" s01 ", mapping) == "QUANTITY"
    assert mapped_reason_code("DAMAGED", mapping) == "DAMAGED"
    assert mapped_reason_code("ZZ9", mapping) == "UNSPECIFIED"
    assert mapped_reason_code(None, mapping) == "UNSPECIFIED"


def test_customer_codes_mapping_rules():
    codes = CustomerDeductionCodes("RETAIL")
    codes.set_mapping(mappings=[("s01", "QUANTITY"), ("PRC", "PRICING")], on=ON, by="ann", at=AT)
    assert codes.mapping == {"S01": "QUANTITY", "PRC": "PRICING"}
    assert field(lambda: codes.set_mapping(mappings=[("X", "NOPE")], on=ON, by="a", at=AT)) == "mappings.0.reason_code"
    assert field(lambda: codes.set_mapping(mappings=[("X", "UNSPECIFIED")], on=ON, by="a", at=AT)) == "mappings.0.reason_code"
    assert field(lambda: codes.set_mapping(mappings=[("X", "TAX"), (" x", "TAX")], on=ON, by="a", at=AT)) == \
        "mappings.1.customer_reason_code"
    assert field(lambda: codes.set_mapping(mappings=[(" ", "TAX")], on=ON, by="a", at=AT)) == \
        "mappings.0.customer_reason_code"


def test_reclassify_moves_the_reason_and_the_default_team_stays_until_assigned():
    d = deduction()
    assert d.team == team_for("UNSPECIFIED") == "customer_service"
    d.reclassify(reason_code="PRICING", on=date(2024, 3, 12), by="ann", at=AT)
    (e, _), = d.pending
    assert (e.event_type, e.from_reason_code, e.to_reason_code) == ("DisputeReclassified", "UNSPECIFIED", "PRICING")
    assert field(lambda: d.reclassify(reason_code="PRICING", on=ON, by="ann", at=AT)) == "reason_code"
    assert field(lambda: d.reclassify(reason_code="UNSPECIFIED", on=ON, by="ann", at=AT)) == "reason_code"
    assert field(lambda: d.reclassify(reason_code="TAX", on=date(2024, 3, 9), by="ann", at=AT)) == "reclassified_on"


def test_assign_names_owner_and_team():
    d = deduction()
    d.assign(owner="sam", team="sales", on=ON, by="lead", at=AT)
    assert (d.owner, d.team) == ("sam", "sales")
    assert field(lambda: d.assign(owner="sam", team="sales", on=ON, by="lead", at=AT)) == "owner"
    assert field(lambda: d.assign(owner="sam", team="marketing", on=ON, by="lead", at=AT)) == "team"


@pytest.mark.parametrize("valid, invalid, resolution, credit, rebill", [
    ("120.00", "0", "valid", Decimal("120.00"), None),
    ("0", "120.00", "invalid", Decimal("0.00"), Decimal("120.00")),
    ("20.00", "100.00", "partial", Decimal("20.00"), Decimal("100.00")),
])
def test_validity_decision(valid, invalid, resolution, credit, rebill):
    d = deduction()
    d.decide_validity(valid_amount=Decimal(valid), invalid_amount=Decimal(invalid), decided_on=date(2024, 3, 20), at=AT)
    (e, _), = d.pending
    assert (e.event_type, e.resolution, e.credit_amount, e.rebill_amount) == ("DisputeResolved", resolution, credit,
                                                                              rebill)
    with pytest.raises(DisputeAlreadyResolved):
        d.decide_validity(valid_amount=Decimal(valid), invalid_amount=Decimal(invalid), decided_on=ON, at=AT)


@pytest.mark.parametrize("valid, invalid, on, name", [
    ("20.00", "90.00", date(2024, 3, 20), "invalid_amount"),   # does not make 120.00
    ("-1.00", "121.00", date(2024, 3, 20), "valid_amount"),
    ("0.005", "119.995", date(2024, 3, 20), "valid_amount"),
    ("120.00", "0", date(2024, 3, 9), "decided_on"),
])
def test_validity_decision_rules(valid, invalid, on, name):
    d = deduction()
    assert field(lambda: d.decide_validity(valid_amount=Decimal(valid), invalid_amount=Decimal(invalid),
                                           decided_on=on, at=AT)) == name


def test_a_dispute_is_resolved_not_decided():
    from services.disputes.domain.model import InvoiceReference
    d = Dispute("d-2")
    d.open(invoice=InvoiceReference("inv-1", "C", "USD", Decimal("500.00"), date(2024, 3, 1)), amount=Decimal("5.00"),
           reason_code="TAX", opened_on=ON, description=None, already_disputed=Decimal(0), at=AT)
    assert field(lambda: d.decide_validity(valid_amount=Decimal("5.00"), invalid_amount=Decimal(0), decided_on=ON,
                                           at=AT)) == "dispute_id"
