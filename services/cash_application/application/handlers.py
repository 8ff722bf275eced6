"""Command handlers: plain functions of (connection, command, metadata). The caller owns the
transaction; everything a command does commits or rolls back together."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from shared import aggregate, eventstore
from shared.eventstore import utc_midnight
from shared.problems import Conflict, NotFound, Unprocessable
from services.cash_application.adapters import repository as repo
from services.cash_application.application.posting import project_saved, record_sources, source_row
from services.cash_application.application import imports
from services.cash_application.domain.matching import Matcher, MatchingPolicy, Receipt, account_key, normalise_name
from services.cash_application.domain.model import (
    CashApplicationRuleViolation,
    ManualApplication,
    Payment,
    RemittanceLine,
)
from services.cash_application.projections import payments as payments_projection


@dataclass(frozen=True)
class ReceivePayment:
    payment_id: str
    customer_id: str
    amount: Decimal
    currency: str
    value_date: date
    method: str
    reference: str | None
    remittance: tuple[RemittanceLine, ...]
    # Without remittance lines the matching engine applies the payment (to the customer's open
    # invoices, from the reference, the amount or a combination) under this policy.
    policy: MatchingPolicy | None = None


async def receive_payment(conn: AsyncConnection, cmd: ReceivePayment, meta: dict[str, Any]) -> dict[str, Any]:
    """Receive a payment and apply it by its remittance, or, when it has none, as the matching
    engine proposes: events and read models in one transaction."""
    payment = await aggregate.load(conn, Payment, cmd.payment_id)
    if payment.exists:
        raise Conflict(f"payment {cmd.payment_id} was already received", field="payment_id")
    if not cmd.remittance and cmd.policy is not None:
        return await _receive_and_match(conn, payment, cmd, cmd.policy, meta)
    # The balances the decision is based on stay locked until commit, so concurrent payments to
    # one invoice apply one after the other and never exceed its open balance together.
    # A parent account's remittance may name any of its children's invoices.
    family = await repo.family_of(conn, cmd.customer_id)
    open_items = await repo.lock_open_items(
        conn, family,
        invoice_ids=sorted({line.invoice_id for line in cmd.remittance if line.invoice_id}),
        invoice_numbers=sorted({line.invoice_number for line in cmd.remittance if line.invoice_number}),
    )
    try:
        payment.receive(customer_id=cmd.customer_id, amount=cmd.amount, currency=cmd.currency,
                        value_date=cmd.value_date, method=cmd.method, reference=cmd.reference,
                        remittance=cmd.remittance, open_items=open_items, at=utc_midnight(cmd.value_date),
                        family=frozenset(family))
    except CashApplicationRuleViolation as exc:
        raise Unprocessable(str(exc), field=exc.field) from exc
    loaded_at = payment.version
    await aggregate.save(conn, payment, meta)
    await payments_projection.project(conn, await eventstore.read_stream(conn, payment.stream_id, loaded_at))
    stored = await repo.get_payment(conn, cmd.payment_id)
    assert stored is not None  # projected just above, in this transaction
    return stored


async def _receive_and_match(conn: AsyncConnection, payment: Payment, cmd: ReceivePayment, policy: MatchingPolicy,
                             meta: dict[str, Any]) -> dict[str, Any]:
    # The open invoices the customer pays for (its own and, for a parent account, its children's)
    # are locked before matching, so the balances the engine sees hold until commit (concurrent
    # payments for one customer queue up).
    family = await repo.family_of(conn, cmd.customer_id)
    rows = await repo.lock_customer_open_items(conn, family)
    locked = {r.invoice_id: repo.open_item_of(r) for r in rows}
    matcher = Matcher([imports.open_invoice_of(r._mapping) for r in rows], {}, policy=policy,
                      parents=await repo.customer_parents(conn) if len(family) > 1 else None)
    result = matcher.match(Receipt(amount=cmd.amount, currency=cmd.currency, customer_id=cmd.customer_id,
                                   text=cmd.reference or ""))
    try:
        payment.receive_matched(customer_id=cmd.customer_id, amount=cmd.amount, currency=cmd.currency,
                                value_date=cmd.value_date, method=cmd.method, reference=cmd.reference, result=result,
                                auto_apply=bool(result.allocations) and result.confidence >= policy.auto_apply_threshold,
                                at=utc_midnight(cmd.value_date), locked=locked)
    except CashApplicationRuleViolation as exc:
        raise Unprocessable(str(exc), field=exc.field) from exc
    await project_saved(conn, payment, meta)
    await record_sources(conn, [source_row(payment, result, import_id="api", position="api",
                                           bank_reference=cmd.reference, payer_name=None, payer_account=None,
                                           remittance_text=cmd.reference)])
    stored = await repo.get_payment(conn, cmd.payment_id)
    assert stored is not None  # projected just above, in this transaction
    return stored


# ---------------------------------------------------------------- the unapplied-cash work queue

@dataclass(frozen=True)
class ApplyCash:
    """A person's decision on a payment: apply (or split) its unapplied cash to invoices; with
    reapply, the payment's current applications are reversed first."""

    payment_id: str
    applications: tuple[ManualApplication, ...]
    on: date
    reapply: bool = False
    note: str | None = None      # why (re-application): on each PaymentUnapplied


async def _load_payment(conn: AsyncConnection, payment_id: str, lock_applied: bool = False) -> Payment:
    """The payment; with lock_applied, the invoices it is applied to locked (in invoice_id order)."""
    payment = await aggregate.load(conn, Payment, payment_id)
    if not payment.exists:
        raise NotFound(f"payment {payment_id} does not exist", field="payment_id")
    if lock_applied:
        await repo.lock_open_items_by_id(conn, sorted({a.invoice_id for a in payment.applications.values()}))
    return payment


async def _saved(conn: AsyncConnection, payment: Payment, meta: dict[str, Any]) -> dict[str, Any]:
    """Append and project the payment's new events; answer its read model."""
    await project_saved(conn, payment, meta)
    stored = await repo.get_payment(conn, payment.id)
    assert stored is not None  # projected just above, in this transaction
    return stored


async def apply_cash(conn: AsyncConnection, cmd: ApplyCash, meta: dict[str, Any]) -> dict[str, Any]:
    payment = await _load_payment(conn, cmd.payment_id)
    at = utc_midnight(cmd.on)
    invoice_ids = {a.invoice_id for a in cmd.applications}
    if cmd.reapply:
        invoice_ids |= {a.invoice_id for a in payment.applications.values()}
    locked = await repo.lock_open_items_by_id(conn, sorted(invoice_ids))
    try:
        if cmd.reapply:
            # The reversed applications (and the write-offs they justified) give their invoices back.
            for invoice_id, reopened in payment.reverse(None, "reapplied", cmd.on, at, cmd.note).items():
                item = locked.get(invoice_id)
                if item is not None:
                    locked[invoice_id] = replace(item, open_balance=item.open_balance + reopened)
        payment.apply_manually(cmd.applications, locked, cmd.on, at)
    except CashApplicationRuleViolation as exc:
        raise Unprocessable(str(exc), field=exc.field) from exc
    await _learn_aliases(conn, payment, {locked[a.invoice_id].customer_id for a in cmd.applications})
    return await _saved(conn, payment, meta)


async def _learn_aliases(conn: AsyncConnection, payment: Payment, customers: set[str]) -> None:
    """A manual application teaches who the payer is: its name and bank account map to the
    customer from now on (only when the decision names one customer)."""
    if len(customers) != 1:
        return
    customer_id = next(iter(customers))
    source = await repo.get_payment_source(conn, payment.id)
    if source is None:
        return
    if source["payer_name"]:
        await repo.learn_alias(conn, kind="name", alias=normalise_name(source["payer_name"]), customer_id=customer_id,
                               payment_id=payment.id)
    if source["payer_account"]:
        await repo.learn_alias(conn, kind="account", alias=account_key(source["payer_account"]),
                               customer_id=customer_id, payment_id=payment.id)


@dataclass(frozen=True)
class ReverseApplications:
    payment_id: str
    application_ids: tuple[str, ...]  # empty: all of the payment's applications
    on: date
    note: str | None = None           # why: on each PaymentUnapplied


async def reverse_applications(conn: AsyncConnection, cmd: ReverseApplications, meta: dict[str, Any]) -> dict[str, Any]:
    payment = await _load_payment(conn, cmd.payment_id, lock_applied=True)
    try:
        if not payment.applications:
            raise CashApplicationRuleViolation(f"payment {cmd.payment_id} has no application to reverse",
                                               "application_ids")
        payment.reverse(cmd.application_ids or None, "manual_reversal", cmd.on, utc_midnight(cmd.on), cmd.note)
    except CashApplicationRuleViolation as exc:
        raise Unprocessable(str(exc), field=exc.field) from exc
    return await _saved(conn, payment, meta)


@dataclass(frozen=True)
class ReturnPayment:
    payment_id: str
    reason_code: str
    reason: str | None
    on: date


async def return_payment(conn: AsyncConnection, cmd: ReturnPayment, meta: dict[str, Any]) -> dict[str, Any]:
    """NSF, recalled wire, ACH return: every application reversed, then PaymentReturned."""
    payment = await _load_payment(conn, cmd.payment_id, lock_applied=True)
    try:
        payment.return_payment(cmd.reason_code, cmd.reason, cmd.on, utc_midnight(cmd.on))
    except CashApplicationRuleViolation as exc:
        raise Conflict(str(exc), field=exc.field) from exc
    return await _saved(conn, payment, meta)
