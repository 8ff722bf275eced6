"""The customer master over time, pure: effective-dated changes, reads as of a date, and invoices
due on the terms that held on their issue date."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from shared.contracts import BillingAddress, BillingContact
from services.invoicing.domain.model import Customer, Invoice, InvoicingRuleViolation
from services.invoicing.domain.terms import PaymentTerms

AT = datetime(2024, 1, 1, tzinfo=timezone.utc)


def customer() -> Customer:
    c = Customer("c-1")
    c.register("Acme", "EUR", PaymentTerms(30), Decimal("10000.00"), date(2024, 1, 1), AT)
    return c


def test_changes_hold_from_their_date_and_only_the_fields_given():
    c = customer()
    c.change_profile(effective_on=date(2024, 3, 1), changed_by="ann", at=AT, payment_terms=PaymentTerms(45),
                     credit_limit=Decimal("25000.00"), language="fr")
    c.change_profile(effective_on=date(2024, 2, 1), changed_by="ann", at=AT, delivery_preference="portal_upload",
                     billing_contacts=[BillingContact(name="Léa", email="ap@acme.fr", role="ap_clerk")],
                     billing_address=BillingAddress(lines=["1 rue de la Paix"], city="Paris", country="FR"))
    jan, feb, mar = (c.profile_as_of(date(2024, m, 15)) for m in (1, 2, 3))
    assert (jan.payment_terms.days, jan.credit_limit, jan.language, jan.delivery_preference) == (
        30, Decimal("10000.00"), "en", "email_pdf")
    assert (feb.payment_terms.days, feb.delivery_preference, feb.billing_contacts[0].email) == (30, "portal_upload",
                                                                                               "ap@acme.fr")
    assert (mar.payment_terms.days, mar.credit_limit, mar.language, mar.delivery_preference,
            mar.billing_address.city) == (45, Decimal("25000.00"), "fr", "portal_upload", "Paris")


def test_a_later_correction_on_the_same_date_wins():
    c = customer()
    c.change_profile(effective_on=date(2024, 3, 1), changed_by="ann", at=AT, credit_limit=Decimal("20000.00"))
    c.change_profile(effective_on=date(2024, 3, 1), changed_by="bob", at=AT, credit_limit=Decimal("15000.00"))
    assert c.profile_as_of(date(2024, 3, 1)).credit_limit == Decimal("15000.00")


@pytest.mark.parametrize("kwargs, field", [
    ({"effective_on": date(2023, 12, 31), "language": "fr"}, "effective_on"),
    ({"credit_limit": Decimal("-1")}, "credit_limit"),
    ({"credit_limit": Decimal("1.001")}, "credit_limit"),
    ({"language": "de"}, "language"),
    ({"delivery_preference": "pigeon"}, "delivery_preference"),
    ({"billing_contacts": [BillingContact(name="X", email="not-an-email")]}, "billing_contacts.0.email"),
    ({}, "body"),
])
def test_change_rules(kwargs, field):
    c = customer()
    kwargs = {"effective_on": date(2024, 2, 1), **kwargs}
    with pytest.raises(InvoicingRuleViolation) as info:
        c.change_profile(changed_by="ann", at=AT, **kwargs)
    assert info.value.field == field


def test_invoices_fall_due_on_the_terms_of_their_issue_date():
    c = customer()
    c.change_profile(effective_on=date(2024, 3, 1), changed_by="ann", at=AT, payment_terms=PaymentTerms(60))
    before, after = Invoice("i-1"), Invoice("i-2")
    for inv, issued in ((before, date(2024, 2, 28)), (after, date(2024, 3, 1))):
        inv.issue(invoice_number=inv.id, customer=c, currency="EUR", issue_date=issued, due_date=None,
                  lines=[("x", Decimal("1"), Decimal("10.00"))], at=AT)
    assert (before.due_date, after.due_date) == (date(2024, 3, 29), date(2024, 4, 30))
