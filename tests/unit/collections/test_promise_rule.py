"""The promise-to-pay rule and the Promise aggregate, pure: no database, no HTTP."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from services.collections.domain.model import CollectionsRuleViolation, Promise, PromisedInvoice, evaluation_date
from services.collections.domain.promise_rule import (
    AppliedPayment,
    Broken,
    Kept,
    PromiseTerms,
    StillOpen,
    evaluate_promise,
)

# Promise made on 1 April to pay 1000.00 by 10 April, two grace days: the window is 1-12 April.
TERMS = PromiseTerms(amount=Decimal("1000.00"), made_on=date(2024, 4, 1), promise_date=date(2024, 4, 10),
                     grace_days=2)


def pay(amount: str, day: int, month: int = 4) -> AppliedPayment:
    return AppliedPayment(Decimal(amount), date(2024, month, day))


def d(day: int, month: int = 4) -> date:
    return date(2024, month, day)


def test_kept_on_time():
    assert evaluate_promise(TERMS, [pay("1000.00", 9)], d(15)) == Kept(Decimal("1000.00"), d(9))


def test_kept_within_grace():
    assert evaluate_promise(TERMS, [pay("1000.00", 12)], d(20)) == Kept(Decimal("1000.00"), d(12))


def test_kept_on_the_day_cumulative_payments_reach_the_amount():
    payments = [pay("300.00", 8), pay("200.00", 3), pay("250.00", 11), pay("250.00", 11), pay("5.00", 12)]
    assert evaluate_promise(TERMS, payments, d(30)) == Kept(Decimal("1000.00"), d(11))


def test_overpayment_keeps_and_reports_what_was_paid_by_then():
    assert evaluate_promise(TERMS, [pay("600.00", 2), pay("700.00", 5)], d(30)) == Kept(Decimal("1300.00"), d(5))


def test_partial_then_broken_the_day_after_the_grace_period():
    outcome = evaluate_promise(TERMS, [pay("400.00", 5), pay("100.00", 12)], d(30))
    assert outcome == Broken(paid_amount=Decimal("500.00"), shortfall=Decimal("500.00"), broken_on=d(13))


def test_payment_before_made_on_does_not_count():
    outcome = evaluate_promise(TERMS, [pay("1000.00", 31, 3)], d(30))
    assert outcome == Broken(paid_amount=Decimal("0"), shortfall=Decimal("1000.00"), broken_on=d(13))


def test_payment_after_the_grace_period_does_not_count():
    outcome = evaluate_promise(TERMS, [pay("900.00", 10), pay("100.00", 13)], d(30))
    assert outcome == Broken(paid_amount=Decimal("900.00"), shortfall=Decimal("100.00"), broken_on=d(13))


def test_boundary_dates_made_on_and_last_grace_day_are_inside_the_window():
    assert evaluate_promise(TERMS, [pay("500.00", 1), pay("500.00", 12)], d(12)) == Kept(Decimal("1000.00"), d(12))


def test_open_until_the_last_grace_day_and_broken_the_day_after():
    payments = [pay("999.99", 10)]
    assert evaluate_promise(TERMS, payments, d(10)) == StillOpen(Decimal("999.99"))
    assert evaluate_promise(TERMS, payments, d(12)) == StillOpen(Decimal("999.99"))
    assert evaluate_promise(TERMS, payments, d(13)) == Broken(Decimal("999.99"), Decimal("0.01"), d(13))


def test_payments_after_as_of_are_not_seen_yet():
    payments = [pay("1000.00", 11)]
    assert evaluate_promise(TERMS, payments, d(10)) == StillOpen(Decimal("0"))
    assert evaluate_promise(TERMS, payments, d(11)) == Kept(Decimal("1000.00"), d(11))


def test_zero_grace_days_breaks_the_day_after_the_promise_date():
    terms = PromiseTerms(amount=Decimal("10.00"), made_on=d(1), promise_date=d(10), grace_days=0)
    assert evaluate_promise(terms, [pay("10.00", 11)], d(11)) == Broken(Decimal("0"), Decimal("10.00"), d(11))
    assert evaluate_promise(terms, [pay("10.00", 10)], d(11)) == Kept(Decimal("10.00"), d(10))


def test_outcome_is_the_same_for_every_as_of_after_it_was_decided():
    payments = [pay("400.00", 5)]
    outcomes = {evaluate_promise(TERMS, payments, as_of) for as_of in (d(13), d(20), d(1, 6), date(2025, 1, 1))}
    assert outcomes == {Broken(Decimal("400.00"), Decimal("600.00"), d(13))}


# -- the aggregate --------------------------------------------------------------------------

AT = datetime(2024, 4, 1, tzinfo=timezone.utc)
INVOICES = [PromisedInvoice("inv-1", "cus-1", "USD", Decimal("700.00")),
            PromisedInvoice("inv-2", "cus-1", "USD", Decimal("500.00"))]


def made(amount="1000.00", invoices=INVOICES, **overrides) -> Promise:
    promise = Promise("p-1")
    kwargs = dict(customer_id="cus-1", invoices=invoices, amount=Decimal(amount), currency="USD",
                  promise_date=d(10), made_on=d(1), grace_days=2, at=AT)
    promise.make(**{**kwargs, **overrides})
    promise.version += len(promise.pending)  # as if stored and loaded again
    promise.pending.clear()
    return promise


def test_evaluating_a_decided_promise_emits_nothing():
    promise = made()
    assert promise.evaluate([pay("1000.00", 9)], d(15)) == Kept(Decimal("1000.00"), d(9))
    (event, occurred_at), = promise.pending
    assert event.event_type == "PromiseKept" and event.kept_on == d(9) and occurred_at.date() == d(9)
    assert promise.status == "kept"
    assert promise.evaluate([pay("1000.00", 9)], d(20)) is None
    assert len(promise.pending) == 1


def test_broken_event_carries_exact_amounts():
    promise = made()
    promise.evaluate([pay("250.10", 4)], d(30))
    (event, _), = promise.pending
    assert event.to_payload() == {
        "promise_id": "p-1", "customer_id": "cus-1", "amount": "1000.00", "currency": "USD",
        "promise_date": "2024-04-10", "paid_amount": "250.10", "shortfall": "749.90", "broken_on": "2024-04-13"}


def test_keep_only_never_breaks():
    promise = made()
    assert promise.evaluate([pay("10.00", 4)], d(30), keep_only=True) is None
    assert promise.pending == [] and promise.status == "open"


def test_a_promise_is_not_judged_before_it_was_made():
    assert made().evaluate([], d(31, 3)) is None


@pytest.mark.parametrize("overrides, field", [
    ({"amount": Decimal("1200.01")}, "amount"),        # more than the invoices' open balance
    ({"amount": Decimal("0")}, "amount"),
    ({"amount": Decimal("1.005")}, "amount"),
    ({"promise_date": d(31, 3)}, "promise_date"),
    ({"grace_days": 31}, "grace_days"),
    ({"currency": "EUR"}, "currency"),
    ({"customer_id": "cus-2"}, "invoice_ids.0"),
    ({"invoices": [INVOICES[0], INVOICES[0]]}, "invoice_ids.1"),
    ({"invoices": []}, "invoice_ids"),
])
def test_making_a_promise_rules(overrides, field):
    promise = Promise("p-1")
    kwargs = dict(customer_id="cus-1", invoices=INVOICES, amount=Decimal("100.00"), currency="USD",
                  promise_date=d(10), made_on=d(1), grace_days=2, at=AT)
    with pytest.raises(CollectionsRuleViolation) as info:
        promise.make(**{**kwargs, **overrides})
    assert info.value.field == field
    assert promise.pending == []


def test_evaluation_date_defaults_to_today_and_refuses_the_future():
    assert evaluation_date(None, d(5)) == d(5)
    assert evaluation_date(d(4), d(5)) == d(4)
    with pytest.raises(CollectionsRuleViolation) as info:
        evaluation_date(d(6), d(5))
    assert info.value.field == "as_of"
