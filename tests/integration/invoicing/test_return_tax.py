"""Returns credit their share of each line's tax, through invoicing's API on a real PostgreSQL
database; the events invoicing stored are then handed to cash application's, collections' and
reporting's consumer handlers (each on its own database): open items, balances and the
roll-forward move by the same amounts, tax included, and returning everything credits exactly the
invoice's total (its tax to the cent), never more."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.cash_application.main import definition as cash_definition
from services.cash_application.projections.open_items import on_invoicing_event
from services.cash_application.settings import CashApplicationSettings
from services.collections.application.handlers import on_external_event as collections_handler
from services.collections.main import definition as collections_definition
from services.collections.settings import CollectionsSettings
from services.invoicing.main import definition as invoicing_definition
from services.invoicing.settings import InvoicingSettings
from services.reporting.main import definition as reporting_definition
from services.reporting.projections.facts import project
from services.reporting.settings import ReportingSettings
from shared.clock import FixedClock
from tests.integration.invoicing.test_adjustments_everywhere import _feed, _post, _published
from tests.support.infra import idem, service_client

TODAY = date(2024, 3, 31)


@pytest.fixture
async def invoicing():
    def make(url):
        d = invoicing_definition(InvoicingSettings(database_url=url))
        d.state["clock"] = FixedClock(TODAY)
        return d

    async with service_client(make) as (client, app):
        yield client, app


async def _setup(client):
    await _post(client, "/v1/customers", {"customer_id": "T1", "name": "Taxed", "currency": "EUR",
                                          "payment_terms_days": 30})
    # L: the ERP gave each line's tax (3 chairs: 20.00 VAT; 1 lamp: 2.00).
    await _post(client, "/v1/invoices", {
        "customer_id": "T1", "invoice_id": "L", "invoice_number": "L", "issue_date": "2024-03-01",
        "lines": [{"description": "Chairs", "quantity": "3", "unit_price": "33.33", "tax_amount": "20.00"},
                  {"description": "Lamp", "quantity": "1", "unit_price": "10.00", "tax_amount": "2.00"}],
        "taxes": [{"code": "VAT", "rate": "20", "amount": "22.00"}]})
    # V: the ERP gave the invoice's tax only (10.00 over 150.00 of goods): split by line amount.
    await _post(client, "/v1/invoices", {
        "customer_id": "T1", "invoice_id": "V", "invoice_number": "V", "issue_date": "2024-03-01",
        "lines": [{"description": "Desks", "quantity": "3", "unit_price": "33.34"},
                  {"description": "Shelves", "quantity": "1", "unit_price": "49.98"}],
        "taxes": [{"code": "VAT", "rate": "6.67", "amount": "10.00"}]})


async def test_returns_credit_the_lines_tax_and_every_context_moves_the_same_way(invoicing):
    client, app = invoicing
    await _setup(client)
    r = await client.post("/v1/invoices", headers=idem(), json={
        "customer_id": "T1", "issue_date": "2024-03-01", "taxes": [{"code": "VAT", "amount": "5.00"}],
        "lines": [{"description": "x", "quantity": "1", "unit_price": "10.00", "tax_amount": "4.00"}]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "taxes"

    # L: one chair, then the other two and the lamp: 6.67 then 13.33 + 2.00 of tax.
    first = await _post(client, "/v1/invoices/L/returns", {"rma_number": "R1", "return_date": "2024-03-10",
                                                           "lines": [{"line_number": 1, "quantity": "1"}]})
    assert first["lines"] == [{"line_number": 1, "description": "Chairs", "quantity": "1", "unit_price": "33.33",
                               "amount": "33.33", "tax_amount": "6.67"}]
    assert first["amount"] == "40.00"
    rest = await _post(client, "/v1/invoices/L/returns", {"rma_number": "R2", "return_date": "2024-03-12", "lines": [
        {"line_number": 1, "quantity": "2"}, {"line_number": 2, "quantity": "1"}]})
    assert [(x["amount"], x["tax_amount"]) for x in rest["lines"]] == [("66.66", "13.33"), ("10.00", "2.00")]
    assert rest["amount"] == "91.99"
    invoice_l = (await client.get("/v1/invoices/L")).json()
    assert (invoice_l["total_amount"], invoice_l["credited_amount"], invoice_l["open_balance"]) == (
        "131.99", "131.99", "0.00")
    assert [m["lines"][0]["tax_amount"] for m in invoice_l["credit_memos"]] == ["6.67", "13.33"]
    pdf = await client.get(f"/v1/credit-memos/{first['credit_memo_id']}/pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"

    # V: the invoice's 10.00 of VAT splits 6.67 / 3.33 by line amount; two desks of three: 4.45.
    desks = await _post(client, "/v1/invoices/V/returns", {"rma_number": "R3", "return_date": "2024-03-15",
                                                           "lines": [{"line_number": 1, "quantity": "2"}]})
    assert [(x["amount"], x["tax_amount"]) for x in desks["lines"]] == [("66.68", "4.45")]
    assert desks["amount"] == "71.13"
    events = await _published(app.state.runtime.engine)
    deliveries = events + list(reversed(events))
    expected = {"L": "0.00", "V": "88.87"}  # V: 100.02 + 49.98 + 10.00 - 71.13

    async with service_client(lambda url: cash_definition(CashApplicationSettings(database_url=url))) as (cash, capp):
        await _feed(capp.state.runtime.engine, on_invoicing_event, deliveries)
        items = {i: (await cash.get(f"/v1/open-items/{i}")).json() for i in expected}
        assert {i: item["open_balance"] for i, item in items.items()} == expected
        assert (items["L"]["credited_amount"], items["V"]["credited_amount"]) == ("131.99", "71.13")

    def make_collections(url):
        return collections_definition(CollectionsSettings(database_url=url, role="api"), clock=FixedClock(TODAY))

    async with service_client(make_collections) as (col, colapp):
        await _feed(colapp.state.runtime.engine, collections_handler, deliveries)
        account = (await col.get("/v1/customers/T1", params={"as_of": "2024-03-31"})).json()
        assert {i["invoice_id"]: i["open_balance"] for i in account["open_invoices"]} == {"V": "88.87"}

    def make_reporting(url):
        d = reporting_definition(ReportingSettings(database_url=url))
        d.state["clock"] = FixedClock(TODAY)
        return d

    async with service_client(make_reporting) as (rep, rapp):
        await _feed(rapp.state.runtime.engine, project, deliveries)
        march = (await rep.get("/v1/reports/roll-forward", params={"period": "2024-03", "currency": "EUR"})).json()
        # invoiced 131.99 + 160.00 = 291.99; credits 40.00 + 91.99 + 71.13 = 203.12, tax included.
        assert {k: march[k] for k in ("invoiced", "credits", "closing", "ties")} == {
            "invoiced": "291.99", "credits": "203.12", "closing": "88.87", "ties": True}
