"""Statements of account delivered by the customer's preference through invoicing's document
outbox, on real PostgreSQL databases: reporting (its own database, fed invoicing's stored events)
makes the statement and its PDF, invoicing fetches it over reporting's HTTP API and emails it to a
real SMTP server (aiosmtpd), or leaves it ready for the print shop or portal connector; a
monthly statement run per parent is queued once each month is over, once."""
from __future__ import annotations

import io
from datetime import date

import httpx
import pytest
from pypdf import PdfReader

from services.invoicing.adapters.reporting_client import StatementSource
from services.invoicing.application.documents import deliver_pending_documents
from services.invoicing.application.statements import run_due_statements
from services.invoicing.main import definition
from services.invoicing.settings import InvoicingSettings
from services.reporting.main import definition as reporting_definition
from services.reporting.projections.facts import project
from services.reporting.settings import ReportingSettings
from shared.clock import FixedClock
from tests.integration.invoicing.test_adjustments_everywhere import _feed, _post, _published
from tests.support.infra import idem, service_client
from tests.support.smtp import smtp_server

TODAY = date(2024, 6, 30)


@pytest.fixture
def smtp():
    with smtp_server() as server:
        yield server


@pytest.fixture
async def platform(smtp):
    def make(url):
        d = definition(InvoicingSettings(database_url=url, smtp_host=smtp.host, smtp_port=smtp.port))
        d.state["clock"] = FixedClock(TODAY)
        return d

    def make_reporting(url):
        d = reporting_definition(ReportingSettings(database_url=url))
        d.state["clock"] = FixedClock(TODAY)
        return d

    async with service_client(make) as (client, app), service_client(make_reporting) as (_, reporting):
        source = StatementSource("http://reporting", transport=httpx.ASGITransport(app=reporting))
        app.state.runtime.definition.state["statement_source"] = source
        yield client, app, reporting, source


def _text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


async def _book(client) -> None:
    for customer_id, profile in (
            ("HQ", {"language": "fr", "billing_contacts": [{"name": "Léa", "email": "ap@hq.example"}]}),
            ("ST1", {"delivery_preference": "postal"})):
        await _post(client, "/v1/customers", {"customer_id": customer_id, "name": f"{customer_id} Retail",
                                              "currency": "EUR", "registered_on": "2024-01-01"})
        await _post(client, f"/v1/customers/{customer_id}/profile-changes", {"effective_on": "2024-01-01", **profile})
    await _post(client, "/v1/customers/ST1/parent", {"parent_customer_id": "HQ", "effective_on": "2024-01-01"})
    for customer_id, number, amount in (("HQ", "HQ-1", "500.00"), ("ST1", "ST-1", "120.00")):
        await _post(client, "/v1/invoices", {"customer_id": customer_id, "invoice_number": number,
                                             "issue_date": "2024-03-01",
                                             "lines": [{"description": "Goods", "quantity": "1", "unit_price": amount}]})


async def test_statements_by_preference_and_monthly_runs(platform, smtp):
    client, app, reporting, source = platform
    runtime = app.state.runtime
    await _book(client)
    await _feed(reporting.state.runtime.engine, project, await _published(runtime.engine))
    await deliver_pending_documents(runtime.engine, runtime.settings, statements=source)  # invoice HQ-1
    sent_before = len(smtp.to("ap@hq.example"))

    # The parent's statement as of Mar 31, by its preference (email, French): queued in the outbox.
    first = await _post(client, "/v1/customers/HQ/statement-deliveries", {"as_of": "2024-03-31"})
    assert (first["document_kind"], first["channel"], first["status"], first["recipient"], first["as_of"],
            first["currency"]) == ("statement", "email_pdf", "pending", "ap@hq.example", "2024-03-31", "EUR")
    again = await _post(client, "/v1/customers/HQ/statement-deliveries", {"as_of": "2024-03-31"})
    assert again["delivery_id"] == first["delivery_id"]  # the same statement is one delivery

    # Reporting unreachable: an attempt is counted, nothing sent, the delivery waits.
    down = StatementSource("http://127.0.0.1:9")
    assert (await deliver_pending_documents(runtime.engine, runtime.settings, statements=down))["retry"] == 1
    waiting = (await client.get(f"/v1/document-deliveries/{first['delivery_id']}")).json()
    assert (waiting["status"], waiting["attempts"]) == ("pending", 1) and "reporting" in waiting["last_error"]
    assert len(smtp.to("ap@hq.example")) == sent_before

    counts = await deliver_pending_documents(runtime.engine, runtime.settings, statements=source)
    assert counts["sent"] >= 1 and counts["failed"] == 0
    statements = [m for m in smtp.to("ap@hq.example") if m.subject.startswith("Relevé de compte")]
    assert [m.subject for m in statements] == ["Relevé de compte HQ Retail au 2024-03-31"]
    assert first["delivery_id"] in statements[0].message_id
    [(name, attached)] = statements[0].pdfs()
    text = _text(attached)
    assert name.startswith("statement-HQ") and "HQ-1" in text and "ST-1" in text and "620,00" in text
    assert (await deliver_pending_documents(runtime.engine, runtime.settings, statements=source))["sent"] == 0

    # The store's own statement goes by post: ready for the print shop, its PDF from the delivery.
    postal = await _post(client, "/v1/customers/ST1/statement-deliveries", {"as_of": "2024-03-31"})
    assert (postal["channel"], postal["status"], postal["pdf"]) == (
        "postal", "ready", f"/v1/document-deliveries/{postal['delivery_id']}/pdf")
    pdf = await client.get(postal["pdf"])
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert "ST-1" in _text(pdf.content) and "HQ-1" not in _text(pdf.content)
    picked = await _post(client, f"/v1/document-deliveries/{postal['delivery_id']}/pickups",
                         {"picked_up_by": "print-shop"})
    assert picked["status"] == "picked_up"

    # Bad input changes nothing: a future date, an unknown customer.
    r = await client.post("/v1/customers/HQ/statement-deliveries", json={"as_of": "2024-07-01"}, headers=idem())
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "as_of"
    r = await client.post("/v1/customers/NOBODY/statement-deliveries", json={}, headers=idem())
    assert r.status_code == 404

    # A monthly run for the parent from April: nothing while April lasts, then April's and May's
    # statements once each, whatever how often the worker passes.
    schedule = await _post(client, "/v1/customers/HQ/statement-schedules", {"first_as_of": "2024-04-10"})
    assert (schedule["frequency"], schedule["next_as_of"], schedule["active"]) == ("monthly", "2024-04-30", True)
    r = await client.post("/v1/customers/HQ/statement-schedules", json={}, headers=idem())
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "customer_id"
    assert await run_due_statements(runtime.engine, date(2024, 4, 30)) == 0
    assert await run_due_statements(runtime.engine, date(2024, 6, 2)) == 2
    assert await run_due_statements(runtime.engine, date(2024, 6, 2)) == 0
    queued = (await client.get("/v1/document-deliveries", params={"customer_id": "HQ", "status": "pending"})).json()
    assert sorted(d["as_of"] for d in queued["data"] if d["document_kind"] == "statement") == [
        "2024-04-30", "2024-05-31"]
    [listed] = (await client.get("/v1/statement-schedules", params={"customer_id": "HQ"})).json()["data"]
    assert (listed["next_as_of"], listed["last_as_of"]) == ("2024-06-30", "2024-05-31")
    await deliver_pending_documents(runtime.engine, runtime.settings, statements=source)
    assert sorted(m.subject for m in smtp.to("ap@hq.example") if m.subject.startswith("Relevé")) == [
        "Relevé de compte HQ Retail au 2024-03-31", "Relevé de compte HQ Retail au 2024-04-30",
        "Relevé de compte HQ Retail au 2024-05-31"]
    cancelled = await _post(client, f"/v1/statement-schedules/{schedule['schedule_id']}/cancellation", {})
    assert cancelled["active"] is False
    assert await run_due_statements(runtime.engine, date(2024, 9, 1)) == 0
