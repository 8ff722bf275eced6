"""The dispute workflow over HTTP on a real PostgreSQL database: statuses, notes, attachments kept
in PostgreSQL (size-limited), due dates by reason code and the escalation run, reassignment, and
every step on the timeline."""
from __future__ import annotations

import asyncio
import uuid
from datetime import date

import pytest

from services.disputes.application.handlers import on_external_event
from services.disputes.main import definition
from services.disputes.settings import DisputesSettings
from shared.clock import FixedClock
from shared.consumer import ReceivedEvent
from shared.contracts import InvoiceIssued, InvoiceLine
from tests.support.infra import idem, service_client


@pytest.fixture
async def disputes():
    def make(url):
        return definition(DisputesSettings(database_url=url, attachment_max_bytes=2048), clock=FixedClock(date(2024, 4, 15)))

    async with service_client(make) as (client, app):
        yield client, app


async def _post(client, path, body, status=201, headers=None):
    r = await client.post(path, json=body, headers={**idem(), **(headers or {})})
    assert r.status_code == status, r.text
    return r.json()


async def test_workflow_steps_attachments_escalation_and_timeline(disputes):
    client, app = disputes
    invoice = InvoiceIssued(invoice_id="inv-1", invoice_number="1001", customer_id="C1", currency="USD",
                            issue_date="2024-03-01", due_date="2024-03-31",
                            lines=[InvoiceLine(description="Goods", quantity="1", unit_price="900.00", amount="900.00")],
                            total_amount="900.00")
    async with app.state.runtime.engine.begin() as conn:
        await on_external_event(conn, ReceivedEvent(event_id=str(uuid.uuid4()), event_type="InvoiceIssued",
                                                    schema_version=1, source="t", subject="s", occurred_at=None,
                                                    data=invoice.to_payload(), headers={}, topic="t", partition=0,
                                                    offset=0))
    pricing = await _post(client, "/v1/disputes", {"dispute_id": "D-P", "invoice_id": "inv-1", "amount": "100.00",
                                                   "reason_code": "PRICING", "opened_on": "2024-04-01"})
    promo = await _post(client, "/v1/disputes", {"dispute_id": "D-Q", "invoice_id": "inv-1", "amount": "50.00",
                                                 "reason_code": "PROMOTION", "opened_on": "2024-04-01"})
    assert (pricing["work_status"], pricing["due_on"], pricing["team"]) == ("new", "2024-04-11", "sales")
    assert promo["due_on"] == "2024-05-01"

    moved = await _post(client, "/v1/disputes/D-P/status", {"status": "waiting_on_customer", "changed_on": "2024-04-02",
                                                            "note": "asked for the price list"},
                        headers={"X-Actor": "ann"})
    assert moved["work_status"] == "waiting_on_customer"
    r = await client.post("/v1/disputes/D-P/status", json={"status": "done"}, headers=idem())
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "status"
    note = await _post(client, "/v1/disputes/D-P/notes", {"text": "Customer says the promo price applies",
                                                         "added_on": "2024-04-03"}, headers={"X-Actor": "ann"})
    assert note["author"] == "ann"
    pdf = b"%PDF-1.4 proof of delivery " + bytes(range(256))
    att = await client.post("/v1/disputes/D-P/attachments", content=pdf,
                            params={"file_name": "pod-1001.pdf", "kind": "proof_of_delivery"},
                            headers={**idem(), "Content-Type": "application/pdf"})
    assert att.status_code == 201, att.text
    assert (att.json()["size_bytes"], att.json()["content_type"]) == (len(pdf), "application/pdf")
    got = await client.get(f"/v1/disputes/D-P/attachments/{att.json()['attachment_id']}")
    assert got.status_code == 200 and got.content == pdf and got.headers["content-type"] == "application/pdf"
    too_big = await client.post("/v1/disputes/D-P/attachments", content=b"x" * 2049,
                                params={"file_name": "big.bin"}, headers=idem())
    assert too_big.status_code == 413 and too_big.json()["errors"][0]["field"] == "body"
    bad_kind = await client.post("/v1/disputes/D-P/attachments", content=b"abc",
                                 params={"file_name": "a.txt", "kind": "selfie"}, headers=idem())
    assert bad_kind.status_code == 422 and bad_kind.json()["errors"][0]["field"] == "kind"
    assert len((await client.get("/v1/disputes/D-P/attachments")).json()["data"]) == 1
    await _post(client, "/v1/disputes/D-P/assignment", {"owner": "raj", "team": "billing", "assigned_on": "2024-04-04"})

    # Apr 11 is D-P's due date: not overdue yet; Apr 12 it is, D-Q (promotion, May 1) is not.
    run = await _post(client, "/v1/dispute-escalations", {"as_of": "2024-04-11"})
    assert run["escalated"] == []
    run = await _post(client, "/v1/dispute-escalations", {"as_of": "2024-04-12"})
    assert [(e["dispute_id"], e["team"], e["owner"], e["due_on"]) for e in run["escalated"]] == [
        ("D-P", "billing", "raj", "2024-04-11")]
    assert (await _post(client, "/v1/dispute-escalations", {"as_of": "2024-04-13"}))["escalated"] == []
    assert (await client.get("/v1/disputes/D-P")).json()["escalated_on"] == "2024-04-12"

    await _post(client, "/v1/disputes/D-P/resolution", {"resolution": "partial_credit", "credit_amount": "40.00",
                                                        "resolved_on": "2024-04-14"})
    assert (await client.get("/v1/disputes/D-P")).json()["work_status"] == "resolved"
    steps = (await client.get("/v1/disputes/D-P/timeline")).json()["data"]
    assert [s["event_type"] for s in steps] == ["DisputeOpened", "DisputeStatusChanged", "DisputeNoteAdded",
                                                "DisputeAttachmentAdded", "DisputeAssigned", "DisputeEscalated",
                                                "DisputeResolved"]
    assert steps[1]["actor"] == "ann" and steps[1]["note"] == "asked for the price list"
    assert steps[3]["data"]["sha256"] == att.json()["sha256"]


async def test_the_periodic_run_escalates_overdue_disputes_once_across_workers(disputes):
    """The workers' scheduled escalation (no request): as of the service's today (Apr 15), the
    PRICING dispute opened Apr 1 (due Apr 11) escalates with the system as its actor; two runs at
    once, as two workers would, escalate it once, and a later run escalates nothing new."""
    client, app = disputes
    runtime = app.state.runtime
    invoice = InvoiceIssued(invoice_id="inv-2", invoice_number="2001", customer_id="C2", currency="USD",
                            issue_date="2024-03-01", due_date="2024-03-31",
                            lines=[InvoiceLine(description="Goods", quantity="1", unit_price="500.00", amount="500.00")],
                            total_amount="500.00")
    async with runtime.engine.begin() as conn:
        await on_external_event(conn, ReceivedEvent(event_id=str(uuid.uuid4()), event_type="InvoiceIssued",
                                                    schema_version=1, source="t", subject="s", occurred_at=None,
                                                    data=invoice.to_payload(), headers={}, topic="t", partition=0,
                                                    offset=0))
    await _post(client, "/v1/disputes", {"dispute_id": "D-OLD", "invoice_id": "inv-2", "amount": "80.00",
                                         "reason_code": "PRICING", "opened_on": "2024-04-01"})
    await _post(client, "/v1/disputes", {"dispute_id": "D-NEW", "invoice_id": "inv-2", "amount": "20.00",
                                         "reason_code": "PRICING", "opened_on": "2024-04-10"})
    [task] = [t for t in runtime.definition.periodic if t.name == "escalate-overdue-disputes"]
    assert task.seconds(runtime.settings) == 3600.0
    counts = await asyncio.gather(task.run(runtime), task.run(runtime))
    assert sorted(counts) == [0, 1]
    assert await task.run(runtime) == 0
    assert (await client.get("/v1/disputes/D-OLD")).json()["escalated_on"] == "2024-04-15"
    assert (await client.get("/v1/disputes/D-NEW")).json()["escalated_on"] is None
    steps = (await client.get("/v1/disputes/D-OLD/timeline")).json()["data"]
    assert [(s["event_type"], s["actor"]) for s in steps if s["event_type"] == "DisputeEscalated"] == [
        ("DisputeEscalated", "system:dispute-escalation")]
