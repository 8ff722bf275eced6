"""Dispute rules, pure: no database, no HTTP."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from services.disputes.domain.model import (
    Dispute,
    DisputeAlreadyResolved,
    DisputeRuleViolation,
    InvoiceReference,
    deduction_id,
    resolution_credit,
)
from services.disputes.domain.reason_codes import CATALOGUE, deduction_reason_code

AT = datetime(2024, 3, 1, tzinfo=timezone.utc)
INVOICE = InvoiceReference(invoice_id="inv-1", customer_id="cus-1", currency="USD",
                           total_amount=Decimal("1000.00"), issue_date=date(2024, 2, 1))


def opened(amount="250.00", already_disputed="0") -> Dispute:
    dispute = Dispute("d-1")
    dispute.open(invoice=INVOICE, amount=Decimal(amount), reason_code="PRICING", opened_on=date(2024, 3, 1),
                 description=None, already_disputed=Decimal(already_disputed), at=AT)
    return dispute


def saved(dispute: Dispute) -> Dispute:
    """As if stored and loaded again: the pending events become the stream."""
    dispute.version += len(dispute.pending)
    dispute.pending.clear()
    return dispute


def rule_field(fn) -> str | None:
    with pytest.raises(DisputeRuleViolation) as info:
        fn()
    return info.value.field


def test_open_emits_dispute_opened_with_invoice_facts():
    dispute = opened()
    (event, _), = dispute.pending
    assert event.event_type == "DisputeOpened"
    assert (event.customer_id, event.currency, event.amount) == ("cus-1", "USD", Decimal("250.00"))
    assert dispute.status == "open" and dispute.kind == "dispute"


@pytest.mark.parametrize("amount, already, field", [
    ("1000.01", "0", "amount"),       # more than the invoice
    ("600.00", "400.01", "amount"),   # more than is left after other disputes
    ("0", "0", "amount"),
    ("-1.00", "0", "amount"),
    ("1.001", "0", "amount"),         # finer than a cent
])
def test_open_amount_rules(amount, already, field):
    assert rule_field(lambda: opened(amount, already)) == field


def test_open_whole_invoice_amount_is_allowed():
    assert opened("1000.00").amount == Decimal("1000.00")
    assert opened("600.00", "400.00").amount == Decimal("600.00")


@pytest.mark.parametrize("code", ["UNSPECIFIED", "NOPE", ""])
def test_open_needs_a_selectable_reason_code(code):
    dispute = Dispute("d-1")
    assert rule_field(lambda: dispute.open(invoice=INVOICE, amount=Decimal("1.00"), reason_code=code,
                                           opened_on=date(2024, 3, 1), description=None,
                                           already_disputed=Decimal(0), at=AT)) == "reason_code"


def test_open_before_the_invoice_is_refused():
    dispute = Dispute("d-1")
    assert rule_field(lambda: dispute.open(invoice=INVOICE, amount=Decimal("1.00"), reason_code="TAX",
                                           opened_on=date(2024, 1, 31), description=None,
                                           already_disputed=Decimal(0), at=AT)) == "opened_on"


@pytest.mark.parametrize("resolution, asked, granted", [
    ("credit", None, "250.00"),
    ("credit", "250.00", "250.00"),
    ("partial_credit", "100.50", "100.50"),
    ("rejected", None, "0"),
    ("rejected", "0.00", "0"),
])
def test_resolution_grants_the_credit(resolution, asked, granted):
    dispute = saved(opened())
    dispute.resolve(resolution=resolution, credit_amount=None if asked is None else Decimal(asked),
                    resolved_on=date(2024, 3, 10), at=AT)
    (event, _), = dispute.pending
    assert event.event_type == "DisputeResolved"
    assert event.credit_amount == Decimal(granted)
    assert event.to_payload()["credit_amount"] == format(Decimal(granted).quantize(Decimal("0.01")), "f")
    assert dispute.status == "resolved"


@pytest.mark.parametrize("resolution, asked", [
    ("credit", "100.00"),           # a full credit is the disputed amount
    ("partial_credit", "250.01"),   # more than disputed
    ("partial_credit", "250.00"),   # that is a full credit
    ("partial_credit", "0"),
    ("partial_credit", None),
    ("rejected", "1.00"),
])
def test_resolution_credit_rules(resolution, asked):
    with pytest.raises(DisputeRuleViolation) as info:
        resolution_credit(resolution, None if asked is None else Decimal(asked), Decimal("250.00"))
    assert info.value.field == "credit_amount"


def test_resolving_twice_is_a_conflict_and_emits_nothing():
    dispute = opened()
    dispute.resolve(resolution="rejected", credit_amount=None, resolved_on=date(2024, 3, 10), at=AT)
    saved(dispute)
    with pytest.raises(DisputeAlreadyResolved):
        dispute.resolve(resolution="credit", credit_amount=None, resolved_on=date(2024, 3, 11), at=AT)
    assert dispute.pending == []


def test_resolution_cannot_predate_opening():
    dispute = opened()
    assert rule_field(lambda: dispute.resolve(resolution="credit", credit_amount=None,
                                              resolved_on=date(2024, 2, 28), at=AT)) == "resolved_on"


def test_deduction_opens_once_and_its_id_is_deterministic():
    assert deduction_id("pay-1", "inv-1") == deduction_id("pay-1", "inv-1") != deduction_id("pay-1", "inv-2")
    dispute = Dispute(deduction_id("pay-1", "inv-1"))
    kwargs = dict(invoice_id="inv-1", customer_id="cus-1", payment_id="pay-1", currency="USD",
                  shortfall=Decimal("40.00"), reason_code="UNSPECIFIED", opened_on=date(2024, 3, 5), at=AT)
    dispute.open_deduction(**kwargs)
    dispute.open_deduction(**kwargs)
    assert [e.event_type for e, _ in dispute.pending] == ["DeductionOpened"]
    assert dispute.kind == "deduction" and dispute.amount == Decimal("40.00")


def test_deduction_reason_codes_map_to_the_catalogue():
    assert deduction_reason_code(None) == "UNSPECIFIED"
    assert deduction_reason_code("  ") == "UNSPECIFIED"
    assert deduction_reason_code("damaged") == "DAMAGED"
    assert deduction_reason_code("ZZ-99") == "UNSPECIFIED"
    assert {r.code for r in CATALOGUE} >= {"PRICING", "QUANTITY", "DAMAGED", "NOT_RECEIVED", "DUPLICATE_BILLING",
                                           "PROMOTION", "TAX", "OTHER", "UNSPECIFIED"}


def test_only_an_open_deduction_is_withdrawn_and_never_before_it_opened():
    from datetime import date, datetime, timezone

    from services.disputes.domain.model import Dispute

    at = datetime(2024, 3, 1, tzinfo=timezone.utc)
    deduction = Dispute("d-1")
    deduction.open_deduction(invoice_id="inv-1", customer_id="c", payment_id="p", currency="USD",
                             shortfall=Decimal("40.00"), reason_code="UNSPECIFIED", opened_on=date(2024, 3, 20), at=at)
    # a return dated before the deduction opened (value dates) closes it on its opening day
    assert deduction.withdraw(resolved_on=date(2024, 3, 18), at=at) is True
    (resolved, _), = deduction.pending[-1:]
    assert (resolved.resolution, resolved.credit_amount, resolved.resolved_on) == (
        "withdrawn", Decimal("0.00"), date(2024, 3, 20))
    deduction.apply(resolved)
    assert deduction.withdraw(resolved_on=date(2024, 3, 30), at=at) is False  # already resolved
    assert Dispute("never-opened").withdraw(resolved_on=date(2024, 3, 30), at=at) is False


def test_a_dispute_may_name_one_of_the_invoices_lines():
    dispute = Dispute("d-line")
    dispute.open(invoice=INVOICE, amount=Decimal("10.00"), reason_code="DAMAGED", opened_on=date(2024, 3, 1),
                 description=None, already_disputed=Decimal(0), at=AT, line_number=2, line_count=2)
    assert dispute.pending[0][0].line_number == 2 and dispute.line_number == 2
    for line, count in ((3, 2), (1, 0), (0, 2)):
        assert rule_field(lambda: Dispute("d-bad").open(
            invoice=INVOICE, amount=Decimal("10.00"), reason_code="DAMAGED", opened_on=date(2024, 3, 1),
            description=None, already_disputed=Decimal(0), at=AT, line_number=line, line_count=count)) == "line_number"
