"""Refunds of unapplied cash through cash_application's API on a real PostgreSQL database:
never more than is unapplied, also when many refunds race; then the payment's events through
reporting's consumer handler: unapplied cash in reporting is exact."""
from __future__ import annotations

import asyncio
import uuid
from datetime import date
from decimal import Decimal

import pytest

from services.cash_application.main import definition
from services.cash_application.projections.open_items import on_invoicing_event
from services.cash_application.settings import CashApplicationSettings
from services.reporting.main import definition as reporting_definition
from services.reporting.projections.facts import project
from services.reporting.settings import ReportingSettings
from shared import eventstore
from shared.clock import FixedClock
from shared.consumer import ReceivedEvent
from shared.contracts import InvoiceIssued, InvoiceLine, topic_for
from tests.support.infra import idem, service_client


@pytest.fixture
async def cash():
    def make(url):
        d = definition(CashApplicationSettings(database_url=url))
        d.state["clock"] = FixedClock(date(2024, 3, 31))
        return d

    async with service_client(make) as (client, app):
        yield client, app


def _received(contract) -> ReceivedEvent:
    return ReceivedEvent(event_id=str(uuid.uuid4()), event_type=contract.event_type,
                         schema_version=contract.schema_version, source="/ledgerline/invoicing", subject="s",
                         occurred_at=None, data=contract.to_payload(), headers={}, topic=topic_for("invoicing"),
                         partition=0, offset=0)


INVOICE = InvoiceIssued(invoice_id="inv-1", invoice_number="INV-1", customer_id="cus-1", currency="USD",
                        issue_date="2024-03-01", due_date="2024-03-31",
                        lines=[InvoiceLine(description="Goods", quantity="1", unit_price="300.00", amount="300.00")],
                        total_amount="300.00")


async def _overpaid(client, app) -> str:
    async with app.state.runtime.engine.begin() as conn:
        await on_invoicing_event(conn, _received(INVOICE))
    r = await client.post("/v1/payments", headers=idem(), json={
        "customer_id": "cus-1", "amount": "500.00", "currency": "USD", "value_date": "2024-03-10", "method": "wire",
        "reference": "W-1", "remittance": [{"invoice_id": "inv-1", "amount": "300.00"}]})
    assert r.status_code == 201, r.text
    assert r.json()["unapplied_amount"] == "200.00"
    return r.json()["payment_id"]


async def test_refund_of_an_overpayment_and_its_limits(cash):
    client, app = cash
    payment_id = await _overpaid(client, app)
    key = {"Idempotency-Key": "refund-1"}
    body = {"amount": "120.00", "method": "check", "reference": "CHK-5501", "refunded_on": "2024-03-20"}
    first = await client.post(f"/v1/payments/{payment_id}/refunds", json=body, headers=key)
    again = await client.post(f"/v1/payments/{payment_id}/refunds", json=body, headers=key)
    assert first.status_code == again.status_code == 201, first.text
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert (first.json()["amount"], first.json()["payment_unapplied_amount"]) == ("120.00", "80.00")
    for bad, field in (({"amount": "80.01", "method": "check"}, "amount"),
                       ({"amount": "1.00", "method": "bitcoin"}, "method"),
                       ({"amount": "1.00", "method": "ach", "refunded_on": "2024-03-01"}, "refunded_on"),
                       ({"amount": 1, "method": "ach"}, "amount")):
        r = await client.post(f"/v1/payments/{payment_id}/refunds", json=bad, headers=idem())
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["errors"][0]["field"] == field
    # The refunded cash cannot be applied any more.
    r = await client.post(f"/v1/payments/{payment_id}/applications", headers=idem(),
                          json={"applications": [{"invoice_id": "inv-1", "amount": "81.00"}]})
    assert r.status_code == 422
    payment = (await client.get(f"/v1/payments/{payment_id}")).json()
    assert (payment["unapplied_amount"], payment["refunded_amount"]) == ("80.00", "120.00")
    refunds = (await client.get(f"/v1/payments/{payment_id}/refunds")).json()["data"]
    assert [(r["amount"], r["method"], r["reference"]) for r in refunds] == [("120.00", "check", "CHK-5501")]
    assert (await client.post("/v1/payments/nope/refunds", json=body, headers=idem())).status_code == 404


async def test_concurrent_refunds_never_pay_back_more_than_is_unapplied(cash):
    client, app = cash
    payment_id = await _overpaid(client, app)
    results = await asyncio.gather(*(client.post(f"/v1/payments/{payment_id}/refunds", headers=idem(),
                                                 json={"amount": "60.00", "method": "ach"}) for _ in range(10)))
    statuses = [r.status_code for r in results]
    assert set(statuses) <= {201, 409, 422}, [r.text for r in results]
    won = statuses.count(201)
    assert 1 <= won <= 3
    # Retry the losers one by one: exactly three 60.00 refunds fit in 200.00.
    for _ in range(10 - won):
        r = await client.post(f"/v1/payments/{payment_id}/refunds", headers=idem(), json={"amount": "60.00",
                                                                                         "method": "ach"})
        won += r.status_code == 201
    assert won == 3
    payment = (await client.get(f"/v1/payments/{payment_id}")).json()
    assert (payment["refunded_amount"], payment["unapplied_amount"]) == ("180.00", "20.00")

    # Reporting, fed the same events, counts the refunded cash out of unapplied cash.
    async with app.state.runtime.engine.connect() as conn:
        stored = await eventstore.read_all(conn, eventstore.START, limit=10000)
    events = [ReceivedEvent(event_id=str(e.event_id), event_type=e.event_type, schema_version=e.schema_version,
                            source="/ledgerline/cash_application", subject=e.stream_id, occurred_at=e.occurred_at,
                            data=e.payload, headers={}, topic=topic_for("cash_application"), partition=0,
                            offset=e.global_position) for e in stored] + [_received(INVOICE)]

    def make(url):
        d = reporting_definition(ReportingSettings(database_url=url))
        d.state["clock"] = FixedClock(date(2024, 3, 31))
        return d

    async with service_client(make) as (rep, rapp):
        for event in events + events:
            async with rapp.state.runtime.engine.begin() as conn:
                await project(conn, event)
        summary = (await rep.get("/v1/reports/summary", params={"as_of": "2024-03-31", "currency": "USD"})).json()
        assert Decimal(summary["unapplied_cash"]) == Decimal("20.00")
        assert summary["total_open_balance"] == "0.00"
