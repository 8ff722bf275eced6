"""No input and no outage reaches a client as a text/plain 500: a database out of reach is a
problem+json 503 with Retry-After; an amount no currency can hold and a NUL character anywhere
in the request are 422s naming the field; anything unhandled is a problem+json 500 (issue 13,
item 7). In-process apps on the real PostgreSQL."""
from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest
from fastapi import APIRouter

from services.cash_application.main import definition as cash_definition
from services.cash_application.settings import CashApplicationSettings
from services.disputes.main import definition as disputes_definition
from services.disputes.settings import DisputesSettings
from services.invoicing.main import definition as invoicing_definition
from services.invoicing.settings import InvoicingSettings
from shared.service import build_app
from tests.support.infra import asyncpg_dsn, idem, service_client, sqlalchemy_url
from tests.support.platform import free_port

PROBLEM = "application/problem+json"


def fields(response: httpx.Response) -> list[str]:
    return [e["field"] for e in response.json()["errors"]]


@pytest.fixture
async def invoicing():
    async with service_client(lambda url: invoicing_definition(InvoicingSettings(database_url=url))) as (client, app):
        r = await client.post("/v1/customers", headers=idem(), json={
            "customer_id": "ACME", "name": "Acme", "currency": "USD", "payment_terms_days": 30,
            "credit_limit": "5000.00"})
        assert r.status_code == 201, r.text
        yield client, app


async def test_a_database_out_of_reach_is_a_503_problem_with_retry_after():
    closed = free_port()  # nothing listens there: connection refused
    settings = InvoicingSettings(database_url=f"postgresql+asyncpg://ledgerline:ledgerline@127.0.0.1:{closed}/nowhere",
                                 migrate_on_start=False, role="api", allow_open=True)
    app = build_app(invoicing_definition(settings))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            for response in (await client.get("/v1/customers"),
                             await client.post("/v1/customers", headers=idem(), json={
                                 "customer_id": "A", "name": "A", "currency": "USD", "payment_terms_days": 30,
                                 "credit_limit": "1.00"})):
                assert response.status_code == 503, response.text
                assert response.headers["content-type"] == PROBLEM
                assert response.json()["type"].endswith("/service-unavailable")
                assert int(response.headers["Retry-After"]) > 0


async def test_connections_killed_under_the_pool_never_answer_a_500(invoicing):
    client, app = invoicing
    database = app.state.runtime.engine.url.database
    for _ in range(3):
        admin = await asyncpg.connect(asyncpg_dsn("postgres"))
        try:
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                " WHERE datname = $1 AND pid <> pg_backend_pid()", database)
        finally:
            await admin.close()
        response = await client.get("/v1/customers")
        assert response.status_code in (200, 503), response.text
        if response.status_code == 503:
            assert response.headers["content-type"] == PROBLEM and "Retry-After" in response.headers


@pytest.mark.parametrize("amount", ["1E+26", "99999999999999999999", "NaN", "Infinity", "-Infinity", "0.00001"])
async def test_an_amount_no_currency_can_hold_is_a_422_naming_the_field(invoicing, amount):
    client, _ = invoicing
    r = await client.post("/v1/invoices", headers=idem(), json={
        "customer_id": "ACME", "issue_date": "2024-03-01",
        "lines": [{"description": "Widgets", "quantity": "1", "unit_price": amount}]})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text
    assert "lines.0.unit_price" in fields(r)
    r = await client.post("/v1/invoices", headers=idem(), json={
        "customer_id": "ACME", "issue_date": "2024-03-01",
        "lines": [{"description": "Widgets", "quantity": amount, "unit_price": "1.00"}]})
    assert r.status_code == 422 and "lines.0.quantity" in fields(r), r.text


async def test_a_line_whose_quantity_times_price_overflows_is_a_422(invoicing):
    client, _ = invoicing
    r = await client.post("/v1/invoices", headers=idem(), json={
        "customer_id": "ACME", "issue_date": "2024-03-01",
        "lines": [{"description": "Widgets", "quantity": "999999999999", "unit_price": "999999999999.00"}]})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text
    assert "lines.0.quantity" in fields(r)
    assert (await client.get("/v1/invoices", params={"customer_id": "ACME"})).json()["data"] == []


async def test_huge_payment_amounts_are_a_422_naming_the_field():
    async with service_client(lambda url: cash_definition(CashApplicationSettings(database_url=url))) as (client, _):
        for amount in ("1E+26", "NaN", "Infinity", "1234567890123456.00"):
            r = await client.post("/v1/payments", headers=idem(), json={
                "customer_id": "ACME", "amount": amount, "currency": "USD", "value_date": "2024-03-01",
                "method": "wire"})
            assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text
            assert fields(r) == ["amount"]


async def test_a_nul_character_anywhere_is_a_422_naming_the_field():
    async with service_client(lambda url: disputes_definition(DisputesSettings(database_url=url))) as (client, _):
        r = await client.post("/v1/disputes", headers=idem(), json={
            "invoice_id": "inv\u00001", "amount": "10.00", "reason_code": "PRICING"})
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text
        assert fields(r) == ["invoice_id"]
        r = await client.post("/v1/disputes", headers=idem(), json={
            "invoice_id": "inv-1", "amount": "10.00", "reason_code": "PRICING", "description": "a\u0000b"})
        assert r.status_code == 422 and fields(r) == ["description"]
        r = await client.get("/v1/disputes", params={"customer_id": "cus\u00001"})
        assert r.status_code == 422 and fields(r) == ["customer_id"]
        r = await client.get("/v1/disputes/d%00x")
        assert r.status_code == 422 and fields(r) == ["path"]
        r = await client.post("/v1/disputes", headers={"Idempotency-Key": "k\u0000"}, json={
            "invoice_id": "inv-1", "amount": "10.00", "reason_code": "PRICING"})
        assert r.status_code == 422 and fields(r) == ["idempotency-key"]
        assert (await client.get("/v1/disputes")).json()["data"] == []


async def test_an_unhandled_error_is_a_problem_json_500():
    router = APIRouter()

    @router.get("/v1/boom")
    async def boom():
        raise RuntimeError("a bug")

    def make(url):
        d = disputes_definition(DisputesSettings(database_url=url))
        d.routers = [*d.routers, router]
        return d

    async with service_client(make) as (client, _):
        r = await client.get("/v1/boom")
        assert r.status_code == 500 and r.headers["content-type"] == PROBLEM
        assert r.json()["type"].endswith("/internal-error") and "a bug" not in r.text
