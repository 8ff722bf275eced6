"""Sorting and paging of the tables the workbench shows, and aging of an account's invoices
(pure). Collections sorts and pages a collector's worklist (the workbench asks for one page:
worklist_order and page_number say which); sort_and_page sorts and pages a whole list the workbench
holds (the worklist's export), so the browser never holds a book of 5,000 rows."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Sequence

PAGE_SIZES = (25, 50, 100)
DEFAULT_PAGE_SIZE = 50

WORKLIST_SORTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "priority": lambda e: Decimal(e["priority"]),
    "amount_past_due": lambda e: Decimal(e["amount_past_due"]),
    "oldest_days_past_due": lambda e: int(e["oldest_days_past_due"]),
    "name": lambda e: (e.get("name") or e["customer_id"]).casefold(),
    "risk_score": lambda e: int(e.get("risk_score") or 0),
}
DEFAULT_DESCENDING = {"priority", "amount_past_due", "oldest_days_past_due", "risk_score"}


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    number: int        # 1-based
    size: int
    total: int
    sort: str
    descending: bool

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def has_next(self) -> bool:
        return self.number < self.pages

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def first_index(self) -> int:
        return 0 if self.total == 0 else (self.number - 1) * self.size + 1

    @property
    def last_index(self) -> int:
        return min(self.total, self.number * self.size)


def page_size(value: int | None) -> int:
    return value if value in PAGE_SIZES else DEFAULT_PAGE_SIZE


def worklist_order(sort: str | None, order: str | None) -> tuple[str, bool]:
    """The column and direction asked for: an unknown column falls back to priority; the order
    defaults to descending but for the name."""
    column = sort if sort in WORKLIST_SORTS else "priority"
    return column, (order == "desc") if order in ("asc", "desc") else column in DEFAULT_DESCENDING


def page_number(page: int | None, size: int, total: int) -> int:
    """The page shown: the one asked for, or the last one when it is past the end."""
    return min(max(1, page or 1), max(1, -(-total // size)))


def sort_and_page(entries: Sequence[dict[str, Any]], sort: str | None, order: str | None, page: int | None,
                  size: int | None, *, everything: bool = False) -> Page:
    """Sort by a known column (ties by customer id, so pages never shuffle), then cut one page.
    An unknown column falls back to priority; a page past the end shows the last one."""
    column, descending = worklist_order(sort, order)
    key = WORKLIST_SORTS[column]
    ordered = sorted(entries, key=lambda e: e["customer_id"])
    ordered.sort(key=key, reverse=descending)
    size = max(1, len(ordered)) if everything else page_size(size)
    number = page_number(page, size, len(ordered))
    start = (number - 1) * size
    return Page(rows=list(ordered[start:start + size]), number=number, size=size, total=len(ordered), sort=column,
                descending=descending)


AGING_BUCKETS = (("current", None, 0), ("1-30", 1, 30), ("31-60", 31, 60), ("61-90", 61, 90), ("90+", 91, None))


def aging_bucket(days_past_due: int) -> str:
    for label, low, high in AGING_BUCKETS:
        if (low is None or days_past_due >= low) and (high is None or days_past_due <= high):
            return label
    return "current"


def aging_totals(invoices: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Open balance per aging bucket, exactly (decimal strings)."""
    totals = {label: Decimal(0) for label, _, _ in AGING_BUCKETS}
    for inv in invoices:
        totals[aging_bucket(int(inv["days_past_due"]))] += Decimal(inv["open_balance"])
    return {label: format(amount, "f") for label, amount in totals.items()}
