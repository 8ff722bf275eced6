"""Statements of account, pure: one statement per customer and date, as of a past or present date,
and monthly runs falling due once each month is over (catching up a bounded number)."""
from __future__ import annotations

from datetime import date

import pytest

from services.invoicing.domain.statements import (
    MAX_CATCH_UP, StatementRuleViolation, check_as_of, due_runs, month_end, next_month_end, statement_id, subject)


def test_month_ends_including_february_of_a_leap_year():
    assert month_end(date(2024, 2, 3)) == date(2024, 2, 29)
    assert next_month_end(date(2024, 1, 31)) == date(2024, 2, 29)
    assert next_month_end(date(2024, 12, 31)) == date(2025, 1, 31)


def test_a_month_is_due_once_it_is_over():
    assert due_runs(date(2024, 4, 30), date(2024, 4, 30)) == ([], date(2024, 4, 30))
    assert due_runs(date(2024, 4, 30), date(2024, 5, 1)) == ([date(2024, 4, 30)], date(2024, 5, 31))
    assert due_runs(date(2024, 4, 30), date(2024, 6, 2)) == ([date(2024, 4, 30), date(2024, 5, 31)],
                                                             date(2024, 6, 30))


def test_a_long_outage_catches_up_a_bounded_number_of_statements():
    runs, next_as_of = due_runs(date(2020, 1, 31), date(2024, 6, 2))
    assert len(runs) == MAX_CATCH_UP and runs[-1] == date(2024, 5, 31) and next_as_of == date(2024, 6, 30)


def test_as_of_and_identity():
    check_as_of(date(2024, 6, 30), date(2024, 6, 30), date(2024, 1, 1))
    for as_of, registered in ((date(2024, 7, 1), None), (date(2023, 12, 31), date(2024, 1, 1))):
        with pytest.raises(StatementRuleViolation) as bad:
            check_as_of(as_of, date(2024, 6, 30), registered)
        assert bad.value.field == "as_of"
    assert statement_id("HQ", date(2024, 3, 31)) == statement_id("HQ", date(2024, 3, 31)) != statement_id(
        "HQ", date(2024, 4, 30))
    assert subject("fr", "Acme", date(2024, 3, 31)) == "Relevé de compte Acme au 2024-03-31"
    assert subject("de", "Acme", date(2024, 3, 31)) == "Statement of account Acme as of 2024-03-31"
