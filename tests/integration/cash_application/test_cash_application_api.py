"""Cash application over HTTP on a real PostgreSQL database. Invoicing's events are fed by
calling the consumer's handler directly, as the consumer runner would."""
from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import text

from services.cash_application.main import definition
from services.cash_application.projections import payments as payments_projection
from services.cash_application.projections.open_items import on_invoicing_event
from services.cash_application.settings import CashApplicationSettings
from shared.consumer import ReceivedEvent
from shared.contracts import CreditMemoIssued, CustomerRegistered, InvoiceIssued, InvoiceLine
from tests.support.infra import idem, service_client


@pytest.fixture
async def cash():
    async with service_client(lambda url: definition(CashApplicationSettings(database_url=url))) as (client, app):
        yield client, app


def _received(contract, event_id=None) -> ReceivedEvent:
    return ReceivedEvent(event_id=event_id or str(uuid.uuid4()), event_type=contract.event_type,
                         schema_version=contract.schema_version, source="/ledgerline/invoicing", subject="s",
                         occurred_at=None, data=contract.to_payload(), headers={},
                         topic="ledgerline.invoicing.events", partition=0, offset=0)


async def _feed(app, *contracts) -> None:
    for contract in contracts:
        async with app.state.runtime.engine.begin() as conn:
            await on_invoicing_event(conn, _received(contract))


def _invoice(total="100.00", customer_id="cus-1", invoice_id=None, number=None, currency="USD",
             due_date="2024-04-01") -> InvoiceIssued:
    invoice_id = invoice_id or f"inv-{uuid.uuid4().hex[:8]}"
    return InvoiceIssued(invoice_id=invoice_id, invoice_number=number or f"INV-{invoice_id[-6:].upper()}",
                         customer_id=customer_id, currency=currency, issue_date="2024-03-01", due_date=due_date,
                         lines=[InvoiceLine(description="Goods", quantity="1", unit_price=total, amount=total)],
                         total_amount=total)


def _credit(invoice: InvoiceIssued, amount: str, memo_id: str | None = None) -> CreditMemoIssued:
    return CreditMemoIssued(credit_memo_id=memo_id or str(uuid.uuid4()), invoice_id=invoice.invoice_id,
                            customer_id=invoice.customer_id, currency=invoice.currency, amount=amount,
                            issue_date="2024-03-05", reason="damaged goods")


def _payment(amount, remittance=(), customer_id="cus-1", currency="USD", **extra):
    return {"customer_id": customer_id, "amount": amount, "currency": currency, "value_date": "2024-03-10",
            "method": "wire", "reference": "WIRE-778", "remittance": list(remittance), **extra}


async def _pay(client, body, headers=None):
    r = await client.post("/v1/payments", json=body, headers=headers or idem())
    assert r.status_code == 201, r.text
    return r.json()


async def _events(app, payment_id=None):
    async with app.state.runtime.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT stream_id, stream_type, version, event_type, payload FROM events"
                 " WHERE CAST(:s AS text) IS NULL OR stream_id = :s ORDER BY global_position"),
            {"s": f"payment-{payment_id}" if payment_id else None})
        return [dict(r) for r in rows.mappings()]


async def test_full_payment_by_invoice_number_closes_the_item(cash):
    client, app = cash
    invoice = _invoice("100.00", number="INV-1001")
    await _feed(app, invoice)
    item = (await client.get(f"/v1/open-items/{invoice.invoice_id}")).json()
    assert (item["open_balance"], item["status"], item["invoice_number"]) == ("100.00", "open", "INV-1001")

    payment = await _pay(client, _payment("100.00", [{"invoice_number": "INV-1001", "amount": "100.00"}]))
    assert payment["applications"] == [
        {"application_id": f"{payment['payment_id']}:{invoice.invoice_id}", "invoice_id": invoice.invoice_id,
         "customer_id": "cus-1", "amount": "100.00", "rule": "remittance", "confidence": "1.00", "reversed_on": None, "reversal_reason": None}]
    assert payment["short_pays"] == [] and payment["unapplied_amount"] == "0.00"
    assert payment["status"] == "applied"

    item = (await client.get(f"/v1/open-items/{invoice.invoice_id}")).json()
    assert (item["applied_amount"], item["open_balance"], item["status"]) == ("100.00", "0.00", "closed")
    events = await _events(app, payment["payment_id"])
    assert [(e["event_type"], e["version"], e["stream_type"]) for e in events] == [
        ("PaymentReceived", 1, "payment"), ("PaymentApplied", 2, "payment")]
    assert events[1]["payload"]["amount"] == "100.00"
    assert (await client.get(f"/v1/payments/{payment['payment_id']}")).json() == payment


async def test_short_pay_emits_short_pay_detected_with_exact_figures(cash):
    client, app = cash
    invoice = _invoice("250.00")
    await _feed(app, invoice, _credit(invoice, "10.00"))  # open balance 240.00
    payment = await _pay(client, _payment("200.00", [
        {"invoice_id": invoice.invoice_id, "amount": "200.00", "reason_code": "DAMAGED"}], payment_id="pay-short-1"))
    assert payment["payment_id"] == "pay-short-1"
    assert payment["short_pays"] == [{"invoice_id": invoice.invoice_id, "open_amount": "240.00",
                                      "paid_amount": "200.00", "shortfall": "40.00", "reason_code": "DAMAGED"}]
    events = await _events(app, "pay-short-1")
    assert [e["event_type"] for e in events] == ["PaymentReceived", "PaymentApplied", "ShortPayDetected"]
    assert events[2]["payload"] == {
        "payment_id": "pay-short-1", "invoice_id": invoice.invoice_id, "customer_id": "cus-1", "currency": "USD",
        "open_amount": "240.00", "paid_amount": "200.00", "shortfall": "40.00", "value_date": "2024-03-10",
        "reason_code": "DAMAGED"}
    item = (await client.get(f"/v1/open-items/{invoice.invoice_id}")).json()
    assert (item["credited_amount"], item["applied_amount"], item["open_balance"]) == ("10.00", "200.00", "40.00")


async def test_overpayment_leaves_the_excess_unapplied(cash):
    client, app = cash
    invoice = _invoice("100.00", number="INV-2001")
    await _feed(app, invoice)
    payment = await _pay(client, _payment("120.00", [{"invoice_id": invoice.invoice_id, "amount": "120.00"}]))
    assert payment["applications"][0]["amount"] == "100.00"
    assert (payment["applied_amount"], payment["unapplied_amount"]) == ("100.00", "20.00")
    assert payment["status"] == "partially_applied"
    events = await _events(app, payment["payment_id"])
    assert [e["event_type"] for e in events] == ["PaymentReceived", "PaymentApplied", "UnappliedCashRecorded"]
    assert events[2]["payload"]["amount"] == "20.00"
    assert events[2]["payload"]["reason"] == "overpayment of invoice INV-2001"
    unapplied = (await client.get("/v1/unapplied-cash", params={"customer_id": "cus-1"})).json()["data"]
    assert [(p["payment_id"], p["unapplied_amount"]) for p in unapplied] == [(payment["payment_id"], "20.00")]


async def test_unknown_or_foreign_invoice_and_no_remittance_leave_cash_unapplied(cash):
    client, app = cash
    foreign = _invoice("50.00", customer_id="cus-other", number="INV-FOREIGN")
    await _feed(app, foreign)
    unknown = await _pay(client, _payment("75.00", [{"invoice_number": "INV-9", "amount": "75.00"}]))
    assert unknown["applications"] == [] and unknown["unapplied_amount"] == "75.00"
    assert unknown["unapplied_reason"] == "invoice INV-9 not found" and unknown["status"] == "unapplied"
    other = await _pay(client, _payment("50.00", [{"invoice_id": foreign.invoice_id, "amount": "50.00"}]))
    assert other["applications"] == [] and other["unapplied_amount"] == "50.00"
    bare = await _pay(client, _payment("30.00"))  # nothing of cus-1 is open: the engine finds nothing
    assert bare["unapplied_reason"] == "customer cus-1 has no open invoice in USD"
    for p in (unknown, other, bare):
        assert [e["event_type"] for e in await _events(app, p["payment_id"])] == [
            "PaymentReceived", "UnappliedCashRecorded"]
    item = (await client.get(f"/v1/open-items/{foreign.invoice_id}")).json()
    assert item["applied_amount"] == "0.00"
    listed = (await client.get("/v1/unapplied-cash", params={"customer_id": "cus-1"})).json()["data"]
    assert [p["unapplied_amount"] for p in listed] == ["75.00", "50.00", "30.00"]


async def test_idempotent_replay_appends_nothing(cash):
    client, app = cash
    invoice = _invoice("100.00")
    await _feed(app, invoice)
    body = _payment("40.00", [{"invoice_id": invoice.invoice_id, "amount": "40.00"}])
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await client.post("/v1/payments", json=body, headers=key)
    again = await client.post("/v1/payments", json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers.get("Idempotent-Replayed") == "true"
    other = await client.post("/v1/payments", json={**body, "amount": "41.00"}, headers=key)
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert len(await _events(app)) == 3  # PaymentReceived, PaymentApplied, ShortPayDetected: once
    item = (await client.get(f"/v1/open-items/{invoice.invoice_id}")).json()
    assert item["applied_amount"] == "40.00"
    # Concurrent retries with one key are one payment too.
    key = {"Idempotency-Key": str(uuid.uuid4())}
    results = await asyncio.gather(*[client.post("/v1/payments", json=_payment("5.00"), headers=key)
                                     for _ in range(5)])
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["payment_id"] for r in results}) == 1
    assert len(await _events(app)) == 5


async def test_a_payment_id_is_received_once(cash):
    client, _ = cash
    await _pay(client, _payment("5.00", payment_id="pay-dup"))
    again = await client.post("/v1/payments", json=_payment("6.00", payment_id="pay-dup"), headers=idem())
    assert again.status_code == 409 and again.json()["errors"][0]["field"] == "payment_id"


@pytest.mark.parametrize("change, field", [
    ({"amount": 100.0}, "amount"),
    ({"amount": "100.001"}, "amount"),
    ({"amount": "-5.00"}, "amount"),
    ({"currency": "ZZZ"}, "currency"),
    ({"currency": "XAU"}, "currency"),  # no minor unit: not a payment currency
    ({"method": "bitcoin"}, "method"),
    ({"remittance": [{"invoice_number": "INV-1", "amount": "10.00"},
                     {"invoice_number": "INV-2", "amount": "10.005"}]}, "remittance.1.amount"),
    ({"remittance": [{"invoice_number": "INV-1", "amount": "10.00"},
                     {"invoice_number": "INV-2", "amount": 10.5}]}, "remittance.1.amount"),
    ({"remittance": [{"amount": "10.00"}]}, "remittance.0"),
    ({"remittance": [{"invoice_number": "INV-1", "amount": "60.00"},
                     {"invoice_number": "INV-2", "amount": "40.01"}]}, "remittance"),
    ({"amount": "100", "currency": "JPY", "remittance": [{"invoice_number": "INV-1", "amount": "99.5"}]},
     "remittance.0.amount"),
])
async def test_bad_money_is_a_problem_naming_the_field_and_appends_nothing(cash, change, field):
    client, app = cash
    r = await client.post("/v1/payments", json={**_payment("100.00"), **change}, headers=idem())
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json()["errors"]], r.json()
    assert await _events(app) == []
    async with app.state.runtime.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM idempotency_keys"))).scalar() == 0
        assert (await conn.execute(text("SELECT count(*) FROM payments"))).scalar() == 0


async def test_missing_idempotency_key_is_refused(cash):
    client, _ = cash
    r = await client.post("/v1/payments", json=_payment("1.00"))
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_credit_memo_before_its_invoice_converges(cash):
    client, app = cash
    in_order = _invoice("300.00", customer_id="cus-9", invoice_id="inv-in-order", number="INV-A")
    reversed_ = _invoice("300.00", customer_id="cus-9", invoice_id="inv-reversed", number="INV-B")
    memo_in_order, memo_reversed = _credit(in_order, "45.50"), _credit(reversed_, "45.50")

    await _feed(app, in_order, memo_in_order)
    await _feed(app, memo_reversed)
    early = await client.get(f"/v1/open-items/{reversed_.invoice_id}")
    assert early.status_code == 404  # the invoice has not arrived yet; only its credit has
    await _feed(app, reversed_)
    await _feed(app, memo_reversed)  # redelivered under another event id: still one credit

    a = (await client.get(f"/v1/open-items/{in_order.invoice_id}")).json()
    b = (await client.get(f"/v1/open-items/{reversed_.invoice_id}")).json()
    strip = lambda item: {k: v for k, v in item.items() if k not in ("invoice_id", "invoice_number")}  # noqa: E731
    assert strip(a) == strip(b)
    assert (b["total_amount"], b["credited_amount"], b["open_balance"]) == ("300.00", "45.50", "254.50")
    # Facts that mean nothing to cash application are ignored.
    await _feed(app, CustomerRegistered(customer_id="cus-9", name="x", currency="USD", payment_terms_days=30,
                                        credit_limit="1.00", registered_on="2024-01-01"))
    listed = (await client.get("/v1/open-items", params={"customer_id": "cus-9"})).json()["data"]
    assert sorted(i["invoice_id"] for i in listed) == ["inv-in-order", "inv-reversed"]


async def test_concurrent_payments_never_apply_more_than_the_open_balance(cash):
    client, app = cash
    invoice = _invoice("100.00", number="INV-HOT")
    await _feed(app, invoice)
    amounts = [Decimal("10.00") + Decimal("1.05") * i for i in range(20)]  # 10.00 .. 29.95
    assert min(amounts) == Decimal("10.00") and max(amounts) <= Decimal("30.00")

    async def pay(amount):
        return await client.post("/v1/payments", headers=idem(), json=_payment(
            str(amount), [{"invoice_number": "INV-HOT", "amount": str(amount)}]))

    results = await asyncio.gather(*[pay(a) for a in amounts])
    assert [r.status_code for r in results] == [201] * 20, [r.text for r in results if r.status_code != 201]

    async with app.state.runtime.engine.connect() as conn:
        applied_events = (await conn.execute(text(
            "SELECT coalesce(sum(CAST(payload->>'amount' AS numeric)), 0) FROM events"
            " WHERE event_type = 'PaymentApplied' AND payload->>'invoice_id' = :i"), {"i": invoice.invoice_id})).scalar()
        applied_item = (await conn.execute(text("SELECT applied_amount FROM open_items WHERE invoice_id = :i"),
                                           {"i": invoice.invoice_id})).scalar()
        shorts = (await conn.execute(text(
            "SELECT CAST(payload->>'open_amount' AS numeric) AS open_amount,"
            " CAST(payload->>'paid_amount' AS numeric) AS paid FROM events"
            " WHERE event_type = 'ShortPayDetected'"))).all()
    assert applied_events == applied_item == Decimal("100.00")
    from_responses = sum((Decimal(a["amount"]) for r in results for a in r.json()["applications"]), Decimal(0))
    assert from_responses == Decimal("100.00")
    for r, amount in zip(results, amounts):
        body = r.json()
        assert Decimal(body["applied_amount"]) + Decimal(body["unapplied_amount"]) == amount
    # Each short pay saw the balance the previous payments left: the balances they saw are
    # distinct and each later one is the earlier one minus what was paid.
    seen = sorted(((s.open_amount, s.paid) for s in shorts), reverse=True)
    assert seen[0][0] == Decimal("100.00")
    for (open_before, paid), (open_next, _) in zip(seen, seen[1:]):
        assert open_next == open_before - paid
    item = (await client.get(f"/v1/open-items/{invoice.invoice_id}")).json()
    assert item["open_balance"] == "0.00" and item["status"] == "closed"


async def test_listings_paginate(cash):
    client, app = cash
    await _feed(app, *[_invoice("10.00", customer_id="cus-p", invoice_id=f"inv-p{i}", due_date=f"2024-04-0{5 - i}")
                       for i in range(5)])
    for i in range(5):
        await _pay(client, _payment(f"{i + 1}.00", customer_id="cus-p", payment_id=f"pay-p{i}"))
    await _pay(client, _payment("1.00", customer_id="cus-elsewhere"))

    async def walk(path, **params):
        seen, cursor = [], None
        while True:
            body = (await client.get(path, params={**params, "limit": 2, **({"cursor": cursor} if cursor else {})})).json()
            seen += body["data"]
            cursor = body["next_cursor"]
            if not cursor:
                return seen

    payments = await walk("/v1/payments", customer_id="cus-p")
    assert [p["payment_id"] for p in payments] == [f"pay-p{i}" for i in range(5)]
    items = await walk("/v1/open-items", customer_id="cus-p")
    assert [i["invoice_id"] for i in items] == [f"inv-p{i}" for i in reversed(range(5))]  # oldest due first
    assert len(await walk("/v1/unapplied-cash", customer_id="cus-p")) == 5
    bad = await client.get("/v1/payments", params={"cursor": "!!"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "cursor"
    missing = await client.get("/v1/payments/nope")
    assert missing.status_code == 404


async def test_the_unapplied_queue_sorts_and_pages_on_the_server(cash):
    """Each order pages every unapplied receipt exactly once, in that order (ties by arrival);
    a cursor of another order is refused."""
    client, app = cash
    amounts = ["5.00", "1.00", "5.00", "3.00", "2.00", "5.00", "4.00"]
    for i, amount in enumerate(amounts):
        await _pay(client, _payment(amount, customer_id=f"cus-s{i % 3}", payment_id=f"pay-s{i}",
                                    value_date=f"2024-03-{10 + (i * 5) % 7:02d}"))

    async def walk(**params):
        seen, cursor = [], None
        while True:
            r = await client.get("/v1/unapplied-cash", params={**params, "limit": 2, **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200, r.text
            seen += r.json()["data"]
            cursor = r.json()["next_cursor"]
            if not cursor:
                return seen

    ids = [f"pay-s{i}" for i in range(len(amounts))]
    by_amount = await walk(sort="amount", order="desc")
    assert [p["payment_id"] for p in by_amount] == sorted(
        ids, key=lambda p: (-Decimal(amounts[int(p[5:])]), -int(p[5:])))
    by_date = await walk(sort="value_date")
    assert [p["value_date"] for p in by_date] == sorted(p["value_date"] for p in by_date)
    assert sorted(p["payment_id"] for p in by_date) == sorted(ids)
    by_customer = await walk(sort="customer", order="asc")
    assert [(p["customer_id"], p["payment_id"]) for p in by_customer] == sorted(
        (p["customer_id"], p["payment_id"]) for p in by_customer)
    by_score = await walk(sort="score", order="desc")
    assert sorted(p["payment_id"] for p in by_score) == sorted(ids)
    assert [p["payment_id"] for p in await walk()] == ids  # arrival order, as before
    first = (await client.get("/v1/unapplied-cash", params={"sort": "amount", "limit": 2})).json()
    other = await client.get("/v1/unapplied-cash", params={"sort": "customer", "cursor": first["next_cursor"]})
    assert other.status_code == 400 and other.json()["errors"][0]["field"] == "cursor"
    bad = await client.get("/v1/unapplied-cash", params={"sort": "DROP TABLE"})
    assert bad.status_code == 422


async def test_a_reversal_and_a_reapplication_carry_the_persons_note(cash):
    client, app = cash
    a, b = _invoice("100.00", invoice_id="inv-n1"), _invoice("100.00", invoice_id="inv-n2")
    await _feed(app, a, b)
    paid = await _pay(client, _payment("60.00", [{"invoice_id": "inv-n1", "amount": "60.00"}]))
    r = await client.post(f"/v1/payments/{paid['payment_id']}/reapplication", headers=idem(),
                          json={"applications": [{"invoice_id": "inv-n2", "amount": "60.00"}],
                                "note": "customer said it was for the other invoice"})
    assert r.status_code == 201, r.text
    r = await client.post(f"/v1/payments/{paid['payment_id']}/reversals", headers=idem(),
                          json={"note": "paid twice: refund pending"})
    assert r.status_code == 201, r.text
    unapplied = [(e["payload"]["invoice_id"], e["payload"]["reason"], e["payload"].get("note"))
                 for e in await _events(app, paid["payment_id"]) if e["event_type"] == "PaymentUnapplied"]
    assert unapplied == [("inv-n1", "reapplied", "customer said it was for the other invoice"),
                         ("inv-n2", "manual_reversal", "paid twice: refund pending")]
    too_long = await client.post(f"/v1/payments/{paid['payment_id']}/reversals", headers=idem(),
                                 json={"note": "x" * 501})
    assert too_long.status_code == 422 and too_long.json()["errors"][0]["field"].endswith("note")


async def test_rebuilt_read_models_equal_the_incremental_ones(cash):
    client, app = cash
    a, b = _invoice("100.00", invoice_id="inv-r1"), _invoice("80.00", invoice_id="inv-r2")
    await _feed(app, a, b, _credit(b, "5.00"))
    await _pay(client, _payment("150.00", [{"invoice_id": "inv-r1", "amount": "90.00", "reason_code": "PRICE"},
                                           {"invoice_id": "inv-r2", "amount": "60.00"}]))
    topping_up = await _pay(client, _payment("40.00", [{"invoice_id": "inv-r1", "amount": "40.00"}]))
    assert (topping_up["applied_amount"], topping_up["unapplied_amount"]) == ("10.00", "30.00")
    await _pay(client, _payment("9.99"))

    async def snapshot():
        async with app.state.runtime.engine.connect() as conn:
            out = {}
            for table, order in (("payments", "payment_id"), ("payment_applications", "event_id"),
                                 ("short_pays", "event_id"), ("open_items", "invoice_id")):
                rows = await conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))
                out[table] = [{k: v for k, v in r.items() if k not in ("received_seq", "recorded_at")}
                              for r in rows.mappings()]
            return out

    before = await snapshot()
    async with app.state.runtime.engine.begin() as conn:
        replayed = await payments_projection.rebuild(conn)
    assert replayed == len([e for e in await _events(app) if e["stream_type"] == "payment"])
    assert await snapshot() == before
    assert [i["applied_amount"] for i in before["open_items"]] == [Decimal("100.00"), Decimal("60.00")]


async def test_a_payment_without_remittance_is_matched_by_the_engine_and_explained(cash):
    client, app = cash
    first, second, third = (_invoice(total, number=number) for total, number in
                            (("1000.00", "INV-50017"), ("250.00", "INV-50018"), ("480.00", "INV-50019")))
    for invoice in (first, second, third):
        await _feed(app, invoice)
    # The reference quotes the number without its prefix and zero-padded; 3.00 short is within
    # the tolerance, so the rest is written off and the invoice closes.
    by_reference = await _pay(client, {**_payment("997.00"), "reference": "PAYMENT 0050017 THANK YOU"})
    [application] = by_reference["applications"]
    assert (application["invoice_id"], application["amount"]) == (first.invoice_id, "997.00")
    assert application["rule"] == "reference_normalised" and float(application["confidence"]) >= 0.85
    assert by_reference["written_off_amount"] == "3.00" and by_reference["unapplied_amount"] == "0.00"
    assert (await client.get(f"/v1/open-items/{first.invoice_id}")).json()["open_balance"] == "0.00"
    # No reference at all: the amount is that of exactly one open invoice of the customer.
    by_amount = await _pay(client, {**_payment("480.00"), "reference": None})
    assert [(a["invoice_id"], a["rule"]) for a in by_amount["applications"]] == [(third.invoice_id, "amount_exact")]
    # A remittance, when given, is still the authority: the engine is not consulted.
    explicit = await _pay(client, _payment("100.00", [{"invoice_id": second.invoice_id, "amount": "100.00"}]))
    assert [a["rule"] for a in explicit["applications"]] == ["remittance"]
    types = [e["event_type"] for e in await _events(app, by_reference["payment_id"])]
    assert types == ["PaymentReceived", "PaymentApplied", "SmallBalanceWrittenOff"]
