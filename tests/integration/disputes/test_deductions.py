"""Deductions as retailers take them, over HTTP and from events on a real PostgreSQL database:
a retailer's code mapping, reclassification, assignment, the validity decision (valid credited,
invalid re-billed, partial) and the re-bill's invoice and collection through invoicing's and
disputes' handlers, the timeline, the retailer deduction report import and the root-cause report."""
from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest

from services.disputes.application.handlers import on_external_event
from services.disputes.domain.model import deduction_id
from services.disputes.main import definition
from services.disputes.settings import DisputesSettings
from services.invoicing.application.handlers import on_external_event as invoicing_handler
from services.invoicing.main import definition as invoicing_definition
from services.invoicing.settings import InvoicingSettings
from shared import eventstore
from shared.clock import FixedClock
from shared.consumer import ReceivedEvent
from shared.contracts import InvoiceIssued, InvoiceLine, PaymentApplied, ShortPayDetected, registry
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


async def _deliver(app, contract) -> None:
    async with app.state.runtime.engine.begin() as conn:
        await on_external_event(conn, _received(contract))


def _invoice(invoice_id, number, total="1000.00", customer="RETAIL"):
    return InvoiceIssued(invoice_id=invoice_id, invoice_number=number, customer_id=customer, currency="USD",
                         issue_date="2024-03-01", due_date="2024-03-31",
                         lines=[InvoiceLine(description="Goods", quantity="1", unit_price=total, amount=total)],
                         total_amount=total)


def _short(invoice_id, payment_id, shortfall, code, customer="RETAIL"):
    return ShortPayDetected(payment_id=payment_id, invoice_id=invoice_id, customer_id=customer, currency="USD",
                            open_amount="1000.00", paid_amount=str(Decimal("1000.00") - Decimal(shortfall)),
                            shortfall=shortfall, value_date="2024-04-01", reason_code=code)


async def _post(client, path, body, status=201):
    r = await client.post(path, json=body, headers=idem())
    assert r.status_code == status, r.text
    return r.json()


async def test_mapping_reclassification_assignment_decision_and_timeline(disputes):
    client, app = disputes
    r = await client.put("/v1/customers/RETAIL/deduction-codes", json={"mappings": [
        {"customer_reason_code": "s01", "reason_code": "quantity"},
        {"customer_reason_code": "PRC", "reason_code": "PRICING"}]})
    assert r.status_code == 200, r.text
    bad = await client.put("/v1/customers/RETAIL/deduction-codes", json={"mappings": [
        {"customer_reason_code": "X1", "reason_code": "FREE_STUFF"}]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "mappings.0.reason_code"
    assert (await client.get("/v1/customers/RETAIL/deduction-codes")).json()["mappings"] == [
        {"customer_reason_code": "PRC", "reason_code": "PRICING"},
        {"customer_reason_code": "S01", "reason_code": "QUANTITY"}]

    for inv, num in (("inv-1", "1001"), ("inv-2", "1002"), ("inv-3", "1003")):
        await _deliver(app, _invoice(inv, num))
    await _deliver(app, _short("inv-1", "pay-1", "120.00", "S01"))
    await _deliver(app, _short("inv-2", "pay-1", "80.00", "77"))     # a code nobody mapped
    await _deliver(app, _short("inv-3", "pay-1", "50.00", "PRC"))
    d1, d2, d3 = (deduction_id("pay-1", i) for i in ("inv-1", "inv-2", "inv-3"))
    one = (await client.get(f"/v1/disputes/{d1}")).json()
    assert (one["reason_code"], one["customer_reason_code"], one["team"]) == ("QUANTITY", "S01", "logistics")
    two = (await client.get(f"/v1/disputes/{d2}")).json()
    assert (two["reason_code"], two["customer_reason_code"], two["team"]) == ("UNSPECIFIED", "77",
                                                                            "customer_service")

    # An analyst classifies the unknown one; it is then assigned to a person in sales.
    reclassified = await _post(client, f"/v1/disputes/{d2}/reclassification",
                               {"reason_code": "promotion", "reclassified_on": "2024-04-03", "note": "promo 77"})
    assert reclassified["reason_code"] == "PROMOTION"
    r = await client.post(f"/v1/disputes/{d2}/reclassification", json={"reason_code": "UNSPECIFIED"}, headers=idem())
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason_code"
    assigned = await _post(client, f"/v1/disputes/{d2}/assignment", {"owner": "sam", "team": "sales",
                                                                      "assigned_on": "2024-04-03"})
    assert (assigned["owner"], assigned["team"]) == ("sam", "sales")
    r = await client.post(f"/v1/disputes/{d2}/assignment", json={"owner": "sam", "team": "marketing"}, headers=idem())
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "team"

    # Decisions: d1 invalid (re-bill), d2 partial, d3 valid.
    for bad, name in (({"valid_amount": "20.00", "invalid_amount": "90.00"}, "invalid_amount"),
                      ({"valid_amount": "0.001", "invalid_amount": "119.999"}, "valid_amount"),
                      ({"valid_amount": 0, "invalid_amount": "120.00"}, "valid_amount")):
        r = await client.post(f"/v1/disputes/{d1}/decision", json=bad, headers=idem())
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == name, r.text
    invalid = await _post(client, f"/v1/disputes/{d1}/decision", {"valid_amount": "0.00", "invalid_amount": "120.00",
                                                                   "decided_on": "2024-04-10", "note": "POD signed"})
    assert (invalid["status"], invalid["resolution"], invalid["credit_amount"], invalid["rebill_amount"]) == (
        "resolved", "invalid", "0.00", "120.00")
    r = await client.post(f"/v1/disputes/{d1}/decision", json={"valid_amount": "120.00", "invalid_amount": "0"},
                          headers=idem())
    assert r.status_code == 409
    partial = await _post(client, f"/v1/disputes/{d2}/decision", {"valid_amount": "30.00", "invalid_amount": "50.00",
                                                                   "decided_on": "2024-04-12"})
    assert (partial["resolution"], partial["credit_amount"], partial["rebill_amount"]) == ("partial", "30.00",
                                                                                         "50.00")
    valid = await _post(client, f"/v1/disputes/{d3}/decision", {"valid_amount": "50.00", "invalid_amount": "0",
                                                                 "decided_on": "2024-04-05"})
    assert (valid["resolution"], valid["rebill_amount"]) == ("valid", None)

    steps = (await client.get(f"/v1/disputes/{d2}/timeline")).json()["data"]
    assert [s["event_type"] for s in steps] == ["DeductionOpened", "DisputeReclassified", "DisputeAssigned",
                                                "DisputeResolved"]
    assert steps[1]["note"] == "promo 77" and steps[3]["data"]["rebill_amount"] == "50.00"
    assert (await client.get("/v1/disputes/nope/timeline")).status_code == 404

    # Invoicing turns the invalid part into a credit on the original and a new receivable.
    resolved = []
    async with app.state.runtime.engine.connect() as conn:
        for e in await eventstore.read_all(conn, eventstore.START, limit=1000):
            if e.event_type == "DisputeResolved":
                resolved.append(ReceivedEvent(event_id=str(e.event_id), event_type=e.event_type,
                                              schema_version=e.schema_version, source="/ledgerline/disputes",
                                              subject=e.stream_id, occurred_at=None, data=e.payload, headers={},
                                              topic="ledgerline.disputes.events", partition=0, offset=0))
    await _invoicing_rebills(resolved, app)

    report = (await client.get("/v1/reports/deductions", params={"currency": "USD", "group_by": "reason"})).json()
    rows = {r["key"]: r for r in report["data"]}
    assert (rows["QUANTITY"]["rebilled_amount"], rows["QUANTITY"]["recovered_amount"],
            rows["QUANTITY"]["avg_cycle_days"]) == ("120.00", "120.00", "9.0")
    assert (rows["PROMOTION"]["credited_amount"], rows["PROMOTION"]["rebilled_amount"],
            rows["PROMOTION"]["recovered_amount"]) == ("30.00", "50.00", "0.00")
    assert rows["PRICING"]["credited_amount"] == "50.00"
    teams = {r["key"]: r for r in (await client.get("/v1/reports/deductions", params={
        "currency": "USD", "group_by": "owner_team"})).json()["data"]}
    assert set(teams) == {"logistics", "sales"} and teams["sales"]["opened"] == 2


async def _invoicing_rebills(resolved: list[ReceivedEvent], disputes_app) -> None:
    async with service_client(lambda url: invoicing_definition(InvoicingSettings(database_url=url))) as (inv, iapp):
        r = await inv.post("/v1/customers", headers=idem(), json={"customer_id": "RETAIL", "name": "Retail Co",
                                                                  "currency": "USD", "payment_terms": "NET30",
                                                                  "credit_limit": "100000.00"})
        assert r.status_code == 201, r.text
        for inv_id, number in (("inv-1", "1001"), ("inv-2", "1002"), ("inv-3", "1003")):
            r = await inv.post("/v1/invoices", headers=idem(), json={
                "customer_id": "RETAIL", "invoice_id": inv_id, "invoice_number": number, "issue_date": "2024-03-01",
                "lines": [{"description": "Goods", "quantity": "1", "unit_price": "1000.00"}]})
            assert r.status_code == 201, r.text
        engine = iapp.state.runtime.engine
        shortfalls = {"inv-1": "120.00", "inv-2": "80.00", "inv-3": "50.00"}
        for n, (inv_id, short) in enumerate(shortfalls.items()):
            async with engine.begin() as conn:
                await invoicing_handler(conn, _received(PaymentApplied(
                    payment_id="pay-1", invoice_id=inv_id, customer_id="RETAIL", currency="USD",
                    amount=Decimal("1000.00") - Decimal(short), value_date="2024-04-01",
                    application_id=f"app-{n}", rule="remittance", confidence="1")))
        for event in resolved + resolved:  # redelivered: re-billed once
            async with engine.begin() as conn:
                await invoicing_handler(conn, event)
        invoices = {i["invoice_id"]: i for i in (await inv.get("/v1/invoices", params={"limit": 50})).json()["data"]}
        assert {i: invoices[i]["open_balance"] for i in ("inv-1", "inv-2", "inv-3")} == {
            "inv-1": "0.00", "inv-2": "0.00", "inv-3": "0.00"}
        rebills = {i["total_amount"]: i for i in invoices.values() if i["invoice_id"].startswith("rebill-")}
        assert set(rebills) == {"120.00", "50.00"}
        assert rebills["120.00"]["invoice_number"].startswith("1001-RB-")
        assert (rebills["120.00"]["issue_date"], rebills["120.00"]["due_date"]) == ("2024-04-10", "2024-05-10")
        assert (await inv.get("/v1/customers/RETAIL")).json()["open_balance"] == "170.00"
        # The re-bill issued is an InvoiceIssued naming its deduction: disputes links it, and the
        # cash collected on it is the amount recovered.
        async with engine.connect() as conn:
            issued = [e for e in await eventstore.read_all(conn, eventstore.START, limit=1000)
                      if e.event_type == "InvoiceIssued" and e.payload.get("rebill_of_deduction")]
        assert len(issued) == 2
        for e in issued:
            await _deliver(disputes_app, registry.parse(e.event_type, e.schema_version, e.payload))
        big = rebills["120.00"]
        await _deliver(disputes_app, PaymentApplied(
            payment_id="pay-9", invoice_id=big["invoice_id"], customer_id="RETAIL", currency="USD", amount="120.00",
            value_date="2024-05-02", application_id="app-9", rule="remittance", confidence="1"))


async def test_retailer_deduction_report_import(disputes):
    client, app = disputes
    await client.put("/v1/customers/RETAIL/deduction-codes", json={"mappings": [
        {"customer_reason_code": "S01", "reason_code": "QUANTITY"}]})
    await _deliver(app, _invoice("inv-1", "1001"))
    await _deliver(app, _invoice("inv-2", "1002"))
    await _deliver(app, _short("inv-1", "pay-1", "120.00", None))  # short pay already seen by cash application
    r = await client.put("/v1/deduction-report-profiles/retail-portal", json={
        "customer_id": "RETAIL", "delimiter": ";", "date_format": "%m/%d/%Y",
        "columns": {"deduction_number": "Deduction #", "invoice_number": "Invoice", "amount": "Amount",
                    "reason_code": "Reason", "deduction_date": "Date", "payment_reference": "Check"}})
    assert r.status_code == 200, r.text
    report = ("Deduction #;Invoice;Amount;Reason;Date;Check\n"
              "D-100;1001;120.00;S01;04/01/2024;pay-1\n"       # matches the open deduction
              "D-101;1002;$45.50;S01;04/02/2024;CHK-9\n"       # opens one
              "D-102;9999;10.00;S01;04/02/2024;CHK-9\n"        # no such invoice
              "D-103;1002;ten;S01;13/45/2024;CHK-9\n")         # bad amount and date
    key = {"Idempotency-Key": "report-april", "Content-Type": "text/csv"}
    first = await client.post("/v1/deduction-imports", params={"profile_id": "retail-portal"}, content=report,
                              headers=key)
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["lines"], body["opened"], body["matched"], body["error"]) == (4, 1, 1, 2)
    by_number = {r["deduction_number"]: r for r in body["results"]}
    assert by_number["D-100"]["dispute_id"] == deduction_id("pay-1", "inv-1")
    assert by_number["D-102"]["errors"][0]["field"] == "Invoice"
    assert {e["field"] for e in by_number["D-103"]["errors"]} == {"Amount", "Date"}
    again = await client.post("/v1/deduction-imports", params={"profile_id": "retail-portal"}, content=report,
                              headers=key)
    assert again.json() == body and again.headers["Idempotent-Replayed"] == "true"
    # The same lines in a new file (another key): nothing opens twice.
    second = (await client.post("/v1/deduction-imports", params={"profile_id": "retail-portal"}, content=report,
                                headers={**idem(), "Content-Type": "text/csv"})).json()
    assert (second["already_imported"], second["opened"], second["matched"]) == (2, 0, 0)
    opened = (await client.get(f"/v1/disputes/{by_number['D-101']['dispute_id']}")).json()
    assert (opened["kind"], opened["amount"], opened["reason_code"], opened["external_reference"],
            opened["customer_reason_code"]) == ("deduction", "45.50", "QUANTITY", "D-101", "S01")
    matched = (await client.get(f"/v1/disputes/{deduction_id('pay-1', 'inv-1')}")).json()
    assert matched["external_reference"] == "D-100"
    missing = await client.post("/v1/deduction-imports", params={"profile_id": "nope"}, content=report,
                                headers={**idem(), "Content-Type": "text/csv"})
    assert missing.status_code == 404
    wrong = await client.post("/v1/deduction-imports", params={"profile_id": "retail-portal"},
                              content="a;b\n1;2\n", headers={**idem(), "Content-Type": "text/csv"})
    assert wrong.status_code == 422
