"""A short pay of a returned payment opens no deduction, whichever of ShortPayDetected and
PaymentReturned is handled first (dead-letter replay or reordering can put the short pay last):
issue 13, defect 5. Handlers on a real PostgreSQL database."""
from __future__ import annotations

import asyncio
import uuid
from datetime import date

import pytest
from sqlalchemy import text

from services.disputes.application.handlers import on_external_event
from services.disputes.domain.model import deduction_id
from services.disputes.main import definition
from services.disputes.settings import DisputesSettings
from shared.clock import FixedClock
from shared.consumer import ReceivedEvent
from shared.contracts import InvoiceIssued, InvoiceLine, PaymentReturned, ShortPayDetected
from tests.support.infra import service_client


@pytest.fixture
async def disputes():
    async with service_client(lambda url: definition(DisputesSettings(database_url=url),
                                                     clock=FixedClock(date(2024, 4, 15)))) as (client, app):
        yield client, app


async def deliver(app, contract) -> None:
    received = ReceivedEvent(event_id=str(uuid.uuid4()), event_type=contract.event_type,
                             schema_version=contract.schema_version, source="test", subject="s", occurred_at=None,
                             data=contract.to_payload(), headers={}, topic="t", partition=0, offset=0)
    async with app.state.runtime.engine.begin() as conn:
        await on_external_event(conn, received)


def short_pay(payment_id: str, invoice_id: str = "inv-1") -> ShortPayDetected:
    return ShortPayDetected(payment_id=payment_id, invoice_id=invoice_id, customer_id="cus-1", currency="USD",
                            open_amount="1000.00", paid_amount="960.00", shortfall="40.00", value_date="2024-03-20")


def returned(payment_id: str) -> PaymentReturned:
    return PaymentReturned(payment_id=payment_id, customer_id="cus-1", amount="960.00", currency="USD",
                           returned_on="2024-03-28", reason_code="R01", reason="insufficient funds")


async def invoice(app) -> None:
    await deliver(app, InvoiceIssued(
        invoice_id="inv-1", invoice_number="N-1", customer_id="cus-1", currency="USD", issue_date="2024-03-01",
        due_date="2024-03-31", total_amount="1000.00",
        lines=[InvoiceLine(description="Goods", quantity="1", unit_price="1000.00", amount="1000.00")]))


async def open_deductions(app) -> list[str]:
    async with app.state.runtime.engine.connect() as conn:
        rows = await conn.execute(text("SELECT dispute_id FROM disputes WHERE kind = 'deduction' AND status = 'open'"))
        return list(rows.scalars())


async def test_a_short_pay_handled_after_its_payments_return_opens_no_deduction(disputes):
    client, app = disputes
    await invoice(app)
    await deliver(app, returned("pay-7"))
    await deliver(app, short_pay("pay-7"))
    await deliver(app, short_pay("pay-7"))  # redelivered, or replayed from the dead letters
    assert await open_deductions(app) == []
    assert (await client.get(f"/v1/disputes/{deduction_id('pay-7', 'inv-1')}")).status_code == 404
    async with app.state.runtime.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM events WHERE event_type = 'DeductionOpened'"))).scalar() == 0
    # The whole invoice can still be disputed by hand: nothing of it is held by a deduction.
    r = await client.post("/v1/disputes", headers={"Idempotency-Key": str(uuid.uuid4())}, json={
        "invoice_id": "inv-1", "amount": "1000.00", "reason_code": "PRICING"})
    assert r.status_code == 201, r.text
    # Another payment's short pay still opens its deduction.
    await deliver(app, short_pay("pay-8"))
    assert await open_deductions(app) == [deduction_id("pay-8", "inv-1")]


async def test_in_the_usual_order_the_deduction_is_withdrawn_on_return(disputes):
    client, app = disputes
    await invoice(app)
    await deliver(app, short_pay("pay-7"))
    assert await open_deductions(app) == [deduction_id("pay-7", "inv-1")]
    await deliver(app, returned("pay-7"))
    assert await open_deductions(app) == []
    got = (await client.get(f"/v1/disputes/{deduction_id('pay-7', 'inv-1')}")).json()
    assert (got["status"], got["resolution"]) == ("resolved", "withdrawn")


async def test_concurrent_short_pay_and_return_never_leave_a_deduction_open(disputes):
    _, app = disputes
    await invoice(app)
    payments = [f"pay-c{n}" for n in range(12)]
    for n, payment_id in enumerate(payments):
        pair = [deliver(app, short_pay(payment_id)), deliver(app, returned(payment_id))]
        await asyncio.gather(*(pair if n % 2 else reversed(pair)))
    assert await open_deductions(app) == []
