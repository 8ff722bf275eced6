"""Account hierarchies as of a date (pure): the parent in force on a day and a parent's family."""
from __future__ import annotations

from datetime import date

from services.reporting.domain.hierarchy import ParentChange, family, parents_as_of

D1, D2, D3 = date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)


def test_the_change_effective_latest_on_or_before_the_day_applies():
    changes = [ParentChange("S1", "HQ", D1, 2), ParentChange("S1", "HQ2", D2, 3), ParentChange("S1", None, D3, 4),
               ParentChange("S2", "HQ", D2, 2)]
    assert parents_as_of(changes, date(2023, 12, 31)) == {}
    assert parents_as_of(changes, D1) == {"S1": "HQ"}
    assert parents_as_of(changes, D2) == {"S1": "HQ2", "S2": "HQ"}
    assert parents_as_of(changes, D3) == {"S2": "HQ"}  # S1 cleared


def test_on_one_date_the_later_stream_version_wins_whatever_the_arrival_order():
    changes = [ParentChange("S1", "B", D1, 3), ParentChange("S1", "A", D1, 2)]
    assert parents_as_of(changes, D1) == {"S1": "B"}


def test_a_family_is_the_root_and_everyone_below_it():
    parents = {"S1": "HQ", "S2": "HQ", "S3": "S2", "X": "OTHER"}
    assert family(parents, "HQ") == ["HQ", "S1", "S2", "S3"]
    assert family(parents, "S2") == ["S2", "S3"]
    assert family(parents, "LONE") == ["LONE"]
