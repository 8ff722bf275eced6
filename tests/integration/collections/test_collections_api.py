"""Collections over HTTP, from events and from its CLI, on a real PostgreSQL database."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from services.collections.adapters import repository as repo
from services.collections.application.handlers import on_external_event
from services.collections.main import definition
from services.collections.settings import CollectionsSettings
from shared.clock import FixedClock
from shared.consumer import ReceivedEvent
from shared.contracts import (CreditMemoIssued, InvoiceIssued, InvoiceLine, PaymentApplied, PaymentUnapplied,
                              SmallBalanceWriteOffReversed, SmallBalanceWrittenOff)
from shared.service import build_app
from tests.support.infra import fresh_database, idem, service_client, sqlalchemy_url

ROOT = Path(__file__).resolve().parents[3]
TODAY = date(2024, 6, 1)


def _definition(url: str, grace_days: int = 2):
    # API role: no relay or consumers touching the shared local topics
    return definition(CollectionsSettings(database_url=url, promise_grace_days=grace_days, role="api",
                                          allow_open=True),
                      clock=FixedClock(TODAY))


@pytest.fixture
async def collections():
    async with service_client(_definition) as (client, app):
        yield client, app


def _received(contract, event_id=None) -> ReceivedEvent:
    return ReceivedEvent(event_id=event_id or str(uuid.uuid4()), event_type=contract.event_type,
                         schema_version=contract.schema_version, source="test", subject="s", occurred_at=None,
                         data=contract.to_payload(), headers={}, topic="t", partition=0, offset=0)


async def _deliver(app, contract, event_id=None) -> None:
    async with app.state.runtime.engine.begin() as conn:
        await on_external_event(conn, _received(contract, event_id))


async def _invoice(app, invoice_id, total, customer_id="cus-1", currency="USD") -> None:
    await _deliver(app, InvoiceIssued(
        invoice_id=invoice_id, invoice_number=f"N-{invoice_id}", customer_id=customer_id, currency=currency,
        issue_date="2024-03-01", due_date="2024-03-31", total_amount=total,
        lines=[InvoiceLine(description="Goods", quantity="1", unit_price=total, amount=total)]))


def _payment(invoice_id, amount, value_date, payment_id=None, customer_id="cus-1") -> PaymentApplied:
    return PaymentApplied(payment_id=payment_id or f"pay-{uuid.uuid4().hex[:6]}", invoice_id=invoice_id,
                          customer_id=customer_id, amount=amount, currency="USD", value_date=value_date,
                          application_id=uuid.uuid4().hex, rule="remittance", confidence="1")


async def _promise(client, **overrides) -> dict:
    body = {"customer_id": "cus-1", "invoice_ids": ["inv-1", "inv-2"], "amount": "1000.00", "currency": "USD",
            "promise_date": "2024-04-10", "made_on": "2024-04-01", **overrides}
    r = await client.post("/v1/promises", headers=idem(), json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def _evaluate(client, as_of=None) -> dict:
    r = await client.post("/v1/promise-evaluations", headers=idem(), json={"as_of": as_of} if as_of else {})
    assert r.status_code == 200, r.text
    return r.json()


async def _events(engine, event_type=None) -> list[dict]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT stream_id, stream_type, version, event_type, occurred_at, payload, metadata FROM events"
            " WHERE CAST(:t AS text) IS NULL OR event_type = :t ORDER BY global_position"), {"t": event_type})
        return [dict(r) for r in rows.mappings()]


def _field(response) -> str:
    return response.json()["errors"][0]["field"]


async def _two_invoices(app) -> None:
    await _invoice(app, "inv-1", "700.00")
    await _invoice(app, "inv-2", "500.00")


async def test_promise_kept_as_of_a_date_and_evaluating_again_emits_nothing(collections):
    client, app = collections
    await _two_invoices(app)
    promise = await _promise(client)
    assert promise["status"] == "open" and promise["grace_days"] == 2 and promise["window_ends_on"] == "2024-04-12"
    assert promise["invoice_ids"] == ["inv-1", "inv-2"]
    # Paid in full only on 12 April (last grace day), across both invoices, before any evaluation.
    # A payment before the promise was made does not count towards it.
    await _deliver(app, _payment("inv-1", "100.00", "2024-03-30"))
    await _deliver(app, _payment("inv-1", "600.00", "2024-04-05"))

    early = await _evaluate(client, "2024-04-11")
    assert early == {"as_of": "2024-04-11", "kept": [], "broken": []}
    assert (await client.get(f"/v1/promises/{promise['promise_id']}")).json()["status"] == "open"

    # The consumer keeps it at once when the payment that reaches the amount arrives.
    await _deliver(app, _payment("inv-2", "400.00", "2024-04-12"))
    got = await client.get(f"/v1/promises/{promise['promise_id']}")
    assert got.json()["status"] == "kept" and got.json()["kept_on"] == "2024-04-12"
    assert got.json()["paid_amount"] == "1000.00" and got.headers["ETag"] == '"2"'

    assert await _evaluate(client, "2024-05-01") == {"as_of": "2024-05-01", "kept": [], "broken": []}
    assert await _evaluate(client) == {"as_of": TODAY.isoformat(), "kept": [], "broken": []}
    kept = await _events(app.state.runtime.engine, "PromiseKept")
    assert len(kept) == 1
    assert kept[0]["stream_id"] == f"promise-{promise['promise_id']}" and kept[0]["stream_type"] == "promise"
    assert kept[0]["payload"] == {
        "promise_id": promise["promise_id"], "customer_id": "cus-1", "amount": "1000.00", "currency": "USD",
        "promise_date": "2024-04-10", "paid_amount": "1000.00", "kept_on": "2024-04-12"}
    assert kept[0]["occurred_at"].date() == date(2024, 4, 12)


async def test_promise_kept_by_evaluation_when_payments_were_known_first(collections):
    client, app = collections
    await _two_invoices(app)
    await _deliver(app, _payment("inv-1", "500.00", "2024-04-03"))
    await _deliver(app, _payment("inv-2", "200.00", "2024-04-09"))
    promise = await _promise(client, made_on="2024-04-02", amount="700.00")
    result = await _evaluate(client, "2024-04-10")
    assert [p["promise_id"] for p in result["kept"]] == [promise["promise_id"]] and result["broken"] == []
    assert result["kept"][0]["kept_on"] == "2024-04-09" and result["kept"][0]["paid_amount"] == "700.00"
    assert (await _evaluate(client, "2024-04-10"))["kept"] == []
    assert len(await _events(app.state.runtime.engine, "PromiseKept")) == 1


async def test_partial_payment_then_broken_the_day_after_grace(collections):
    client, app = collections
    await _two_invoices(app)
    promise = await _promise(client, grace_days=0)
    await _deliver(app, _payment("inv-1", "250.10", "2024-04-08"))
    await _deliver(app, _payment("inv-2", "300.00", "2024-04-11"))   # one day late: does not count
    assert (await _evaluate(client, "2024-04-10"))["broken"] == []
    result = await _evaluate(client, "2024-04-11")
    assert [p["promise_id"] for p in result["broken"]] == [promise["promise_id"]]
    broken = result["broken"][0]
    assert (broken["status"], broken["paid_amount"], broken["shortfall"], broken["broken_on"]) == \
        ("broken", "250.10", "749.90", "2024-04-11")
    assert await _evaluate(client, "2024-05-01") == {"as_of": "2024-05-01", "kept": [], "broken": []}
    events = await _events(app.state.runtime.engine)
    assert [e["event_type"] for e in events] == ["PromiseToPayMade", "PromiseBroken"]
    assert events[1]["payload"] == {
        "promise_id": promise["promise_id"], "customer_id": "cus-1", "amount": "1000.00", "currency": "USD",
        "promise_date": "2024-04-10", "paid_amount": "250.10", "shortfall": "749.90", "broken_on": "2024-04-11"}
    listed = (await client.get("/v1/promises", params={"customer_id": "cus-1", "status": "broken"})).json()
    assert [p["promise_id"] for p in listed["data"]] == [promise["promise_id"]]
    assert (await client.get("/v1/promises", params={"status": "open"})).json()["data"] == []


async def test_concurrent_evaluations_decide_each_promise_once(collections):
    client, app = collections
    await _two_invoices(app)
    for _ in range(3):
        await _promise(client, amount="100.00")
    results = await asyncio.gather(*[_evaluate(client, "2024-05-01") for _ in range(4)])
    assert sum(len(r["broken"]) for r in results) == 3
    assert len(await _events(app.state.runtime.engine, "PromiseBroken")) == 3


async def test_evaluation_replays_with_its_idempotency_key(collections):
    client, app = collections
    await _two_invoices(app)
    await _promise(client, amount="10.00")
    key = idem()
    first = await client.post("/v1/promise-evaluations", headers=key, json={"as_of": "2024-05-01"})
    replay = await client.post("/v1/promise-evaluations", headers=key, json={"as_of": "2024-05-01"})
    assert first.status_code == replay.status_code == 200
    assert replay.json() == first.json() and len(first.json()["broken"]) == 1
    assert replay.headers.get("Idempotent-Replayed") == "true"


async def test_a_promise_made_after_as_of_is_not_judged(collections):
    client, app = collections
    await _two_invoices(app)
    await _promise(client, made_on="2024-05-10", promise_date="2024-05-12")
    assert await _evaluate(client, "2024-05-09") == {"as_of": "2024-05-09", "kept": [], "broken": []}


async def test_redelivered_payment_counts_once(collections):
    client, app = collections
    await _two_invoices(app)
    promise = await _promise(client, amount="600.00")
    payment = _payment("inv-1", "300.00", "2024-04-05")
    await _deliver(app, payment, event_id="evt-1")
    await _deliver(app, payment, event_id="evt-1")
    result = await _evaluate(client, "2024-04-20")
    assert result["broken"][0]["promise_id"] == promise["promise_id"]
    assert result["broken"][0]["paid_amount"] == "300.00"


@pytest.mark.parametrize("body, field", [
    ({"invoice_ids": ["inv-1", "nope"]}, "invoice_ids.1"),
    ({"invoice_ids": []}, "invoice_ids"),
    ({"invoice_ids": ["inv-other"]}, "invoice_ids.0"),
    ({"amount": "1200.01"}, "amount"),          # more than the invoices' open balance
    ({"amount": "10.001"}, "amount"),
    ({"amount": 10.5}, "amount"),
    ({"amount": "0.00"}, "amount"),
    ({"currency": "EUR"}, "currency"),
    ({"currency": "XYZ"}, "currency"),
    ({"promise_date": "2024-03-31"}, "promise_date"),
    ({"grace_days": -1}, "grace_days"),
])
async def test_promise_problems_name_the_field(collections, body, field):
    client, app = collections
    await _two_invoices(app)
    await _invoice(app, "inv-other", "50.00", customer_id="cus-2")
    r = await client.post("/v1/promises", headers=idem(), json={
        "customer_id": "cus-1", "invoice_ids": ["inv-1", "inv-2"], "amount": "100.00", "currency": "USD",
        "promise_date": "2024-04-10", "made_on": "2024-04-01", **body})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert _field(r) == field, r.json()
    assert await _events(app.state.runtime.engine) == []


async def test_open_balance_counts_payments_and_credit_memos(collections):
    client, app = collections
    await _invoice(app, "inv-1", "700.00")
    await _deliver(app, _payment("inv-1", "200.00", "2024-03-15"))
    await _deliver(app, CreditMemoIssued(credit_memo_id="cm-1", invoice_id="inv-1", customer_id="cus-1",
                                         currency="USD", amount="100.00", issue_date="2024-03-20", reason="x"))
    await _deliver(app, _payment("inv-1", "50.00", "2024-03-25"))     # on made_on: counts towards the promise
    body = {"customer_id": "cus-1", "invoice_ids": ["inv-1"], "currency": "USD", "promise_date": "2024-04-10",
            "made_on": "2024-03-25"}
    too_much = await client.post("/v1/promises", headers=idem(), json={**body, "amount": "400.01"})
    assert too_much.status_code == 422 and _field(too_much) == "amount"
    assert "400.00" in too_much.json()["detail"]
    ok = await client.post("/v1/promises", headers=idem(), json={**body, "amount": "400.00"})
    assert ok.status_code == 201, ok.text
    today = await client.post("/v1/promises", headers=idem(), json={
        **body, "made_on": None, "promise_date": "2024-06-05", "amount": "350.00"})
    assert today.status_code == 201, today.text
    assert today.json()["made_on"] == TODAY.isoformat()


async def test_evaluation_problems(collections):
    client, _ = collections
    future = await client.post("/v1/promise-evaluations", headers=idem(), json={"as_of": "2024-06-02"})
    assert future.status_code == 422 and _field(future) == "as_of"
    missing_key = await client.post("/v1/promise-evaluations", json={})
    assert missing_key.status_code == 400 and _field(missing_key) == "Idempotency-Key"
    assert (await client.get("/v1/promises/nope")).status_code == 404
    bad = await client.get("/v1/promises", params={"status": "late"})
    assert bad.status_code == 422 and _field(bad) == "status"


async def test_listing_paginates(collections):
    client, app = collections
    await _two_invoices(app)
    made = [(await _promise(client, amount=f"{i + 1}.00"))["promise_id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        body = (await client.get("/v1/promises", params={"limit": 2, **({"cursor": cursor} if cursor else {})})).json()
        seen += [p["promise_id"] for p in body["data"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == made


def _run_cli(database: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LEDGERLINE_COLLECTIONS_DATABASE_URL": sqlalchemy_url(database)}
    return subprocess.run([sys.executable, "-m", "services.collections", "evaluate-promises", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


async def test_cli_evaluates_promises_as_of_a_date_on_a_fresh_database():
    async with fresh_database("cli") as database:
        empty = await asyncio.to_thread(_run_cli, database, "--as-of", "2024-05-01")
        assert empty.returncode == 0, empty.stderr
        assert json.loads(empty.stdout) == {"as_of": "2024-05-01", "kept": [], "broken": []}

        # the CLI migrated the database; make one promise to keep and one to break through the API
        app = build_app(_definition(sqlalchemy_url(database)))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
                await _two_invoices(app)
                kept = await _promise(client, invoice_ids=["inv-1"], amount="700.00")
                broken = await _promise(client, invoice_ids=["inv-2"], amount="500.00")
                await _deliver(app, _payment("inv-2", "120.00", "2024-04-09"))
                # applied by a process that only records facts: leave keeping to the CLI
                async with app.state.runtime.engine.begin() as conn:
                    await repo.record_payment_applied(conn, event_id="evt-x", payment_id="pay-x", invoice_id="inv-1",
                                                      customer_id="cus-1", currency="USD", amount=Decimal("700.00"),
                                                      value_date=date(2024, 4, 10))

                result = await asyncio.to_thread(_run_cli, database, "--as-of", "2024-05-01")
                assert result.returncode == 0, result.stderr
                outcome = json.loads(result.stdout)
                assert [p["promise_id"] for p in outcome["kept"]] == [kept["promise_id"]]
                assert [p["promise_id"] for p in outcome["broken"]] == [broken["promise_id"]]
                assert outcome["kept"][0]["kept_on"] == "2024-04-10"
                assert (outcome["broken"][0]["paid_amount"], outcome["broken"][0]["shortfall"]) == ("120.00", "380.00")

                again = await asyncio.to_thread(_run_cli, database, "--as-of", "2024-05-02")
                assert again.returncode == 0, again.stderr
                assert json.loads(again.stdout) == {"as_of": "2024-05-02", "kept": [], "broken": []}
                events = await _events(app.state.runtime.engine)
                assert sorted(e["event_type"] for e in events) == [
                    "PromiseBroken", "PromiseKept", "PromiseToPayMade", "PromiseToPayMade"]
                assert {e["metadata"]["actor"] for e in events if e["event_type"] != "PromiseToPayMade"} == \
                    {"cli:evaluate-promises"}

        future = await asyncio.to_thread(_run_cli, database, "--as-of", "2999-01-01")
        assert future.returncode == 2 and json.loads(future.stderr)["errors"][0]["field"] == "as_of"


async def test_a_reversed_small_balance_write_off_reopens_the_invoice_from_its_day(collections):
    client, app = collections
    await _invoice(app, "inv-1", "1000.00")
    applied = _payment("inv-1", "997.00", "2024-03-20", payment_id="pay-wo")
    common = {"payment_id": "pay-wo", "invoice_id": "inv-1", "customer_id": "cus-1", "currency": "USD"}
    await _deliver(app, applied)
    await _deliver(app, SmallBalanceWrittenOff(**common, adjustment_id="adj-1", amount="3.00", value_date="2024-03-20"))

    async def balance(as_of: str) -> str | None:
        account = (await client.get("/v1/customers/cus-1", params={"as_of": as_of})).json()
        return next((i["open_balance"] for i in account["open_invoices"] if i["invoice_id"] == "inv-1"), None)

    assert await balance("2024-03-21") is None  # closed: paid and written off
    # The payment is returned: its application and the write-off it justified are both undone.
    await _deliver(app, PaymentUnapplied(**common, application_id=applied.application_id, amount="997.00",
                                         unapplied_on="2024-03-25", reason="payment_returned"))
    reversed_ = SmallBalanceWriteOffReversed(**common, adjustment_id="adj-1", amount="3.00", reversed_on="2024-03-25",
                                             reason="payment_returned")
    await _deliver(app, reversed_, event_id="evt-wo-reversed")
    await _deliver(app, reversed_, event_id="evt-wo-reversed")  # redelivered: counted once
    assert await balance("2024-03-25") == "1000.00"
    assert await balance("2024-03-24") is None  # as of before the reversal, it was still closed
