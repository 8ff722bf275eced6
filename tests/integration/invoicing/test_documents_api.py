"""Invoice and credit-memo documents through invoicing's API on a real PostgreSQL database: the
PDF in English and French with the ERP's tax amounts and the RF creditor reference, the PO-number
rule refused at issue time with a problem naming the field, and delivery by the customer's
preference: emailed through the outbox to a real SMTP server (aiosmtpd), or left ready for the
portal connector to pick up."""
from __future__ import annotations

import io
from datetime import date

import pytest
from pypdf import PdfReader

from shared import creditor_reference
from shared.clock import FixedClock
from services.invoicing.application.documents import deliver_pending_documents
from services.invoicing.main import definition
from services.invoicing.settings import InvoicingSettings
from tests.support.infra import idem, service_client
from tests.support.smtp import smtp_server


@pytest.fixture
def smtp():
    with smtp_server() as server:
        yield server


@pytest.fixture
async def invoicing(smtp):
    def make(url):
        d = definition(InvoicingSettings(database_url=url, smtp_host=smtp.host, smtp_port=smtp.port))
        d.state["clock"] = FixedClock(date(2024, 6, 30))
        return d

    async with service_client(make) as (client, app):
        yield client, app


def _text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


async def _customer(client, customer_id: str, **profile) -> None:
    r = await client.post("/v1/customers", headers=idem(), json={
        "customer_id": customer_id, "name": f"{customer_id} Retail", "currency": "EUR", "credit_limit": "10000.00",
        "registered_on": "2024-01-01"})
    assert r.status_code == 201, r.text
    if profile:
        r = await client.post(f"/v1/customers/{customer_id}/profile-changes", headers=idem(),
                              json={"effective_on": "2024-01-01", **profile})
        assert r.status_code == 201, r.text


async def test_pdfs_po_rule_and_delivery_by_preference(invoicing, smtp):
    client, app = invoicing
    await _customer(client, "MAIL", language="fr", billing_contacts=[{"name": "Léa", "email": "ap@mail.example"}],
                    po_number_required=True)
    await _customer(client, "PORTAL", delivery_preference="portal_upload")
    invoice = {"customer_id": "MAIL", "invoice_number": "F-2024-0042", "issue_date": "2024-03-01",
               "lines": [{"description": "Café", "quantity": "10", "unit_price": "12.50", "product_line": "coffee"}],
               "taxes": [{"code": "TVA", "rate": "20", "amount": "25.00"}]}

    # The customer requires its PO number: refused at issue time, naming the field, nothing issued.
    r = await client.post("/v1/invoices", headers=idem(), json=invoice)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
    assert r.json()["errors"][0]["field"] == "po_number"
    assert (await client.get("/v1/invoices", params={"customer_id": "MAIL"})).json()["data"] == []

    r = await client.post("/v1/invoices", headers=idem(), json={**invoice, "po_number": "PO-7781"})
    assert r.status_code == 201, r.text
    issued = r.json()
    reference = creditor_reference.make("F20240042")
    assert (issued["total_amount"], issued["po_number"], issued["payment_reference"]) == ("150.00", "PO-7781",
                                                                                          reference)
    assert issued["taxes"] == [{"code": "TVA", "rate": "20", "amount": "25.00"}]

    # The PDF, in the customer's language by default and in English on request.
    pdf = await client.get(f"/v1/invoices/{issued['invoice_id']}/pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    french = _text(pdf.content)
    for expected in ("Facture F-2024-0042", "PO-7781", "Taxe TVA 20 %", "25,00 EUR", "150,00 EUR",
                     creditor_reference.printed(reference)):
        assert expected in french, expected
    english = _text((await client.get(f"/v1/invoices/{issued['invoice_id']}/pdf", params={"language": "en"})).content)
    assert "Invoice F-2024-0042" in english and "150.00 EUR" in english
    assert (await client.get("/v1/invoices/nope/pdf")).status_code == 404

    # Email with the PDF attached, sent after commit by the outbox; once.
    deliveries = (await client.get("/v1/document-deliveries", params={"customer_id": "MAIL"})).json()["data"]
    assert [(d["document_kind"], d["channel"], d["status"], d["recipient"]) for d in deliveries] == [
        ("invoice", "email_pdf", "pending", "ap@mail.example")]
    runtime = app.state.runtime
    assert await deliver_pending_documents(runtime.engine, runtime.settings) == {"sent": 1, "failed": 0, "retry": 0}
    assert await deliver_pending_documents(runtime.engine, runtime.settings) == {"sent": 0, "failed": 0, "retry": 0}
    [mail] = smtp.to("ap@mail.example")
    assert mail.subject == "Facture F-2024-0042" and deliveries[0]["delivery_id"] in mail.message_id
    [(name, attached)] = mail.pdfs()
    assert name == "F-2024-0042.pdf" and creditor_reference.printed(reference) in _text(attached)

    # A credit memo reaches the same customer the same way, and has its own PDF.
    r = await client.post(f"/v1/invoices/{issued['invoice_id']}/credit-memos", headers=idem(),
                          json={"amount": "30.00", "issue_date": "2024-03-05", "reason": "damaged bags"})
    assert r.status_code == 201, r.text
    memo = _text((await client.get(f"/v1/credit-memos/{r.json()['credit_memo_id']}/pdf")).content)
    assert "Avoir" in memo and "F-2024-0042" in memo and "30,00 EUR" in memo
    await deliver_pending_documents(runtime.engine, runtime.settings)
    assert [m.subject.split()[0] for m in smtp.to("ap@mail.example")] == ["Facture", "Avoir"]

    # Portal upload instead of email: recorded ready, picked up once by the connector.
    r = await client.post("/v1/invoices", headers=idem(), json={
        "customer_id": "PORTAL", "invoice_number": "P-1", "issue_date": "2024-03-01",
        "lines": [{"description": "Tea", "quantity": "1", "unit_price": "99.00"}]})
    assert r.status_code == 201, r.text
    ready = (await client.get("/v1/document-deliveries", params={"status": "ready",
                                                                  "channel": "portal_upload"})).json()["data"]
    assert [d["document_id"] for d in ready] == [r.json()["invoice_id"]]
    key = idem()
    first = await client.post(f"/v1/document-deliveries/{ready[0]['delivery_id']}/pickups", headers=key,
                              json={"picked_up_by": "portal-connector"})
    again = await client.post(f"/v1/document-deliveries/{ready[0]['delivery_id']}/pickups", headers=key,
                              json={"picked_up_by": "portal-connector"})
    assert first.status_code == again.status_code == 201 and first.json()["status"] == "picked_up"
    twice = await client.post(f"/v1/document-deliveries/{ready[0]['delivery_id']}/pickups", headers=idem(), json={})
    assert twice.status_code == 409
    assert len(smtp.to("ap@mail.example")) == 2  # nothing emailed for the portal customer
