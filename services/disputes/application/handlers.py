"""Command handlers and the consumer: plain functions of (connection, command, metadata).
The caller owns the transaction."""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from shared import aggregate
from shared.consumer import Projection, ReceivedEvent
from shared.contracts import (
    ChargebackReceived,
    InvoiceIssued,
    PaymentApplied,
    PaymentReturned,
    PaymentUnapplied,
    ShortPayDetected,
    UnknownEvent,
    registry,
)
from shared.eventstore import utc_midnight
from shared.problems import Conflict, NotFound, Unprocessable
from services.disputes.adapters import deductions
from services.disputes.adapters import repository as repo
from services.disputes.domain.model import (
    Dispute,
    DisputeAlreadyResolved,
    DisputeRuleViolation,
    WITHDRAWN,
    InvoiceReference,
    deduction_id,
)
from services.disputes.domain.reason_codes import chargeback_reason_code, mapped_reason_code, normalise_customer_code
from services.disputes.projections.invoice_references import on_invoice_issued

log = logging.getLogger(__name__)


def _rule(exc: DisputeRuleViolation) -> Unprocessable:
    return Unprocessable(str(exc), field=exc.field)


@dataclass(frozen=True)
class OpenDispute:
    dispute_id: str
    invoice_id: str
    amount: Decimal
    reason_code: str
    opened_on: date
    description: str | None = None
    line_number: int | None = None


async def open_dispute(conn: AsyncConnection, cmd: OpenDispute, meta: dict[str, Any]) -> dict[str, Any]:
    ref = await repo.get_invoice_reference(conn, cmd.invoice_id, lock=True)
    if ref is None:
        raise Unprocessable(f"invoice {cmd.invoice_id} is not known to disputes", field="invoice_id")
    invoice = InvoiceReference(invoice_id=ref["invoice_id"], customer_id=ref["customer_id"],
                               currency=ref["currency"].strip(), total_amount=Decimal(ref["total_amount"]),
                               issue_date=ref["issue_date"])
    dispute = await aggregate.load(conn, Dispute, cmd.dispute_id)
    if dispute.exists:
        raise Conflict(f"dispute {cmd.dispute_id} already exists", field="dispute_id")
    try:
        dispute.open(invoice=invoice, amount=cmd.amount, reason_code=cmd.reason_code, opened_on=cmd.opened_on,
                     description=cmd.description, already_disputed=await repo.amount_in_dispute(conn, invoice.invoice_id),
                     at=utc_midnight(cmd.opened_on), line_number=cmd.line_number,
                     line_count=len(_json(ref.get("product_lines")) or []))
    except DisputeRuleViolation as exc:
        raise _rule(exc) from exc
    await aggregate.save(conn, dispute, meta)
    await repo.insert_dispute(conn, _row(dispute, description=cmd.description))
    return await repo.get_dispute(conn, dispute.id)


@dataclass(frozen=True)
class ResolveDispute:
    dispute_id: str
    resolution: str
    credit_amount: Decimal | None
    resolved_on: date
    note: str | None = None
    expected_version: int | None = None


async def resolve_dispute(conn: AsyncConnection, cmd: ResolveDispute, meta: dict[str, Any]) -> dict[str, Any]:
    dispute = await aggregate.load(conn, Dispute, cmd.dispute_id)
    if not dispute.exists:
        raise NotFound(f"dispute {cmd.dispute_id} does not exist", field="dispute_id")
    if cmd.expected_version is not None and cmd.expected_version != dispute.version:
        from shared.eventstore import ConcurrencyError

        raise ConcurrencyError(f"dispute {cmd.dispute_id} is at version {dispute.version}, not {cmd.expected_version}",
                               field="If-Match")
    try:
        dispute.resolve(resolution=cmd.resolution, credit_amount=cmd.credit_amount, resolved_on=cmd.resolved_on,
                        at=utc_midnight(cmd.resolved_on))
    except DisputeAlreadyResolved as exc:
        raise Conflict(str(exc), field=exc.field, type_name="dispute-already-resolved",
                       title="The dispute is already resolved") from exc
    except DisputeRuleViolation as exc:
        raise _rule(exc) from exc
    # The published contract has no note; it travels in the event's metadata (the audit trail).
    await aggregate.save(conn, dispute, {**meta, **({"note": cmd.note} if cmd.note else {})})
    await repo.record_resolution(conn, dispute_id=dispute.id, resolution=cmd.resolution,
                                 credit_amount=dispute.credit_amount, resolved_on=cmd.resolved_on, note=cmd.note,
                                 version=dispute.version)
    return await repo.get_dispute(conn, dispute.id)


async def open_deduction(conn: AsyncConnection, short_pay: ShortPayDetected, meta: dict[str, Any]) -> bool:
    """Open the deduction for a short pay; returns False when it was already open (redelivery) or
    the payment was returned (a PaymentReturned handled first: nothing is owed on it)."""
    return await open_deductions(conn, [(short_pay, meta)]) == 1


async def open_deductions(conn: AsyncConnection, short_pays: Sequence[tuple[ShortPayDetected, dict[str, Any]]]) -> int:
    """open_deduction for a run of short pays (each with its event's metadata), in a fixed number
    of statements however many there are (a bank file's short pays arrive by the hundred): their
    payments locked, then which were returned, the deductions' streams, the customers' code
    mappings read at once; the new deductions' events and rows written with one statement each.
    A short pay delivered twice in the run opens one deduction. Returns how many were opened."""
    if not short_pays:
        return 0
    payments = sorted({s.payment_id for s, _ in short_pays})
    await repo.lock_payments(conn, payments)
    returned = await repo.returned_payments(conn, payments)
    disputes = await aggregate.load_many(conn, Dispute, sorted({deduction_id(s.payment_id, s.invoice_id)
                                                                 for s, _ in short_pays}))
    mappings = await deductions.code_mappings(conn, sorted({s.customer_id for s, _ in short_pays}))
    opened: list[tuple[Dispute, dict[str, Any], str]] = []
    for short_pay, meta in short_pays:
        if short_pay.payment_id in returned:
            log.info("short pay of payment %s on invoice %s ignored: the payment was returned",
                     short_pay.payment_id, short_pay.invoice_id)
            continue
        dispute = disputes[deduction_id(short_pay.payment_id, short_pay.invoice_id)]
        if dispute.exists:  # opened before, or earlier in this run
            continue
        # The retailer's own code through the customer's mapping (kept on the event beside it).
        reason_code = mapped_reason_code(short_pay.reason_code, mappings.get(short_pay.customer_id, {}))
        if short_pay.reason_code and reason_code != short_pay.reason_code:
            meta = {**meta, "remittance_reason_code": short_pay.reason_code}
        try:
            dispute.open_deduction(invoice_id=short_pay.invoice_id, customer_id=short_pay.customer_id,
                                   payment_id=short_pay.payment_id, currency=short_pay.currency,
                                   shortfall=short_pay.shortfall, reason_code=reason_code,
                                   opened_on=short_pay.value_date, at=utc_midnight(short_pay.value_date),
                                   customer_reason_code=normalise_customer_code(short_pay.reason_code) or None)
        except DisputeRuleViolation as exc:
            # A malformed short pay (no shortfall) is parked by the runner: worth an alert.
            raise ValueError(f"ShortPayDetected for payment {short_pay.payment_id} cannot open a deduction: {exc}") from exc
        opened.append((dispute, meta, short_pay.payment_id))
    # A concurrent twin makes one of the streams exist (ConcurrencyError, nothing written); the
    # runner retries the batch and the retry finds its deduction open.
    await aggregate.save_new(conn, [d for d, _, _ in opened], [m for _, m, _ in opened])
    await repo.insert_disputes(conn, [_row(d, payment_id=p) for d, _, p in opened])
    return len(opened)


CHARGEBACK_REFERENCE = "chargeback:"


async def open_chargeback(conn: AsyncConnection, chargeback: ChargebackReceived, meta: dict[str, Any]) -> bool:
    """A card holder's chargeback of a charge that paid an invoice: a deduction to work (evidence
    for the processor, or a credit), opened once per chargeback and invoice. It is not withdrawn
    when the charge's PaymentReturned is (re)delivered: that return *is* the chargeback. A
    chargeback of a charge that paid no invoice has nothing to dispute here (cash application
    keeps it on the payment)."""
    if not chargeback.invoice_id:
        log.info("chargeback %s of payment %s paid no invoice: no deduction", chargeback.chargeback_id,
                 chargeback.payment_id)
        return False
    dispute = await aggregate.load(conn, Dispute, str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                                 f"ledgerline:chargeback:{chargeback.chargeback_id}")))
    if dispute.exists:
        return False
    try:
        dispute.open_deduction(invoice_id=chargeback.invoice_id, customer_id=chargeback.customer_id,
                               payment_id=chargeback.payment_id, currency=chargeback.currency,
                               shortfall=chargeback.amount,
                               reason_code=chargeback_reason_code(chargeback.processor_reason),
                               opened_on=chargeback.received_on, at=utc_midnight(chargeback.received_on),
                               customer_reason_code=normalise_customer_code(chargeback.processor_reason) or None,
                               external_reference=f"{CHARGEBACK_REFERENCE}{chargeback.processor}:{chargeback.chargeback_id}")
    except DisputeRuleViolation as exc:
        raise ValueError(f"ChargebackReceived {chargeback.chargeback_id} cannot open a deduction: {exc}") from exc
    await aggregate.save(conn, dispute, {**meta, "processor": chargeback.processor})
    await repo.insert_dispute(conn, _row(dispute, payment_id=chargeback.payment_id))
    return True


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _row(dispute: Dispute, *, description: str | None = None, payment_id: str | None = None) -> dict[str, Any]:
    return {"dispute_id": dispute.id, "kind": dispute.kind, "invoice_id": dispute.invoice_id,
            "customer_id": dispute.customer_id, "payment_id": payment_id, "currency": dispute.currency,
            "amount": dispute.amount, "reason_code": dispute.reason_code, "description": description,
            "opened_on": dispute.opened_on, "version": dispute.version, "team": dispute.team,
            "customer_reason_code": dispute.customer_reason_code, "external_reference": dispute.external_reference,
            "due_on": dispute.due_on, "line_number": dispute.line_number}


async def _on_contract(conn: AsyncConnection, event: ReceivedEvent, contract: Any) -> None:
    if isinstance(contract, InvoiceIssued):
        await on_invoice_issued(conn, contract)
    elif isinstance(contract, ShortPayDetected):
        await open_deduction(conn, contract, event.causation_metadata("disputes:short-pay"))
    elif isinstance(contract, ChargebackReceived):
        await open_chargeback(conn, contract, event.causation_metadata("disputes:chargeback"))
    elif isinstance(contract, PaymentReturned):
        await withdraw_deductions(conn, contract, event.causation_metadata("disputes:payment-returned"))
    elif isinstance(contract, PaymentApplied):
        await deductions.record_collection(conn, application_id=contract.application_id,
                                           invoice_id=contract.invoice_id, amount=contract.amount,
                                           value_date=contract.value_date)
    elif isinstance(contract, PaymentUnapplied):
        await deductions.record_collection(conn, application_id=f"{contract.application_id}:reversed",
                                           invoice_id=contract.invoice_id, amount=-contract.amount,
                                           value_date=contract.unapplied_on)


async def _on_external_event(conn: AsyncConnection, event: ReceivedEvent) -> None:
    """Disputes' consumer: invoices (the reference model API disputes are checked against), short
    pays (each opens a deduction) and returned payments (their open deductions are withdrawn)."""
    try:
        contract = registry.parse(event.event_type, event.schema_version, event.data)
    except UnknownEvent:
        return
    await _on_contract(conn, event, contract)


async def _apply_external_batch(conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> None:
    """The same, for a batch in offset order: invoice references, cash collected and short pays'
    deductions are written with a fixed number of statements per run of them; anything else (a
    re-bill, a chargeback, a returned payment: process-manager work) first writes what is
    pending, then runs on its own, so it sees everything before it."""
    references: list[dict[str, Any]] = []
    collected: list[dict[str, Any]] = []
    # Short pays commute with references and cash collected (a deduction opened from one reads
    # neither, and cash collected only moves re-bills' recovered amounts, which a new deduction
    # has none of): a run of them is opened at once.
    short_pays: list[tuple[ShortPayDetected, dict[str, Any]]] = []

    async def flush() -> None:
        if references:
            await repo.record_invoice_references(conn, references)
            references.clear()
        if collected:
            await deductions.record_collections(conn, collected)
            collected.clear()
        if short_pays:
            await open_deductions(conn, short_pays)
            short_pays.clear()

    for event in events:
        try:
            contract = registry.parse(event.event_type, event.schema_version, event.data)
        except UnknownEvent:
            continue
        if isinstance(contract, InvoiceIssued) and not contract.rebill_of_deduction:
            references.append(repo.invoice_reference_row(
                invoice_id=contract.invoice_id, customer_id=contract.customer_id, currency=contract.currency,
                total_amount=contract.total_amount, issue_date=contract.issue_date, due_date=contract.due_date,
                invoice_number=contract.invoice_number,
                product_lines=[line.product_line for line in contract.lines]))
        elif isinstance(contract, PaymentApplied):
            collected.append({"a": contract.application_id, "i": contract.invoice_id, "amt": contract.amount,
                              "d": contract.value_date})
        elif isinstance(contract, PaymentUnapplied):
            collected.append({"a": f"{contract.application_id}:reversed", "i": contract.invoice_id,
                              "amt": -contract.amount, "d": contract.unapplied_on})
        elif isinstance(contract, ShortPayDetected):
            short_pays.append((contract, event.causation_metadata("disputes:short-pay")))
        elif isinstance(contract, (InvoiceIssued, ChargebackReceived, PaymentReturned)):
            await flush()
            await _on_contract(conn, event, contract)
        # any other event (payments received, credit memos, ...) changes nothing here
    await flush()


# The consumer's handler (shared.consumer.Projection): event by event, or a batch at once.
on_external_event = Projection(_on_external_event, _apply_external_batch)


async def withdraw_deductions(conn: AsyncConnection, returned: PaymentReturned, meta: dict[str, Any]) -> int:
    """The bank returned a payment: the deductions its short pays opened are withdrawn (the invoices
    are open in full again). Redelivery finds them resolved and changes nothing."""
    await repo.lock_payment(conn, returned.payment_id)
    await repo.record_returned_payment(conn, returned.payment_id, returned.reason_code, returned.returned_on)
    note = f"payment {returned.payment_id} returned ({returned.reason_code})"
    withdrawn = 0
    for dispute_id in await repo.open_deductions_of_payment(conn, returned.payment_id):
        dispute = await aggregate.load(conn, Dispute, dispute_id)
        if not dispute.withdraw(resolved_on=returned.returned_on, at=utc_midnight(returned.returned_on)):
            continue
        resolved_on = dispute.pending[0][0].resolved_on
        await aggregate.save(conn, dispute, {**meta, "note": note})
        await repo.record_resolution(conn, dispute_id=dispute.id, resolution=WITHDRAWN, credit_amount=Decimal(0),
                                     resolved_on=resolved_on, note=note, version=dispute.version)
        withdrawn += 1
    return withdrawn
