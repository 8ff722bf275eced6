"""Bulk intake on a real PostgreSQL database: a batch of a thousand invoices with per-item results,
all or nothing per item, idempotent per item; and a CSV import with its validation report."""
from __future__ import annotations

from decimal import Decimal

import pytest

from services.invoicing.main import definition
from services.invoicing.settings import InvoicingSettings
from tests.support.infra import idem, service_client


@pytest.fixture
async def invoicing():
    async with service_client(lambda url: definition(InvoicingSettings(database_url=url))) as (client, app):
        r = await client.post("/v1/customers", headers=idem(), json={
            "customer_id": "C1", "name": "Acme", "currency": "USD", "payment_terms": "NET30",
            "credit_limit": "1000000.00"})
        assert r.status_code == 201
        yield client, app


def _item(n: int, **extra) -> dict:
    return {"invoice_id": f"B-{n}", "invoice_number": f"B-{n}", "customer_id": "C1", "issue_date": "2024-03-01",
            "lines": [{"description": "Widgets", "quantity": "1", "unit_price": f"{n}.00"}], **extra}


async def test_a_thousand_invoice_batch_per_item_results_and_idempotency(invoicing):
    client, app = invoicing
    items = [_item(n) for n in range(1, 1001)]
    items[10] = _item(11, customer_id="NOBODY")                      # business rule: unknown customer
    items[20] = {**_item(21), "lines": []}                            # validation: no lines
    items[30] = {**_item(31), "lines": [{"description": "x", "quantity": "1", "unit_price": 5}]}  # a JSON number
    items[40] = _item(41, invoice_number="B-1")                       # number already used by item 0
    r = await client.post("/v1/invoice-batches", json={"invoices": items}, headers=idem())
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["count"], body["issued"], body["error"]) == (1000, 996, 4)
    errors = {res["index"]: res["errors"][0]["field"] for res in body["results"] if res["status"] == "error"}
    assert errors == {10: "customer_id", 20: "lines", 30: "lines.0.unit_price", 40: "invoice_number"}
    listed = (await client.get("/v1/customers/C1")).json()
    expected = sum(Decimal(n) for n in range(1, 1001) if n not in (11, 21, 31, 41))
    assert Decimal(listed["open_balance"]) == expected

    # The ERP retries a part under a new key, with two fixed items and one changed one.
    retry = [_item(1), _item(2), _item(11), _item(41, invoice_number="B-41"), _item(3, issue_date="2024-03-02")]
    again = (await client.post("/v1/invoice-batches", json={"invoices": retry}, headers=idem())).json()
    assert [r["status"] for r in again["results"]] == ["already_issued", "already_issued", "issued", "issued",
                                                       "error"]
    assert again["results"][4]["errors"][0]["field"] == "invoice_id"
    async with app.state.runtime.engine.connect() as conn:
        from sqlalchemy import text
        issued = (await conn.execute(text("SELECT count(*) FROM events WHERE event_type = 'InvoiceIssued'"))).scalar()
    assert issued == 998
    r = await client.post("/v1/invoice-batches", json={"invoices": []}, headers=idem())
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "invoices"


async def test_csv_import_with_a_validation_report(invoicing):
    client, _ = invoicing
    csv = ("invoice_number,customer_id,issue_date,description,quantity,unit_price\n"
           "F-1,C1,2024-03-01,Widgets,2,10.00\n"
           "F-1,C1,2024-03-01,Freight,1,5.00\n"
           "F-2,C1,2024-13-01,Service,1,99.99\n"
           "F-3,C1,2024-03-01,Service,0,1.99\n"
           "F-4,C9,2024-03-01,Service,1,1.00\n")
    key = {"Idempotency-Key": "import-1", "Content-Type": "text/csv"}
    first = await client.post("/v1/invoice-imports", params={"format": "csv"}, content=csv, headers=key)
    assert first.status_code == 201, first.text
    report = first.json()
    assert (report["rows"], report["count"], report["issued"], report["error"]) == (5, 4, 1, 3)
    by_number = {r["invoice_id"]: r for r in report["results"]}
    assert by_number["C1:F-1"]["rows"] == [2, 3] and by_number["C1:F-1"]["status"] == "issued"
    assert by_number["C1:F-2"]["errors"][0]["field"] == "issue_date"
    assert by_number["C1:F-3"]["errors"][0]["field"] == "lines.0.quantity"
    assert by_number["C9:F-4"]["errors"][0]["field"] == "customer_id"
    again = await client.post("/v1/invoice-imports", params={"format": "csv"}, content=csv, headers=key)
    assert again.json() == report and again.headers["Idempotent-Replayed"] == "true"
    second = (await client.post("/v1/invoice-imports", params={"format": "csv"}, content=csv,
                                headers={**idem(), "Content-Type": "text/csv"})).json()
    assert (second["already_issued"], second["issued"]) == (1, 0)
    assert (await client.get("/v1/invoices/C1:F-1")).json()["total_amount"] == "25.00"
    bad = await client.post("/v1/invoice-imports", params={"format": "csv"}, content="a,b\n1,2\n",
                            headers={**idem(), "Content-Type": "text/csv"})
    assert bad.status_code == 422


async def test_invoices_sent_without_a_number_get_the_next_free_numbers_of_the_default_series(invoicing):
    """Ids sharing their first eight characters (an ERP's "2024-00012x") no longer collide; a
    number a caller gave explicitly is passed over; one by one and in a batch alike."""
    client, app = invoicing
    explicit = {k: v for k, v in _item(1).items() if k != "invoice_id"} | {"invoice_number": "INV-00000002"}
    r = await client.post("/v1/invoices", json=explicit, headers=idem())
    assert r.status_code == 201, r.text
    numbers = []
    for invoice_id in ("2024-000123", "2024-000124"):
        r = await client.post("/v1/invoices", headers=idem(), json={
            k: v for k, v in _item(5).items() if k != "invoice_number"} | {"invoice_id": invoice_id})
        assert r.status_code == 201, r.text
        numbers.append(r.json()["invoice_number"])
    assert numbers == ["INV-00000001", "INV-00000003"]
    batch = [{k: v for k, v in _item(n).items() if k != "invoice_number"} | {"invoice_id": f"2024-00013{n}"}
             for n in range(1, 4)]
    r = await client.post("/v1/invoice-batches", json={"invoices": batch}, headers=idem())
    assert r.status_code == 201 and r.json()["issued"] == 3, r.text
    assert [res["invoice"]["invoice_number"] for res in r.json()["results"]] == [
        "INV-00000004", "INV-00000005", "INV-00000006"]
    again = (await client.post("/v1/invoice-batches", json={"invoices": batch}, headers=idem())).json()
    assert [res["status"] for res in again["results"]] == ["already_issued"] * 3
    assert [res["invoice"]["invoice_number"] for res in again["results"]] == [
        "INV-00000004", "INV-00000005", "INV-00000006"]
