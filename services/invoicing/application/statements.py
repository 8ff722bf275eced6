"""Statements of account delivered by the customer's delivery preference, through the same
document outbox as invoices and credit memos (application.documents): a statement requested for a
customer or a parent account as of a date, and monthly statement runs per customer or parent
that the invoicing worker queues when a month is over."""
from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared import aggregate
from shared.problems import Conflict, NotFound, Unprocessable
from services.invoicing.adapters import repository as repo
from services.invoicing.application.documents import delivery_id_for, queue_documents
from services.invoicing.domain.model import Customer
from services.invoicing.domain.statements import (
    FREQUENCIES, StatementRuleViolation, check_as_of, due_runs, month_end, statement_id)


async def _registered(conn: AsyncConnection, customer_id: str) -> Customer:
    customer = await aggregate.load(conn, Customer, customer_id)
    if not customer.exists:
        raise NotFound(f"customer {customer_id} is not registered", field="customer_id")
    return customer


async def request_statement(conn: AsyncConnection, customer_id: str, as_of: date, today: date) -> dict[str, Any]:
    """Queue the customer's (a parent's: its family's) statement as of `as_of`, by its delivery
    preference today. The same statement requested again is the same delivery (sent once)."""
    customer = await _registered(conn, customer_id)
    try:
        check_as_of(as_of, today, customer.registered_on)
    except StatementRuleViolation as exc:
        raise Unprocessable(str(exc), field=exc.field) from exc
    document_id = statement_id(customer_id, as_of)
    await queue_documents(conn, [("statement", document_id, customer, today, as_of)])
    return await repo.get_delivery(conn, delivery_id_for("statement", document_id))


async def schedule_statements(conn: AsyncConnection, customer_id: str, frequency: str, first_as_of: date | None,
                              today: date, actor: str) -> dict[str, Any]:
    """A monthly statement run for the customer (or parent): a statement as of each month end,
    from first_as_of (default: this month's end), queued once the month is over."""
    customer = await _registered(conn, customer_id)
    if frequency not in FREQUENCIES:
        raise Unprocessable(f"frequency must be one of {', '.join(FREQUENCIES)}", field="frequency")
    first = month_end(first_as_of or today)
    if customer.registered_on and first < customer.registered_on:
        raise Unprocessable(f"the customer was registered on {customer.registered_on}, after {first}",
                            field="first_as_of")
    schedule_id = f"sch_{uuid.uuid4().hex[:16]}"
    if not await repo.insert_schedule(conn, {"schedule_id": schedule_id, "customer_id": customer_id,
                                             "frequency": frequency, "next_as_of": first, "created_by": actor,
                                             "created_on": today}):
        raise Conflict(f"customer {customer_id} already has an active statement schedule (cancel it first)",
                       field="customer_id")
    return await repo.get_schedule(conn, schedule_id)


async def cancel_schedule(conn: AsyncConnection, schedule_id: str) -> dict[str, Any]:
    row = await repo.get_schedule(conn, schedule_id, lock=True)
    if row is None:
        raise NotFound(f"statement schedule {schedule_id} does not exist", field="schedule_id")
    await repo.cancel_schedule(conn, schedule_id)
    return await repo.get_schedule(conn, schedule_id)


async def run_due_statements(engine: AsyncEngine, today: date, limit: int = 10_000) -> int:
    """Queue every statement the schedules owe by `today`, one schedule per transaction (locked,
    other instances skip it): its deliveries and its next date commit together, so a crash
    neither loses nor repeats a statement. Returns how many statements were queued."""
    queued = 0
    for _ in range(limit):
        async with engine.begin() as conn:
            schedule = await repo.claim_due_schedule(conn, today)
            if schedule is None:
                break
            runs, next_as_of = due_runs(schedule["next_as_of"], today)
            customer = await aggregate.load(conn, Customer, schedule["customer_id"])
            await queue_documents(conn, [("statement", statement_id(customer.id, as_of), customer, today, as_of)
                                         for as_of in runs])
            await repo.advance_schedule(conn, schedule["schedule_id"], next_as_of, runs[-1] if runs else None)
            queued += len(runs)
    return queued
