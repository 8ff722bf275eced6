"""Commands on customer accounts: profile, strategy assignment, collector, contacts,
escalations by hand, write-offs."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.contracts import CollectorAssigned, WriteOffApproved, WriteOffRejected, WriteOffRequested
from shared.money import quantize
from shared.problems import Conflict, NotFound, Unprocessable
from services.collections.adapters import accounts
from services.collections.application.events import emit
from services.collections.domain.write_offs import approval_refusal


async def assign_collector(conn: AsyncConnection, customer_id: str, collector_id: str, on: date,
                           meta: dict[str, Any]) -> bool:
    """Returns whether anything changed (assigning the same collector again emits nothing)."""
    customer = await accounts.get_customer(conn, customer_id)
    if customer["collector_id"] == collector_id:
        return False
    await accounts.update_customer(conn, customer_id, {"collector_id": collector_id})
    await emit(conn, "collections_account", customer_id, CollectorAssigned(
        customer_id=customer_id, collector_id=collector_id, assigned_on=on), on, meta)
    return True


@dataclass(frozen=True)
class LogContact:
    customer_id: str
    collector_id: str | None
    kind: str
    outcome: str | None
    note: str | None
    contacted_on: date
    next_follow_up_on: date | None


async def log_contact(conn: AsyncConnection, cmd: LogContact) -> dict[str, Any]:
    if cmd.next_follow_up_on and cmd.next_follow_up_on < cmd.contacted_on:
        raise Unprocessable("the follow-up cannot be before the contact", field="next_follow_up_on")
    contact_id = str(uuid.uuid4())
    await accounts.ensure_customer(conn, cmd.customer_id)
    await accounts.insert_contact(conn, {"contact_id": contact_id, **cmd.__dict__})
    if cmd.kind == "call":
        # A call logged by the collector completes the open call tasks on the account.
        await accounts.close_call_tasks(conn, cmd.customer_id, cmd.collector_id)
    return {"contact_id": contact_id, **cmd.__dict__}


# -- write-offs -------------------------------------------------------------------------------

@dataclass(frozen=True)
class RequestWriteOff:
    write_off_id: str
    invoice_id: str
    amount: Decimal | None
    reason: str
    requested_by: str
    requested_on: date


async def request_write_off(conn: AsyncConnection, cmd: RequestWriteOff, meta: dict[str, Any]) -> dict[str, Any]:
    if await accounts.get_write_off(conn, cmd.write_off_id):
        raise Conflict(f"write-off {cmd.write_off_id} already exists", field="write_off_id")
    rows = [r for r in await accounts.invoices_as_of(conn, cmd.requested_on) if r["invoice_id"] == cmd.invoice_id]
    if not rows:
        raise Unprocessable(f"invoice {cmd.invoice_id} is not known to collections", field="invoice_id")
    invoice = rows[0]
    currency = invoice["currency"].strip()
    open_balance = quantize(Decimal(invoice["open_balance"]), currency)
    if open_balance <= 0:
        raise Unprocessable(f"invoice {cmd.invoice_id} has nothing open to write off", field="invoice_id")
    amount = open_balance if cmd.amount is None else cmd.amount
    if quantize(amount, currency) != amount or amount <= 0 or amount > open_balance:
        raise Unprocessable(f"the amount must be positive, in {currency}'s minor unit and at most the open "
                            f"balance {open_balance}", field="amount")
    if await accounts.live_write_off_for(conn, cmd.invoice_id):
        raise Conflict(f"invoice {cmd.invoice_id} already has a write-off requested or approved", field="invoice_id")
    event = WriteOffRequested(write_off_id=cmd.write_off_id, invoice_id=cmd.invoice_id,
                              customer_id=invoice["customer_id"], amount=amount, currency=currency,
                              reason=cmd.reason, requested_by=cmd.requested_by, requested_on=cmd.requested_on)
    version = await emit(conn, "write_off", cmd.write_off_id, event, cmd.requested_on, meta, expected_version=0)
    await accounts.insert_write_off(conn, {**event.model_dump(exclude={"currency"}), "currency": currency,
                                           "version": version})
    return await accounts.get_write_off(conn, cmd.write_off_id)


async def decide_write_off(conn: AsyncConnection, write_off_id: str, *, approve: bool, decided_by: str,
                           decided_on: date, reason: str | None, limits: dict[str, Decimal | None],
                           meta: dict[str, Any]) -> dict[str, Any]:
    write_off = await accounts.get_write_off(conn, write_off_id)
    if write_off is None:
        raise NotFound(f"write-off {write_off_id} does not exist", field="write_off_id")
    if write_off["status"] != "requested":
        raise Conflict(f"write-off {write_off_id} is already {write_off['status']}", field="write_off_id")
    if decided_on < write_off["requested_on"]:
        raise Unprocessable("a decision cannot come before the request", field="decided_on")
    currency = write_off["currency"].strip()
    if approve:
        refusal = approval_refusal(requested_by=write_off["requested_by"], approver=decided_by,
                                   approver_role=await accounts.approver_role(conn, decided_by),
                                   amount=Decimal(write_off["amount"]), limits=limits)
        if refusal:
            raise Unprocessable(refusal, field="approved_by", type_name="write-off-not-approvable",
                                title="This approver may not approve this write-off")
        event: Any = WriteOffApproved(
            write_off_id=write_off_id, invoice_id=write_off["invoice_id"], customer_id=write_off["customer_id"],
            amount=quantize(Decimal(write_off["amount"]), currency), currency=currency, reason=write_off["reason"],
            requested_by=write_off["requested_by"], approved_by=decided_by, approved_on=decided_on)
        # Collections' own read model zeroes the balance the same way every consumer must.
        await accounts.add_adjustment(conn, key=f"write-off:{write_off_id}", invoice_id=write_off["invoice_id"],
                                      kind="write_off", amount=-Decimal(write_off["amount"]), effective_on=decided_on)
    else:
        if decided_by == write_off["requested_by"]:
            raise Unprocessable("the requester cannot decide their own write-off", field="rejected_by")
        event = WriteOffRejected(write_off_id=write_off_id, invoice_id=write_off["invoice_id"],
                                 customer_id=write_off["customer_id"], rejected_by=decided_by,
                                 reason=reason or "rejected", rejected_on=decided_on)
    version = await emit(conn, "write_off", write_off_id, event, decided_on, meta,
                         expected_version=write_off["version"])
    await accounts.decide_write_off(conn, write_off_id, status="approved" if approve else "rejected",
                                    decided_by=decided_by, decided_on=decided_on, reason=reason, version=version)
    return await accounts.get_write_off(conn, write_off_id)
