"""Account hierarchies as of a date: which account pays for which, and a parent's family (itself
and every customer below it), for the rolled-up aging and statements. Pure functions."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Iterable


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


def family(parents: dict[str, str], root: str) -> list[str]:
    """root and every customer below it, root first then in customer_id order."""
    children: dict[str, list[str]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    members, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in members:
                members.add(child)
                todo.append(child)
    return [root, *sorted(members - {root})]
