"""Account hierarchies: a parent account pays for its children (a head office for its stores).

Pure rules, no I/O: the caller hands in what the database knows (the parent's chain of
ancestors, the customers' currencies, limits and open balances)."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

# Head office > region > store is as deep as AR teams go; a longer chain is a data error.
MAX_DEPTH = 5


class HierarchyViolation(ValueError):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def check_parent(*, customer_id: str, customer_currency: str, parent_id: str, parent_currency: str | None,
                 parent_ancestors: list[str], customer_depth_below: int) -> None:
    """May `parent_id` become the parent of `customer_id`?

    parent_ancestors: the parent's own chain upwards (its parent first); parent_currency None:
    the parent is not registered; customer_depth_below: how many levels of children hang below
    the customer (0 for a store)."""
    if parent_id == customer_id:
        raise HierarchyViolation(f"customer {customer_id} cannot be its own parent", "parent_customer_id")
    if parent_currency is None:
        raise HierarchyViolation(f"parent customer {parent_id} is not registered", "parent_customer_id")
    if customer_id in parent_ancestors:
        chain = " > ".join(reversed([parent_id, *parent_ancestors[:parent_ancestors.index(customer_id) + 1]]))
        raise HierarchyViolation(f"{parent_id} is already below {customer_id} ({chain}): the hierarchy would be a"
                                 " cycle", "parent_customer_id")
    if parent_currency != customer_currency:
        raise HierarchyViolation(f"parent customer {parent_id} bills in {parent_currency}, customer {customer_id} in"
                                 f" {customer_currency}: a parent pays in its children's currency",
                                 "parent_customer_id")
    depth = len(parent_ancestors) + 2 + customer_depth_below  # levels from the top to the deepest child
    if depth > MAX_DEPTH:
        raise HierarchyViolation(f"the hierarchy would be {depth} levels deep; at most {MAX_DEPTH}",
                                 "parent_customer_id")


@dataclass(frozen=True)
class CreditLevel:
    """One level of the credit check: a customer's limit against its family's exposure (its own
    open balance and every descendant's)."""

    customer_id: str
    credit_limit: Decimal | None  # None: no limit
    exposure: Decimal

    @property
    def available(self) -> Decimal | None:
        return None if self.credit_limit is None else self.credit_limit - self.exposure


def available_credit(levels: list[CreditLevel]) -> Decimal | None:
    """Credit limits hold at every level: what a customer may still take on credit is the least
    headroom of itself and each of its ancestors (a store's order counts against the head
    office's limit too). None: no level has a limit (unlimited)."""
    if not levels:
        raise ValueError("at least the customer's own level is needed")
    limited = [level.available for level in levels if level.available is not None]
    return min(limited) if limited else None
