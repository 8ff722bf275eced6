"""Statements of account delivered by the customer's preference, pure: which statement a request
or a schedule names, and when a monthly schedule falls due. The statement's content (open items,
aging, unapplied cash) is reporting's (GET /v1/reports/statements/{customer_id}); a statement as
of a past date reproduces exactly, so the one sent is the one requested, whenever it is sent."""
from __future__ import annotations

import calendar
from datetime import date, timedelta

FREQUENCIES = ("monthly",)
# A schedule that missed runs (the worker was stopped) catches up at most this many statements.
MAX_CATCH_UP = 12

SUBJECTS = {"en": "Statement of account", "fr": "Relevé de compte"}
AS_OF = {"en": "as of", "fr": "au"}


class StatementRuleViolation(ValueError):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def statement_id(customer_id: str, as_of: date) -> str:
    """One statement per customer and date: requesting it again delivers it once."""
    return f"{customer_id}@{as_of.isoformat()}"


def check_as_of(as_of: date, today: date, registered_on: date | None) -> None:
    if as_of > today:
        raise StatementRuleViolation(f"a statement is as of a past or present date, not {as_of}", "as_of")
    if registered_on and as_of < registered_on:
        raise StatementRuleViolation(f"the customer was registered on {registered_on}, after {as_of}", "as_of")


def month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def next_month_end(day: date) -> date:
    return month_end(month_end(day) + timedelta(days=1))


def due_runs(next_as_of: date, today: date) -> tuple[list[date], date]:
    """The statements a monthly schedule owes by `today` (each month end from next_as_of up to
    the day before today: a month's statement goes out once the month is over), the latest
    MAX_CATCH_UP of them, and the schedule's next as-of date after them."""
    runs = []
    as_of = next_as_of
    while as_of < today:
        runs.append(as_of)
        as_of = next_month_end(as_of)
    return runs[-MAX_CATCH_UP:], as_of


def subject(language: str, customer_name: str, as_of: date) -> str:
    lang = language if language in SUBJECTS else "en"
    return f"{SUBJECTS[lang]} {customer_name} {AS_OF[lang]} {as_of.isoformat()}"
