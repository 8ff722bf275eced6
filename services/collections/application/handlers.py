"""Command handlers and the consumer: plain functions of (connection, command, metadata).
The caller owns the transaction."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Awaitable, Callable, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared import aggregate
from shared.consumer import Projection, ReceivedEvent
from shared.contracts import (
    CreditMemoIssued,
    CustomerParentChanged,
    CustomerProfileChanged,
    CustomerRegistered,
    DeductionOpened,
    DisputeOpened,
    DisputeResolved,
    InvoiceAdjusted,
    InvoiceIssued,
    InvoiceVoided,
    PaymentApplied,
    PaymentUnapplied,
    SmallBalanceWriteOffReversed,
    SmallBalanceWrittenOff,
    UnknownEvent,
    registry,
)
from shared.eventstore import utc_midnight
from shared.problems import Conflict, Unprocessable
from services.collections.adapters import accounts
from services.collections.adapters import repository as repo
from services.collections.domain.model import CollectionsRuleViolation, Promise, PromisedInvoice, evaluation_date
from services.collections.domain.promise_rule import AppliedPayment, Broken, Kept
from services.collections.projections import receivables


def _rule(exc: CollectionsRuleViolation) -> Unprocessable:
    return Unprocessable(str(exc), field=exc.field)


@dataclass(frozen=True)
class MakePromise:
    promise_id: str
    customer_id: str
    invoice_ids: list[str]
    amount: Decimal
    currency: str
    promise_date: date
    made_on: date
    grace_days: int


async def make_promise(conn: AsyncConnection, cmd: MakePromise, meta: dict[str, Any]) -> dict[str, Any]:
    known = await repo.invoices_with_open_balance(conn, cmd.invoice_ids, at_start_of=cmd.made_on)
    invoices = []
    for i, invoice_id in enumerate(cmd.invoice_ids):
        row = known.get(invoice_id)
        if row is None:
            raise Unprocessable(f"invoice {invoice_id} is not known to collections", field=f"invoice_ids.{i}")
        invoices.append(PromisedInvoice(invoice_id=invoice_id, customer_id=row["customer_id"],
                                        currency=row["currency"].strip(), open_balance=Decimal(row["open_balance"])))
    promise = await aggregate.load(conn, Promise, cmd.promise_id)
    if promise.exists:
        raise Conflict(f"promise {cmd.promise_id} already exists", field="promise_id")
    try:
        promise.make(customer_id=cmd.customer_id, invoices=invoices, amount=cmd.amount, currency=cmd.currency,
                     promise_date=cmd.promise_date, made_on=cmd.made_on, grace_days=cmd.grace_days,
                     at=utc_midnight(cmd.made_on))
    except CollectionsRuleViolation as exc:
        raise _rule(exc) from exc
    await aggregate.save(conn, promise, meta)
    await repo.insert_promise(conn, {"promise_id": promise.id, "customer_id": promise.customer_id,
                                     "currency": promise.currency, "amount": promise.amount,
                                     "promise_date": promise.promise_date, "made_on": promise.made_on,
                                     "grace_days": promise.grace_days, "version": promise.version},
                              promise.invoice_ids)
    return await repo.get_promise(conn, promise.id)


@dataclass(frozen=True)
class Evaluation:
    as_of: date
    kept: list[dict[str, Any]]
    broken: list[dict[str, Any]]


async def _evaluate_one(conn: AsyncConnection, promise: Promise, as_of: date, meta: dict[str, Any],
                        *, keep_only: bool = False) -> Kept | Broken | None:
    payments = [AppliedPayment(amount, value_date) for amount, value_date in await repo.payments_on(conn, promise.invoice_ids)]
    outcome = promise.evaluate(payments, as_of, keep_only=keep_only)
    if outcome is None:
        return None
    await aggregate.save(conn, promise, meta)
    if isinstance(outcome, Kept):
        await repo.record_outcome(conn, promise_id=promise.id, status="kept", paid_amount=outcome.paid_amount,
                                  shortfall=None, kept_on=outcome.kept_on, broken_on=None, version=promise.version)
    else:
        await repo.record_outcome(conn, promise_id=promise.id, status="broken", paid_amount=outcome.paid_amount,
                                  shortfall=outcome.shortfall, kept_on=None, broken_on=outcome.broken_on,
                                  version=promise.version)
    return outcome


async def evaluate_promises(conn: AsyncConnection, as_of: date | None, today: date,
                            meta: dict[str, Any]) -> Evaluation:
    """Decide every open promise made by as_of (default today): kept, broken, or still open.
    Promises already decided are not open, so running this twice (or for an earlier date)
    emits nothing new."""
    try:
        as_of = evaluation_date(as_of, today)
    except CollectionsRuleViolation as exc:
        raise _rule(exc) from exc
    await conn.execute(text(repo.EVALUATION_LOCK))
    kept, broken = [], []
    for promise_id in await repo.open_promise_ids(conn, made_by=as_of):
        outcome = await _evaluate_one(conn, await aggregate.load(conn, Promise, promise_id), as_of, meta)
        if isinstance(outcome, Kept):
            kept.append(promise_id)
        elif isinstance(outcome, Broken):
            broken.append(promise_id)
    return Evaluation(as_of=as_of, kept=await repo.get_promises(conn, kept),
                      broken=await repo.get_promises(conn, broken))


async def keep_promises_paid_by(conn: AsyncConnection, invoice_id: str, meta: dict[str, Any]) -> list[str]:
    """A payment applied to a promised invoice keeps the promise at once when the amount is
    reached. It considers every known payment in the promise window (a payment applied late for
    an earlier value date counts on its value date); it never breaks a promise: that is the
    evaluation's job, against the clock."""
    promise_ids = await repo.open_promise_ids_for_invoice(conn, invoice_id)
    if not promise_ids:
        return []
    await conn.execute(text(repo.EVALUATION_LOCK))
    kept = []
    for promise_id in promise_ids:
        promise = await aggregate.load(conn, Promise, promise_id)
        if promise.status != "open":
            continue
        if isinstance(await _evaluate_one(conn, promise, promise.terms.window_ends_on, meta, keep_only=True), Kept):
            kept.append(promise_id)
    return kept


async def note_late_settlements(conn: AsyncConnection, invoice_id: str) -> None:
    """A broken promise stays broken (PromiseBroken was published and counted), but when the
    promised amount is paid in full later, the read model records the day (settled_late_on) and
    the promise stops counting against the customer's risk score."""
    rows = await conn.execute(text(
        "SELECT p.promise_id, p.amount, p.made_on FROM promises p JOIN promise_invoices pi USING (promise_id)"
        " WHERE pi.invoice_id = :i AND p.status = 'broken' AND p.settled_late_on IS NULL"), {"i": invoice_id})
    for promise in rows.mappings().all():
        promised = await repo.get_promise(conn, promise["promise_id"])
        paid, settled_on = Decimal(0), None
        for amount, value_date in await repo.payments_on(conn, promised["invoice_ids"]):
            if value_date >= promise["made_on"]:
                paid += amount
                if paid >= promise["amount"]:
                    settled_on = value_date
                    break
        if settled_on is not None:
            await conn.execute(text("UPDATE promises SET settled_late_on = :d WHERE promise_id = :p"),
                               {"d": settled_on, "p": promise["promise_id"]})


async def _on_external_event(conn: AsyncConnection, event: ReceivedEvent) -> None:
    """Collections' consumer: receivables facts from invoicing, cash_application and disputes,
    and a payment that reaches a promised amount keeps the promise."""
    try:
        contract = registry.parse(event.event_type, event.schema_version, event.data)
    except UnknownEvent:
        return
    await _on_contract(conn, event, contract)


async def _apply_external_batch(conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> None:
    """The same for a batch in offset order. Invoices, credit memos, payments applied to
    invoices no promise names, customer registrations (with their credit limits) and disputes
    opened or resolved are facts that read nothing of the others: each run of them is written
    with one multi-row statement per table. A payment on a promised invoice (promise rules read
    every payment so far), and every other event, first writes what is pending and then runs
    one by one, so it sees exactly what it would have seen event by event."""
    parsed: list[tuple[ReceivedEvent, Any]] = []
    for event in events:
        try:
            parsed.append((event, registry.parse(event.event_type, event.schema_version, event.data)))
        except UnknownEvent:
            continue
    promised = await repo.promised_invoices(
        conn, {c.invoice_id for _, c in parsed if isinstance(c, PaymentApplied)})
    invoices: list[dict[str, Any]] = []
    credits: list[dict[str, Any]] = []
    payments: list[dict[str, Any]] = []
    registrations: list[dict[str, Any]] = []
    opened: list[dict[str, Any]] = []
    resolved: dict[str, dict[str, Any]] = {}  # dispute -> its resolution (once per statement)

    async def flush() -> None:
        await repo.record_receivables_facts(conn, invoices=invoices, credit_memos=credits, payments=payments)
        await accounts.register_customers(conn, registrations)
        await accounts.record_disputes(conn, opened=opened, resolved=list(resolved.values()))
        for pending in (invoices, credits, payments, registrations, opened, resolved):
            pending.clear()

    for event, contract in parsed:
        if isinstance(contract, InvoiceIssued):
            invoices.append(repo.invoice_row(
                invoice_id=contract.invoice_id, customer_id=contract.customer_id, currency=contract.currency,
                total_amount=contract.total_amount, issue_date=contract.issue_date, due_date=contract.due_date,
                invoice_number=contract.invoice_number))
        elif isinstance(contract, CreditMemoIssued):
            credits.append(repo.credit_memo_row(credit_memo_id=contract.credit_memo_id,
                                                invoice_id=contract.invoice_id, amount=contract.amount,
                                                issue_date=contract.issue_date))
        elif isinstance(contract, PaymentApplied) and contract.invoice_id not in promised:
            payments.append(repo.payment_applied_row(
                event_id=event.event_id, payment_id=contract.payment_id, invoice_id=contract.invoice_id,
                customer_id=contract.customer_id, currency=contract.currency, amount=contract.amount,
                value_date=contract.value_date))
        elif isinstance(contract, CustomerRegistered):
            registrations.append(accounts.registration_row(
                event_id=event.event_id, customer_id=contract.customer_id, name=contract.name,
                currency=contract.currency, credit_limit=contract.credit_limit,
                registered_on=contract.registered_on))
        elif isinstance(contract, (DisputeOpened, DeductionOpened, DisputeResolved)):
            # Openings are written before resolutions: one that follows its dispute's pending
            # resolution, or a second resolution, waits for what is pending to be written.
            if contract.dispute_id in resolved:
                await flush()
            row = {"d": contract.dispute_id, "i": contract.invoice_id, "c": contract.customer_id}
            if isinstance(contract, DisputeResolved):
                resolved[contract.dispute_id] = {**row, "on": contract.resolved_on}
            else:
                opened.append({**row, "on": contract.opened_on})
        elif type(contract) in _HANDLERS:
            # Everything else collections uses (parent changes, adjustments, disputes, ...) goes
            # to the per-event handler in order, through the same table.
            await flush()
            await _on_contract(conn, event, contract)
        # any other event (payments received, promises' own events, ...) changes nothing here
    await flush()


async def _on_payment_applied(conn: AsyncConnection, event: ReceivedEvent, contract: PaymentApplied) -> None:
    if await receivables.on_payment_applied(conn, event.event_id, contract):
        await keep_promises_paid_by(conn, contract.invoice_id, event.causation_metadata("collections:promise-rule"))
        await note_late_settlements(conn, contract.invoice_id)


async def _on_registered(conn: AsyncConnection, event: ReceivedEvent, contract: CustomerRegistered) -> None:
    await receivables.on_customer_registered(conn, contract)
    await receivables.on_credit_limit(conn, event.event_id, contract)


# What collections does with each event it uses, one table for the per-event path and the batch
# path alike (a type missing here is ignored by both, so they cannot drift apart).
_HANDLERS: dict[type, Callable[[AsyncConnection, ReceivedEvent, Any], Awaitable[None]]] = {
    InvoiceIssued: lambda conn, event, c: receivables.on_invoice_issued(conn, c),
    CustomerRegistered: _on_registered,
    CustomerProfileChanged: lambda conn, event, c: receivables.on_credit_limit(conn, event.event_id, c),
    CustomerParentChanged: lambda conn, event, c: receivables.on_parent_changed(conn, event.event_id,
                                                                                event.stream_version, c),
    CreditMemoIssued: lambda conn, event, c: receivables.on_credit_memo_issued(conn, c),
    PaymentApplied: _on_payment_applied,
    **{t: (lambda conn, event, c: receivables.on_balance_adjusted(conn, event.event_id, c))
       for t in (PaymentUnapplied, SmallBalanceWrittenOff, SmallBalanceWriteOffReversed)},
    **{t: (lambda conn, event, c: receivables.on_dispute(conn, c))
       for t in (DisputeOpened, DeductionOpened, DisputeResolved)},
    **{t: (lambda conn, event, c: receivables.on_invoice_adjusted(conn, event.event_id, c))
       for t in (InvoiceAdjusted, InvoiceVoided)},
}


async def _on_contract(conn: AsyncConnection, event: ReceivedEvent, contract: Any) -> None:
    handler = _HANDLERS.get(type(contract))
    if handler is not None:
        await handler(conn, event, contract)


# Collections' consumer handler: event by event, or a batch at once (shared.consumer.Projection).
on_external_event = Projection(_on_external_event, _apply_external_batch)
