"""Helpers for reporting's integration tests: the service in-process on a fresh database, and
contract events fed straight to its consumer handler (as the consumer runner would)."""
from __future__ import annotations

import uuid
from datetime import date

import pytest

from shared.clock import FixedClock
from shared.consumer import ReceivedEvent
from shared.contracts import InvoiceIssued, InvoiceLine, PaymentApplied, PaymentReceived, topic_for
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


