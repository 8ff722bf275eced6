"""Reporting's consumer: every context's events -> facts, one row per fact, keyed by what it
refers to. Nothing here reads another fact or computes a balance, so the result is the same
whatever order the four topics deliver in, and a replay from offset 0 rebuilds it exactly.

The consumer runner's inbox makes a redelivery a no-op; the writes are idempotent on their own
too (natural keys and event ids), so a handler called again with the same event changes nothing."""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.consumer import Projection, ReceivedEvent
from shared.contracts import (
    AccountEscalated,
    CallTaskCreated,
    CollectorAssigned,
    CreditMemoIssued,
    CustomerParentChanged,
    CustomerRegistered,
    CustomerSegmented,
    DeductionOpened,
    DisputeOpened,
    DisputeResolved,
    DunningNoticeSent,
    EventContract,
    InstallmentMissed,
    InstallmentPaid,
    InvoiceAdjusted,
    InvoiceIssued,
    InvoiceVoided,
    PaymentApplied,
    PaymentPlanAgreed,
    PaymentPlanBroken,
    PaymentPlanCompleted,
    PaymentReceived,
    PaymentRefunded,
    PaymentReturned,
    PaymentUnapplied,
    PromiseBroken,
    PromiseKept,
    PromiseToPayMade,
    SmallBalanceWriteOffReversed,
    SmallBalanceWrittenOff,
    UnknownEvent,
    WriteOffApproved,
    registry,
    topic_for,
)
from services.reporting.adapters.repository import insert_facts

CONSUMER_NAME = "reporting"
TOPICS = tuple(topic_for(context) for context in ("invoicing", "cash_application", "collections", "disputes"))

Fact = tuple[str, dict[str, Any]]


def _customer(e: CustomerRegistered) -> Fact:
    return "customers", {"customer_id": e.customer_id, "name": e.name, "currency": e.currency,
                         "payment_terms_days": e.payment_terms_days, "registered_on": e.registered_on}


def _parent(e: CustomerParentChanged) -> Fact:
    return "customer_parents", {"customer_id": e.customer_id, "parent_customer_id": e.parent_customer_id,
                                "effective_on": e.effective_on}


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
                            "currency": e.currency, "amount": e.amount, "value_date": e.value_date,
                            "application_id": e.application_id, "rule": e.rule, "confidence": e.confidence}


def _unapplication(e: PaymentUnapplied) -> Fact:
    return "unapplications", {"application_id": e.application_id, "payment_id": e.payment_id,
                              "invoice_id": e.invoice_id, "customer_id": e.customer_id, "currency": e.currency,
                              "amount": e.amount, "unapplied_on": e.unapplied_on, "reason": e.reason}


def _return(e: PaymentReturned) -> Fact:
    return "payment_returns", {"payment_id": e.payment_id, "customer_id": e.customer_id, "currency": e.currency,
                               "amount": e.amount, "returned_on": e.returned_on, "reason_code": e.reason_code}


def _adjustment(e: SmallBalanceWrittenOff) -> Fact:
    return "adjustments", {"adjustment_id": e.adjustment_id, "payment_id": e.payment_id, "invoice_id": e.invoice_id,
                           "customer_id": e.customer_id, "currency": e.currency, "amount": e.amount,
                           "value_date": e.value_date, "reason_code": e.reason_code}


def _adjustment_reversal(e: SmallBalanceWriteOffReversed) -> Fact:
    return "adjustment_reversals", {"adjustment_id": e.adjustment_id, "payment_id": e.payment_id,
                                    "invoice_id": e.invoice_id, "customer_id": e.customer_id, "currency": e.currency,
                                    "amount": e.amount, "reversed_on": e.reversed_on, "reason": e.reason}


def _write_off(e: WriteOffApproved) -> Fact:
    return "write_offs", {"write_off_id": e.write_off_id, "invoice_id": e.invoice_id, "customer_id": e.customer_id,
                          "currency": e.currency, "amount": e.amount, "approved_on": e.approved_on,
                          "reason": e.reason}


def _escalation(e: AccountEscalated) -> Fact:
    return "escalations", {"escalation_id": e.escalation_id, "customer_id": e.customer_id,
                           "invoice_ids": list(e.invoice_ids), "currency": e.currency,
                           "overdue_amount": e.overdue_amount, "recommended_action": e.recommended_action,
                           "escalated_on": e.escalated_on}


def _collector(e: CollectorAssigned) -> Fact:
    return "collector_assignments", {"customer_id": e.customer_id, "collector_id": e.collector_id,
                                     "assigned_on": e.assigned_on}


def _segment(e: CustomerSegmented) -> Fact:
    return "customer_segments", {"customer_id": e.customer_id, "segment": e.segment, "risk_score": e.risk_score,
                                 "scored_on": e.scored_on}


def _plan(e: PaymentPlanAgreed) -> list[Fact]:
    plan = ("payment_plans", {"plan_id": e.plan_id, "customer_id": e.customer_id, "invoice_ids": list(e.invoice_ids),
                              "currency": e.currency, "total_amount": e.total_amount, "agreed_on": e.agreed_on})
    return [plan] + [("plan_installments", {"plan_id": e.plan_id, "installment_number": i.number,
                                            "customer_id": e.customer_id, "currency": e.currency,
                                            "due_date": i.due_date, "amount": i.amount}) for i in e.installments]


def _installment_paid(e: InstallmentPaid) -> Fact:
    return "installment_outcomes", {"plan_id": e.plan_id, "installment_number": e.installment_number,
                                    "outcome": "paid", "amount": e.amount, "paid_amount": e.paid_amount,
                                    "outcome_on": e.paid_on}


def _installment_missed(e: InstallmentMissed) -> Fact:
    return "installment_outcomes", {"plan_id": e.plan_id, "installment_number": e.installment_number,
                                    "outcome": "missed", "amount": e.amount, "paid_amount": e.paid_amount,
                                    "outcome_on": e.missed_on}


def _plan_completed(e: PaymentPlanCompleted) -> Fact:
    return "plan_outcomes", {"plan_id": e.plan_id, "outcome": "completed", "outcome_on": e.completed_on}


def _plan_broken(e: PaymentPlanBroken) -> Fact:
    return "plan_outcomes", {"plan_id": e.plan_id, "outcome": "broken", "outcome_on": e.broken_on}


def _notice(e: DunningNoticeSent) -> Fact:
    return "dunning_notices", {"notice_id": e.notice_id, "customer_id": e.customer_id, "channel": e.channel,
                               "currency": e.currency, "total_amount": e.total_amount, "sent_on": e.sent_on}


def _call(e: CallTaskCreated) -> Fact:
    return "call_tasks", {"task_id": e.task_id, "customer_id": e.customer_id, "collector_id": e.collector_id,
                          "due_on": e.due_on}


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
    return "dispute_resolutions", {"dispute_id": e.dispute_id, "invoice_id": e.invoice_id, "currency": e.currency,
                                   "credit_amount": e.credit_amount, "resolution": e.resolution,
                                   "resolved_on": e.resolved_on}


def _refund(e: PaymentRefunded) -> Fact:
    return "refunds", {"refund_id": e.refund_id, "payment_id": e.payment_id, "customer_id": e.customer_id,
                       "currency": e.currency, "amount": e.amount, "method": e.method, "reference": e.reference,
                       "refunded_on": e.refunded_on}


def _invoice_adjustment(e: InvoiceAdjusted) -> Fact:
    return "invoice_adjustments", {"adjustment_id": e.adjustment_id, "invoice_id": e.invoice_id,
                                   "customer_id": e.customer_id, "currency": e.currency, "kind": e.direction,
                                   "amount": e.amount if e.direction == "credit" else -e.amount,
                                   "adjusted_on": e.adjustment_date, "reason_code": e.reason_code}


def _void(e: InvoiceVoided) -> Fact:
    return "invoice_adjustments", {"adjustment_id": f"void:{e.invoice_id}", "invoice_id": e.invoice_id,
                                   "customer_id": e.customer_id, "currency": e.currency, "kind": "void",
                                   "amount": e.amount, "adjusted_on": e.voided_on, "reason_code": "VOID"}


# Events not listed (ShortPayDetected, UnappliedCashRecorded, WriteOffRequested, credit holds,
# ...) add nothing a report needs: unapplied cash is computed from PaymentReceived,
# PaymentReturned, PaymentApplied and PaymentUnapplied.
FACT_OF: dict[type[EventContract], Callable[[Any], Fact | list[Fact]]] = {
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
    PaymentUnapplied: _unapplication,
    PaymentReturned: _return,
    SmallBalanceWrittenOff: _adjustment,
    SmallBalanceWriteOffReversed: _adjustment_reversal,
    WriteOffApproved: _write_off,
    AccountEscalated: _escalation,
    CollectorAssigned: _collector,
    CustomerSegmented: _segment,
    PaymentPlanAgreed: _plan,
    InstallmentPaid: _installment_paid,
    InstallmentMissed: _installment_missed,
    PaymentPlanCompleted: _plan_completed,
    PaymentPlanBroken: _plan_broken,
    DunningNoticeSent: _notice,
    CallTaskCreated: _call,
    InvoiceAdjusted: _invoice_adjustment,
    InvoiceVoided: _void,
    PaymentRefunded: _refund,
    CustomerParentChanged: _parent,
}

# Facts whose order within their stream matters on one business date: they keep the stream version.
VERSIONED_TABLES = frozenset({"customer_parents"})

# Rows of these tables are parts of one event's fact (a plan's installments): keyed by their
# own natural key, without the event id.
PART_TABLES = frozenset({"plan_installments"})


def facts_of(event: ReceivedEvent) -> list[Fact]:
    """The fact rows an event carries (none for events reporting does not keep), each with the
    event id where its table keeps one. Shared by the consumer handler and the batch rebuild."""
    try:
        contract = registry.parse(event.event_type, event.schema_version, event.data)
    except UnknownEvent:
        return []
    to_fact = FACT_OF.get(type(contract))
    if to_fact is None:
        return []
    produced = to_fact(contract)
    rows = produced if isinstance(produced, list) else [produced]
    rows = [(table, {**row, "stream_version": event.stream_version or 0} if table in VERSIONED_TABLES else row)
            for table, row in rows]
    return [(table, row if table in PART_TABLES else {**row, "event_id": event.event_id}) for table, row in rows]


async def project_one(conn: AsyncConnection, event: ReceivedEvent) -> None:
    """Store the facts one event carries, if reporting keeps any."""
    await insert_facts(conn, facts_of(event))


async def apply_batch(conn: AsyncConnection, events: Sequence[ReceivedEvent]) -> None:
    """Store the facts a batch of events carries, set-based (one statement per fact table and
    one for ar_deltas), exactly as project_one would event by event in this order."""
    await insert_facts(conn, [fact for event in events for fact in facts_of(event)])


# The consumer's handler: a partition's batch at once (shared.consumer.Projection).
project = Projection(project_one, apply_batch)

