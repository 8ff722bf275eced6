"""Credit limits enforced at issue time, through invoicing's API on a real PostgreSQL database:
at the customer's level and at a parent's, the limit in force on the issue date, exposure lowered
by cash applied (an event invoicing consumes), an explicit override recorded on InvoiceIssued,
per-item refusals in a batch and a CSV import, and concurrent issues that cannot both squeeze
under one limit."""
from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import text

from services.invoicing.application.handlers import on_external_event
from services.invoicing.main import definition
from services.invoicing.settings import InvoicingSettings
from shared.consumer import ReceivedEvent
from shared.contracts import PaymentApplied
from tests.support.infra import idem, service_client


@pytest.fixture
async def invoicing():
    async with service_client(lambda url: definition(InvoicingSettings(database_url=url))) as (client, app):
        yield client, app


async def _customer(client, customer_id, limit=None, parent=None):
    body = {"customer_id": customer_id, "name": customer_id, "currency": "USD", "payment_terms": "NET30",
            "registered_on": "2024-01-01"}
    if limit is not None:
        body["credit_limit"] = limit
    r = await client.post("/v1/customers", json=body, headers=idem())
    assert r.status_code == 201, r.text
    if parent:
        r = await client.post(f"/v1/customers/{customer_id}/parent", json={
            "parent_customer_id": parent, "effective_on": "2024-01-01"}, headers=idem())
        assert r.status_code in (200, 201), r.text
    return r.json()


def _invoice(customer_id, amount, invoice_id=None, issue_date="2024-03-01", **extra):
    invoice_id = invoice_id or f"I-{uuid.uuid4().hex[:10]}"
    return {"invoice_id": invoice_id, "invoice_number": invoice_id, "customer_id": customer_id,
            "issue_date": issue_date, "lines": [{"description": "Goods", "quantity": "1", "unit_price": amount}],
            **extra}


async def _issue(client, customer_id, amount, **extra):
    return await client.post("/v1/invoices", json=_invoice(customer_id, amount, **extra), headers=idem())


async def _count_issued(app) -> int:
    async with app.state.runtime.engine.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM events WHERE event_type = 'InvoiceIssued'"))).scalar()


def _applied(invoice_id, customer_id, amount) -> ReceivedEvent:
    contract = PaymentApplied(application_id=str(uuid.uuid4()), payment_id="P1", invoice_id=invoice_id,
                              customer_id=customer_id, currency="USD", amount=Decimal(amount),
                              value_date="2024-03-10", rule="remittance", confidence="1")
    return ReceivedEvent(event_id=str(uuid.uuid4()), event_type=contract.event_type,
                         schema_version=contract.schema_version, source="test", subject="s", occurred_at=None,
                         data=contract.to_payload(), headers={}, topic="t", partition=0, offset=0)


async def test_customer_level_refusal_names_the_figures_and_cash_applied_frees_credit(invoicing):
    client, app = invoicing
    await _customer(client, "C1", "1000.00")
    first = await _issue(client, "C1", "600.00", invoice_id="C1-A")
    assert first.status_code == 201, first.text
    before = await _count_issued(app)

    refused = await _issue(client, "C1", "400.01", invoice_id="C1-B")
    assert refused.status_code == 422 and refused.headers["content-type"].startswith("application/problem+json")
    body = refused.json()
    assert body["type"].endswith("/credit-limit-exceeded") and body["errors"][0]["field"] == "customer_id"
    detail = body["credit_limit_exceeded"]
    assert (detail["level"], detail["customer_id"], detail["credit_limit"], detail["exposure"], detail["amount"],
            detail["available"]) == ("customer", "C1", "1000.00", "600.00", "400.01", "400.00")
    assert await _count_issued(app) == before  # nothing was written
    assert (await client.get("/v1/invoices/C1-B")).status_code == 404

    assert (await _issue(client, "C1", "400.00", invoice_id="C1-C")).status_code == 201  # exactly at the limit
    # Cash applied to the first invoice (cash application's event, consumed by invoicing)
    # lowers the exposure: 300 more fits now.
    async with app.state.runtime.engine.begin() as conn:
        await on_external_event(conn, _applied("C1-A", "C1", "300.00"))
    assert (await _issue(client, "C1", "300.00")).status_code == 201
    assert (await _issue(client, "C1", "0.01")).status_code == 422
    customer = (await client.get("/v1/customers/C1")).json()
    assert (customer["open_balance"], customer["available_credit"]) == ("1000.00", "0.00")


async def test_parent_level_and_an_override_recorded_on_the_event(invoicing):
    client, app = invoicing
    await _customer(client, "HQ", "1000.00")
    await _customer(client, "S1", None, parent="HQ")   # no limit of its own
    await _customer(client, "S2", "5000.00", parent="HQ")
    assert (await _issue(client, "S1", "600.00")).status_code == 201
    refused = await _issue(client, "S2", "500.00", invoice_id="S2-A")
    assert refused.status_code == 422, refused.text
    detail = refused.json()["credit_limit_exceeded"]
    assert (detail["level"], detail["customer_id"], detail["credit_limit"], detail["exposure"], detail["amount"]) == (
        "parent", "HQ", "1000.00", "600.00", "500.00")
    assert [e["customer_id"] for e in detail["exceeded"]] == ["HQ"]

    # A blank approver is bad input, not an override.
    blank = await _issue(client, "S2", "500.00", invoice_id="S2-A",
                         credit_override={"approved_by": "", "reason": "x"})
    assert blank.status_code == 422 and blank.json()["errors"][0]["field"].startswith("credit_override")

    ok = await _issue(client, "S2", "500.00", invoice_id="S2-A",
                      credit_override={"approved_by": "cfo@example.com", "reason": "year-end order, prepaid in April"})
    assert ok.status_code == 201, ok.text
    recorded = {"approved_by": "cfo@example.com", "reason": "year-end order, prepaid in April",
                "exceeded": [{"level": "parent", "customer_id": "HQ", "credit_limit": "1000.00",
                              "exposure": "600.00"}]}
    assert ok.json()["credit_override"] == recorded
    assert (await client.get("/v1/invoices/S2-A")).json()["credit_override"] == recorded
    async with app.state.runtime.engine.connect() as conn:
        payload = (await conn.execute(text("SELECT payload FROM events WHERE event_type = 'InvoiceIssued'"
                                           " AND payload->>'invoice_id' = 'S2-A'"))).scalar()
    payload = json.loads(payload) if isinstance(payload, str) else payload
    assert payload["credit_override"] == recorded
    # An invoice within every limit records no override even when one is sent.
    await _customer(client, "S3", None)
    within = await _issue(client, "S3", "10.00", credit_override={"approved_by": "cfo", "reason": "habit"})
    assert within.status_code == 201 and within.json()["credit_override"] is None


async def test_no_limit_is_unlimited_and_the_limit_in_force_on_the_issue_date_applies(invoicing):
    client, _ = invoicing
    registered = await _customer(client, "U1")
    assert registered["credit_limit"] is None
    assert (await _issue(client, "U1", "9999999.00")).status_code == 201
    assert (await client.get("/v1/customers/U1")).json()["available_credit"] is None
    r = await client.post("/v1/customers/U1/profile-changes", json={
        "effective_on": "2024-04-01", "credit_limit": "100.00"}, headers=idem())
    assert r.status_code in (200, 201), r.text
    assert (await _issue(client, "U1", "500.00", issue_date="2024-03-15")).status_code == 201  # before the limit
    late = await _issue(client, "U1", "500.00", issue_date="2024-04-02")
    assert late.status_code == 422 and late.json()["credit_limit_exceeded"]["credit_limit"] == "100.00"


async def test_batch_and_csv_import_apply_the_rule_per_item(invoicing):
    client, app = invoicing
    await _customer(client, "B1", "1000.00")
    items = [_invoice("B1", "400.00", invoice_id=f"B1-{n}") for n in range(3)]
    items.append(_invoice("B1", "400.00", invoice_id="B1-3",
                          credit_override={"approved_by": "credit manager", "reason": "seasonal"}))
    r = await client.post("/v1/invoice-batches", json={"invoices": items}, headers=idem())
    assert r.status_code == 201, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["issued", "issued", "error", "issued"]
    refusal = results[2]
    assert refusal["errors"][0]["field"] == "customer_id"
    assert (refusal["credit_limit_exceeded"]["exposure"], refusal["credit_limit_exceeded"]["credit_limit"]) == (
        "800.00", "1000.00")
    assert results[3]["invoice"]["credit_override"]["exceeded"][0]["exposure"] == "800.00"

    csv = ("invoice_number,customer_id,issue_date,description,quantity,unit_price,credit_override_approved_by,"
           "credit_override_reason\n"
           "F-1,B1,2024-03-02,Goods,1,5.00,,\n"
           "F-2,B1,2024-03-02,Goods,1,6.00,cfo,agreed by phone\n")
    r = await client.post("/v1/invoice-imports?format=csv", content=csv.encode(), headers={
        **idem(), "Content-Type": "text/csv"})
    assert r.status_code == 201, r.text
    report = r.json()["results"]
    assert [(x["status"], x["rows"]) for x in report] == [("error", [2]), ("issued", [3])]
    assert report[0]["errors"][0]["field"] == "customer_id"
    assert report[0]["credit_limit_exceeded"]["exposure"] == "1200.00"
    assert (await client.get("/v1/invoices/B1:F-2")).json()["credit_override"]["approved_by"] == "cfo"


async def test_concurrent_issues_cannot_both_squeeze_under_a_limit(invoicing):
    client, _ = invoicing
    for round_ in range(4):
        own, hq, s1, s2 = (f"K{round_}", f"HQ{round_}", f"S{round_}a", f"S{round_}b")
        await _customer(client, own, "1000.00")
        await _customer(client, hq, "1000.00")
        await _customer(client, s1, None, parent=hq)
        await _customer(client, s2, None, parent=hq)
        # Two at one customer, two at two children of one parent: each pair fits alone, not together.
        replies = await asyncio.gather(_issue(client, own, "600.00"), _issue(client, own, "600.00"),
                                       _issue(client, s1, "600.00"), _issue(client, s2, "600.00"))
        codes = [r.status_code for r in replies]
        assert sorted(codes[:2]) == [201, 422] and sorted(codes[2:]) == [201, 422], [r.text for r in replies]
        for who in (own, hq):
            assert (await client.get(f"/v1/customers/{who}")).json()["family_open_balance"] == "600.00"


def _unapplied(application_event: ReceivedEvent) -> ReceivedEvent:
    from shared.contracts import PaymentUnapplied
    applied = application_event.data
    contract = PaymentUnapplied(application_id=applied["application_id"], payment_id=applied["payment_id"],
                                invoice_id=applied["invoice_id"], customer_id=applied["customer_id"],
                                currency="USD", amount=Decimal(applied["amount"]), unapplied_on="2024-03-12",
                                reason="manual_reversal")
    return ReceivedEvent(event_id=str(uuid.uuid4()), event_type=contract.event_type,
                         schema_version=contract.schema_version, source="test", subject="s", occurred_at=None,
                         data=contract.to_payload(), headers={}, topic="t", partition=0, offset=0)


async def test_the_running_exposure_equals_the_sum_over_invoices_and_settlements_after_every_kind_of_write(invoicing):
    """The credit check reads each customer's exposure as a running figure (migration 0010's
    triggers) instead of summing its history: after issues (single and batch), a credit memo, an
    adjustment, a void, cash applied and reversed, a redelivered event and a settlement that
    arrives before its invoice, it equals the sum it replaces, for every customer."""
    client, app = invoicing
    await _customer(client, "E1", "100000.00")
    await _customer(client, "E2", None, parent="E1")
    for invoice_id, customer, amount in [("E1-A", "E1", "1000.00"), ("E1-B", "E1", "250.50"), ("E2-A", "E2", "75.25")]:
        assert (await _issue(client, customer, amount, invoice_id=invoice_id)).status_code == 201
    batch = await client.post("/v1/invoice-batches", json={"invoices": [
        _invoice("E2", "10.00", invoice_id="E2-B"), _invoice("E1", "20.00", invoice_id="E1-C")]}, headers=idem())
    assert batch.status_code in (200, 201, 207), batch.text
    memo = await client.post("/v1/invoices/E1-A/credit-memos", json={
        "amount": "100.00", "issue_date": "2024-03-05", "reason": "price correction"}, headers=idem())
    assert memo.status_code == 201, memo.text
    adjusted = await client.post("/v1/invoices/E1-B/adjustments", json={
        "direction": "debit", "amount": "5.00", "reason_code": "LATE_FEE", "adjustment_date": "2024-03-06"},
        headers=idem())
    assert adjusted.status_code == 201, adjusted.text
    voided = await client.post("/v1/invoices/E2-A/void", json={"reason": "duplicate"}, headers=idem())
    assert voided.status_code == 201, voided.text
    applied = _applied("E1-B", "E1", "50.50")
    early = _applied("E2-LATE", "E2", "7.00")  # its invoice is registered after the payment
    async with app.state.runtime.engine.begin() as conn:
        await on_external_event(conn, applied)
        await on_external_event(conn, applied)  # redelivered: counts once
        await on_external_event(conn, early)
    async with app.state.runtime.engine.begin() as conn:
        await on_external_event(conn, _unapplied(applied))
    assert (await _issue(client, "E2", "30.00", invoice_id="E2-LATE")).status_code == 201

    async with app.state.runtime.engine.connect() as conn:
        recomputed = dict((await conn.execute(text(
            "SELECT i.customer_id, sum(i.total_amount + i.debit_adjusted - i.credited_amount - i.credit_adjusted"
            " - i.voided_amount - coalesce((SELECT sum(amount) FROM invoice_settlements s"
            " WHERE s.invoice_id = i.invoice_id), 0)) FROM invoices i GROUP BY i.customer_id"))).all())
        running = dict((await conn.execute(text("SELECT customer_id, exposure FROM customer_exposures"))).all())
    assert running == recomputed
    # E1: 1000 - 100 + 250.50 + 5 - 50.50 + 50.50 + 20; E2: 75.25 voided, 10, 30 - 7.
    assert (recomputed["E1"], recomputed["E2"]) == (Decimal("1175.50"), Decimal("33.00"))
    position = (await client.get("/v1/customers/E1")).json()
    assert position["open_balance"] == str(recomputed["E1"].quantize(Decimal("0.01")))
    assert position["family_open_balance"] == str((recomputed["E1"] + recomputed["E2"]).quantize(Decimal("0.01")))
