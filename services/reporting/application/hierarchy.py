"""Reports rolled up to a parent account: its family as of the date (itself and every customer
below it), their open invoices aged together with the tie to the family's ledger, and the
statement of account (one customer, or a parent with its family)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from services.reporting.adapters import repository as repo
from services.reporting.application.reports import resolve_currency
from services.reporting.domain import metrics
from services.reporting.domain.hierarchy import family, parents_as_of
from services.reporting.domain.statements import Statement, statement


@dataclass(frozen=True)
class RollupAging:
    customer_id: str
    currency: str
    members: list[str]
    parents: dict[str, str]
    aging: metrics.Aging
    ledger_net: Decimal  # invoiced - credited - applied - adjusted - written off, the family's
    names: dict[str, str]

    @property
    def ties_out(self) -> bool:
        return self.aging.ties_out and self.aging.total == self.ledger_net


async def rollup_aging(conn: AsyncConnection, customer_id: str, as_of: date, currency: str | None,
                       spec: metrics.BucketSpec) -> RollupAging:
    code = await resolve_currency(conn, currency)
    parents = parents_as_of(await repo.parent_changes(conn, as_of), as_of)
    members = family(parents, customer_id)
    aging = metrics.aging(await repo.open_items(conn, code, as_of, members), as_of, spec)
    totals = await repo.ledger_totals(conn, code, as_of, members)
    net = totals["invoiced"] - totals["credited"] - totals["applied"] - totals["adjusted"] - totals["written_off"]
    names = await repo.customer_names(conn, members)
    return RollupAging(customer_id, code, members, {m: parents[m] for m in members if m in parents}, aging, net, names)


async def statement_of_account(conn: AsyncConnection, customer_id: str, as_of: date, currency: str | None,
                               language: str) -> Statement:
    """The statement of a customer, rolled up over its family when it is a parent account (the
    hierarchy in force on as_of): open items aged by due date, and the family's unapplied cash."""
    code = await resolve_currency(conn, currency)
    members = family(parents_as_of(await repo.parent_changes(conn, as_of), as_of), customer_id)
    aging = metrics.aging(await repo.open_items(conn, code, as_of, members), as_of, metrics.DEFAULT_BUCKETS)
    unapplied = await repo.unapplied_cash(conn, code, as_of, members)
    names = await repo.customer_names(conn, [customer_id])
    return statement(customer_id=customer_id, customer_name=names.get(customer_id, customer_id), as_of=as_of,
                     currency=code, language=language, members=members, aging=aging, unapplied_cash=unapplied)
