"""An Idempotency-Key stands for one request of one caller: method, concrete path (ids
included) and body. Reusing it on another resource is a 422, never a replay of the first
answer (issue 13, defect 6). Over HTTP on a real PostgreSQL database."""
from __future__ import annotations

import json
import uuid
from datetime import date, timedelta

from sqlalchemy import text

from services.collections.application.handlers import on_external_event
from services.collections.main import definition
from services.collections.settings import CollectionsSettings
from shared.auth import key_hash
from shared.clock import FixedClock
from shared.consumer import ReceivedEvent
from shared.contracts import CustomerRegistered, InvoiceIssued, InvoiceLine
from tests.support.infra import service_client

TODAY = date(2024, 12, 31)


async def deliver(app, contract) -> None:
    received = ReceivedEvent(event_id=str(uuid.uuid4()), event_type=contract.event_type,
                             schema_version=contract.schema_version, source="test", subject="s", occurred_at=None,
                             data=contract.to_payload(), headers={}, topic="t", partition=0, offset=0)
    async with app.state.runtime.engine.begin() as conn:
        await on_external_event(conn, received)


async def two_write_off_requests(app, client, headers=None) -> None:
    headers = headers or {}
    await deliver(app, CustomerRegistered(customer_id="cus-1", name="cus-1 SARL", currency="EUR",
                                          payment_terms_days=30, credit_limit="10000.00", registered_on="2023-01-01"))
    for invoice_id in ("inv-1", "inv-2"):
        due = date(2024, 1, 31)
        await deliver(app, InvoiceIssued(
            invoice_id=invoice_id, invoice_number=f"N-{invoice_id}", customer_id="cus-1", currency="EUR",
            issue_date=due - timedelta(days=30), due_date=due, total_amount="800.00",
            lines=[InvoiceLine(description="Goods", quantity="1", unit_price="800.00", amount="800.00")]))
    for n in (1, 2):
        r = await client.post("/v1/write-offs", headers={"Idempotency-Key": str(uuid.uuid4()), **headers}, json={
            "write_off_id": f"wo-{n}", "invoice_id": f"inv-{n}", "reason": "insolvent", "requested_by": "mia",
            "requested_on": "2024-05-01"})
        assert r.status_code == 201, r.text


async def write_off_events(app) -> list[str]:
    async with app.state.runtime.engine.connect() as conn:
        rows = await conn.execute(text("SELECT payload->>'write_off_id' FROM events"
                                       " WHERE event_type = 'WriteOffApproved' ORDER BY global_position"))
        return list(rows.scalars())


async def test_a_key_reused_on_another_resource_is_refused_not_replayed():
    def make(url):
        return definition(CollectionsSettings(database_url=url, role="api"), clock=FixedClock(TODAY))

    async with service_client(make) as (client, app):
        await two_write_off_requests(app, client)
        for approver in ("carl",):
            assert (await client.put(f"/v1/approvers/{approver}", json={"role": "manager"})).status_code == 200
        same_body = {"approved_by": "carl", "approved_on": "2024-05-02"}
        key = {"Idempotency-Key": "approve-1"}
        first = await client.post("/v1/write-offs/wo-1/approval", headers=key, json=same_body)
        assert first.status_code == 201 and first.json()["write_off_id"] == "wo-1"

        other = await client.post("/v1/write-offs/wo-2/approval", headers=key, json=same_body)
        assert other.status_code == 422, other.text
        assert other.headers["content-type"] == "application/problem+json"
        assert other.json()["type"].endswith("/idempotency-key-reused")
        assert other.json()["errors"][0]["field"] == "Idempotency-Key"
        assert (await client.get("/v1/write-offs/wo-2")).json()["status"] == "requested"

        retry = await client.post("/v1/write-offs/wo-1/approval", headers=key, json=same_body)
        assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
        assert retry.json() == first.json()
        assert await write_off_events(app) == ["wo-1"]

        # With a fresh key WO-2 is approved as asked.
        ok = await client.post("/v1/write-offs/wo-2/approval", headers={"Idempotency-Key": "approve-2"}, json=same_body)
        assert ok.status_code == 201 and ok.json()["write_off_id"] == "wo-2"
        assert await write_off_events(app) == ["wo-1", "wo-2"]


async def test_with_api_keys_each_caller_has_its_own_keys():
    keys = json.dumps({key_hash("mia-key"): {"actor": "mia", "scopes": ["collections:*"]},
                       key_hash("carl-key"): {"actor": "carl", "scopes": ["collections:*"]},
                       key_hash("admin-key"): {"actor": "it-admin", "scopes": ["collections:*", "collections:admin"]}})

    def make(url):
        return definition(CollectionsSettings(database_url=url, role="api", api_keys=keys), clock=FixedClock(TODAY))

    async with service_client(make) as (client, app):
        mia, carl, admin = ({"Authorization": f"Bearer {k}"} for k in ("mia-key", "carl-key", "admin-key"))
        await two_write_off_requests(app, client, headers=mia)
        assert (await client.put("/v1/approvers/carl", json={"role": "manager"}, headers=admin)).status_code == 200
        contact = {"customer_id": "cus-1", "kind": "call", "outcome": "voicemail", "contacted_on": "2024-05-02"}
        # The same key from two callers: two operations, neither sees the other's answer.
        by_mia = await client.post("/v1/contacts", headers={"Idempotency-Key": "k-1", **mia}, json=contact)
        by_carl = await client.post("/v1/contacts", headers={"Idempotency-Key": "k-1", **carl}, json=contact)
        assert by_mia.status_code == 201, by_mia.text
        assert by_carl.status_code == 201 and "Idempotent-Replayed" not in by_carl.headers
        assert by_carl.json() != by_mia.json()
        # Carl's key on another write-off is refused; WO-2 stays requested.
        approve = {"approved_by": "carl", "approved_on": "2024-05-02"}
        first = await client.post("/v1/write-offs/wo-1/approval", headers={"Idempotency-Key": "a-1", **carl}, json=approve)
        assert first.status_code == 201, first.text
        other = await client.post("/v1/write-offs/wo-2/approval", headers={"Idempotency-Key": "a-1", **carl}, json=approve)
        assert other.status_code == 422 and other.json()["type"].endswith("/idempotency-key-reused")
        assert (await client.get("/v1/write-offs/wo-2", headers=carl)).json()["status"] == "requested"
