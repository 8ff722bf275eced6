"""Reporting's consumer: every context's events -> facts, one row per fact, keyed by what it
refers to. Nothing here reads another fact or computes a balance, so the result is the same
whatever order the four topics deliver in, and a replay from offset 0 rebuilds it exactly.

The consumer runner's inbox makes a redelivery a no-op; the writes are idempotent on their own
too (natural keys and event ids), so a handler called again with the same event changes nothing."""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.consumer import ReceivedEvent
from shared.contracts import (
    CreditMemoIssued,
    CustomerRegistered,
    DeductionOpened,
    DisputeOpened,
    DisputeResolved,
    EventContract,
    InvoiceIssued,
    PaymentApplied,
    PaymentReceived,
    PromiseBroken,
    PromiseKept,
    PromiseToPayMade,
    UnknownEvent,
    registry,
    topic_for,
)
from services.reporting.adapters.repository import insert_fact

CONSUMER_NAME = "reporting"
TOPICS = tuple(topic_for(context) for context in ("invoicing", "cash_application", "collections", "disputes"))

Fact = tuple[str, dict[str, Any]]


def _customer(e: CustomerRegistered) -> Fact:
    return "customers", {"customer_id": e.customer_id, "name": e.name, "currency": e.currency,
                         "payment_terms_days": e.payment_terms_days, "registered_on": e.registered_on}


def _invoice(e: InvoiceIssued) -> Fact:
    return "invoices", {"invoice_id": e.invoice_id, "invoice_number": e.invoice_number,
                        "customer_id": e.customer_id, "currency": e.currency, "amount": e.total_amount,
                        "issue_date": e.issue_date, "due_date": e.due_date}


def _credit(e: CreditMemoIssued) -> Fact:
    return "credits", {"credit_memo_id": e.credit_memo_id, "invoice_id": e.invoice_id,
                       "customer_id": e.customer_id, "currency": e.currency, "amount": e.amount,
                       "issue_date": e.issue_date, "dispute_id": e.dispute_id}


def _application(e: PaymentApplied) -> Fact:
    return "applications", {"payment_id": e.payment_id, "invoice_id": e.invoice_id, "customer_id": e.customer_id,
                            "currency": e.currency, "amount": e.amount, "value_date": e.value_date}


def _payment(e: PaymentReceived) -> Fact:
    return "payments", {"payment_id": e.payment_id, "customer_id": e.customer_id, "currency": e.currency,
                        "amount": e.amount, "value_date": e.value_date, "method": e.method,
                        "reference": e.reference}


def _promise(e: PromiseToPayMade) -> Fact:
    return "promises", {"promise_id": e.promise_id, "customer_id": e.customer_id, "currency": e.currency,
                        "amount": e.amount, "promise_date": e.promise_date, "made_on": e.made_on,
                        "grace_days": e.grace_days, "invoice_ids": list(e.invoice_ids)}


def _kept(e: PromiseKept) -> Fact:
    return "promise_outcomes", {"promise_id": e.promise_id, "outcome": "kept", "customer_id": e.customer_id,
                                "currency": e.currency, "amount": e.amount, "paid_amount": e.paid_amount,
                                "shortfall": max(e.amount - e.paid_amount, Decimal(0)),
                                "promise_date": e.promise_date, "outcome_on": e.kept_on}


def _broken(e: PromiseBroken) -> Fact:
    return "promise_outcomes", {"promise_id": e.promise_id, "outcome": "broken", "customer_id": e.customer_id,
                                "currency": e.currency, "amount": e.amount, "paid_amount": e.paid_amount,
                                "shortfall": e.shortfall, "promise_date": e.promise_date,
                                "outcome_on": e.broken_on}


def _dispute(e: DisputeOpened) -> Fact:
    return "disputes", {"dispute_id": e.dispute_id, "kind": "dispute", "invoice_id": e.invoice_id,
                        "customer_id": e.customer_id, "payment_id": None, "currency": e.currency,
                        "amount": e.amount, "reason_code": e.reason_code, "opened_on": e.opened_on}


def _deduction(e: DeductionOpened) -> Fact:
    return "disputes", {"dispute_id": e.dispute_id, "kind": "deduction", "invoice_id": e.invoice_id,
                        "customer_id": e.customer_id, "payment_id": e.payment_id, "currency": e.currency,
                        "amount": e.amount, "reason_code": e.reason_code, "opened_on": e.opened_on}


def _resolution(e: DisputeResolved) -> Fact:
    return "dispute_resolutions", {"dispute_id": e.dispute_id, "currency": e.currency,
                                   "credit_amount": e.credit_amount, "resolution": e.resolution,
                                   "resolved_on": e.resolved_on}


# Events not listed (ShortPayDetected, UnappliedCashRecorded, ...) add nothing a report needs
# yet: unapplied cash is computed from PaymentReceived and PaymentApplied.
FACT_OF: dict[type[EventContract], Callable[[Any], Fact]] = {
    CustomerRegistered: _customer,
    InvoiceIssued: _invoice,
    CreditMemoIssued: _credit,
    PaymentApplied: _application,
    PaymentReceived: _payment,
    PromiseToPayMade: _promise,
    PromiseKept: _kept,
    PromiseBroken: _broken,
    DisputeOpened: _dispute,
    DeductionOpened: _deduction,
    DisputeResolved: _resolution,
}


async def project(conn: AsyncConnection, event: ReceivedEvent) -> None:
    """Consumer handler: store the fact the event carries, if reporting keeps one."""
    try:
        contract = registry.parse(event.event_type, event.schema_version, event.data)
    except UnknownEvent:
        return
    to_fact = FACT_OF.get(type(contract))
    if to_fact is None:
        return
    table, row = to_fact(contract)
    await insert_fact(conn, table, {**row, "event_id": event.event_id})

