"""Command handlers and process managers: plain functions of (connection, command, metadata).
The caller owns the transaction."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from shared import aggregate
from shared.consumer import Projection, ReceivedEvent
from shared.contracts import (
    CreditHoldPlaced,
    CreditHoldReleased,
    DisputeResolved,
    PaymentApplied,
    PaymentUnapplied,
    SmallBalanceWriteOffReversed,
    SmallBalanceWrittenOff,
    UnknownEvent,
    WriteOffApproved,
    registry,
)
from shared.eventstore import ConcurrencyError, utc_midnight
from shared.problems import Conflict, NotFound, Unprocessable
from services.invoicing.adapters import repository as repo
from services.invoicing.application.documents import delivery_rows, queue_document
from shared.money import ZERO, money_str
from services.invoicing.domain.hierarchy import CreditLevel, available_credit
from services.invoicing.domain.credit import CreditOverride, LimitLevel, levels_for
from services.invoicing.domain.model import (
    CreditLimitRefused,
    Customer,
    Invoice,
    InvoicingConflict,
    InvoicingRuleViolation,
)
from services.invoicing.domain.terms import PaymentTerms


def credit_refusal_details(exc: CreditLimitRefused, currency: str) -> dict[str, Any]:
    """What a refused issue tells the client: the first level exceeded and every one."""
    def level(b):
        return {"level": b.level, "customer_id": b.customer_id, "credit_limit": money_str(b.credit_limit, currency),
                "exposure": money_str(b.exposure, currency), "amount": money_str(b.amount, currency),
                "available": money_str(b.available, currency)}
    return {**level(exc.breach), "currency": currency, "exceeded": [level(b) for b in exc.all]}


def rule_problem(exc: InvoicingRuleViolation, currency: str = "") -> Unprocessable | Conflict:
    if isinstance(exc, CreditLimitRefused):
        return Unprocessable(str(exc), field=exc.field, type_name="credit-limit-exceeded",
                             title="The invoice would exceed a credit limit",
                             extra={"credit_limit_exceeded": credit_refusal_details(exc, currency)})
    if isinstance(exc, InvoicingConflict):
        return Conflict(str(exc), field=exc.field)
    return Unprocessable(str(exc), field=exc.field)


@dataclass(frozen=True)
class RegisterCustomer:
    customer_id: str
    name: str
    currency: str
    payment_terms: PaymentTerms
    credit_limit: Decimal
    registered_on: date


async def register_customer(conn: AsyncConnection, cmd: RegisterCustomer, meta: dict[str, Any], now: datetime) -> dict[str, Any]:
    customer = await aggregate.load(conn, Customer, cmd.customer_id)
    if customer.exists:
        raise Conflict(f"customer {cmd.customer_id} is already registered", field="customer_id")
    try:
        customer.register(cmd.name, cmd.currency, cmd.payment_terms, cmd.credit_limit, cmd.registered_on, now)
    except InvoicingRuleViolation as exc:
        raise rule_problem(exc) from exc
    await aggregate.save(conn, customer, meta)
    await repo.insert_customer(conn, customer, customer.version)
    return await repo.get_customer(conn, cmd.customer_id)


@dataclass(frozen=True)
class IssueInvoice:
    invoice_id: str
    invoice_number: str | None
    customer_id: str
    currency: str | None
    issue_date: date
    due_date: date | None
    lines: list[tuple]  # (description, quantity, unit_price[, product_line])
    taxes: list[tuple[str, Decimal | None, Decimal]] = ()
    po_number: str | None = None
    credit_override: CreditOverride | None = None


async def credit_chains(conn: AsyncConnection, customer_ids: list[str]) -> tuple[dict[str, list[str]],
                                                                                dict[str, Customer],
                                                                                dict[str, Decimal]]:
    """For a credit check at issue time: each customer's chain (itself, its parent, ...), locked
    until the transaction ends (repo.lock_credit_chains), every customer on them loaded (their
    limits over time) after the lock, and each one's family exposure."""
    chains, customers, exposures, _ = await _credit_chains(conn, customer_ids)
    return chains, customers, exposures


async def _credit_chains(conn: AsyncConnection, customer_ids: list[str], invoice_id: str | None = None,
                         number: str | None = None):
    """credit_chains, and (repo.credit_context) whether invoice_id and number are taken, read
    with the customers and exposures in one statement after the lock."""
    chains = await repo.lock_credit_chains(conn, customer_ids)
    members = sorted({m for chain in chains.values() for m in chain} | set(customer_ids))
    streams, exposures, id_taken, number_taken = await repo.credit_context(
        conn, [Customer.stream_id_for(m) for m in members], sorted({m for chain in chains.values() for m in chain}),
        invoice_id, number)
    customers = {m: aggregate.from_history(Customer, m, streams.get(Customer.stream_id_for(m), ())) for m in members}
    return chains, customers, exposures, (id_taken, number_taken)


def limit_levels(chain: list[str], customers: dict[str, Customer], exposures: dict[str, Decimal],
                 issue_date: date) -> list[LimitLevel]:
    """The credit check's levels for an invoice issued on issue_date: each limit in force then."""
    return levels_for(chain, {c: customers[c].profile_as_of(issue_date).credit_limit for c in chain}, exposures)


async def issue_invoice(conn: AsyncConnection, cmd: IssueInvoice, meta: dict[str, Any]) -> dict[str, Any]:
    number = cmd.invoice_number or (await repo.next_invoice_numbers(conn, 1))[0]
    # The invoice id and number are checked in the statement that reads the customers after the
    # lock: the invoices read model is written in the same transaction as every invoice stream's
    # first event, so an invoice_id absent from it has no stream (and a concurrent twin still
    # loses on the stream version: 409).
    chains, customers, exposures, (id_taken, number_taken) = await _credit_chains(
        conn, [cmd.customer_id], cmd.invoice_id, number)
    customer = customers[cmd.customer_id]
    if not customer.exists:
        raise Unprocessable(f"customer {cmd.customer_id} is not registered", field="customer_id")
    if number_taken:
        raise Conflict(f"invoice number {number} is already used", field="invoice_number")
    if id_taken:
        raise rule_problem(InvoicingRuleViolation(f"invoice {cmd.invoice_id} already exists", "invoice_id"))
    invoice = Invoice(cmd.invoice_id)
    currency = cmd.currency or customer.currency
    try:
        invoice.issue(invoice_number=number, customer=customer, currency=currency,
                      issue_date=cmd.issue_date, due_date=cmd.due_date, lines=cmd.lines,
                      at=utc_midnight(cmd.issue_date), taxes=list(cmd.taxes), po_number=cmd.po_number,
                      credit_levels=limit_levels(chains[cmd.customer_id], customers, exposures, cmd.issue_date),
                      credit_override=cmd.credit_override)
    except InvoicingRuleViolation as exc:
        raise rule_problem(exc, currency) from exc
    issued = invoice.pending[0][0]
    await aggregate.save(conn, invoice, meta)
    # The read-model row, the document's delivery and the row as answered: one statement.
    return await repo.insert_issued_invoice(
        conn, invoice, [line.model_dump(mode="json") for line in issued.lines], invoice.version,
        delivery_rows([("invoice", invoice.id, customer, cmd.issue_date)])[0],
        taxes=[t.model_dump(mode="json") for t in issued.taxes], po_number=issued.po_number,
        credit_override=issued.credit_override.model_dump(mode="json") if issued.credit_override else None)


@dataclass(frozen=True)
class IssueCreditMemo:
    invoice_id: str
    amount: Decimal
    issue_date: date
    reason: str
    expected_version: int | None = None
    dispute_id: str | None = None
    credit_memo_id: str | None = None


async def issue_credit_memo(conn: AsyncConnection, cmd: IssueCreditMemo, meta: dict[str, Any]) -> dict[str, Any]:
    invoice = await aggregate.load(conn, Invoice, cmd.invoice_id)
    if not invoice.exists:
        raise NotFound(f"invoice {cmd.invoice_id} does not exist", field="invoice_id")
    if cmd.expected_version is not None and cmd.expected_version != invoice.version:
        raise ConcurrencyError(f"invoice {cmd.invoice_id} is at version {invoice.version}, not {cmd.expected_version}",
                               field="If-Match")
    memo_id = cmd.credit_memo_id or str(uuid.uuid4())
    settled = await repo.settled_amount(conn, invoice.id)
    try:
        invoice.issue_credit_memo(credit_memo_id=memo_id, amount=cmd.amount, issue_date=cmd.issue_date,
                                  reason=cmd.reason, paid_amount=settled, at=utc_midnight(cmd.issue_date),
                                  dispute_id=cmd.dispute_id)
    except InvoicingRuleViolation as exc:
        raise rule_problem(exc) from exc
    if not invoice.pending:
        return {"credit_memo_id": memo_id, "invoice_id": invoice.id, "already_issued": True}
    memo = invoice.pending[0][0].to_payload()
    await aggregate.save(conn, invoice, meta)
    await repo.record_credit_memo(conn, {**memo, "amount": Decimal(memo["amount"]),
                                         "issue_date": cmd.issue_date}, invoice.credited_amount, invoice.version)
    await queue_document(conn, "credit_memo", memo_id, await aggregate.load(conn, Customer, invoice.customer_id),
                         cmd.issue_date)
    return {**memo, "invoice_version": invoice.version}


def credit_memo_id_for_dispute(dispute_id: str) -> str:
    """Deterministic, so a resolution handled twice can only ever grant one credit memo."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ledgerline:dispute-credit:{dispute_id}"))


def _settlement(contract: Any) -> dict[str, Any] | None:
    """The settlement entry an event records (repo.record_settlement's arguments), if any."""
    if isinstance(contract, PaymentApplied):
        return dict(entry_id=contract.application_id, invoice_id=contract.invoice_id, kind="payment",
                    payment_id=contract.payment_id, amount=contract.amount, value_date=contract.value_date)
    if isinstance(contract, PaymentUnapplied):
        return dict(entry_id=f"{contract.application_id}:reversed", invoice_id=contract.invoice_id, kind="payment",
                    payment_id=contract.payment_id, amount=-contract.amount, value_date=contract.unapplied_on)
    if isinstance(contract, SmallBalanceWrittenOff):
        return dict(entry_id=contract.adjustment_id, invoice_id=contract.invoice_id, kind="adjustment",
                    payment_id=contract.payment_id, amount=contract.amount, value_date=contract.value_date)
    if isinstance(contract, SmallBalanceWriteOffReversed):
        return dict(entry_id=f"{contract.adjustment_id}:reversed", invoice_id=contract.invoice_id,
                    kind="adjustment", payment_id=contract.payment_id, amount=-contract.amount,
                    value_date=contract.reversed_on)
    if isinstance(contract, WriteOffApproved):
        return dict(entry_id=contract.write_off_id, invoice_id=contract.invoice_id, kind="write_off",
                    payment_id=None, amount=contract.amount, value_date=contract.approved_on)
    return None


async def _on_external_event(conn: AsyncConnection, event: ReceivedEvent) -> None:
    """Invoicing's consumer: what settles its invoices (payments applied and reversed, small-balance
    adjustments, approved write-offs), credit holds, and dispute resolutions (choreography: a
    resolved dispute with a credit is granted as a credit memo)."""
    try:
        contract = registry.parse(event.event_type, event.schema_version, event.data)
    except UnknownEvent:
        return
    await _on_contract(conn, event, contract)


async def _apply_external_batch(conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> None:
    """The same for a batch in offset order: settlement entries with one executemany per run of
    them; anything else (credit holds, dispute resolutions) first writes what is pending."""
    settlements: list[dict[str, Any]] = []
    for event in events:
        try:
            contract = registry.parse(event.event_type, event.schema_version, event.data)
        except UnknownEvent:
            continue
        entry = _settlement(contract)
        if entry is not None:
            settlements.append(entry)
            continue
        if not isinstance(contract, (CreditHoldPlaced, CreditHoldReleased, DisputeResolved)):
            continue  # changes nothing here
        await repo.record_settlements(conn, settlements)
        settlements.clear()
        await _on_contract(conn, event, contract)
    await repo.record_settlements(conn, settlements)


async def _on_contract(conn: AsyncConnection, event: ReceivedEvent, contract: Any) -> None:
    entry = _settlement(contract)
    if entry is not None:
        await repo.record_settlement(conn, **entry)
    elif isinstance(contract, CreditHoldPlaced):
        await repo.set_credit_hold(conn, contract.customer_id, {
            "hold_id": contract.hold_id, "reason": contract.reason, "placed_on": contract.placed_on.isoformat()},
            contract.placed_on)
    elif isinstance(contract, CreditHoldReleased):
        await repo.set_credit_hold(conn, contract.customer_id, None, contract.released_on)
    elif isinstance(contract, DisputeResolved):
        if (await aggregate.load(conn, Invoice, contract.invoice_id)).voided:
            return  # a voided invoice owes nothing: there is nothing left to credit
        if contract.credit_amount > 0:
            meta = event.causation_metadata("invoicing:dispute-credit")
            await issue_credit_memo(conn, IssueCreditMemo(
                invoice_id=contract.invoice_id, amount=contract.credit_amount, issue_date=contract.resolved_on,
                reason=f"dispute {contract.dispute_id} resolved: {contract.resolution}",
                dispute_id=contract.dispute_id, credit_memo_id=credit_memo_id_for_dispute(contract.dispute_id)), meta)
        if contract.rebill_amount:
            await rebill_deduction(conn, contract, event.causation_metadata("invoicing:deduction-rebill"))


# Invoicing's consumer handler: event by event, or a batch at once (shared.consumer.Projection).
on_external_event = Projection(_on_external_event, _apply_external_batch)


def rebill_ids(dispute_id: str) -> tuple[str, str]:
    """Deterministic ids of a re-bill's credit memo (on the original invoice) and new invoice, so a
    resolution handled twice re-bills once."""
    return (str(uuid.uuid5(uuid.NAMESPACE_URL, f"ledgerline:deduction-rebill-credit:{dispute_id}")),
            f"rebill-{uuid.uuid5(uuid.NAMESPACE_URL, f'ledgerline:deduction-rebill:{dispute_id}')}")


async def rebill_deduction(conn: AsyncConnection, resolved: DisputeResolved, meta: dict[str, Any]) -> None:
    """An invalid deduction is re-billed: its amount moves off the original invoice (a credit memo)
    onto a new invoice linked to the deduction, due on the customer's terms from the decision,
    which collections then works like any receivable. AR in total does not move."""
    memo_id, invoice_id = rebill_ids(resolved.dispute_id)
    original = await aggregate.load(conn, Invoice, resolved.invoice_id)
    if not original.exists:
        raise ValueError(f"deduction {resolved.dispute_id} re-billed on unknown invoice {resolved.invoice_id}")
    rebill = await aggregate.load(conn, Invoice, invoice_id)
    if rebill.exists:
        return
    await issue_credit_memo(conn, IssueCreditMemo(
        invoice_id=original.id, amount=resolved.rebill_amount, issue_date=resolved.resolved_on,
        reason=f"invalid deduction {resolved.dispute_id} re-billed as {invoice_id}", credit_memo_id=memo_id), meta)
    customer = await aggregate.load(conn, Customer, original.customer_id)
    try:
        rebill.issue(invoice_number=f"{original.invoice_number}-RB-{resolved.dispute_id[:8]}", customer=customer,
                     currency=original.currency, issue_date=resolved.resolved_on, due_date=None,
                     lines=[(f"Re-bill of invalid deduction {resolved.dispute_id} taken on invoice "
                             f"{original.invoice_number}", Decimal(1), resolved.rebill_amount)],
                     at=utc_midnight(resolved.resolved_on), rebill_of_deduction=resolved.dispute_id,
                     original_invoice_id=original.id)
    except InvoicingRuleViolation as exc:
        raise ValueError(f"deduction {resolved.dispute_id} cannot be re-billed: {exc}") from exc
    issued = rebill.pending[0][0]
    await aggregate.save(conn, rebill, meta)
    await repo.insert_invoice(conn, rebill, [line.model_dump(mode="json") for line in issued.lines], rebill.version)
    await queue_document(conn, "invoice", rebill.id, customer, resolved.resolved_on)


@dataclass(frozen=True)
class ChangeCustomerProfile:
    customer_id: str
    effective_on: date
    changed_by: str
    payment_terms: PaymentTerms | None = None
    credit_limit: Decimal | None = None
    billing_contacts: list | None = None
    billing_address: Any = None
    language: str | None = None
    delivery_preference: str | None = None
    po_number_required: bool | None = None
    expected_version: int | None = None


async def change_customer_profile(conn: AsyncConnection, cmd: ChangeCustomerProfile,
                                  meta: dict[str, Any]) -> dict[str, Any]:
    customer = await aggregate.load(conn, Customer, cmd.customer_id)
    if not customer.exists:
        raise NotFound(f"customer {cmd.customer_id} is not registered", field="customer_id")
    if cmd.expected_version is not None and cmd.expected_version != customer.version:
        raise ConcurrencyError(f"customer {cmd.customer_id} is at version {customer.version}, "
                               f"not {cmd.expected_version}", field="If-Match")
    try:
        customer.change_profile(effective_on=cmd.effective_on, changed_by=cmd.changed_by,
                                at=utc_midnight(cmd.effective_on), payment_terms=cmd.payment_terms,
                                credit_limit=cmd.credit_limit, billing_contacts=cmd.billing_contacts,
                                billing_address=cmd.billing_address, language=cmd.language,
                                delivery_preference=cmd.delivery_preference,
                                po_number_required=cmd.po_number_required)
    except InvoicingRuleViolation as exc:
        raise rule_problem(exc) from exc
    change = customer.pending[0][0]
    await aggregate.save(conn, customer, meta)
    latest = customer.profile_as_of(max(c.effective_on for c in customer.changes))
    await repo.record_profile_change(conn, customer, change, customer.version, latest)
    return await repo.get_customer(conn, customer.id)


@dataclass(frozen=True)
class ChangeParent:
    customer_id: str
    parent_customer_id: str | None
    effective_on: date
    changed_by: str
    expected_version: int | None = None


async def change_parent(conn: AsyncConnection, cmd: ChangeParent, meta: dict[str, Any]) -> dict[str, Any]:
    """Put a customer under a parent account (or, parent None, take it out): no cycles, one
    currency, at most MAX_DEPTH levels. Hierarchy changes are serialised (repo.lock_hierarchy)."""
    await repo.lock_hierarchy(conn)
    customer = await aggregate.load(conn, Customer, cmd.customer_id)
    if not customer.exists:
        raise NotFound(f"customer {cmd.customer_id} is not registered", field="customer_id")
    if cmd.expected_version is not None and cmd.expected_version != customer.version:
        raise ConcurrencyError(f"customer {cmd.customer_id} is at version {customer.version}, "
                               f"not {cmd.expected_version}", field="If-Match")
    parent_currency, parent_ancestors = None, []
    if cmd.parent_customer_id is not None:
        parent = await repo.get_customer(conn, cmd.parent_customer_id)
        parent_currency = parent["currency"].strip() if parent else None
        parent_ancestors = await repo.ancestors(conn, cmd.parent_customer_id)
    below = await repo.descendants(conn, cmd.customer_id)
    try:
        customer.change_parent(parent_customer_id=cmd.parent_customer_id, effective_on=cmd.effective_on,
                               changed_by=cmd.changed_by, at=utc_midnight(cmd.effective_on),
                               parent_currency=parent_currency, parent_ancestors=parent_ancestors,
                               depth_below=max((d["depth"] for d in below), default=0))
    except InvoicingRuleViolation as exc:
        raise rule_problem(exc) from exc
    if customer.pending:
        await aggregate.save(conn, customer, meta)
        await repo.set_parent(conn, customer.id, customer.parent_customer_id, customer.version)
    return await repo.get_customer(conn, customer.id)


async def credit_position(conn: AsyncConnection, customer_id: str) -> dict[str, Any]:
    """The customer's credit check at every level: its own and each ancestor's limit against its
    family's exposure (own open balance and every descendant's), and what is available."""
    chain = [customer_id, *await repo.ancestors(conn, customer_id)]
    families = {c: [c, *(d["customer_id"] for d in await repo.descendants(conn, c))] for c in chain}
    exposure = await repo.exposures(conn, sorted({m for members in families.values() for m in members}))
    levels = []
    for c in chain:
        row = await repo.get_customer(conn, c)
        levels.append(CreditLevel(c, row["credit_limit"], sum((exposure.get(m, ZERO) for m in families[c]), ZERO)))
    return {"levels": levels, "own_exposure": exposure.get(customer_id, ZERO), "available": available_credit(levels),
            "family": families[customer_id]}
