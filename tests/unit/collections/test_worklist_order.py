"""The worklist's ranking of a whole book (pure): the score without its reasons is the priority's
score to the tenth, the orders collections sorts by (ties by customer id either way), and the
pages it cuts (offset, limit, and `after` for the next account)."""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from services.collections.domain.worklist import (
    AccountSnapshot,
    Ranked,
    ordered,
    page_of,
    priority,
    priority_score,
)

TODAY = date(2024, 6, 1)

snapshots = st.builds(
    AccountSnapshot, customer_id=st.just("c"), currency=st.sampled_from(["EUR", "JPY"]),
    amount_past_due=st.decimals(min_value=0, max_value=D("99999999.99"), places=2),
    oldest_days_past_due=st.integers(-30, 2000), risk_score=st.one_of(st.none(), st.integers(0, 100)),
    broken_promises=st.integers(0, 9),
    last_contact_on=st.one_of(st.none(), st.integers(-5, 400).map(lambda d: TODAY - timedelta(days=d))),
    promise_due_today=st.booleans(), follow_up_due=st.booleans(), family_size=st.integers(1, 4))


@settings(max_examples=500)
@given(snapshots)
def test_the_score_alone_is_the_priority_score_digit_for_digit(snapshot):
    full = priority(snapshot, TODAY)
    assert format(priority_score(snapshot, TODAY), "f") == format(full.score, "f")
    assert full.score == sum((r.points for r in full.details), D(0))


def _unit(customer_id, name, amount, days, score, risk=None) -> Ranked:
    snap = AccountSnapshot(customer_id=customer_id, currency="EUR", amount_past_due=D(amount),
                           oldest_days_past_due=days, risk_score=risk, broken_promises=0, last_contact_on=None,
                           promise_due_today=False, follow_up_due=False)
    return Ranked(customer_id=customer_id, name=name, risk_score=risk, snapshot=snap, score=D(score))


UNITS = [_unit("B", "beta", "300.00", 10, "40.0", 50), _unit("A", "Zulu", "300.00", 20, "45.5"),
         _unit("C", None, "9000.00", 5, "45.5", 10), _unit("D", "alpha", "10.00", 90, "30.0")]


def _ids(units) -> list[str]:
    return [u.customer_id for u in units]


def test_each_order_breaks_ties_by_customer_id_in_either_direction():
    assert _ids(ordered(UNITS)) == ["A", "C", "B", "D"]                     # priority, highest first
    assert _ids(ordered(UNITS, "priority", False)) == ["D", "B", "A", "C"]
    assert _ids(ordered(UNITS, "amount_past_due")) == ["C", "A", "B", "D"]
    assert _ids(ordered(UNITS, "amount_past_due", False)) == ["D", "A", "B", "C"]
    assert _ids(ordered(UNITS, "oldest_days_past_due")) == ["D", "A", "B", "C"]
    # By name, A to Z whatever the case, an account without a name by its id; ascending by default.
    assert _ids(ordered(UNITS, "name")) == ["D", "B", "C", "A"]
    assert _ids(ordered(UNITS, "name", True)) == ["A", "C", "B", "D"]
    assert _ids(ordered(UNITS, "risk_score")) == ["B", "C", "A", "D"]


def test_pages_cut_the_order_and_after_gives_the_next_account():
    rows = ordered(UNITS)
    assert _ids(page_of(rows)) == ["A", "C", "B", "D"]
    assert _ids(page_of(rows, 0, 3)) + _ids(page_of(rows, 3, 3)) == _ids(rows)
    assert page_of(rows, 4, 3) == [] and page_of(rows, 99) == []
    # The next account: the one after the current; the first when the current is not on the
    # worklist; none after the last.
    assert _ids(page_of(rows, limit=1, after="C")) == ["B"]
    assert _ids(page_of(rows, limit=1, after="Z")) == ["A"]
    assert page_of(rows, limit=1, after="D") == [] and page_of([], limit=1, after="A") == []
    assert _ids(page_of(rows, offset=1, limit=2, after="A")) == ["B", "D"]
