"""Bank and remittance file imports over HTTP on a real PostgreSQL database: matching, short
pays, write-offs, returns, the unapplied-cash queue, reconciliation, idempotency, atomicity and
concurrent imports. Invoicing's and collections' events are fed through the consumers' handlers."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from services.cash_application.main import definition
from services.cash_application.projections import payments as payments_projection
from services.cash_application.projections.open_items import on_collections_event, on_invoicing_event
from services.cash_application.settings import CashApplicationSettings
from shared.consumer import ReceivedEvent
from shared.contracts import CustomerRegistered, InvoiceIssued, InvoiceLine, WriteOffApproved
from tests.fixtures.bank.bai2_builder import bai2
from tests.support.infra import idem, service_client

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "bank"
ROOT = Path(__file__).resolve().parents[3]

CUSTOMERS = [("ACME", "Acme Corporation", "USD"), ("GLOBEX", "Globex Inc", "USD"),
             ("EUROW", "Euro Widgets GmbH", "EUR"), ("NORDIC", "Nordic Supplies AB", "EUR")]
INVOICES = [("ACME", "INV-1001", "1000.00", "USD", "2024-03-01"), ("ACME", "INV-1002", "250.00", "USD", "2024-03-05"),
            ("ACME", "INV-1003", "400.00", "USD", "2024-03-09"), ("GLOBEX", "INV-2001", "500.00", "USD", "2024-03-01"),
            ("GLOBEX", "INV-2002", "750.00", "USD", "2024-03-02"), ("EUROW", "INV-3001", "1000.00", "EUR", "2024-03-01"),
            ("EUROW", "INV-3002", "800.00", "EUR", "2024-03-02"), ("EUROW", "INV-3003", "400.00", "EUR", "2024-03-03"),
            ("NORDIC", "INV-3004", "90.00", "EUR", "2024-03-04")]


def _received(contract, topic="ledgerline.invoicing.events") -> ReceivedEvent:
    return ReceivedEvent(event_id=str(uuid.uuid4()), event_type=contract.event_type,
                         schema_version=contract.schema_version, source="/ledgerline/test", subject="s",
                         occurred_at=None, data=contract.to_payload(), headers={}, topic=topic, partition=0, offset=0)


async def _seed(app) -> None:
    async with app.state.runtime.engine.begin() as conn:
        for customer_id, name, currency in CUSTOMERS:
            await on_invoicing_event(conn, _received(CustomerRegistered(
                customer_id=customer_id, name=name, currency=currency, payment_terms_days=30, credit_limit="100000.00",
                registered_on="2024-01-01")))
        for customer_id, number, total, currency, due in INVOICES:
            await on_invoicing_event(conn, _received(InvoiceIssued(
                invoice_id=number.lower(), invoice_number=number, customer_id=customer_id, currency=currency,
                issue_date="2024-02-01", due_date=due, total_amount=total,
                lines=[InvoiceLine(description="Goods", quantity="1", unit_price=total, amount=total)])))


@pytest.fixture
async def cash():
    async with service_client(lambda url: definition(CashApplicationSettings(database_url=url))) as (client, app):
        await _seed(app)
        yield client, app


async def _import(client, content: bytes | str, fmt: str, expect: int = 201, **params):
    body = content.encode() if isinstance(content, str) else content
    r = await client.post("/v1/bank-files", params={"format": fmt, **params}, content=body, headers=idem())
    assert r.status_code == expect, r.text
    return r.json()


async def _balance(client, invoice_id: str) -> str:
    return (await client.get(f"/v1/open-items/{invoice_id}")).json()["open_balance"]


async def _event_types(app, stream_like: str = "payment-%") -> list[str]:
    async with app.state.runtime.engine.connect() as conn:
        rows = await conn.execute(text("SELECT event_type FROM events WHERE stream_id LIKE :s ORDER BY global_position"),
                                  {"s": stream_like})
        return [r.event_type for r in rows]


async def _count(app, table: str) -> int:
    async with app.state.runtime.engine.connect() as conn:
        return (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()


BAI2 = (FIXTURES / "statement.bai2").read_text()


async def test_bai2_receipts_are_matched_explained_and_posted_once(cash):
    client, app = cash
    result = await _import(client, BAI2, "bai2", file_name="statement.bai2")
    assert (result["receipts"], result["auto_applied"], result["unapplied"]) == (3, 2, 1)
    by_position = {p["position"]: p for p in result["payments"]}
    acme, globex, unknown = by_position["line 4"], by_position["line 6"], by_position["line 8"]
    assert acme["applications"] == [{"invoice_id": "inv-1001", "amount": "1000.00", "rule": "reference_exact"}]
    assert globex["applications"] == [{"invoice_id": "inv-2001", "amount": "500.00", "rule": "reference_normalised"}]
    assert (unknown["status"], unknown["customer_id"], unknown["reason"]) == ("unapplied", None, "unidentified receipt")
    assert await _balance(client, "inv-1001") == "0.00" and await _balance(client, "inv-2001") == "0.00"

    payment = (await client.get(f"/v1/payments/{acme['payment_id']}")).json()
    assert payment["applications"][0]["confidence"] == "0.98"
    assert payment["source"]["payer_name"] == "ACME CORPORATION" and payment["source"]["bank_reference"] == "B0001"
    assert payment["source"]["explanation"] == ("customer ACME by payer_name (0.97); reference 'INV-1001' -> INV-1001"
                                                " (reference_exact), confidence 0.98")
    queue = (await client.get("/v1/unapplied-cash")).json()["data"]
    assert [p["payment_id"] for p in queue] == [unknown["payment_id"]]

    events = await _event_types(app)
    again = await _import(client, BAI2, "bai2", expect=200)
    assert again["replayed"] is True and again["import_id"] == result["import_id"]
    # The same statement in a new file (another file id, so other bytes) is recognised too.
    resent = await _import(client, BAI2.replace("F0001", "F0002"), "bai2", expect=200)
    assert resent["replayed"] is True and resent["import_id"] == result["import_id"]
    assert await _event_types(app) == events
    assert await _event_types(app, "bank-import-%") == ["BankStatementImported"]
    listed = (await client.get("/v1/bank-files", params={"limit": 1})).json()
    assert [i["import_id"] for i in listed["data"]] == [result["import_id"]] and listed["next_cursor"] is None
    assert listed["data"][0]["receipts"] == 3 and "payments" not in listed["data"][0]
    assert (await client.get(f"/v1/bank-files/{result['import_id']}")).json()["payments"] == result["payments"]


async def test_a_malformed_file_is_rejected_naming_the_line_and_posts_nothing(cash):
    client, app = cash
    broken = BAI2.replace("49,1162345,8/", "49,1162300,8/")
    r = await client.post("/v1/bank-files", params={"format": "bai2"}, content=broken.encode(), headers=idem())
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["errors"][0]["field"] == "line 10" and "account control total" in problem["errors"][0]["reason"]
    xml = (FIXTURES / "camt053_v02.xml").read_text().replace("11725.00", "11700.00")
    r = await client.post("/v1/bank-files", params={"format": "camt.053"}, content=xml.encode(), headers=idem())
    assert r.status_code == 422 and "closing balance 11700.00" in r.json()["detail"]
    assert "Bal" in r.json()["errors"][0]["field"]
    for table in ("payments", "bank_imports", "statement_lines"):
        assert await _count(app, table) == 0


async def test_camt053_short_pay_with_reason_and_camt054_return_reopens_the_invoice(cash):
    client, app = cash
    result = await _import(client, (FIXTURES / "camt053_v02.xml").read_bytes(), "camt.053")
    assert (result["receipts"], result["auto_applied"], result["other_lines"]) == (2, 2, 1)
    assert await _balance(client, "inv-3001") == "0.00"
    assert await _balance(client, "inv-3002") == "50.00"
    short = next(p for p in result["payments"] if p["applications"][0]["invoice_id"] == "inv-3002")
    payment = (await client.get(f"/v1/payments/{short['payment_id']}")).json()
    assert payment["short_pays"] == [{"invoice_id": "inv-3002", "open_amount": "800.00", "paid_amount": "750.00",
                                      "shortfall": "50.00", "reason_code": "DAMAGED"}]
    assert payment["applications"][0]["rule"] == "remittance_exact"

    returned = await _import(client, (FIXTURES / "camt054_v06.xml").read_bytes(), "camt.054")
    assert returned["returns"] == 1 and returned["receipts"] == 0
    assert await _balance(client, "inv-3001") == "1000.00"
    first = next(p for p in result["payments"] if p["applications"][0]["invoice_id"] == "inv-3001")
    payment = (await client.get(f"/v1/payments/{first['payment_id']}")).json()
    assert (payment["status"], payment["return_reason_code"], payment["applied_amount"]) == ("returned", "AC04", "0.00")
    assert payment["applications"][0]["reversal_reason"] == "payment_returned"
    async with app.state.runtime.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT event_type FROM events WHERE stream_id = :s ORDER BY version"),
                                   {"s": f"payment-{first['payment_id']}"})).scalars().all()
    assert rows[-2:] == ["PaymentUnapplied", "PaymentReturned"]


async def test_edi820_lines_and_adjustment_codes_become_applications_and_short_pays(cash):
    client, _ = cash
    result = await _import(client, (FIXTURES / "remittance.edi820").read_bytes(), "edi820")
    (payment,) = result["payments"]
    assert [(a["invoice_id"], a["amount"], a["rule"]) for a in payment["applications"]] == [
        ("inv-2001", "500.00", "remittance_exact"), ("inv-2002", "730.00", "reference_normalised")]
    stored = (await client.get(f"/v1/payments/{payment['payment_id']}")).json()
    assert [(s["invoice_id"], s["shortfall"], s["reason_code"]) for s in stored["short_pays"]] == [
        ("inv-2002", "20.00", "CM")]


async def test_mt940_and_tolerance_write_off(cash):
    client, app = cash
    result = await _import(client, (FIXTURES / "statement.mt940").read_bytes(), "mt940")
    assert [(p["applications"][0]["invoice_id"], p["applications"][0]["rule"]) for p in result["payments"]] == [
        ("inv-3003", "reference_normalised"), ("inv-3004", "reference_normalised")]
    # 997.00 against 1,000.00: 3.00 is within 5.00 and 1% -> written off, the invoice closes.
    csv = "receipt_id,value_date,amount,currency,payer_name,invoice_reference\nW-1,2024-03-20,997.00,USD,Acme Corp,1001\n"
    result = await _import(client, csv, "csv")
    payment = (await client.get(f"/v1/payments/{result['payments'][0]['payment_id']}")).json()
    assert (payment["applied_amount"], payment["written_off_amount"], payment["short_pays"]) == ("997.00", "3.00", [])
    assert await _balance(client, "inv-1001") == "0.00"
    assert "SmallBalanceWrittenOff" in await _event_types(app)


async def test_work_queue_apply_split_reapply_reverse_and_alias_learning(cash):
    client, app = cash
    result = await _import(client, (FIXTURES / "lockbox.csv").read_bytes(), "csv")
    assert result["auto_applied"] == 1 and result["unapplied"] == 1
    unknown = next(p for p in result["payments"] if p["status"] == "unapplied")["payment_id"]

    r = await client.post(f"/v1/payments/{unknown}/applications", headers=idem(),
                          json={"applications": [{"invoice_id": "inv-1001", "amount": "99.99"}]})
    assert r.status_code == 201, r.text
    applied = r.json()
    assert (applied["status"], applied["customer_id"]) == ("applied", "ACME")
    assert applied["applications"][0]["rule"] == "manual" and applied["applications"][0]["confidence"] == "1.00"
    aliases = (await client.get("/v1/payer-aliases")).json()["items"]
    assert {"kind": "name", "alias": "SOMEBODY UNKNOWN", "customer_id": "ACME", "learned_from": unknown} in aliases

    # More than is unapplied, or more than an invoice's balance: refused, nothing changes.
    r = await client.post(f"/v1/payments/{unknown}/applications", headers=idem(),
                          json={"applications": [{"invoice_id": "inv-2002", "amount": "1.00"}]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "applications"
    r = await client.post(f"/v1/payments/{unknown}/reapplication", headers=idem(),
                          json={"applications": [{"invoice_id": "inv-2001", "amount": "60.00"},
                                                 {"invoice_id": "inv-1001", "amount": "39.99"}]})
    assert r.status_code == 201, r.text
    active = [a for a in r.json()["applications"] if a["reversed_on"] is None]
    assert sorted((a["invoice_id"], a["amount"]) for a in active) == [("inv-1001", "39.99"), ("inv-2001", "60.00")]
    assert await _balance(client, "inv-1001") == "960.01"
    r = await client.post(f"/v1/payments/{unknown}/reversals", headers=idem(), json={})
    assert r.status_code == 201 and r.json()["unapplied_amount"] == "99.99"
    assert await _balance(client, "inv-1001") == "1000.00" and await _balance(client, "inv-2001") == "500.00"
    reasons = await _reasons(app, unknown)
    assert reasons == ["reapplied", "manual_reversal", "manual_reversal"]

    # The learned alias identifies the payer next time: its receipt is matched by amount.
    csv = "receipt_id,value_date,amount,currency,payer_name\nN-1,2024-03-21,1000.00,USD,SOMEBODY UNKNOWN\n"
    result = await _import(client, csv, "csv")
    assert result["payments"][0]["applications"] == [{"invoice_id": "inv-1001", "amount": "1000.00",
                                                      "rule": "amount_exact"}]
    assert result["payments"][0]["customer_rule"] == "payer_alias"
    first_page = (await client.get("/v1/bank-files", params={"limit": 1})).json()
    second_page = (await client.get("/v1/bank-files", params={"limit": 1, "cursor": first_page["next_cursor"]})).json()
    assert [first_page["data"][0]["import_id"], second_page["data"][0]["import_id"]] == [
        result["import_id"], (await client.get("/v1/bank-files")).json()["data"][1]["import_id"]]
    assert second_page["next_cursor"] is None and second_page["data"][0]["file_format"] == "csv"


async def _reasons(app, payment_id: str) -> list[str]:
    async with app.state.runtime.engine.connect() as conn:
        rows = await conn.execute(text("SELECT payload->>'reason' AS reason FROM events WHERE stream_id = :s"
                                       " AND event_type = 'PaymentUnapplied' ORDER BY version"),
                                  {"s": f"payment-{payment_id}"})
        return [r.reason for r in rows]


async def test_return_by_api_and_reconciliation_lists_variances(cash):
    client, _ = cash
    result = await _import(client, BAI2, "bai2")
    acme = result["payments"][0]["payment_id"]
    r = await client.post(f"/v1/payments/{acme}/return", headers=idem(),
                          json={"reason_code": "R01", "reason": "insufficient funds", "returned_on": "2024-03-12"})
    assert r.status_code == 201 and r.json()["status"] == "returned"
    assert await _balance(client, "inv-1001") == "1000.00"
    r = await client.post(f"/v1/payments/{acme}/return", headers=idem(), json={"reason_code": "R01"})
    assert r.status_code == 409

    # A receipt posted by API the bank never booked, and one whose amount differs from its line.
    await client.post("/v1/payments", headers=idem(), json={
        "customer_id": "ACME", "amount": "10.00", "currency": "USD", "value_date": "2024-03-10", "method": "check",
        "reference": "CHK-NOLINE"})
    recon = (await client.get("/v1/reconciliation", params={"date": "2024-03-10", "currency": "USD"})).json()
    assert (recon["bank_total"], recon["posted_total"], recon["matched"]) == ("1623.45", "1633.45", 3)
    assert [(v["kind"], v["amount"], v["payment_id"] is not None) for v in recon["variances"]] == [
        ("receipt_without_line", "-10.00", True)]
    by_account = (await client.get("/v1/reconciliation", params={"date": "2024-03-10", "currency": "USD",
                                                                 "account": "123456789"})).json()
    assert by_account["variances"] == [] and by_account["matched"] == 3
    lower = (await client.get("/v1/reconciliation", params={"date": "2024-03-10", "currency": "usd"})).json()
    assert (lower["currency"], lower["bank_total"]) == ("USD", "1623.45")
    for bad in ("", "US", "XYZ"):
        r = await client.get("/v1/reconciliation", params={"date": "2024-03-10", "currency": bad})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "currency", (bad, r.text)


async def test_collections_write_off_zeroes_the_open_balance(cash):
    client, app = cash
    approved = WriteOffApproved(write_off_id="wo-1", invoice_id="inv-1002", customer_id="ACME", amount="250.00",
                                currency="USD", reason="bankrupt", requested_by="a", approved_by="b",
                                approved_on="2024-04-01")
    for _ in range(2):  # a redelivery lowers the balance once
        async with app.state.runtime.engine.begin() as conn:
            await on_collections_event(conn, _received(approved, "ledgerline.collections.events"))
    assert await _balance(client, "inv-1002") == "0.00"


async def test_concurrent_imports_never_apply_more_than_an_invoice_is_open(cash):
    client, app = cash
    files = [bai2([("165", 100000, f"C{n}", "INV-1001", ["OB:ACME CORPORATION"])], file_id=f"C{n}",
                  account=f"ACC{n}") for n in range(4)]
    results = await asyncio.gather(*(_import(client, f, "bai2") for f in files))
    applied = [p for r in results for p in r["payments"] if p["applications"]]
    assert len(applied) == 1
    assert sum(1 for r in results for p in r["payments"] if p["status"] == "unapplied") == 3
    assert await _balance(client, "inv-1001") == "0.00"


async def test_cli_imports_a_file(cash):
    _, app = cash
    env = {**os.environ, "LEDGERLINE_CASH_APPLICATION_DATABASE_URL": app.state.runtime.settings.database_url}
    run = subprocess.run([sys.executable, "-m", "services.cash_application", "import-file",
                          str(FIXTURES / "remittance.edi820"), "--format", "edi820"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert '"auto_applied": 1' in run.stdout
    bad = subprocess.run([sys.executable, "-m", "services.cash_application", "import-file",
                          str(FIXTURES / "lockbox.csv"), "--format", "edi820"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "ISA" in bad.stderr


async def test_an_imports_bulk_projection_equals_the_rebuilt_read_model(cash):
    """Imports project their new payments in bulk; rebuild() replays event by event: same rows."""
    client, app = cash
    await _import(client, BAI2, "bai2")
    await _import(client, (FIXTURES / "camt053_v02.xml").read_bytes(), "camt.053")  # applied + short pay
    csv = "receipt_id,value_date,amount,currency,payer_name,invoice_reference\nW-1,2024-03-20,248.00,USD,Acme,1002\n"
    await _import(client, csv, "csv")  # write-off within tolerance
    await _import(client, (FIXTURES / "camt054_v06.xml").read_bytes(), "camt.054")  # a return

    before = await _read_models(app)
    assert len(before["open_item_write_offs"]) == 1 and len(before["short_pays"]) == 1
    await _rebuild(app)
    assert await _read_models(app) == before


async def _read_models(app) -> dict[str, list[dict]]:
    """Every row of the read models the payment streams feed (identity and wall-clock columns aside)."""
    async with app.state.runtime.engine.connect() as conn:
        out = {}
        for table, order in (("payments", "payment_id"), ("payment_applications", "event_id"),
                             ("short_pays", "event_id"), ("open_items", "invoice_id"),
                             ("open_item_write_offs", "write_off_id")):
            rows = await conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))
            out[table] = [{k: v for k, v in r.items() if k not in ("received_seq", "recorded_at")}
                          for r in rows.mappings()]
        return out


async def _rebuild(app) -> None:
    async with app.state.runtime.engine.begin() as conn:
        await payments_projection.rebuild(conn)


async def test_a_receipt_and_its_return_in_one_file(cash):
    client, _ = cash
    text_ = bai2([("165", 25000, "B77", "INV-1002", ["OB:ACME CORPORATION"]),
                  ("557", 25000, "R77", "B77", ["ACH RETURN R02 ACCOUNT CLOSED"])])
    result = await _import(client, text_, "bai2")
    assert (result["receipts"], result["returns"], result["returns_unmatched"]) == (1, 1, 0)
    payment = (await client.get(f"/v1/payments/{result['payments'][0]['payment_id']}")).json()
    assert (payment["status"], payment["return_reason_code"]) == ("returned", "R02")
    assert await _balance(client, "inv-1002") == "250.00"


async def test_cumulative_intraday_reports_post_each_line_once(cash):
    """BAI2 interim reports (as-of modifier 3) are sent again with more lines as the day goes."""
    client, _ = cash
    morning = [("165", 25000, "B81", "INV-1002", ["OB:ACME CORPORATION"])]
    first = await _import(client, bai2(morning, file_id="I1", modifier="3"), "bai2")
    assert first["receipts"] == 1 and first["lines_already_imported"] == 0
    later = morning + [("195", 50000, "B82", "WIRE", ["ORIG:GLOBEX INC OBI:INV-2001"]),
                       ("555", 1234, "R78", "NOPE", [])]
    second = await _import(client, bai2(later, file_id="I2", modifier="3"), "bai2")
    assert (second["receipts"], second["lines_already_imported"], second["returns_unmatched"]) == (1, 1, 1)
    assert second["payments"][0]["applications"][0]["invoice_id"] == "inv-2001"
    assert await _balance(client, "inv-1002") == "0.00"
    payments = (await client.get("/v1/payments")).json()["data"]
    assert len(payments) == 2


async def _written_off_receipt(client) -> dict:
    """997.00 against INV-1001 (1,000.00): 3.00 is within tolerance and written off."""
    csv = "receipt_id,value_date,amount,currency,payer_name,invoice_reference\nW-1,2024-03-20,997.00,USD,Acme Corp,1001\n"
    payment_id = (await _import(client, csv, "csv"))["payments"][0]["payment_id"]
    payment = (await client.get(f"/v1/payments/{payment_id}")).json()
    [application] = payment["applications"]
    assert payment["write_offs"] == [{
        "adjustment_id": f"{application['application_id']}:wo", "application_id": application["application_id"],
        "invoice_id": "inv-1001", "amount": "3.00", "reason_code": None, "reversed_on": None, "reversal_reason": None}]
    item = (await client.get("/v1/open-items/inv-1001")).json()
    assert (item["applied_amount"], item["written_off_amount"], item["open_balance"]) == ("997.00", "3.00", "0.00")
    return payment


async def _write_off_events(app, payment_id: str) -> list[tuple[str, str | None, str | None]]:
    async with app.state.runtime.engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT event_type, payload->>'adjustment_id' AS adjustment_id, payload->>'reason' AS reason FROM events"
            " WHERE stream_id = :s ORDER BY version"), {"s": f"payment-{payment_id}"})
        return [(r.event_type, r.adjustment_id, r.reason) for r in rows]


@pytest.mark.parametrize("undo", ["return", "reversal"])
async def test_undoing_a_written_off_application_reopens_the_full_invoice(cash, undo):
    client, app = cash
    payment = await _written_off_receipt(client)
    payment_id, adjustment_id = payment["payment_id"], payment["write_offs"][0]["adjustment_id"]
    if undo == "return":
        r = await client.post(f"/v1/payments/{payment_id}/return", headers=idem(),
                              json={"reason_code": "R01", "returned_on": "2024-03-25"})
        reason = "payment_returned"
    else:
        r = await client.post(f"/v1/payments/{payment_id}/reversals", headers=idem(),
                              json={"reversed_on": "2024-03-25"})
        reason = "manual_reversal"
    assert r.status_code == 201, r.text
    assert (r.json()["written_off_amount"], r.json()["applied_amount"]) == ("0.00", "0.00")
    assert r.json()["write_offs"][0]["reversed_on"] == "2024-03-25"
    assert r.json()["write_offs"][0]["reversal_reason"] == reason
    item = (await client.get("/v1/open-items/inv-1001")).json()
    assert (item["applied_amount"], item["written_off_amount"], item["open_balance"], item["status"]) == (
        "0.00", "0.00", "1000.00", "open")
    events = await _write_off_events(app, payment_id)
    unapplied = events.index(("PaymentUnapplied", None, reason))
    assert events[unapplied + 1] == ("SmallBalanceWriteOffReversed", adjustment_id, reason)
    assert [e[0] for e in events].count("SmallBalanceWriteOffReversed") == 1

    before = await _read_models(app)
    await _rebuild(app)
    assert await _read_models(app) == before


async def test_reapplying_a_written_off_payment_reverses_the_write_off_first(cash):
    client, app = cash
    payment = await _written_off_receipt(client)
    payment_id = payment["payment_id"]
    # The balance the person applies against includes the write-off given back: 1,000.00.
    r = await client.post(f"/v1/payments/{payment_id}/reapplication", headers=idem(),
                          json={"applications": [{"invoice_id": "inv-1001", "amount": "997.00"}],
                                "applied_on": "2024-03-26"})
    assert r.status_code == 201, r.text
    assert r.json()["written_off_amount"] == "0.00"
    assert r.json()["write_offs"][0]["reversal_reason"] == "reapplied"
    assert await _balance(client, "inv-1001") == "3.00"
    assert [e for e in await _write_off_events(app, payment_id) if e[0] != "PaymentApplied"][-2:] == [
        ("PaymentUnapplied", None, "reapplied"),
        ("SmallBalanceWriteOffReversed", payment["write_offs"][0]["adjustment_id"], "reapplied")]
    before = await _read_models(app)
    await _rebuild(app)
    assert await _read_models(app) == before


async def test_a_written_off_receipt_returned_in_the_same_file(cash):
    client, _ = cash
    # 248.00 against INV-1002 (250.00): 2.00 written off; the bank returns the receipt the same day.
    text_ = bai2([("165", 24800, "B78", "INV-1002", ["OB:ACME CORPORATION"]),
                  ("557", 24800, "R78", "B78", ["ACH RETURN R01 INSUFFICIENT FUNDS"])])
    result = await _import(client, text_, "bai2")
    assert (result["receipts"], result["returns"]) == (1, 1)
    payment = (await client.get(f"/v1/payments/{result['payments'][0]['payment_id']}")).json()
    assert (payment["status"], payment["written_off_amount"]) == ("returned", "0.00")
    assert [(w["amount"], w["reversal_reason"]) for w in payment["write_offs"]] == [("2.00", "payment_returned")]
    item = (await client.get("/v1/open-items/inv-1002")).json()
    assert (item["written_off_amount"], item["open_balance"]) == ("0.00", "250.00")


async def test_an_unidentified_receipt_takes_the_customer_it_is_applied_to(cash):
    client, app = cash
    csv = "receipt_id,value_date,amount,currency,payer_name\nU-1,2024-03-20,120.00,USD,Nobody We Know Ltd\n"
    [received] = (await _import(client, csv, "csv"))["payments"]
    assert (received["customer_id"], received["status"]) == (None, "unapplied")
    payment_id = received["payment_id"]
    payment = (await client.get(f"/v1/payments/{payment_id}")).json()
    assert (payment["customer_id"], payment["customer_identified"]) == ("", False)

    async def customers_on(event_type: str) -> list[str]:
        async with app.state.runtime.engine.connect() as conn:
            return list((await conn.execute(text(
                "SELECT payload->>'customer_id' FROM events WHERE stream_id = :s AND event_type = :t ORDER BY version"),
                {"s": f"payment-{payment_id}", "t": event_type})).scalars())

    assert await customers_on("PaymentReceived") == [""] and await customers_on("UnappliedCashRecorded") == [""]

    r = await client.post(f"/v1/payments/{payment_id}/applications", headers=idem(),
                          json={"applications": [{"invoice_id": "inv-2001", "amount": "120.00"}]})
    assert r.status_code == 201, r.text
    assert (r.json()["customer_id"], r.json()["customer_identified"]) == ("GLOBEX", True)
    listed = (await client.get("/v1/payments", params={"customer_id": "GLOBEX"})).json()["data"]
    assert [p["payment_id"] for p in listed] == [payment_id]
    before = await _read_models(app)
    await _rebuild(app)
    assert await _read_models(app) == before

    r = await client.post(f"/v1/payments/{payment_id}/return", headers=idem(), json={"reason_code": "R01"})
    assert r.status_code == 201, r.text
    assert await customers_on("PaymentReturned") == ["GLOBEX"]  # the customer it turned out to be
    assert (await client.get(f"/v1/payments/{payment_id}")).json()["customer_id"] == "GLOBEX"
