"""Account hierarchies in collections: which account pays for which as of a date, a paying
parent's family, the collection unit a collector works, and a family's balances by aging bucket.
Pure functions.

A customer whose parent account pays for it (invoicing's CustomerParentChanged) is collected from
the account at the top of its hierarchy, its payer: the collector of the head office calls the
head office once about all its stores. So the worklist ranks the payer's whole family as one unit
on the payer's collector's worklist, and a child is not ranked on its own. When the payer has no
collector, nobody would call it: each member then stays on its own collector's worklist, alone.

parents_as_of and family read the hierarchy as reporting's domain/hierarchy.py does: the same
published fact read by two contexts that share no code (a hierarchy is a business rule, not a
shared/ mechanism), so each keeps its own few lines."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Iterable, Mapping, Sequence

# Invoicing refuses deeper hierarchies (5 levels) and cycles; the bound only keeps a corrupt read
# model from looping.
MAX_DEPTH = 16

CURRENT = "current"
BUCKETS: tuple[str, ...] = (CURRENT, "1-30", "31-60", "61-90", "90+")


@dataclass(frozen=True)
class ParentChange:
    customer_id: str
    parent_customer_id: str | None
    effective_on: date
    stream_version: int = 0


def parents_as_of(changes: Iterable[ParentChange], as_of: date) -> dict[str, str]:
    """child -> parent on as_of: per customer, the change effective latest on or before as_of (on
    one date, the later stream version); a cleared parent leaves the customer out."""
    latest: dict[str, ParentChange] = {}
    for change in changes:
        if change.effective_on > as_of:
            continue
        seen = latest.get(change.customer_id)
        if seen is None or (change.effective_on, change.stream_version) > (seen.effective_on, seen.stream_version):
            latest[change.customer_id] = change
    return {c: ch.parent_customer_id for c, ch in latest.items() if ch.parent_customer_id is not None}


def payer_of(parents: Mapping[str, str], customer_id: str) -> str:
    """The account at the top of the customer's hierarchy (the customer itself when it stands alone)."""
    payer, seen = customer_id, {customer_id}
    for _ in range(MAX_DEPTH):
        parent = parents.get(payer)
        if parent is None or parent in seen:
            break
        seen.add(parent)
        payer = parent
    return payer


def children_of(parents: Mapping[str, str]) -> dict[str, list[str]]:
    """parent -> its children (one pass over the hierarchy, for many family() calls)."""
    children: dict[str, list[str]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    return children


def family(parents: Mapping[str, str], root: str, children: Mapping[str, list[str]] | None = None) -> list[str]:
    """root and every customer below it, root first then in customer_id order (`children`, from
    children_of(parents), saves reading the whole hierarchy again for each root)."""
    if children is None:
        children = children_of(parents)
    members, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in members:
                members.add(child)
                todo.append(child)
    return [root, *sorted(members - {root})]


def collection_units(collector_id: str, assigned: Iterable[str], parents: Mapping[str, str],
                     collector_of: Mapping[str, str | None]) -> dict[str, list[str]]:
    """The units on a collector's worklist: unit owner -> its members (owner first).

    `assigned` are the customers given to this collector; `collector_of` must know the collector
    of each of their payers. A customer whose payer has a collector belongs to the payer's unit
    (on that collector's worklist, whoever works the customer itself); a customer whose payer has
    none is a unit of its own."""
    units: dict[str, list[str]] = {}
    children = children_of(parents)
    for customer_id in sorted(set(assigned)):
        payer = payer_of(parents, customer_id)
        if collector_of.get(payer) is None:
            units[customer_id] = [customer_id]
        elif payer == customer_id and collector_of.get(payer) == collector_id:
            units[payer] = family(parents, payer, children)
        # else: the payer's collector ranks this customer within the payer's family
    return units


def aging(items: Iterable[tuple[Decimal, int]]) -> dict[str, Decimal]:
    """Open balances by bucket of days past due: current (not yet due), 1-30, 31-60, 61-90, 90+.
    items: (open balance, days past due); balances of zero or less count nowhere."""
    buckets = {name: Decimal(0) for name in BUCKETS}
    for open_balance, days in items:
        if open_balance <= 0:
            continue
        name = (CURRENT if days <= 0 else "1-30" if days <= 30 else "31-60" if days <= 60
                else "61-90" if days <= 90 else "90+")
        buckets[name] += open_balance
    return buckets


@dataclass(frozen=True)
class Balances:
    open_balance: Decimal
    past_due: Decimal
    aging: dict[str, Decimal]


def balances(items: Sequence[tuple[Decimal, int]]) -> Balances:
    """Open balance, amount past due and aging of (open balance, days past due) items."""
    buckets = aging(items)
    total = sum(buckets.values(), Decimal(0))
    return Balances(open_balance=total, past_due=total - buckets[CURRENT], aging=buckets)
