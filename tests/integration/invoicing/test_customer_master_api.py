"""The customer master over time through invoicing's API on a real PostgreSQL database: versioned,
effective-dated changes, reads as of a date, invoices due on the terms of their issue date; and
collections, fed the same events, scores risk against the credit limit that held on the date."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.collections.adapters import accounts
from services.collections.application.handlers import on_external_event as collections_handler
from services.collections.main import definition as collections_definition
from services.collections.settings import CollectionsSettings
from services.invoicing.main import definition
from services.invoicing.settings import InvoicingSettings
from shared import eventstore
from shared.clock import FixedClock
from shared.consumer import ReceivedEvent
from shared.contracts import topic_for
from tests.support.infra import idem, service_client


@pytest.fixture
async def invoicing():
    def make(url):
        d = definition(InvoicingSettings(database_url=url))
        d.state["clock"] = FixedClock(date(2024, 6, 30))
        return d

    async with service_client(make) as (client, app):
        yield client, app


async def test_profile_changes_as_of_reads_and_terms_at_issue(invoicing):
    client, app = invoicing
    r = await client.post("/v1/customers", headers=idem(), json={
        "customer_id": "C1", "name": "Acme", "currency": "USD", "payment_terms": "NET30", "credit_limit": "10000.00",
        "registered_on": "2024-01-01"})
    assert r.status_code == 201, r.text
    change = {"effective_on": "2024-03-01", "payment_terms": "NET45", "credit_limit": "25000.00", "language": "fr",
              "delivery_preference": "portal_upload",
              "billing_contacts": [{"name": "Léa Martin", "email": "ap@acme.example", "role": "ap_clerk"}],
              "billing_address": {"lines": ["1 rue de la Paix"], "city": "Paris", "postal_code": "75002",
                                  "country": "FR"}}
    key = {"Idempotency-Key": "change-1", "If-Match": '"1"'}
    first = await client.post("/v1/customers/C1/profile-changes", json=change, headers=key)
    again = await client.post("/v1/customers/C1/profile-changes", json=change, headers=key)
    assert first.status_code == again.status_code == 201, first.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (first.json()["payment_terms"], first.json()["credit_limit"], first.json()["version"],
            first.json()["language"]) == ("NET45", "25000.00", 2, "fr")
    stale = await client.post("/v1/customers/C1/profile-changes", json={"language": "en"},
                              headers={**idem(), "If-Match": '"1"'})
    assert stale.status_code == 409
    for bad, field in (({"credit_limit": "1.001"}, "credit_limit"), ({"payment_terms": "NET999"}, "payment_terms"),
                       ({"language": "de"}, "language"), ({}, "body"),
                       ({"effective_on": "2023-12-01", "language": "en"}, "effective_on")):
        r = await client.post("/v1/customers/C1/profile-changes", json=bad, headers=idem())
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["errors"][0]["field"] == field, (bad, r.json())
    await client.post("/v1/customers/C1/profile-changes", headers=idem(),
                      json={"effective_on": "2024-05-01", "credit_limit": "5000.00"})

    feb = (await client.get("/v1/customers/C1/profile", params={"as_of": "2024-02-29"})).json()
    mar = (await client.get("/v1/customers/C1/profile", params={"as_of": "2024-03-01"})).json()
    may = (await client.get("/v1/customers/C1/profile", params={"as_of": "2024-05-01"})).json()
    assert (feb["payment_terms"], feb["credit_limit"], feb["language"], feb["billing_contacts"]) == (
        "NET30", "10000.00", "en", [])
    assert (mar["payment_terms"], mar["credit_limit"], mar["language"], mar["delivery_preference"],
            mar["billing_address"]["city"]) == ("NET45", "25000.00", "fr", "portal_upload", "Paris")
    assert may["credit_limit"] == "5000.00" and may["payment_terms"] == "NET45"
    history = (await client.get("/v1/customers/C1/profile-changes")).json()["data"]
    assert [(h["version"], h["effective_on"]) for h in history] == [(2, "2024-03-01"), (3, "2024-05-01")]
    current = (await client.get("/v1/customers/C1")).json()
    assert (current["credit_limit"], current["payment_terms"], current["language"]) == ("5000.00", "NET45", "fr")

    due = {}
    for number, issued in (("I-FEB", "2024-02-15"), ("I-MAR", "2024-03-15")):
        r = await client.post("/v1/invoices", headers=idem(), json={
            "customer_id": "C1", "invoice_number": number, "issue_date": issued,
            "lines": [{"description": "x", "quantity": "1", "unit_price": "100.00"}]})
        due[number] = r.json()["due_date"]
    assert due == {"I-FEB": "2024-03-16", "I-MAR": "2024-04-29"}  # NET30 before Mar 1, NET45 from it

    async with app.state.runtime.engine.connect() as conn:
        stored = await eventstore.read_all(conn, eventstore.START, limit=1000)
    events = [ReceivedEvent(event_id=str(e.event_id), event_type=e.event_type, schema_version=e.schema_version,
                            source="/ledgerline/invoicing", subject=e.stream_id, occurred_at=e.occurred_at,
                            data=e.payload, headers={}, topic=topic_for("invoicing"), partition=0,
                            offset=e.global_position) for e in stored]

    def make_collections(url):
        return collections_definition(CollectionsSettings(database_url=url, role="api"),
                                      clock=FixedClock(date(2024, 6, 30)))

    async with service_client(make_collections) as (_, capp):
        for event in reversed(events):  # any order
            async with capp.state.runtime.engine.begin() as conn:
                await collections_handler(conn, event)
        async with capp.state.runtime.engine.connect() as conn:
            limits = [await accounts.credit_limit_as_of(conn, "C1", date(2024, m, 15)) for m in (2, 3, 5)]
            current = (await accounts.get_customer(conn, "C1"))["credit_limit"]
    assert limits == [Decimal("10000.00"), Decimal("25000.00"), Decimal("5000.00")]
    assert Decimal(current) == Decimal("5000.00")
