"""Disputes over HTTP and from events, on a real PostgreSQL database."""
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
from tests.support.infra import idem, service_client

TODAY = date(2024, 4, 15)


@pytest.fixture
async def disputes():
    async with service_client(lambda url: definition(DisputesSettings(database_url=url), clock=FixedClock(TODAY))) \
            as (client, app):
        yield client, app


def _received(contract, event_id=None) -> ReceivedEvent:
    return ReceivedEvent(event_id=event_id or str(uuid.uuid4()), event_type=contract.event_type,
                         schema_version=contract.schema_version, source="test", subject="s", occurred_at=None,
                         data=contract.to_payload(), headers={}, topic="t", partition=0, offset=0)


async def _deliver(app, contract, event_id=None) -> None:
    async with app.state.runtime.engine.begin() as conn:
        await on_external_event(conn, _received(contract, event_id))


async def _invoice(app, invoice_id="inv-1", total="1000.00", currency="USD", customer_id="cus-1") -> None:
    await _deliver(app, InvoiceIssued(
        invoice_id=invoice_id, invoice_number=f"N-{invoice_id}", customer_id=customer_id, currency=currency,
        issue_date="2024-03-01", due_date="2024-03-31", total_amount=total,
        lines=[InvoiceLine(description="Goods", quantity="1", unit_price=total, amount=total)]))


async def _events(app, event_type=None) -> list[dict]:
    async with app.state.runtime.engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT stream_id, stream_type, version, event_type, occurred_at, payload, metadata FROM events"
            " WHERE CAST(:t AS text) IS NULL OR event_type = :t ORDER BY global_position"), {"t": event_type})
        return [dict(r) for r in rows.mappings()]


def _field(response) -> str:
    return response.json()["errors"][0]["field"]


async def test_short_pay_opens_one_deduction_even_when_redelivered(disputes):
    client, app = disputes
    short = ShortPayDetected(payment_id="pay-9", invoice_id="inv-1", customer_id="cus-1", currency="USD",
                             open_amount="1000.00", paid_amount="960.00", shortfall="40.00",
                             value_date="2024-03-20", reason_code=None)
    await _deliver(app, short)
    await _deliver(app, short)                       # redelivered under another event id
    # and two deliveries racing each other: one loses on the stream version and, retried, finds it open
    results = await asyncio.gather(_deliver(app, short), _deliver(app, short), return_exceptions=True)
    assert all(r is None or r.__class__.__name__ == "ConcurrencyError" for r in results), results
    opened = await _events(app, "DeductionOpened")
    assert len(opened) == 1
    expected_id = deduction_id("pay-9", "inv-1")
    assert opened[0]["stream_id"] == f"dispute-{expected_id}" and opened[0]["stream_type"] == "dispute"
    assert opened[0]["payload"] == {
        "dispute_id": expected_id, "invoice_id": "inv-1", "customer_id": "cus-1", "payment_id": "pay-9",
        "currency": "USD", "amount": "40.00", "reason_code": "UNSPECIFIED", "opened_on": "2024-03-20",
        "customer_reason_code": None, "external_reference": None}
    assert opened[0]["occurred_at"].date() == date(2024, 3, 20)
    got = await client.get(f"/v1/disputes/{expected_id}")
    assert got.status_code == 200
    assert got.json()["kind"] == "deduction" and got.json()["amount"] == "40.00"
    listed = (await client.get("/v1/disputes", params={"customer_id": "cus-1"})).json()["data"]
    assert [d["dispute_id"] for d in listed] == [expected_id]


async def test_a_returned_payment_withdraws_the_deductions_its_short_pays_opened(disputes):
    client, app = disputes
    await _invoice(app, "inv-1", total="1000.00")
    await _invoice(app, "inv-2", total="500.00")
    for invoice_id, open_, paid, short in (("inv-1", "1000.00", "960.00", "40.00"),
                                           ("inv-2", "500.00", "450.00", "50.00")):
        await _deliver(app, ShortPayDetected(payment_id="pay-7", invoice_id=invoice_id, customer_id="cus-1",
                                             currency="USD", open_amount=open_, paid_amount=paid, shortfall=short,
                                             value_date="2024-03-20"))
    # A person already settled the second deduction: that decision stands.
    settled = await client.post(f"/v1/disputes/{deduction_id('pay-7', 'inv-2')}/resolution", headers=idem(),
                                json={"resolution": "rejected", "resolved_on": "2024-03-25"})
    assert settled.status_code == 201, settled.text
    dispute = await client.post("/v1/disputes", headers=idem(), json={
        "invoice_id": "inv-1", "amount": "100.00", "reason_code": "PRICING", "opened_on": "2024-03-21"})
    assert dispute.status_code == 201
    returned = PaymentReturned(payment_id="pay-7", customer_id="cus-1", amount="1410.00", currency="USD",
                               returned_on="2024-03-28", reason_code="R01", reason="insufficient funds")
    await _deliver(app, returned)
    await _deliver(app, returned)  # redelivered: already withdrawn
    first = (await client.get(f"/v1/disputes/{deduction_id('pay-7', 'inv-1')}")).json()
    assert (first["status"], first["resolution"], first["credit_amount"], first["resolved_on"]) == \
        ("resolved", "withdrawn", "0.00", "2024-03-28")
    assert first["resolution_note"] == "payment pay-7 returned (R01)"
    second = (await client.get(f"/v1/disputes/{deduction_id('pay-7', 'inv-2')}")).json()
    assert second["resolution"] == "rejected"
    assert (await client.get(f"/v1/disputes/{dispute.json()['dispute_id']}")).json()["status"] == "open"
    resolved = [e["payload"] for e in await _events(app, "DisputeResolved")]
    assert [(e["dispute_id"], e["resolution"], e["credit_amount"]) for e in resolved] == [
        (deduction_id("pay-7", "inv-2"), "rejected", "0.00"), (deduction_id("pay-7", "inv-1"), "withdrawn", "0.00")]
    # The withdrawn deduction no longer holds any of the invoice: 900.00 can still be disputed.
    more = await client.post("/v1/disputes", headers=idem(), json={
        "invoice_id": "inv-1", "amount": "900.00", "reason_code": "PRICING"})
    assert more.status_code == 201, more.text


async def test_short_pay_reason_code_kept_when_known_and_recorded_when_not(disputes):
    _, app = disputes
    for payment_id, code in (("pay-1", "damaged"), ("pay-2", "X17")):
        await _deliver(app, ShortPayDetected(
            payment_id=payment_id, invoice_id="inv-1", customer_id="cus-1", currency="USD",
            open_amount="100.00", paid_amount="90.00", shortfall="10.00", value_date="2024-03-20",
            reason_code=code))
    opened = await _events(app, "DeductionOpened")
    assert [e["payload"]["reason_code"] for e in opened] == ["DAMAGED", "UNSPECIFIED"]
    assert opened[1]["metadata"]["remittance_reason_code"] == "X17"


async def test_dispute_and_resolution_emit_exact_amounts(disputes):
    client, app = disputes
    await _invoice(app, total="1000.00")
    r = await client.post("/v1/disputes", headers={**idem(), "X-Actor": "ar.clerk@acme"}, json={
        "invoice_id": "inv-1", "amount": "250.50", "reason_code": "pricing", "description": "price list 2024",
        "opened_on": "2024-03-10"})
    assert r.status_code == 201, r.text
    dispute = r.json()
    assert dispute["status"] == "open" and dispute["amount"] == "250.50" and dispute["reason_code"] == "PRICING"
    dispute_id = dispute["dispute_id"]
    got = await client.get(f"/v1/disputes/{dispute_id}")
    assert got.headers["ETag"] == '"1"'

    r = await client.post(f"/v1/disputes/{dispute_id}/resolution", headers={**idem(), "If-Match": '"1"'},
                          json={"resolution": "partial_credit", "credit_amount": "100.25",
                                "resolved_on": "2024-04-01", "note": "agreed with buyer"})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "resolved" and r.json()["credit_amount"] == "100.25"

    events = await _events(app)
    assert [(e["event_type"], e["version"]) for e in events] == [("DisputeOpened", 1), ("DisputeResolved", 2)]
    opened, resolved = events
    assert opened["payload"] == {
        "dispute_id": dispute_id, "invoice_id": "inv-1", "customer_id": "cus-1", "currency": "USD",
        "amount": "250.50", "reason_code": "PRICING", "opened_on": "2024-03-10", "description": "price list 2024",
        "line_number": None}
    assert opened["metadata"]["actor"] == "ar.clerk@acme"
    assert resolved["payload"] == {
        "dispute_id": dispute_id, "invoice_id": "inv-1", "customer_id": "cus-1", "currency": "USD",
        "credit_amount": "100.25", "resolution": "partial_credit", "resolved_on": "2024-04-01", "rebill_amount": None}
    assert resolved["metadata"]["note"] == "agreed with buyer"
    assert resolved["occurred_at"].date() == date(2024, 4, 1)

    again = await client.post(f"/v1/disputes/{dispute_id}/resolution", headers=idem(),
                              json={"resolution": "rejected"})
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert len(await _events(app, "DisputeResolved")) == 1

    listed = (await client.get("/v1/disputes", params={"status": "resolved"})).json()["data"]
    assert [d["dispute_id"] for d in listed] == [dispute_id]
    assert (await client.get("/v1/disputes", params={"status": "open"})).json()["data"] == []


async def test_rejection_and_full_credit_defaults(disputes):
    client, app = disputes
    await _invoice(app, invoice_id="inv-jpy", total="10000", currency="JPY")
    ids = []
    for amount in ("3000", "2000"):
        r = await client.post("/v1/disputes", headers=idem(), json={
            "invoice_id": "inv-jpy", "amount": amount, "reason_code": "QUANTITY"})
        assert r.status_code == 201, r.text
        assert r.json()["opened_on"] == TODAY.isoformat()
        ids.append(r.json()["dispute_id"])
    full = await client.post(f"/v1/disputes/{ids[0]}/resolution", headers=idem(), json={"resolution": "credit"})
    rejected = await client.post(f"/v1/disputes/{ids[1]}/resolution", headers=idem(), json={"resolution": "rejected"})
    assert full.status_code == rejected.status_code == 201
    payloads = [e["payload"] for e in await _events(app, "DisputeResolved")]
    assert [(p["resolution"], p["credit_amount"], p["resolved_on"]) for p in payloads] == [
        ("credit", "3000", "2024-04-15"), ("rejected", "0", "2024-04-15")]


async def test_resolution_replays_with_its_idempotency_key(disputes):
    client, app = disputes
    await _invoice(app)
    dispute_id = (await client.post("/v1/disputes", headers=idem(), json={
        "invoice_id": "inv-1", "amount": "10.00", "reason_code": "TAX"})).json()["dispute_id"]
    key = idem()
    first = await client.post(f"/v1/disputes/{dispute_id}/resolution", headers=key, json={"resolution": "credit"})
    replay = await client.post(f"/v1/disputes/{dispute_id}/resolution", headers=key, json={"resolution": "credit"})
    assert first.status_code == replay.status_code == 201
    assert replay.headers.get("Idempotent-Replayed") == "true" and replay.json() == first.json()
    assert len(await _events(app, "DisputeResolved")) == 1


@pytest.mark.parametrize("body, field", [
    ({"invoice_id": "unknown"}, "invoice_id"),
    ({"reason_code": "BECAUSE"}, "reason_code"),
    ({"reason_code": "UNSPECIFIED"}, "reason_code"),
    ({"amount": "1000.01"}, "amount"),
    ({"amount": "0.00"}, "amount"),
    ({"amount": "1.001"}, "amount"),
    ({"amount": 12.5}, "amount"),
    ({"opened_on": "2024-02-01"}, "opened_on"),
])
async def test_opening_problems_name_the_field(disputes, body, field):
    client, app = disputes
    await _invoice(app)
    r = await client.post("/v1/disputes", headers=idem(), json={
        "invoice_id": "inv-1", "amount": "100.00", "reason_code": "PRICING", **body})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert _field(r) == field
    assert await _events(app) == []


async def test_disputes_cannot_exceed_the_invoice_together(disputes):
    client, app = disputes
    await _invoice(app, total="100.00")
    ok = await client.post("/v1/disputes", headers=idem(), json={
        "invoice_id": "inv-1", "amount": "60.00", "reason_code": "DAMAGED"})
    assert ok.status_code == 201
    too_much = await client.post("/v1/disputes", headers=idem(), json={
        "invoice_id": "inv-1", "amount": "40.01", "reason_code": "DAMAGED"})
    assert too_much.status_code == 422 and _field(too_much) == "amount"
    # rejecting the first frees the invoice again
    await client.post(f"/v1/disputes/{ok.json()['dispute_id']}/resolution", headers=idem(),
                      json={"resolution": "rejected"})
    again = await client.post("/v1/disputes", headers=idem(), json={
        "invoice_id": "inv-1", "amount": "100.00", "reason_code": "DAMAGED"})
    assert again.status_code == 201, again.text


async def test_disputes_opened_at_the_same_instant_cannot_exceed_the_invoice(disputes):
    client, app = disputes
    await _invoice(app, total="100.00")
    responses = await asyncio.gather(*[client.post("/v1/disputes", headers=idem(), json={
        "invoice_id": "inv-1", "amount": "30.00", "reason_code": "PRICING"}) for _ in range(8)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 3 + [422] * 5, [r.text for r in responses]
    listed = (await client.get("/v1/disputes", params={"invoice_id": "inv-1"})).json()["data"]
    assert sorted(d["amount"] for d in listed) == ["30.00"] * 3


@pytest.mark.parametrize("body, status, field", [
    ({"resolution": "partial_credit", "credit_amount": "250.00"}, 422, "credit_amount"),
    ({"resolution": "partial_credit"}, 422, "credit_amount"),
    ({"resolution": "rejected", "credit_amount": "5.00"}, 422, "credit_amount"),
    ({"resolution": "credit", "credit_amount": "1.001"}, 422, "credit_amount"),
    ({"resolution": "waived"}, 422, "resolution"),
    ({"resolution": "credit", "resolved_on": "2024-03-01"}, 422, "resolved_on"),
])
async def test_resolution_problems_name_the_field(disputes, body, status, field):
    client, app = disputes
    await _invoice(app)
    dispute_id = (await client.post("/v1/disputes", headers=idem(), json={
        "invoice_id": "inv-1", "amount": "200.00", "reason_code": "PRICING", "opened_on": "2024-03-05"}
    )).json()["dispute_id"]
    r = await client.post(f"/v1/disputes/{dispute_id}/resolution", headers=idem(), json=body)
    assert r.status_code == status, r.text
    assert _field(r) == field
    assert await _events(app, "DisputeResolved") == []


async def test_unknown_dispute_stale_version_and_reason_codes(disputes):
    client, app = disputes
    missing = await client.post("/v1/disputes/nope/resolution", headers=idem(), json={"resolution": "rejected"})
    assert missing.status_code == 404 and _field(missing) == "dispute_id"
    assert (await client.get("/v1/disputes/nope")).status_code == 404
    await _invoice(app)
    dispute_id = (await client.post("/v1/disputes", headers=idem(), json={
        "invoice_id": "inv-1", "amount": "5.00", "reason_code": "OTHER"})).json()["dispute_id"]
    stale = await client.post(f"/v1/disputes/{dispute_id}/resolution", headers={**idem(), "If-Match": '"7"'},
                              json={"resolution": "rejected"})
    assert stale.status_code == 409 and _field(stale) == "If-Match"
    codes = (await client.get("/v1/reason-codes")).json()["data"]
    assert {c["code"] for c in codes} >= {"PRICING", "DAMAGED", "OTHER", "UNSPECIFIED"}
    assert [c["selectable"] for c in codes if c["code"] == "UNSPECIFIED"] == [False]


async def test_listing_paginates_and_filters(disputes):
    client, app = disputes
    await _invoice(app, invoice_id="inv-a", customer_id="cus-a")
    await _invoice(app, invoice_id="inv-b", customer_id="cus-b")
    for i in range(5):
        r = await client.post("/v1/disputes", headers=idem(), json={
            "invoice_id": "inv-a", "amount": f"{i + 1}.00", "reason_code": "PRICING"})
        assert r.status_code == 201
    await client.post("/v1/disputes", headers=idem(), json={"invoice_id": "inv-b", "amount": "1.00",
                                                             "reason_code": "TAX"})
    seen, cursor = [], None
    while True:
        params = {"customer_id": "cus-a", "limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/v1/disputes", params=params)).json()
        seen += [d["amount"] for d in body["data"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == ["1.00", "2.00", "3.00", "4.00", "5.00"]
    bad = await client.get("/v1/disputes", params={"status": "closed"})
    assert bad.status_code == 422 and _field(bad) == "status"


async def test_the_queue_filters_by_reason_owner_team_amount_and_age(disputes):
    client, app = disputes
    await _invoice(app, "inv-f1", total="1000.00")
    opened = {}
    for name, amount, reason, on in (("a", "10.00", "PRICING", "2024-04-10"), ("b", "250.00", "QUANTITY", "2024-03-15"),
                                     ("c", "99.99", "PRICING", "2024-03-02")):
        r = await client.post("/v1/disputes", headers=idem(), json={
            "invoice_id": "inv-f1", "amount": amount, "reason_code": reason, "opened_on": on})
        assert r.status_code == 201, r.text
        opened[name] = r.json()["dispute_id"]
    r = await client.post(f"/v1/disputes/{opened['c']}/assignment", headers=idem(),
                          json={"owner": "dora", "team": "billing"})
    assert r.status_code == 201, r.text

    async def ids(**params) -> list[str]:
        r = await client.get("/v1/disputes", params={"invoice_id": "inv-f1", "limit": 1, **params})
        assert r.status_code == 200, r.text
        seen, body = [], r.json()
        while True:
            seen += [{v: k for k, v in opened.items()}[d["dispute_id"]] for d in body["data"]]
            if not body["next_cursor"]:
                return seen
            body = (await client.get("/v1/disputes", params={"invoice_id": "inv-f1", "limit": 1, **params,
                                                               "cursor": body["next_cursor"]})).json()

    assert await ids(reason_code="PRICING") == ["a", "c"]
    assert await ids(owner="dora") == ["c"] and await ids(owner="-") == ["a", "b"]
    assert await ids(team="billing") == ["c"] and await ids(team="sales") == ["a"]
    assert await ids(min_amount="99.99") == ["b", "c"] and await ids(min_amount="50", max_amount="100") == ["c"]
    assert await ids(opened_to="2024-03-15") == ["b", "c"]        # at least 31 days old on 2024-04-15
    assert await ids(opened_from="2024-03-10", reason_code="QUANTITY") == ["b"]
    for bad in ({"min_amount": "ten"}, {"min_amount": "-1"}, {"team": "finance"}, {"opened_to": "yesterday"},
                {"max_amount": "NaN"}):
        r = await client.get("/v1/disputes", params=bad)
        assert r.status_code == 422 and _field(r) == next(iter(bad)), (bad, r.text)
