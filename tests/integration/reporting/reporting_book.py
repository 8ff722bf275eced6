"""Helpers for reporting's integration tests: the service in-process on a fresh database, and
contract events fed straight to its consumer handler (as the consumer runner would)."""
from __future__ import annotations

import uuid
from datetime import date

import pytest

from shared.clock import FixedClock
from shared.consumer import ReceivedEvent
from shared.contracts import (
    AccountEscalated,
    CallTaskCreated,
    CollectorAssigned,
    CreditMemoIssued,
    CustomerRegistered,
    CustomerSegmented,
    DeductionOpened,
    DisputeOpened,
    DisputeResolved,
    DunningNoticeSent,
    Installment,
    InvoiceIssued,
    InvoiceLine,
    PaymentApplied,
    PaymentPlanAgreed,
    PaymentReceived,
    PaymentReturned,
    PaymentUnapplied,
    PromiseBroken,
    PromiseKept,
    PromiseToPayMade,
    SmallBalanceWrittenOff,
    WriteOffApproved,
    topic_for,
)
from services.reporting.main import definition
from services.reporting.projections.facts import project
from services.reporting.settings import ReportingSettings
from tests.support.infra import service_client


@pytest.fixture
async def reporting():
    def make(url):
        d = definition(ReportingSettings(database_url=url))
        d.state["clock"] = FixedClock(date(2024, 3, 31))
        return d

    async with service_client(make) as (client, app):
        yield client, app


def received(contract, event_id: str | None = None) -> ReceivedEvent:
    return ReceivedEvent(event_id=event_id or str(uuid.uuid4()), event_type=contract.event_type,
                         schema_version=contract.schema_version, source=f"/ledgerline/{contract.context}",
                         subject="s", occurred_at=None, data=contract.to_payload(), headers={},
                         topic=topic_for(contract.context), partition=0, offset=0)


async def feed(engine, events: list[ReceivedEvent]) -> None:
    for event in events:
        async with engine.begin() as conn:
            await project(conn, event)


def invoice(invoice_id, customer_id, amount, issue, due, currency="USD"):
    return InvoiceIssued(invoice_id=invoice_id, invoice_number=f"N-{invoice_id}", customer_id=customer_id,
                         currency=currency, issue_date=issue, due_date=due, total_amount=amount,
                         lines=[InvoiceLine(description="Goods", quantity="1", unit_price=amount, amount=amount)])


def applied(payment_id, invoice_id, customer_id, amount, on, currency="USD"):
    return PaymentApplied(payment_id=payment_id, invoice_id=invoice_id, customer_id=customer_id, amount=amount,
                          currency=currency, value_date=on, application_id=f"{payment_id}:{invoice_id}",
                          rule="remittance", confidence="1")


def received_cash(payment_id, customer_id, amount, on):
    return PaymentReceived(payment_id=payment_id, customer_id=customer_id, amount=amount, currency="USD",
                           value_date=on, method="wire")


async def get(client, path, **params):
    r = await client.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()




def book() -> list:
    """A small USD book, in the order the events arrive: P0's application to INV-1 comes
    before INV-1 itself, PR1's outcome before the promise."""
    return [
        applied("P0", "INV-1", "C1", "300.00", "2024-03-05"),
        PromiseKept(promise_id="PR1", customer_id="C1", amount="200.00", currency="USD", promise_date="2024-03-25",
                    paid_amount="200.00", kept_on="2024-03-25"),
        CustomerRegistered(customer_id="C1", name="Acme Wholesale", currency="USD", payment_terms_days=30,
                           credit_limit="50000.00", registered_on="2023-01-01"),
        CustomerRegistered(customer_id="C2", name="Globex", currency="USD", payment_terms_days=30,
                           credit_limit="50000.00", registered_on="2023-01-01"),
        invoice("INV-5", "C1", "250.00", "2023-11-01", "2023-12-01"),
        invoice("INV-1", "C1", "1000.00", "2024-01-10", "2024-02-09"),
        invoice("INV-2", "C1", "500.00", "2024-02-01", "2024-03-02"),
        invoice("INV-3", "C2", "2000.00", "2024-02-15", "2024-03-16"),
        invoice("INV-4", "C2", "750.25", "2024-03-20", "2024-04-19"),
        received_cash("P0", "C1", "600.00", "2024-03-05"),
        DisputeOpened(dispute_id="D1", invoice_id="INV-2", customer_id="C1", currency="USD", amount="100.00",
                      reason_code="damaged", opened_on="2024-03-05"),
        PromiseToPayMade(promise_id="PR1", customer_id="C1", invoice_ids=["INV-1"], amount="200.00", currency="USD",
                         promise_date="2024-03-25", made_on="2024-03-05", grace_days=2),
        DisputeResolved(dispute_id="D1", invoice_id="INV-2", customer_id="C1", currency="USD", credit_amount="100.00",
                        resolution="credit granted", resolved_on="2024-03-10"),
        CreditMemoIssued(credit_memo_id="CM-1", invoice_id="INV-2", customer_id="C1", currency="USD",
                         amount="100.00", issue_date="2024-03-10", reason="damaged", dispute_id="D1"),
        PromiseToPayMade(promise_id="PR2", customer_id="C2", invoice_ids=["INV-3"], amount="2000.00", currency="USD",
                         promise_date="2024-03-25", made_on="2024-03-10", grace_days=3),
        applied("P3", "INV-9", "C2", "75.00", "2024-03-20"),  # its invoice never arrives
        received_cash("P2", "C1", "200.00", "2024-03-25"),
        applied("P2", "INV-1", "C1", "200.00", "2024-03-25"),
        DeductionOpened(dispute_id="D2", invoice_id="INV-1", customer_id="C1", payment_id="P2", currency="USD",
                        amount="50.00", reason_code="freight", opened_on="2024-03-26"),
        PromiseToPayMade(promise_id="PR3", customer_id="C1", invoice_ids=["INV-5"], amount="250.00", currency="USD",
                         promise_date="2024-04-10", made_on="2024-03-28", grace_days=0),
        PromiseBroken(promise_id="PR2", customer_id="C2", amount="2000.00", currency="USD", promise_date="2024-03-25",
                      paid_amount="0.00", shortfall="2000.00", broken_on="2024-03-28"),
        received_cash("P1", "C2", "2000.00", "2024-04-01"),
        applied("P1", "INV-3", "C2", "2000.00", "2024-04-01"),
    ]


def rich_book() -> list:
    """USD: A (C1) 1000 due Feb 9: 600 applied Feb 20, returned and unapplied Mar 5, 400
    applied Mar 25. B (C1) 500 due Mar 2: credit 100 Mar 10, 399.50 applied and 0.50 written
    off as a small balance Mar 12. C (C2) 2000 due Mar 16: written off Mar 28. D (C2) 300 due
    Apr 19. EUR: E (C3) 1000 due Mar 31."""
    return [
        CollectorAssigned(customer_id="C1", collector_id="alice", assigned_on="2024-01-01"),
        CollectorAssigned(customer_id="C1", collector_id="bob", assigned_on="2024-03-15"),
        CollectorAssigned(customer_id="C2", collector_id="alice", assigned_on="2024-01-01"),
        CustomerSegmented(customer_id="C1", segment="enterprise", risk_score=40, factors={}, scored_on="2024-01-01"),
        invoice("A", "C1", "1000.00", "2024-01-10", "2024-02-09"),
        invoice("B", "C1", "500.00", "2024-02-01", "2024-03-02"),
        invoice("C", "C2", "2000.00", "2024-02-15", "2024-03-16"),
        invoice("D", "C2", "300.00", "2024-03-20", "2024-04-19"),
        invoice("E", "C3", "1000.00", "2024-03-01", "2024-03-31", currency="EUR"),
        PaymentReceived(payment_id="PA1", customer_id="C1", amount="600.00", currency="USD", value_date="2024-02-20",
                        method="ach"),
        applied("PA1", "A", "C1", "600.00", "2024-02-20"),
        PaymentReturned(payment_id="PA1", customer_id="C1", amount="600.00", currency="USD", returned_on="2024-03-05",
                        reason_code="NSF"),
        PaymentUnapplied(payment_id="PA1", application_id="PA1:A", invoice_id="A", customer_id="C1", amount="600.00",
                         currency="USD", unapplied_on="2024-03-05", reason="payment_returned"),
        applied("PA2", "A", "C1", "400.00", "2024-03-25"),
        CreditMemoIssued(credit_memo_id="CM1", invoice_id="B", customer_id="C1", currency="USD", amount="100.00",
                         issue_date="2024-03-10", reason="pricing", dispute_id="DS1"),
        applied("PB", "B", "C1", "399.50", "2024-03-12"),
        SmallBalanceWrittenOff(adjustment_id="ADJ1", payment_id="PB", invoice_id="B", customer_id="C1",
                               amount="0.50", currency="USD", value_date="2024-03-12"),
        WriteOffApproved(write_off_id="W1", invoice_id="C", customer_id="C2", amount="2000.00", currency="USD",
                         reason="bankrupt", requested_by="amy", approved_by="cfo", approved_on="2024-03-28"),
        AccountEscalated(escalation_id="ESC1", customer_id="C1", escalated_to="manager", summary="s",
                         recommended_action="call_manager", invoice_ids=["A"], currency="USD",
                         overdue_amount="1000.00", escalated_on="2024-03-06"),
        DisputeOpened(dispute_id="DS1", invoice_id="B", customer_id="C1", currency="USD", amount="100.00",
                      reason_code="pricing", opened_on="2024-03-01"),
        DisputeResolved(dispute_id="DS1", invoice_id="B", customer_id="C1", currency="USD", credit_amount="100.00",
                        resolution="credit", resolved_on="2024-03-10"),
        DeductionOpened(dispute_id="DS2", invoice_id="A", customer_id="C1", payment_id="PA2", currency="USD",
                        amount="50.00", reason_code="freight", opened_on="2024-03-20"),
        PaymentPlanAgreed(plan_id="PL1", customer_id="C1", invoice_ids=["A"], currency="USD", total_amount="600.00",
                          installments=[Installment(number=1, due_date="2024-04-05", amount="300.00"),
                                        Installment(number=2, due_date="2024-05-05", amount="300.00")],
                          agreed_on="2024-03-30"),
        PromiseToPayMade(promise_id="PR9", customer_id="C2", invoice_ids=["C"], amount="100.00", currency="USD",
                         promise_date="2024-04-10", made_on="2024-03-29", grace_days=0),
        DunningNoticeSent(notice_id="N1", customer_id="C2", strategy_id="s", strategy_version=1, step_id="1",
                          channel="email", template="t", language="en", invoice_ids=["C"], currency="USD",
                          total_amount="2000.00", sent_on="2024-03-20"),
        CallTaskCreated(task_id="T1", customer_id="C1", strategy_id="s", step_id="2", invoice_ids=["A"],
                        collector_id="bob", due_on="2024-03-22"),
    ]
