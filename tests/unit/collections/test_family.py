"""Account hierarchies in collections (pure): the hierarchy as of a date, who pays, the units a
collector's worklist ranks, a family's snapshot and priority, and aging buckets."""
from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from services.collections.domain.family import (
    ParentChange,
    aging,
    balances,
    children_of,
    collection_units,
    family,
    parents_as_of,
    payer_of,
)
from services.collections.domain.worklist import AccountSnapshot, family_snapshot, priority

TODAY = date(2024, 6, 1)


def test_the_hierarchy_as_of_a_date_takes_the_latest_change_and_a_cleared_parent_stands_alone():
    changes = [ParentChange("S1", "HQ", date(2024, 2, 1), 1), ParentChange("S2", "HQ", date(2024, 2, 1), 1),
               ParentChange("S1", "HQ2", date(2024, 5, 1), 2), ParentChange("S1", None, date(2024, 5, 1), 3),
               ParentChange("S3", "HQ", date(2024, 7, 1), 1)]
    assert parents_as_of(changes, date(2024, 4, 30)) == {"S1": "HQ", "S2": "HQ"}
    # On one date the later stream version wins: S1 stands alone from May 1st; S3 joins in July.
    assert parents_as_of(changes, TODAY) == {"S2": "HQ"}


def test_the_payer_is_the_top_of_the_hierarchy_and_a_cycle_cannot_loop():
    parents = {"store": "region", "region": "HQ"}
    assert payer_of(parents, "store") == "HQ"
    assert payer_of(parents, "HQ") == "HQ"
    assert payer_of({"a": "b", "b": "a"}, "a") in ("a", "b")
    assert family(parents, "HQ") == ["HQ", "region", "store"]
    assert family(parents, "region") == ["region", "store"]
    # The hierarchy read once for many roots gives the same families.
    children = children_of(parents)
    assert all(family(parents, root, children) == family(parents, root) for root in ("HQ", "region", "store"))


def test_a_paying_parents_family_is_one_unit_on_the_parents_collectors_worklist():
    parents = {"S1": "HQ", "S2": "HQ", "S3": "REG", "REG": "HQ"}
    collector_of = {"HQ": "ann", "S1": "ann", "S2": "bob", "S3": "bob", "REG": None, "ALONE": "bob"}
    assert collection_units("ann", ["HQ", "S1"], parents, collector_of) == {"HQ": ["HQ", "REG", "S1", "S2", "S3"]}
    # Bob works two of the stores, but the head office pays for them: he calls nobody about them.
    assert collection_units("bob", ["S2", "S3", "ALONE"], parents, collector_of) == {"ALONE": ["ALONE"]}


def test_without_a_collector_at_the_top_each_account_stays_on_its_own_collectors_worklist():
    parents = {"S1": "HQ", "S2": "HQ"}
    collector_of = {"HQ": None, "S1": "bob", "S2": "bob"}
    assert collection_units("bob", ["S1", "S2"], parents, collector_of) == {"S1": ["S1"], "S2": ["S2"]}


def snapshot(customer_id: str, amount: str, days: int, **kw) -> AccountSnapshot:
    base = dict(customer_id=customer_id, currency="EUR", amount_past_due=D(amount), oldest_days_past_due=days,
                risk_score=None, broken_promises=0, last_contact_on=None, promise_due_today=False,
                follow_up_due=False)
    return AccountSnapshot(**{**base, **kw})


def test_a_familys_snapshot_adds_the_money_and_takes_the_worst_and_the_latest():
    head = snapshot("HQ", "0.00", 0, risk_score=20, last_contact_on=date(2024, 5, 1))
    stores = [snapshot("S1", "3000.00", 40, risk_score=55, broken_promises=1),
              snapshot("S2", "2500.50", 95, last_contact_on=date(2024, 5, 20), follow_up_due=True),
              snapshot("S3", "999.00", 10, currency="USD")]  # another currency is never added in
    unit = family_snapshot(head, stores)
    assert (unit.customer_id, unit.currency, unit.amount_past_due, unit.oldest_days_past_due) == \
        ("HQ", "EUR", D("5500.50"), 95)
    assert (unit.risk_score, unit.broken_promises, unit.last_contact_on, unit.follow_up_due, unit.family_size) == \
        (55, 1, date(2024, 5, 20), True, 4)


def test_the_family_ranks_above_each_of_its_members_and_says_why():
    head = snapshot("HQ", "0.00", 0)
    stores = [snapshot(f"S{n}", "400.00", 35) for n in range(20)]
    unit = priority(family_snapshot(head, stores), TODAY)
    alone = priority(stores[0], TODAY)
    assert unit.score > alone.score
    # 8000 / 10000 * 30 = 24.0 for the family, 1.2 for one store
    assert unit.reasons[0] == "8000.00 EUR past due across 21 accounts (+24.0)"
    amount = unit.details[0]
    assert (amount.code, amount.points, amount.values) == \
        ("amount_past_due", D("24.0"), {"amount": "8000.00", "currency": "EUR", "accounts": "21"})
    assert "400.00 EUR past due (+1.2)" in alone.reasons


def test_aging_buckets_and_balances():
    items = [(D("100.00"), -3), (D("10.00"), 0), (D("20.00"), 1), (D("30.00"), 30), (D("40.00"), 31),
             (D("50.00"), 61), (D("60.00"), 90), (D("70.00"), 91), (D("0.00"), 200), (D("-5.00"), 45)]
    assert aging(items) == {"current": D("110.00"), "1-30": D("50.00"), "31-60": D("40.00"),
                            "61-90": D("110.00"), "90+": D("70.00")}
    b = balances(items)
    assert (b.open_balance, b.past_due) == (D("380.00"), D("270.00"))
