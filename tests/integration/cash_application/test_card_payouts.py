"""Card processors' payout reports through cash_application's API on a real PostgreSQL database:
charges posted gross and matched by the invoice number the ERP put on them, fees as their own
events, refunds, chargebacks (and the deduction disputes opens from ChargebackReceived, fed to
disputes' consumer handler from cash application's event store), and each payout tied to the
bank credit that carried it, whichever came first."""
from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import text

from services.cash_application.main import definition
from services.cash_application.projections.open_items import on_invoicing_event
from services.cash_application.settings import CashApplicationSettings
from services.disputes.application.handlers import on_external_event as disputes_consume
from services.disputes.main import definition as disputes_definition
from services.disputes.settings import DisputesSettings
from shared.clock import FixedClock
from shared.consumer import ReceivedEvent
from shared.contracts import CustomerRegistered, InvoiceIssued, InvoiceLine
from tests.support.infra import idem, service_client

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "card-reports"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
CUSTOMERS = [("ACME", "Acme Tools Inc", "USD"), ("BRIGHT", "Brightlane LLC", "USD"), ("CORVID", "Corvid Logistics", "USD"),
             ("EURO", "Euro Widgets GmbH", "EUR")]
INVOICES = [("ACME", "INV-5001", "1200.00", "USD"), ("BRIGHT", "INV-5002", "349.50", "USD"),
            ("ACME", "INV-5003", "80.00", "USD"), ("CORVID", "INV-5004", "2500.00", "USD"),
            ("BRIGHT", "INV-5005", "640.00", "USD"), ("CORVID", "INV-5006", "3000.00", "USD"),
            ("EURO", "INV-7001", "1500.00", "EUR"), ("EURO", "INV-7002", "420.00", "EUR"),
            ("EURO", "INV-7003", "99.90", "EUR")]


def _received(contract, source="/ledgerline/invoicing") -> ReceivedEvent:
    return ReceivedEvent(event_id=str(uuid.uuid4()), event_type=contract.event_type,
                         schema_version=contract.schema_version, source=source, subject="s", occurred_at=None,
                         data=contract.to_payload(), headers={}, topic="t", partition=0, offset=0)


def _issued(customer_id, number, total, currency) -> InvoiceIssued:
    return InvoiceIssued(invoice_id=number.lower(), invoice_number=number, customer_id=customer_id, currency=currency,
                         issue_date="2024-03-01", due_date="2024-03-31", total_amount=total,
                         lines=[InvoiceLine(description="Goods", quantity="1", unit_price=total, amount=total)])


@pytest.fixture
async def cash():
    async with service_client(lambda url: definition(CashApplicationSettings(database_url=url))) as (client, app):
        async with app.state.runtime.engine.begin() as conn:
            for customer_id, name, currency in CUSTOMERS:
                await on_invoicing_event(conn, _received(CustomerRegistered(
                    customer_id=customer_id, name=name, currency=currency, payment_terms_days=30,
                    credit_limit="100000.00", registered_on="2024-01-01")))
            for invoice in INVOICES:
                await on_invoicing_event(conn, _received(_issued(*invoice)))
        yield client, app


@pytest.fixture
async def disputes():
    async with service_client(lambda url: disputes_definition(DisputesSettings(database_url=url),
                                                              clock=FixedClock(date(2024, 3, 25)))) as (client, app):
        yield client, app


async def _card(client, name: str, processor: str, expect: int = 201):
    r = await client.post("/v1/card-payouts", params={"processor": processor, "file_name": name},
                          content=(FIXTURES / name).read_bytes(), headers=idem())
    assert r.status_code == expect, r.text
    return r.json()


async def _bank_csv(client, rows: list[tuple[str, str, str, str]]):
    body = "receipt_id,value_date,amount,currency,payer_name,text,account,direction\n" + "".join(
        f"{rid},{day},{amount},USD,{payer},{text_},111000025-4455,credit\n" for rid, day, amount, payer, text_ in rows)
    r = await client.post("/v1/bank-files", params={"format": "csv"}, content=body.encode(), headers=idem())
    assert r.status_code == 201, r.text
    return r.json()


async def _balance(client, invoice_id: str) -> str:
    return (await client.get(f"/v1/open-items/{invoice_id}")).json()["open_balance"]


async def _events(app, event_type: str) -> list[ReceivedEvent]:
    async with app.state.runtime.engine.connect() as conn:
        rows = await conn.execute(text("SELECT event_type, schema_version, payload FROM events WHERE event_type = :t"
                                       " ORDER BY global_position"), {"t": event_type})
        return [ReceivedEvent(event_id=str(uuid.uuid4()), event_type=r.event_type, schema_version=r.schema_version,
                              source="/ledgerline/cash_application", subject="s", occurred_at=None,
                              data=r.payload if isinstance(r.payload, dict) else json.loads(r.payload), headers={},
                              topic="t", partition=0, offset=0) for r in rows]


async def test_stripe_payouts_post_gross_reconcile_to_the_bank_and_a_chargeback_opens_a_deduction(cash, disputes):
    client, app = cash
    first = await _card(client, "stripe-payout-reconciliation-po1.csv", "stripe")
    payout = first["payouts"][0]
    assert (payout["charges"], payout["fees"], payout["refunds"], payout["net"]) == (
        "4129.50", "120.96", "80.00", "3928.54")
    assert (first["charges"], first["auto_applied"], first["refunds"], first["fees"]) == (4, 4, 1, 4)
    assert [c["applications"][0]["rule"] for c in first["posted_charges"]] == ["remittance_exact"] * 4
    # Gross: each invoice is paid in full, the fee is not a short pay.
    for invoice_id in ("inv-5001", "inv-5002", "inv-5004"):
        assert await _balance(client, invoice_id) == "0.00"
    # The refund of INV-5003's charge gave the money back: the invoice is owed again.
    assert await _balance(client, "inv-5003") == "80.00"
    charge = (await client.get("/v1/payments/card-stripe-ch_3P1aAaLdgLn0001")).json()
    assert (charge["amount"], charge["method"], charge["customer_id"]) == ("1200.00", "card", "ACME")

    # The report came first: the bank's credit of the payout's net is recognised, not posted.
    bank = await _bank_csv(client, [("B1", "2024-03-19", "3928.54", "STRIPE PAYMENTS", "STRIPE TRANSFER")])
    assert (bank["card_payouts"], bank["receipts"]) == (1, 0)
    got = (await client.get("/v1/card-payouts/stripe/po_1P2qRsTLdgLn0001")).json()
    assert got["bank_line"]["value_date"] == "2024-03-19" and got["amount"] == "3928.54"
    day = (await client.get("/v1/reconciliation", params={"date": "2024-03-19", "currency": "USD"})).json()
    assert (day["bank_total"], day["posted_total"], day["variances"]) == ("3928.54", "3928.54", [])
    assert (await client.get("/v1/unapplied-cash")).json()["data"] == []

    # The bank line came first: posted as an unidentified receipt ...
    early = await _bank_csv(client, [("B2", "2024-03-25", "1014.64", "STRIPE", "STRIPE PAYOUT 0325")])
    assert (early["receipts"], early["unapplied"]) == (1, 1)
    unapplied_id = early["payments"][0]["payment_id"]
    # ... and the report returns it (its cash is the charges', now posted gross) and ties the line.
    second = await _card(client, "stripe-balance-itemized-po2.csv", "stripe")
    assert second["payouts"][0]["bank_line"]["superseded_payment_id"] == unapplied_id
    assert (second["charges"], second["chargebacks"], second["fees"]) == (2, 1, 4)
    superseded = (await client.get(f"/v1/payments/{unapplied_id}")).json()
    assert superseded["returned_on"] == "2024-03-25" and superseded["return_reason_code"] == "CARD_PAYOUT"
    assert (await client.get("/v1/unapplied-cash")).json()["data"] == []
    day = (await client.get("/v1/reconciliation", params={"date": "2024-03-25", "currency": "USD"})).json()
    assert (day["bank_total"], day["posted_total"], day["variances"]) == ("1014.64", "1014.64", [])
    # The chargeback took INV-5004's money back: owed again.
    assert await _balance(client, "inv-5004") == "2500.00"

    fees = await _events(app, "ProcessorFeeRecorded")
    assert len(fees) == 8
    assert sorted(e.data["fee_type"] for e in fees) == ["dispute"] + ["processing"] * 6 + ["standalone"]
    assert sum(float(e.data["amount"]) for e in fees) == pytest.approx(120.96 + 121.16 + 4.20)

    # The same report again changes nothing.
    again = await _card(client, "stripe-balance-itemized-po2.csv", "stripe", expect=200)
    assert again["replayed"] is True and len(await _events(app, "ProcessorFeeRecorded")) == 8

    # disputes consumes ChargebackReceived: a deduction on INV-5004 for the card network's reason.
    _, disputes_app = disputes
    chargebacks = await _events(app, "ChargebackReceived")
    assert [(e.data["invoice_id"], e.data["amount"], e.data["processor_reason"]) for e in chargebacks] == [
        ("inv-5004", "2500.00", "product_not_received")]
    returned = [e for e in await _events(app, "PaymentReturned") if e.data["reason_code"] == "CHARGEBACK"]
    async with disputes_app.state.runtime.engine.begin() as conn:
        await disputes_consume(conn, _received(_issued("CORVID", "INV-5004", "2500.00", "USD")))
    for event in returned + chargebacks + chargebacks + returned:  # redelivered: opened once, never withdrawn
        async with disputes_app.state.runtime.engine.begin() as conn:
            await disputes_consume(conn, event)
    async with disputes_app.state.runtime.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT kind, invoice_id, amount, reason_code, status, external_reference,"
                                        " payment_id FROM disputes"))).mappings().all()
    assert [(r["kind"], r["invoice_id"], str(r["amount"]), r["reason_code"], r["status"]) for r in rows] == [
        ("deduction", "inv-5004", "2500.0000", "NOT_RECEIVED", "open")]
    assert rows[0]["external_reference"].startswith("chargeback:stripe:dp_1P3bCcLdgLn0013")
    assert rows[0]["payment_id"] == "card-stripe-ch_3P1aDdLdgLn0004"


async def test_adyen_batch_partial_refund_and_refused_reports(cash):
    client, app = cash
    result = await _card(client, "adyen-settlement-detail-batch-118.csv", "adyen")
    payout = result["payouts"][0]
    expected = MANIFEST["adyen-settlement-detail-batch-118.csv"]["payouts"]["LedgerlineEUR:batch-118"]
    assert {k: payout[k] for k in ("charges", "fees", "refunds", "standalone_fees", "net")} == {
        k: expected[k] for k in ("charges", "fees", "refunds", "standalone_fees", "net")}
    assert (result["charges"], result["auto_applied"], result["refunds"], result["fees"]) == (3, 3, 1, 5)
    assert await _balance(client, "inv-7001") == "0.00"
    # A partial refund of INV-7003's charge: the application is reversed (the invoice is owed again)
    # and the rest of the charge waits in the queue for a person.
    assert await _balance(client, "inv-7003") == "99.90"
    charge = (await client.get("/v1/payments/card-adyen-8815711450220003")).json()
    assert (charge["unapplied_amount"], charge["refunded_amount"]) == ("79.90", "20.00")

    for name, where in (("stripe-payout-does-not-add-up.csv", "line 3"), ("adyen-converted-settlement.csv", "line 2")):
        r = await client.post("/v1/card-payouts", params={"processor": MANIFEST[name]["processor"]},
                              content=(FIXTURES / name).read_bytes(), headers=idem())
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert r.json()["errors"][0]["field"] == where
    r = await client.post("/v1/card-payouts", params={"processor": "paypal"}, content=b"x", headers=idem())
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "processor"
    r = await client.post("/v1/card-payouts", params={"processor": "stripe"}, content=b"x")
    assert r.status_code in (400, 422) and "idempotency" in r.text.lower()
    async with app.state.runtime.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM card_payouts"))).scalar_one() == 1
