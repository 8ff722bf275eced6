"""Invoicing over HTTP on a real PostgreSQL database."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text

from services.invoicing.main import definition
from services.invoicing.settings import InvoicingSettings
from shared.consumer import ReceivedEvent
from shared.contracts import (
    CreditHoldPlaced,
    CreditHoldReleased,
    DisputeResolved,
    PaymentApplied,
    PaymentUnapplied,
    SmallBalanceWriteOffReversed,
    SmallBalanceWrittenOff,
    WriteOffApproved,
)
from services.invoicing.application.handlers import on_external_event
from tests.support.infra import idem, service_client


@pytest.fixture
async def invoicing():
    async with service_client(lambda url: definition(InvoicingSettings(database_url=url))) as (client, app):
        yield client, app


async def _customer(client, terms=30, currency="USD", customer_id=None):
    body = {"name": "Acme Wholesale", "currency": currency, "payment_terms_days": terms, "credit_limit": "50000.00"}
    if customer_id:
        body["customer_id"] = customer_id
    r = await client.post("/v1/customers", json=body, headers=idem())
    assert r.status_code == 201, r.text
    return r.json()


def _received(contract, event_id=None) -> ReceivedEvent:
    return ReceivedEvent(event_id=event_id or str(uuid.uuid4()), event_type=contract.event_type,
                         schema_version=contract.schema_version, source="test", subject="s", occurred_at=None,
                         data=contract.to_payload(), headers={}, topic="t", partition=0, offset=0)


async def test_invoice_due_date_from_terms_and_open_balance(invoicing):
    client, _ = invoicing
    customer = await _customer(client, terms=45)
    r = await client.post("/v1/invoices", headers=idem(), json={
        "customer_id": customer["customer_id"], "issue_date": "2024-03-01", "invoice_number": "INV-1001",
        "lines": [{"description": "Widgets", "quantity": "3", "unit_price": "19.99"},
                  {"description": "Freight", "quantity": "1", "unit_price": "12.50"}]})
    assert r.status_code == 201, r.text
    invoice = r.json()
    assert invoice["due_date"] == "2024-04-15"
    assert invoice["total_amount"] == "72.47"
    assert invoice["open_balance"] == "72.47"
    exposure = (await client.get(f"/v1/customers/{customer['customer_id']}")).json()
    assert (exposure["open_balance"], exposure["available_credit"]) == ("72.47", "49927.53")
    got = await client.get(f"/v1/invoices/{invoice['invoice_id']}")
    assert got.status_code == 200
    assert got.headers["ETag"] == '"1"'
    assert got.json()["open_balance"] == "72.47"


async def test_idempotency_key_replays_and_rejects_other_body(invoicing):
    client, app = invoicing
    customer = await _customer(client)
    body = {"customer_id": customer["customer_id"], "issue_date": "2024-03-01",
            "lines": [{"description": "Service", "quantity": "1", "unit_price": "100.00"}]}
    key = {"Idempotency-Key": "issue-42"}
    first = await client.post("/v1/invoices", json=body, headers=key)
    again = await client.post("/v1/invoices", json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = await client.post("/v1/invoices", json={**body, "lines": [{"description": "x", "quantity": "2", "unit_price": "1.00"}]}, headers=key)
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    async with app.state.runtime.engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM events WHERE event_type = 'InvoiceIssued'"))).scalar()
    assert count == 1


async def test_concurrent_retries_with_one_key_append_once(invoicing):
    client, app = invoicing
    customer = await _customer(client)
    body = {"customer_id": customer["customer_id"], "issue_date": "2024-03-01",
            "lines": [{"description": "Service", "quantity": "1", "unit_price": "10.00"}]}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    results = await asyncio.gather(*[client.post("/v1/invoices", json=body, headers=key) for _ in range(5)])
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["invoice_id"] for r in results}) == 1
    async with app.state.runtime.engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM events WHERE event_type = 'InvoiceIssued'"))).scalar()
    assert count == 1


@pytest.mark.parametrize("payload, field", [
    ({"unit_price": 10.5}, "lines.0.unit_price"),
    ({"unit_price": "10.505"}, "lines.0.unit_price"),
    ({"unit_price": "abc"}, "lines.0.unit_price"),
])
async def test_bad_money_is_a_problem_naming_the_field(invoicing, payload, field):
    client, app = invoicing
    customer = await _customer(client)
    line = {"description": "x", "quantity": "1", "unit_price": "1.00", **payload}
    r = await client.post("/v1/invoices", headers=idem(), json={
        "customer_id": customer["customer_id"], "currency": "USD", "issue_date": "2024-03-01", "lines": [line]})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert [e["field"] for e in problem["errors"]] == [field], problem
    async with app.state.runtime.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM events WHERE event_type='InvoiceIssued'"))).scalar() == 0


async def test_missing_idempotency_key_and_unknown_customer(invoicing):
    client, _ = invoicing
    r = await client.post("/v1/customers", json={"name": "x", "currency": "USD", "credit_limit": "1.00"})
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "Idempotency-Key"
    r = await client.post("/v1/invoices", headers=idem(), json={
        "customer_id": "nobody", "issue_date": "2024-01-01", "lines": [{"description": "x", "quantity": "1", "unit_price": "1.00"}]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "customer_id"


async def test_credit_memo_reduces_balance_and_cannot_exceed_it(invoicing):
    client, app = invoicing
    customer = await _customer(client, currency="JPY")
    inv = (await client.post("/v1/invoices", headers=idem(), json={
        "customer_id": customer["customer_id"], "issue_date": "2024-01-10",
        "lines": [{"description": "Goods", "quantity": "1", "unit_price": "10000"}]})).json()
    assert inv["total_amount"] == "10000" and inv["currency"] == "JPY"
    r = await client.post(f"/v1/invoices/{inv['invoice_id']}/credit-memos", headers={**idem(), "If-Match": '"1"'},
                          json={"amount": "2500", "issue_date": "2024-01-20", "reason": "damaged"})
    assert r.status_code == 201, r.text
    stale = await client.post(f"/v1/invoices/{inv['invoice_id']}/credit-memos", headers={**idem(), "If-Match": '"1"'},
                              json={"amount": "1", "issue_date": "2024-01-20", "reason": "again"})
    assert stale.status_code == 409
    too_much = await client.post(f"/v1/invoices/{inv['invoice_id']}/credit-memos", headers=idem(),
                                 json={"amount": "7501", "issue_date": "2024-01-20", "reason": "too much"})
    assert too_much.status_code == 422 and too_much.json()["errors"][0]["field"] == "amount"
    got = (await client.get(f"/v1/invoices/{inv['invoice_id']}")).json()
    assert got["open_balance"] == "7500" and len(got["credit_memos"]) == 1


async def test_payments_and_dispute_resolution_from_events(invoicing):
    client, app = invoicing
    customer = await _customer(client)
    inv = (await client.post("/v1/invoices", headers=idem(), json={
        "customer_id": customer["customer_id"], "issue_date": "2024-01-10",
        "lines": [{"description": "Goods", "quantity": "1", "unit_price": "1000.00"}]})).json()
    engine = app.state.runtime.engine
    paid = PaymentApplied(payment_id="p1", invoice_id=inv["invoice_id"], customer_id=customer["customer_id"],
                          amount="900.00", currency="USD", value_date="2024-02-01", application_id="p1:1",
                          rule="remittance", confidence="1")
    resolved = DisputeResolved(dispute_id="d1", invoice_id=inv["invoice_id"], customer_id=customer["customer_id"],
                               currency="USD", credit_amount="100.00", resolution="credit granted",
                               resolved_on="2024-02-10")
    for contract in (paid, resolved):
        async with engine.begin() as conn:
            await on_external_event(conn, _received(contract))
    got = (await client.get(f"/v1/invoices/{inv['invoice_id']}")).json()
    exposure = (await client.get(f"/v1/customers/{customer['customer_id']}")).json()
    assert (exposure["open_balance"], exposure["available_credit"]) == ("0.00", "50000.00")
    assert got["paid_amount"] == "900.00"
    assert got["credited_amount"] == "100.00"
    assert got["open_balance"] == "0.00" and got["status"] == "closed"
    # The same resolution handled again (different delivery) grants no second credit memo.
    async with engine.begin() as conn:
        await on_external_event(conn, _received(resolved))
    got = (await client.get(f"/v1/invoices/{inv['invoice_id']}")).json()
    assert got["credited_amount"] == "100.00" and len(got["credit_memos"]) == 1


async def test_reversals_adjustments_and_write_offs_settle_the_invoice_once_each(invoicing):
    client, app = invoicing
    customer = await _customer(client)
    cid = customer["customer_id"]
    inv = (await client.post("/v1/invoices", headers=idem(), json={
        "customer_id": cid, "issue_date": "2024-01-10",
        "lines": [{"description": "Goods", "quantity": "1", "unit_price": "1000.00"}]})).json()
    iid = inv["invoice_id"]
    engine = app.state.runtime.engine
    common = {"payment_id": "p9", "invoice_id": iid, "customer_id": cid, "currency": "USD"}

    async def deliver(*contracts):
        for contract in contracts:
            async with engine.begin() as conn:
                await on_external_event(conn, _received(contract))

    async def invoice():
        return (await client.get(f"/v1/invoices/{iid}")).json()

    applied = PaymentApplied(**common, amount="600.00", value_date="2024-02-01", application_id="app-1",
                             rule="reference_exact", confidence="0.99")
    reversed_ = PaymentUnapplied(**common, application_id="app-1", amount="600.00", unapplied_on="2024-02-03",
                                 reason="payment_returned")
    # The reversal may arrive before the application (different partitions): the sum is the same.
    await deliver(reversed_, applied, applied, reversed_)
    got = await invoice()
    assert (got["paid_amount"], got["open_balance"], got["status"]) == ("0.00", "1000.00", "open")

    # The same payment re-applied later is a new application, not a duplicate of the reversed one.
    reapplied = PaymentApplied(**common, amount="990.00", value_date="2024-02-05", application_id="app-2",
                               rule="manual", confidence="1")
    small = SmallBalanceWrittenOff(**common, adjustment_id="adj-1", amount="10.00", value_date="2024-02-05")
    await deliver(reapplied, small, small)
    got = await invoice()
    assert (got["paid_amount"], got["adjusted_amount"], got["open_balance"], got["status"]) == \
        ("990.00", "10.00", "0.00", "closed")
    # The payment comes back: its application and the write-off it justified are both undone.
    await deliver(PaymentUnapplied(**common, application_id="app-2", amount="990.00", unapplied_on="2024-02-20",
                                   reason="payment_returned"),
                  SmallBalanceWriteOffReversed(**common, adjustment_id="adj-1", amount="10.00",
                                               reversed_on="2024-02-20", reason="payment_returned"))
    got = await invoice()
    assert (got["paid_amount"], got["adjusted_amount"], got["open_balance"], got["status"]) == \
        ("0.00", "0.00", "1000.00", "open")
    await deliver(reapplied, small)  # redelivered late: already counted, changes nothing
    assert (await invoice())["open_balance"] == "1000.00"

    inv2 = (await client.post("/v1/invoices", headers=idem(), json={
        "customer_id": cid, "issue_date": "2024-01-11",
        "lines": [{"description": "Goods", "quantity": "2", "unit_price": "250.00"}]})).json()
    write_off = WriteOffApproved(write_off_id="wo-1", invoice_id=inv2["invoice_id"], customer_id=cid,
                                 amount="500.00", currency="USD", reason="uncollectible", requested_by="ann",
                                 approved_by="bob", approved_on="2024-06-30")
    await deliver(write_off, write_off)
    got2 = (await client.get(f"/v1/invoices/{inv2['invoice_id']}")).json()
    assert (got2["written_off_amount"], got2["open_balance"], got2["status"]) == ("500.00", "0.00", "closed")
    # Nothing is left to credit on a written-off invoice.
    credit = await client.post(f"/v1/invoices/{inv2['invoice_id']}/credit-memos", headers=idem(),
                               json={"amount": "0.01", "issue_date": "2024-07-01", "reason": "late credit"})
    assert credit.status_code == 422 and credit.json()["errors"][0]["field"] == "amount"
    exposure = (await client.get(f"/v1/customers/{cid}")).json()
    assert (exposure["open_balance"], exposure["available_credit"]) == ("1000.00", "49000.00")
    listed = (await client.get("/v1/invoices", params={"customer_id": cid, "status": "open"})).json()
    assert [i["invoice_id"] for i in listed["data"]] == [iid]


async def test_credit_holds_follow_the_latest_business_date(invoicing):
    client, app = invoicing
    cid = (await _customer(client))["customer_id"]
    engine = app.state.runtime.engine
    placed = CreditHoldPlaced(hold_id="h1", customer_id=cid, reason="90 days past due", placed_on="2024-03-01")
    released = CreditHoldReleased(hold_id="h1", customer_id=cid, reason="overdue balance cleared",
                                  released_on="2024-03-20")
    async with engine.begin() as conn:
        await on_external_event(conn, _received(placed))
    got = (await client.get(f"/v1/customers/{cid}")).json()
    assert got["credit_hold"] == {"hold_id": "h1", "reason": "90 days past due", "placed_on": "2024-03-01"}
    async with engine.begin() as conn:
        await on_external_event(conn, _received(released))
        await on_external_event(conn, _received(placed))  # redelivered late: the release stands
    assert (await client.get(f"/v1/customers/{cid}")).json()["credit_hold"] is None


async def test_invoice_listing_paginates_and_filters(invoicing):
    client, _ = invoicing
    customer = await _customer(client)
    for i in range(5):
        r = await client.post("/v1/invoices", headers=idem(), json={
            "customer_id": customer["customer_id"], "issue_date": f"2024-01-0{i + 1}",
            "lines": [{"description": "x", "quantity": "1", "unit_price": "1.00"}]})
        assert r.status_code == 201
    seen, cursor = [], None
    while True:
        params = {"customer_id": customer["customer_id"], "limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = (await client.get("/v1/invoices", params=params)).json()
        seen += [i["issue_date"] for i in body["data"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == [f"2024-01-0{i + 1}" for i in range(5)]
    bad = await client.get("/v1/invoices", params={"cursor": "!!"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "cursor"


async def test_api_keys_gate_the_api_and_the_actor_reaches_event_metadata():
    import json as _json

    from shared.auth import key_hash

    keys = _json.dumps({key_hash("erp-key"): {"actor": "erp-sap", "scopes": ["invoicing:*"]},
                        key_hash("read-key"): {"actor": "viewer", "scopes": ["invoicing:read"]}})
    async with service_client(lambda url: definition(InvoicingSettings(database_url=url, api_keys=keys))) as (client, app):
        body = {"customer_id": "ACME", "name": "Acme", "currency": "USD", "credit_limit": "10.00"}
        assert (await client.post("/v1/customers", json=body, headers=idem())).status_code == 401
        assert (await client.post("/v1/customers", json=body,
                                  headers={**idem(), "Authorization": "Bearer read-key"})).status_code == 403
        r = await client.post("/v1/customers", json=body, headers={**idem(), "Authorization": "Bearer erp-key"})
        assert r.status_code == 201, r.text
        assert (await client.get("/v1/customers/ACME", headers={"Authorization": "Bearer read-key"})).status_code == 200
        assert (await client.get("/healthz")).status_code == 200
        async with app.state.runtime.engine.connect() as conn:
            actor = (await conn.execute(text("SELECT metadata->>'actor' FROM events WHERE stream_id = 'customer-ACME'"))).scalar()
        assert actor == "erp-sap"


async def test_readiness_waits_for_migrations():
    """An API pod started before its migrations Job ran is alive but not ready."""
    import httpx as _httpx

    from shared.service import build_app
    from tests.support.infra import fresh_database, sqlalchemy_url

    async with fresh_database("ready") as db:
        settings = InvoicingSettings(database_url=sqlalchemy_url(db), role="api", migrate_on_start=False, allow_open=True)
        app = build_app(definition(settings))
        async with app.router.lifespan_context(app):
            async with _httpx.AsyncClient(transport=_httpx.ASGITransport(app=app), base_url="http://t") as client:
                assert (await client.get("/healthz")).status_code == 200
                before = await client.get("/readyz")
                assert before.status_code == 503
                assert "invoicing/0001_invoicing.sql" in before.json()["checks"]["migrations"]["pending"]
                await app.state.runtime.migrate()
                assert (await client.get("/readyz")).status_code == 200


async def test_terms_codes_drive_the_due_date_and_bad_terms_name_the_field(invoicing):
    client, _ = invoicing
    r = await client.post("/v1/customers", headers=idem(), json={
        "name": "Month-end payer", "currency": "USD", "payment_terms": "NET30_EOM", "credit_limit": "1000.00"})
    assert r.status_code == 201, r.text
    customer = r.json()
    assert (customer["payment_terms"], customer["payment_terms_days"]) == ("NET30_EOM", 30)
    inv = (await client.post("/v1/invoices", headers=idem(), json={
        "customer_id": customer["customer_id"], "issue_date": "2024-01-15",
        "lines": [{"description": "x", "quantity": "1", "unit_price": "1.00"}]})).json()
    assert inv["due_date"] == "2024-03-01"
    bad = await client.post("/v1/customers", headers=idem(), json={
        "name": "x", "currency": "USD", "payment_terms": "2/10 NET30", "credit_limit": "1.00"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "payment_terms"
    clash = await client.post("/v1/customers", headers=idem(), json={
        "name": "x", "currency": "USD", "payment_terms": "NET30", "payment_terms_days": 45, "credit_limit": "1.00"})
    assert clash.status_code == 422 and clash.json()["errors"][0]["field"] == "payment_terms_days"


async def test_openapi_documents_the_response_bodies_for_generated_clients(invoicing):
    client, _ = invoicing
    spec = (await client.get("/v1/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    invoice = schemas["InvoiceOut"]["properties"]
    assert {"open_balance", "paid_amount", "adjusted_amount", "written_off_amount", "lines"} <= set(invoice)
    assert invoice["open_balance"]["type"] == "string"  # money travels as decimal strings
    get_one = spec["paths"]["/v1/invoices/{invoice_id}"]["get"]["responses"]["200"]
    assert get_one["content"]["application/json"]["schema"]["$ref"].endswith("/InvoiceOut")
    created = spec["paths"]["/v1/customers"]["post"]["responses"]["201"]
    assert created["content"]["application/json"]["schema"]["$ref"].endswith("/CustomerOut")
