"""The daily run works one customer per transaction: a payment for customer B is applied (and
keeps B's promise) while the run is held up on customer A, and a run interrupted midway is
resumed by running again, acting on nothing twice (issue 13, defect 7). Real PostgreSQL,
concurrent transactions."""
from __future__ import annotations

import asyncio
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from shared.db import allow_long_idle

from services.collections.application import dunning
from services.collections.application.handlers import on_external_event
from services.collections.main import definition
from services.collections.settings import CollectionsSettings
from shared.clock import FixedClock
from shared.consumer import ReceivedEvent
from shared.contracts import CustomerRegistered, InvoiceIssued, InvoiceLine, PaymentApplied
from tests.support.infra import idem, service_client

TODAY = date(2024, 12, 31)
RUN_AT = datetime(2024, 12, 31, 10, 0, tzinfo=timezone.utc)
META = {"actor": "test", "correlation_id": "daily-run-test"}


@pytest.fixture
async def collections():
    def make(url):
        return definition(CollectionsSettings(database_url=url, role="api", smtp_port=1), clock=FixedClock(TODAY))
    async with service_client(make) as (client, app):
        yield client, app


async def deliver(app, contract) -> None:
    received = ReceivedEvent(event_id=str(uuid.uuid4()), event_type=contract.event_type,
                             schema_version=contract.schema_version, source="test", subject="s", occurred_at=None,
                             data=contract.to_payload(), headers={}, topic="t", partition=0, offset=0)
    async with app.state.runtime.engine.begin() as conn:
        await on_external_event(conn, received)


async def overdue_customer(app, client, customer_id: str, due: str = "2024-11-30") -> None:
    await deliver(app, CustomerRegistered(customer_id=customer_id, name=f"{customer_id} SARL", currency="EUR",
                                          payment_terms_days=30, credit_limit="10000.00", registered_on="2023-01-01"))
    r = await client.put(f"/v1/customers/{customer_id}/profile",
                         json={"email": f"ap@{customer_id}.example", "time_zone": "Europe/Paris"})
    assert r.status_code == 200, r.text
    due_date = date.fromisoformat(due)
    await deliver(app, InvoiceIssued(
        invoice_id=f"inv-{customer_id}", invoice_number=f"N-{customer_id}", customer_id=customer_id, currency="EUR",
        issue_date=due_date - timedelta(days=30), due_date=due_date, total_amount="1000.00",
        lines=[InvoiceLine(description="Goods", quantity="1", unit_price="1000.00", amount="1000.00")]))


async def hold_customer_row(app, customer_id: str):
    """Another transaction holds the customer's row: the run blocks when it updates it."""
    conn = await app.state.runtime.engine.connect()
    await conn.begin()
    await allow_long_idle(conn)  # stands for a busy transaction: not ended as an idle one
    await conn.execute(text("SELECT 1 FROM customers WHERE customer_id = :c FOR UPDATE"), {"c": customer_id})
    return conn


async def wait_until_blocked(app, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with app.state.runtime.engine.connect() as conn:
        while asyncio.get_running_loop().time() < deadline:
            waiting = (await conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"))).scalar_one()
            await conn.rollback()
            if waiting:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the run never blocked on the held customer")


async def ledger(app) -> list[tuple[str, str, str]]:
    async with app.state.runtime.engine.connect() as conn:
        rows = await conn.execute(text("SELECT customer_id, invoice_id, step_id FROM dunning_actions"
                                       " WHERE outcome = 'done' ORDER BY 1, 2, 3"))
        return [tuple(r) for r in rows]


async def test_a_payment_for_customer_b_is_not_blocked_while_the_run_works_on_customer_a(collections):
    client, app = collections
    await overdue_customer(app, client, "cus-a")
    await overdue_customer(app, client, "cus-b", due="2024-12-20")
    promise = await client.post("/v1/promises", headers=idem(), json={
        "promise_id": "pr-b", "customer_id": "cus-b", "invoice_ids": ["inv-cus-b"], "amount": "1000.00",
        "currency": "EUR", "promise_date": "2025-01-05", "made_on": "2024-12-28"})
    assert promise.status_code == 201, promise.text

    holder = await hold_customer_row(app, "cus-a")
    run = asyncio.create_task(dunning.daily_run(app.state.runtime.engine, as_of=TODAY, run_at=RUN_AT,
                                                settings=app.state.runtime.settings, meta=META))
    try:
        await wait_until_blocked(app)
        assert not run.done()
        # The consumer applies B's payment (which keeps B's promise) while the run waits on A.
        await asyncio.wait_for(deliver(app, PaymentApplied(
            payment_id="pay-b", invoice_id="inv-cus-b", customer_id="cus-b", amount="1000.00", currency="EUR",
            value_date=TODAY, application_id=uuid.uuid4().hex, rule="remittance", confidence="1")), timeout=10)
        assert (await client.get("/v1/promises/pr-b")).json()["status"] == "kept"
        assert not run.done()
    finally:
        await holder.rollback()
        await holder.close()
    result = await asyncio.wait_for(run, timeout=60)
    assert result.customers == 1  # B was paid before the run reached it
    assert {c for c, _, _ in await ledger(app)} == {"cus-a"}


async def test_an_interrupted_run_resumes_and_acts_once(collections):
    client, app = collections
    for customer_id in ("cus-a", "cus-b"):
        await overdue_customer(app, client, customer_id)
    holder = await hold_customer_row(app, "cus-b")
    run = asyncio.create_task(dunning.daily_run(app.state.runtime.engine, as_of=TODAY, run_at=RUN_AT,
                                                settings=app.state.runtime.settings, meta=META))
    try:
        await wait_until_blocked(app)
        run.cancel()  # the process stops midway: cus-a's transaction is committed, cus-b's is not
        with pytest.raises(asyncio.CancelledError):
            await run
    finally:
        await holder.rollback()
        await holder.close()
    first = await ledger(app)
    assert first and {c for c, _, _ in first} == {"cus-a"}

    resumed = await dunning.daily_run(app.state.runtime.engine, as_of=TODAY, run_at=RUN_AT,
                                      settings=app.state.runtime.settings, meta=META)
    after = await ledger(app)
    assert [row for row in after if row[0] == "cus-a"] == first
    assert {c for c, _, _ in after} == {"cus-a", "cus-b"}
    assert {n["customer_id"] for n in resumed.notices} == {"cus-b"}
    again = await dunning.daily_run(app.state.runtime.engine, as_of=TODAY, run_at=RUN_AT,
                                    settings=app.state.runtime.settings, meta=META)
    assert again.notices == [] and await ledger(app) == after
