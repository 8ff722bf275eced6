"""Adjustments, voids and returns through invoicing's API on a real PostgreSQL database; then the
events invoicing stored are handed to cash_application's, collections' and reporting's consumer
handlers (each on its own database), and every context shows the same open balances, and
reporting's roll-forward ties out with the adjustments on its adjustments line."""
from __future__ import annotations

import asyncio
import uuid
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import text

from services.cash_application.main import definition as cash_definition
from services.cash_application.projections.open_items import on_invoicing_event
from services.cash_application.settings import CashApplicationSettings
from services.collections.application.handlers import on_external_event as collections_handler
from services.collections.main import definition as collections_definition
from services.collections.settings import CollectionsSettings
from services.invoicing.application.handlers import on_external_event as invoicing_handler
from services.invoicing.main import definition as invoicing_definition
from services.invoicing.settings import InvoicingSettings
from services.reporting.main import definition as reporting_definition
from services.reporting.projections.facts import project
from services.reporting.settings import ReportingSettings
from shared import eventstore
from shared.clock import FixedClock
from shared.consumer import ReceivedEvent
from shared.contracts import PaymentApplied, topic_for
from tests.support.infra import idem, service_client

TODAY = date(2024, 3, 31)


@pytest.fixture
async def invoicing():
    def make(url):
        d = invoicing_definition(InvoicingSettings(database_url=url, adjustment_approval_limit=Decimal("1000.00")))
        d.state["clock"] = FixedClock(TODAY)
        return d

    async with service_client(make) as (client, app):
        yield client, app


async def _post(client, path, body, status=201, headers=None):
    r = await client.post(path, json=body, headers={**idem(), **(headers or {})})
    assert r.status_code == status, r.text
    return r.json()


async def _setup(client):
    await _post(client, "/v1/customers", {"customer_id": "C1", "name": "Acme", "currency": "USD",
                                          "payment_terms_days": 30, "credit_limit": "100000.00"})

    async def invoice(number, lines):
        return await _post(client, "/v1/invoices", {
            "customer_id": "C1", "invoice_id": number, "invoice_number": number, "issue_date": "2024-03-01",
            "lines": [{"description": d, "quantity": q, "unit_price": p} for d, q, p in lines]})

    await invoice("A", [("Widgets", "10", "100.00")])
    await invoice("B", [("Service", "1", "500.00")])
    await invoice("C", [("Chairs", "4", "50.00"), ("Lamps", "3", "33.33")])
    await invoice("D", [("Machine", "1", "3000.00")])
    await invoice("E", [("Parts", "1", "80.00")])


async def test_adjustments_voids_and_returns_through_the_api(invoicing):
    client, app = invoicing
    await _setup(client)

    # A: credit 50 (within the limit: posted), then a 25.00 late fee.
    credit = await _post(client, "/v1/invoices/A/adjustments", {
        "direction": "credit", "amount": "50.00", "reason_code": "pricing_correction",
        "adjustment_date": "2024-03-05", "requested_by": "ann"})
    assert (credit["status"], credit["approved_by"], credit["amount"]) == ("posted", None, "50.00")
    key = {"Idempotency-Key": "late-fee-A"}
    body = {"direction": "debit", "amount": "25.00", "reason_code": "LATE_FEE", "adjustment_date": "2024-03-10"}
    fee = await client.post("/v1/invoices/A/adjustments", json=body, headers=key)
    again = await client.post("/v1/invoices/A/adjustments", json=body, headers=key)
    assert fee.status_code == again.status_code == 201 and again.json() == fee.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    a = (await client.get("/v1/invoices/A")).json()
    assert (a["credit_adjusted"], a["debit_adjusted"], a["open_balance"], a["version"]) == ("50.00", "25.00",
                                                                                           "975.00", 3)

    # Bad input: problem+json naming the field, nothing appended.
    for bad, field, status in (
            ({"direction": "credit", "amount": "975.01", "reason_code": "GOODWILL"}, "amount", 422),
            ({"direction": "credit", "amount": "10.001", "reason_code": "GOODWILL"}, "amount", 422),
            ({"direction": "credit", "amount": "10.00", "reason_code": "LATE_FEE"}, "reason_code", 422),
            ({"direction": "credit", "amount": "10.00", "reason_code": "WHATEVER"}, "reason_code", 422),
            ({"direction": "up", "amount": "10.00", "reason_code": "FREIGHT"}, "direction", 422),
            ({"direction": "credit", "amount": 10, "reason_code": "FREIGHT"}, "amount", 422)):
        r = await client.post("/v1/invoices/A/adjustments", json=bad, headers=idem())
        assert r.status_code == status, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["errors"][0]["field"] == field, r.json()
    stale = await client.post("/v1/invoices/A/adjustments", headers={**idem(), "If-Match": '"1"'}, json={
        "direction": "credit", "amount": "1.00", "reason_code": "GOODWILL"})
    assert stale.status_code == 409
    assert (await client.get("/v1/invoices/A")).json()["version"] == 3

    # B: void (unpaid). Nothing more can happen to it.
    voided = await _post(client, "/v1/invoices/B/void", {"voided_on": "2024-03-12", "reason": "billed twice"})
    assert (voided["status"], voided["voided_amount"], voided["open_balance"]) == ("void", "500.00", "0.00")
    for path, body in (("/v1/invoices/B/void", {"reason": "again"}),
                       ("/v1/invoices/B/adjustments", {"direction": "debit", "amount": "1.00", "reason_code": "FREIGHT"}),
                       ("/v1/invoices/B/credit-memos", {"amount": "1.00", "issue_date": "2024-03-20", "reason": "x"}),
                       ("/v1/invoices/B/returns", {"rma_number": "R-B", "lines": [{"line_number": 1, "quantity": "1"}]})):
        r = await client.post(path, json=body, headers=idem())
        assert r.status_code == 409, (path, r.text)
    assert [i["invoice_id"] for i in (await client.get("/v1/invoices", params={"status": "void"})).json()["data"]] == ["B"]

    # E: paid 80.00 (cash_application's PaymentApplied): it cannot be voided.
    async with app.state.runtime.engine.begin() as conn:
        await invoicing_handler(conn, _received(PaymentApplied(
            payment_id="P1", invoice_id="E", customer_id="C1", currency="USD", amount=Decimal("80.00"),
            value_date=date(2024, 3, 6), application_id="app-1", rule="remittance", confidence=Decimal("1"))))
    r = await client.post("/v1/invoices/E/void", json={"reason": "x"}, headers=idem())
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "invoice_id"

    # C: return 2 chairs (RMA-7) -> 100.00; chairs left to return: 2.
    memo = await _post(client, "/v1/invoices/C/returns", {
        "rma_number": "RMA-7", "return_date": "2024-03-15", "lines": [{"line_number": 1, "quantity": "2"}]})
    assert (memo["amount"], memo["rma_number"]) == ("100.00", "RMA-7")
    assert memo["lines"] == [{"line_number": 1, "description": "Chairs", "quantity": "2", "unit_price": "50.00",
                              "amount": "100.00", "tax_amount": "0.00"}]  # the invoice has no tax
    r = await client.post("/v1/invoices/C/returns", headers=idem(), json={
        "rma_number": "RMA-8", "return_date": "2024-03-16", "lines": [{"line_number": 1, "quantity": "3"}]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "lines.0.quantity"
    r = await client.post("/v1/invoices/C/returns", headers=idem(), json={
        "rma_number": "RMA-7", "return_date": "2024-03-16", "lines": [{"line_number": 2, "quantity": "1"}]})
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "rma_number"
    r = await client.post("/v1/invoices/C/returns", headers=idem(), json={
        "rma_number": "RMA-9", "lines": [{"line_number": 3, "quantity": "1"}]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "lines.0.line_number"
    c = (await client.get("/v1/invoices/C")).json()
    assert (c["credited_amount"], c["open_balance"]) == ("100.00", "199.99")
    assert c["credit_memos"][0]["rma_number"] == "RMA-7" and c["credit_memos"][0]["lines"][0]["quantity"] == "2"

    # D: 1500.00 credit is above the 1000.00 limit: pending, nothing moves; the requester
    # cannot approve it; bob does, on Mar 20.
    pending = await _post(client, "/v1/invoices/D/adjustments", {
        "adjustment_id": "ADJ-D", "direction": "credit", "amount": "1500.00", "reason_code": "BILLING_ERROR",
        "adjustment_date": "2024-03-18"}, headers={"X-Actor": "ann"})
    assert (pending["status"], pending["requested_by"]) == ("pending_approval", "ann")
    assert (await client.get("/v1/invoices/D")).json()["open_balance"] == "3000.00"
    queue = (await client.get("/v1/adjustments", params={"status": "pending_approval"})).json()["data"]
    assert [q["adjustment_id"] for q in queue] == ["ADJ-D"]
    r = await client.post("/v1/invoices/D/adjustments/ADJ-D/approval", json={}, headers={**idem(), "X-Actor": "ann"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "approved_by"
    approved = await _post(client, "/v1/invoices/D/adjustments/ADJ-D/approval", {"approved_on": "2024-03-20"},
                           headers={"X-Actor": "bob"})
    assert (approved["status"], approved["approved_by"], approved["adjustment_date"]) == ("posted", "bob",
                                                                                          "2024-03-20")
    r = await client.post("/v1/invoices/D/adjustments/ADJ-D/rejection", json={"reason": "late"},
                          headers={**idem(), "X-Actor": "carl"})
    assert r.status_code == 409
    assert (await client.get("/v1/invoices/D")).json()["open_balance"] == "1500.00"
    # A second large one is rejected: nothing moves.
    await _post(client, "/v1/invoices/D/adjustments", {
        "adjustment_id": "ADJ-D2", "direction": "debit", "amount": "1200.00", "reason_code": "FREIGHT",
        "adjustment_date": "2024-03-21"}, headers={"X-Actor": "ann"})
    rejected = await _post(client, "/v1/invoices/D/adjustments/ADJ-D2/rejection", {"reason": "no contract"},
                           headers={"X-Actor": "bob"})
    assert (rejected["status"], rejected["rejected_by"]) == ("rejected", "bob")
    assert (await client.get("/v1/invoices/D")).json()["open_balance"] == "1500.00"
    customer = (await client.get("/v1/customers/C1")).json()
    # 975 + 0 + 199.99 + 1500 + 0 = 2674.99
    assert customer["open_balance"] == "2674.99"


async def test_concurrent_credit_adjustments_never_take_off_more_than_is_open(invoicing):
    client, _ = invoicing
    await _setup(client)
    # A has 1000.00 open; eight 200.00 credits at once: at most five fit.
    results = await asyncio.gather(*(client.post("/v1/invoices/A/adjustments", headers=idem(), json={
        "direction": "credit", "amount": "200.00", "reason_code": "GOODWILL"}) for _ in range(8)))
    codes = sorted(r.status_code for r in results)
    assert all(c in (201, 409, 422) for c in codes), [r.text for r in results]
    a = (await client.get("/v1/invoices/A")).json()
    assert Decimal(a["open_balance"]) >= 0
    assert Decimal(a["credit_adjusted"]) == 200 * codes.count(201)


def _received(contract, event_id=None) -> ReceivedEvent:
    return ReceivedEvent(event_id=event_id or str(uuid.uuid4()), event_type=contract.event_type,
                         schema_version=contract.schema_version, source="test", subject="s", occurred_at=None,
                         data=contract.to_payload(), headers={}, topic="t", partition=0, offset=0)


async def _published(engine) -> list[ReceivedEvent]:
    """Everything invoicing stored, as its consumers receive it from Kafka. read_all answers an
    event once every transaction that might still commit before it has ended (its commit-safe
    window): a relay or consumer transaction of the service under test, open at that moment,
    holds the newest events back for a few milliseconds, so this waits until all are answered."""
    for _ in range(200):
        async with engine.connect() as conn:
            stored = await eventstore.read_all(conn, eventstore.START, limit=10000)
            total = (await conn.execute(text("SELECT count(*) FROM events"))).scalar_one()
        if len(stored) >= total:
            break
        await asyncio.sleep(0.05)
    return [ReceivedEvent(event_id=str(e.event_id), event_type=e.event_type, schema_version=e.schema_version,
                          source="/ledgerline/invoicing", subject=e.stream_id, occurred_at=e.occurred_at,
                          data=e.payload, headers={}, topic=topic_for("invoicing"), partition=0,
                          offset=e.global_position) for e in stored]


async def _feed(engine, handler, events):
    for event in events:
        async with engine.begin() as conn:
            await handler(conn, event)


async def test_every_context_moves_the_same_way_and_the_roll_forward_ties(invoicing):
    client, app = invoicing
    await _setup(client)
    await _post(client, "/v1/invoices/A/adjustments", {"direction": "credit", "amount": "50.00",
                                                       "reason_code": "PRICING_CORRECTION", "adjustment_date": "2024-03-05"})
    await _post(client, "/v1/invoices/A/adjustments", {"direction": "debit", "amount": "25.00",
                                                       "reason_code": "LATE_FEE", "adjustment_date": "2024-03-10"})
    await _post(client, "/v1/invoices/B/void", {"voided_on": "2024-03-12", "reason": "billed twice"})
    await _post(client, "/v1/invoices/C/returns", {"rma_number": "RMA-7", "return_date": "2024-03-15",
                                                   "lines": [{"line_number": 1, "quantity": "2"}]})
    await _post(client, "/v1/invoices/D/adjustments", {"adjustment_id": "ADJ-D", "direction": "credit",
                                                       "amount": "1500.00", "reason_code": "BILLING_ERROR",
                                                       "adjustment_date": "2024-03-18"}, headers={"X-Actor": "ann"})
    await _post(client, "/v1/invoices/D/adjustments/ADJ-D/approval", {"approved_on": "2024-04-02"},
                headers={"X-Actor": "bob"})
    events = await _published(app.state.runtime.engine)
    # Redelivered in reverse too: keyed facts make the order and a second copy harmless.
    deliveries = events + list(reversed(events))
    expected = {"A": "975.00", "B": "0.00", "C": "199.99", "D": "1500.00", "E": "80.00"}

    async with service_client(lambda url: cash_definition(CashApplicationSettings(database_url=url))) as (cash, capp):
        await _feed(capp.state.runtime.engine, on_invoicing_event, deliveries)
        items = {i: (await cash.get(f"/v1/open-items/{i}")).json() for i in expected}
        assert {i: item["open_balance"] for i, item in items.items()} == expected
        assert (items["A"]["adjusted_amount"], items["B"]["adjusted_amount"], items["B"]["status"]) == (
            "25.00", "500.00", "closed")

    def make_collections(url):
        return collections_definition(CollectionsSettings(database_url=url, role="api"), clock=FixedClock(TODAY))

    async with service_client(make_collections) as (col, colapp):
        await _feed(colapp.state.runtime.engine, collections_handler, deliveries)
        account = (await col.get("/v1/customers/C1", params={"as_of": "2024-04-30"})).json()
        balances = {i["invoice_id"]: i["open_balance"] for i in account["open_invoices"]}
        assert balances == {k: v for k, v in expected.items() if v != "0.00"}
        # As of Mar 31 the D credit (approved Apr 2) has not moved the balance yet.
        march = (await col.get("/v1/customers/C1", params={"as_of": "2024-03-31"})).json()
        assert {i["invoice_id"]: i["open_balance"] for i in march["open_invoices"]}["D"] == "3000.00"

    def make_reporting(url):
        d = reporting_definition(ReportingSettings(database_url=url))
        d.state["clock"] = FixedClock(TODAY)
        return d

    async with service_client(make_reporting) as (rep, rapp):
        await _feed(rapp.state.runtime.engine, project, deliveries)
        march = (await rep.get("/v1/reports/roll-forward", params={"period": "2024-03", "currency": "USD"})).json()
        # invoiced 1000 + 500 + 299.99 + 3000 + 80 = 4879.99; credits 100 (the return);
        # adjustments -(50 - 25 + 500) = -525.00; closing 4879.99 - 100 - 525 = 4254.99.
        assert {k: march[k] for k in ("opening", "invoiced", "credits", "adjustments", "closing", "ties")} == {
            "opening": "0.00", "invoiced": "4879.99", "credits": "100.00", "adjustments": "-525.00",
            "closing": "4254.99", "ties": True}
        april = (await rep.get("/v1/reports/roll-forward", params={"period": "2024-04", "currency": "USD"})).json()
        assert (april["opening"], april["adjustments"], april["closing"], april["ties"]) == (
            "4254.99", "-1500.00", "2754.99", True)
        aging = (await rep.get("/v1/reports/aging", params={"as_of": "2024-04-30", "currency": "USD"})).json()
        assert aging["total"] == aging["tie_out"]["net"] == "2754.99" and aging["tie_out"]["ties_out"]
