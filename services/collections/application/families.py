"""Queries over account hierarchies: the collector's worklist ranked by collection unit (a paying
parent's family is one unit), and an account's family with its children's balances."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.collections.adapters import accounts
from services.collections.domain.family import Balances, balances, collection_units, family, parents_as_of, payer_of
from services.collections.domain.worklist import (
    AccountSnapshot,
    Priority,
    Ranked,
    family_snapshot,
    ordered,
    page_of,
    priority,
    priority_score,
)


def _overdue(invoices: list[dict[str, Any]], as_of: date) -> list[dict[str, Any]]:
    """What a collector chases: open, past due and not disputed."""
    return [r for r in invoices if r["open_balance"] > 0 and r["due_date"] < as_of and not r["disputed"]]


def _snapshot(customer: dict[str, Any], overdue: list[dict[str, Any]], currency: str, as_of: date) -> AccountSnapshot:
    return AccountSnapshot(
        customer_id=customer["customer_id"], currency=currency,
        amount_past_due=sum((Decimal(r["open_balance"]) for r in overdue if r["currency"].strip() == currency),
                            Decimal(0)).quantize(Decimal("0.01")),
        oldest_days_past_due=max(((as_of - r["due_date"]).days for r in overdue), default=0),
        risk_score=customer["risk_score"], broken_promises=customer["broken"],
        last_contact_on=customer["last_contact_on"], promise_due_today=customer["promise_due_today"],
        follow_up_due=customer["next_follow_up_on"] is not None and customer["next_follow_up_on"] <= as_of)


def _items(invoices: list[dict[str, Any]], as_of: date) -> list[tuple[Decimal, int]]:
    return [(Decimal(r["open_balance"]), (as_of - r["due_date"]).days) for r in invoices if not r["disputed"]]


@dataclass(frozen=True)
class WorklistEntry:
    customer: dict[str, Any]          # the unit's owner (the paying parent, or the account alone)
    snapshot: AccountSnapshot         # the unit's, ranked
    ranked: Priority
    own: AccountSnapshot              # the owner's own
    members: list[str]                # the accounts below the owner ranked with it
    family: Balances                  # the unit's open balance, past due and aging (not disputed)
    open_call_tasks: list[str]


@dataclass(frozen=True)
class WorklistPage:
    total: int                        # units on the whole worklist
    entries: list[WorklistEntry]      # the page asked for, in the order asked for


@dataclass(frozen=True)
class _Unit:
    everyone: list[dict[str, Any]]    # the owner first, then the accounts below it
    own: AccountSnapshot
    currency: str


async def worklist(conn: AsyncConnection, collector_id: str, as_of: date, *, sort: str = "priority",
                   descending: bool | None = None, offset: int = 0, limit: int | None = None,
                   after: str | None = None) -> WorklistPage:
    """The collector's units with something past due (not disputed), highest priority first (or
    by another column of WORKLIST_SORTS), one page of them (page_of). Every unit is ranked (its
    score), but only the page's entries are told in full (reasons, family balances, tasks)."""
    parents = parents_as_of(await accounts.parent_changes(conn, as_of), as_of)
    assigned = await accounts.collector_customers(conn, collector_id)
    collector_of = await accounts.collectors_of(conn, {payer_of(parents, c) for c in assigned})
    units = collection_units(collector_id, assigned, parents, collector_of)
    inputs = {c["customer_id"]: c for c in await accounts.worklist_inputs(
        conn, [m for members in units.values() for m in members], as_of)}
    ranked: list[Ranked] = []
    kept: dict[str, _Unit] = {}
    for owner_id, members in units.items():
        everyone = [inputs[m] for m in members]
        overdue = [_overdue(c["invoices"], as_of) for c in everyone]
        if not any(overdue):
            continue
        # The currency of the unit's first overdue invoice (the owner's first, when it has one).
        currency = next(r["currency"].strip() for rows in overdue for r in rows)
        snapshots = [_snapshot(c, rows, currency, as_of) for c, rows in zip(everyone, overdue)]
        unit = family_snapshot(snapshots[0], snapshots[1:]) if len(members) > 1 else snapshots[0]
        owner = everyone[0]
        ranked.append(Ranked(customer_id=owner_id, name=owner["name"], risk_score=owner["risk_score"],
                             snapshot=unit, score=priority_score(unit, as_of)))
        kept[owner_id] = _Unit(everyone=everyone, own=snapshots[0], currency=currency)
    entries = []
    for r in page_of(ordered(ranked, sort, descending), offset, limit, after):
        u = kept[r.customer_id]
        entries.append(WorklistEntry(
            customer=u.everyone[0], snapshot=r.snapshot, ranked=priority(r.snapshot, as_of), own=u.own,
            members=[c["customer_id"] for c in u.everyone[1:]],
            family=balances([i for c in u.everyone for i in _items(
                [row for row in c["invoices"] if row["currency"].strip() == u.currency], as_of)]),
            open_call_tasks=[t for c in u.everyone for t in c["open_call_tasks"]]))
    return WorklistPage(total=len(ranked), entries=entries)


@dataclass(frozen=True)
class AccountFamily:
    parent_customer_id: str | None    # the account's own parent as of the day
    payer_customer_id: str            # the top of its hierarchy: who pays for it
    own: Balances
    family: Balances                  # the account and every account below it
    children: list[dict[str, Any]]    # every account below it: customer_id, name, parent, balances


async def account_family(conn: AsyncConnection, customer_id: str, invoices: list[dict[str, Any]],
                         as_of: date) -> AccountFamily:
    """The account's place in its hierarchy as of a day, and the balances of the accounts below
    it (disputed invoices count in the open balance, as they do on the account; past due and
    aging include them too: the account shows what is owed, the worklist what is chased)."""
    parents = parents_as_of(await accounts.parent_changes(conn, as_of), as_of)
    below = family(parents, customer_id)[1:]
    child_invoices = await accounts.family_invoices_as_of(conn, below, as_of) if below else []
    names = await accounts.names_of(conn, below) if below else {}
    by_child: dict[str, list[dict[str, Any]]] = {c: [] for c in below}
    for r in child_invoices:
        by_child[r["customer_id"]].append(r)

    def items(rows: list[dict[str, Any]]) -> list[tuple[Decimal, int]]:
        return [(Decimal(r["open_balance"]), (as_of - r["due_date"]).days) for r in rows]

    children = [{"customer_id": c, "name": names.get(c), "parent_customer_id": parents.get(c),
                 "currency": next((r["currency"].strip() for r in by_child[c]), None),
                 "balances": balances(items(by_child[c]))} for c in below]
    return AccountFamily(parent_customer_id=parents.get(customer_id), payer_customer_id=payer_of(parents, customer_id),
                         own=balances(items(invoices)), family=balances(items(invoices + child_invoices)),
                         children=children)
