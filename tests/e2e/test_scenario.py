"""The platform end to end: five service processes, real PostgreSQL and Kafka, HTTP only.

A small book (in Swiss francs): a full payment, a short payment that becomes a deduction resolved with a
credit memo, a promise kept and one broken; then exact figures from reporting and the events
as an outside consumer sees them on Kafka."""
from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
from aiokafka import AIOKafkaConsumer

from tests.support.infra import KAFKA
from tests.support.platform import eventually

RUN = uuid.uuid4().hex[:6]
# The reports below are book-wide per currency, and other tests share this platform (their EUR and
# USD invoices dated March 2024 would change the totals): this book is the only one in francs.
CURRENCY = "CHF"


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def post(client: httpx.AsyncClient, url: str, body: dict, expect: int = 201) -> dict:
    r = await client.post(url, json=body, headers=key())
    assert r.status_code == expect, f"{url}: {r.status_code} {r.text}"
    return r.json()


async def test_scenario_end_to_end(platform):
    inv_url, cash_url = platform.urls["invoicing"], platform.urls["cash_application"]
    col_url, dis_url, rep_url = platform.urls["collections"], platform.urls["disputes"], platform.urls["reporting"]
    async with httpx.AsyncClient(timeout=30) as c:
        customers = {}
        for name in ("northwind", "contoso", "fabrikam"):
            customers[name] = (await post(c, f"{inv_url}/v1/customers", {
                "customer_id": f"{name}-{RUN}", "name": name.title(), "currency": CURRENCY,
                "payment_terms_days": 30, "credit_limit": "100000.00"}))["customer_id"]

        async def invoice(customer: str, number: str, issued: str, amount: str) -> dict:
            return await post(c, f"{inv_url}/v1/invoices", {
                "customer_id": customers[customer], "invoice_number": f"{number}-{RUN}", "issue_date": issued,
                "lines": [{"description": "Goods", "quantity": "1", "unit_price": amount}]})

        i1 = await invoice("northwind", "I1", "2024-01-05", "1000.00")   # due 02-04, paid in full 02-01
        i2 = await invoice("northwind", "I2", "2024-01-20", "500.00")    # due 02-19, short paid 450 on 02-25
        i3 = await invoice("contoso", "I3", "2024-02-01", "2000.00")     # due 03-02, promise kept (paid 03-08)
        i4 = await invoice("contoso", "I4", "2024-02-10", "800.00")      # due 03-11, promise broken
        i5 = await invoice("fabrikam", "I5", "2024-03-01", "300.00")     # due 03-31, open
        assert i1["due_date"] == "2024-02-04" and i4["due_date"] == "2024-03-11"

        # Cash application learns the invoices from invoicing's events.
        for inv in (i1, i2, i3, i4, i5):
            await eventually(lambda inv=inv: _status_is(c, f"{cash_url}/v1/open-items/{inv['invoice_id']}", 200))

        full = await post(c, f"{cash_url}/v1/payments", {
            "customer_id": customers["northwind"], "amount": "1000.00", "currency": CURRENCY, "value_date": "2024-02-01",
            "method": "wire", "remittance": [{"invoice_id": i1["invoice_id"], "amount": "1000.00"}]})
        assert full["unapplied_amount"] == "0.00"
        short = await post(c, f"{cash_url}/v1/payments", {
            "customer_id": customers["northwind"], "amount": "450.00", "currency": CURRENCY, "value_date": "2024-02-25",
            "method": "ach", "remittance": [{"invoice_number": f"I2-{RUN}", "amount": "450.00", "reason_code": "PRICING"}]})
        assert [(s["invoice_id"], s["shortfall"]) for s in short["short_pays"]] == [(i2["invoice_id"], "50.00")]

        # Disputes opens the deduction from ShortPayDetected; resolving it grants a credit memo.
        async def deduction():
            r = await c.get(f"{dis_url}/v1/disputes", params={"customer_id": customers["northwind"]})
            data = r.json()["data"] if r.status_code == 200 else []
            return data[0] if data else None
        ded = await eventually(deduction)
        assert (ded["kind"], ded["amount"], ded["reason_code"], ded["invoice_id"]) == \
            ("deduction", "50.00", "PRICING", i2["invoice_id"])
        await post(c, f"{dis_url}/v1/disputes/{ded['dispute_id']}/resolution",
                   {"resolution": "credit", "credit_amount": "50.00", "resolved_on": "2024-03-05"})

        async def i2_closed():
            got = (await c.get(f"{inv_url}/v1/invoices/{i2['invoice_id']}")).json()
            return got if got["open_balance"] == "0.00" and got["credited_amount"] == "50.00" else None
        i2_after = await eventually(i2_closed)
        assert i2_after["paid_amount"] == "450.00" and len(i2_after["credit_memos"]) == 1

        # Promises: collections must know the invoices before it accepts a promise on them.
        async def promise(invoice_id: str, amount: str, made_on: str, promise_date: str):
            r = await c.post(f"{col_url}/v1/promises", headers=key(), json={
                "customer_id": customers["contoso"], "invoice_ids": [invoice_id], "amount": amount,
                "currency": CURRENCY, "made_on": made_on, "promise_date": promise_date, "grace_days": 0})
            return r.json() if r.status_code == 201 else None
        kept = await eventually(lambda: promise(i3["invoice_id"], "2000.00", "2024-03-05", "2024-03-10"))
        broken = await eventually(lambda: promise(i4["invoice_id"], "800.00", "2024-03-05", "2024-03-15"))
        await post(c, f"{cash_url}/v1/payments", {
            "customer_id": customers["contoso"], "amount": "2000.00", "currency": CURRENCY, "value_date": "2024-03-08",
            "method": "check", "remittance": [{"invoice_id": i3["invoice_id"], "amount": "2000.00"}]})

        # Collections keeps a promise as soon as the payment reaches it...
        async def kept_by_payment():
            k = (await c.get(f"{col_url}/v1/promises/{kept['promise_id']}")).json()
            return k if k["status"] == "kept" else None
        kept_now = await eventually(kept_by_payment)
        assert kept_now["kept_on"] == "2024-03-08"
        # ...and the daily rule, run as of a date, breaks the one whose date passed unpaid.
        result = await post(c, f"{col_url}/v1/promise-evaluations", {"as_of": "2024-03-20"}, expect=200)
        assert [p["promise_id"] for p in result["broken"]] == [broken["promise_id"]] and result["kept"] == []
        again = await post(c, f"{col_url}/v1/promise-evaluations", {"as_of": "2024-03-20"}, expect=200)
        assert again["broken"] == [] and again["kept"] == []  # nothing twice
        broken_now = (await c.get(f"{col_url}/v1/promises/{broken['promise_id']}")).json()
        assert broken_now["status"] == "broken"

        # Reporting: exact figures once every fact has arrived.
        seen: dict[str, object] = {}

        async def aging(as_of: str, expected_total: str):
            r = await c.get(f"{rep_url}/v1/reports/aging", params={"as_of": as_of, "currency": CURRENCY})
            body = r.json()
            seen["aging"] = (r.status_code, body)  # what reporting last answered, if it never ties
            return body if r.status_code == 200 and body["total"] == expected_total else None

        async def promises_settled():
            r = await c.get(f"{rep_url}/v1/reports/promises",
                            params={"from": "2024-03-01", "to": "2024-03-31", "currency": CURRENCY})
            body = r.json()
            return body if r.status_code == 200 and body["kept"]["count"] == 1 and body["broken"]["count"] == 1 else None

        promises = await eventually(promises_settled)
        try:
            march = await eventually(lambda: aging("2024-03-31", "1100.00"))
        except AssertionError as exc:
            raise AssertionError(f"{exc}; reporting last answered {seen.get('aging')!r}") from exc
        assert march["buckets"] == {"current": "300.00", "1-30": "800.00", "31-60": "0.00", "61-90": "0.00", "90+": "0.00"}
        assert march["total_open_balance"] == "1100.00" and march["tie_out"]["ties_out"] is True
        by_customer = {row["customer_id"]: row["total"] for row in march["customers"]}
        assert by_customer == {customers["contoso"]: "800.00", customers["fabrikam"]: "300.00"}

        feb = (await c.get(f"{rep_url}/v1/reports/aging", params={"as_of": "2024-02-28", "currency": CURRENCY})).json()
        # I2 owes 50.00 (9 days past due); I3 and I4 are not yet due; I1 is paid; I5 not issued.
        assert feb["buckets"]["current"] == "2800.00" and feb["buckets"]["1-30"] == "50.00"
        assert feb["total"] == feb["total_open_balance"] == "2850.00"

        drill = (await c.get(f"{rep_url}/v1/reports/aging", params={
            "as_of": "2024-02-28", "currency": CURRENCY, "customer_id": customers["northwind"]})).json()
        assert [(i["invoice_number"], i["open_balance"], i["days_past_due"]) for i in drill["invoices"]] == \
            [(f"I2-{RUN}", "50.00", 9)]

        dso = (await c.get(f"{rep_url}/v1/reports/dso",
                           params={"from": "2024-01-01", "to": "2024-03-31", "currency": CURRENCY})).json()
        assert (dso["ending_ar"], dso["credit_sales"], dso["days"]) == ("1100.00", "4600.00", 91)
        expected_dso = (Decimal("1100.00") / Decimal("4600.00") * 91).quantize(Decimal("0.01"))
        assert Decimal(dso["dso"]) == expected_dso == Decimal("21.76")

        rec = (await c.get(f"{rep_url}/v1/reports/recovery-rate",
                           params={"from": "2024-03-01", "to": "2024-03-31", "currency": CURRENCY})).json()
        # Past due in March: I2 owing 50.00, I3 owing 2000.00 (collected 2000.00 on 03-08), I4 owing 800.00.
        assert (rec["past_due_balance"], rec["collected"], rec["invoice_count"]) == ("2850.00", "2000.00", 3)
        assert rec["recovery_rate"] == "0.7018"

        assert (promises["made"]["count"], promises["kept"]["count"], promises["broken"]["count"]) == (2, 1, 1)
        assert promises["kept"]["amount"] == "2000.00" and promises["broken"]["amount"] == "800.00"
        assert promises["open"]["count"] == 0

    # An independent consumer sees the events with their CloudEvents headers.
    seen = await _events_on(platform.topic("collections"), {"PromiseBroken"}, broken["promise_id"])
    headers = seen["PromiseBroken"]
    assert headers["ce_source"] == "/ledgerline/collections" and headers["ce_specversion"] == "1.0"
    assert headers["ce_subject"].endswith(broken["promise_id"]) and headers["ce_id"] and headers["ce_time"]
    assert len(headers["traceparent"].split("-")) == 4
    seen = await _events_on(platform.topic("cash_application"), {"ShortPayDetected"}, i2["invoice_id"])
    assert seen["ShortPayDetected"]["ce_source"] == "/ledgerline/cash_application"
    assert seen["ShortPayDetected"]["ce_subject"] == f"payment-{short['payment_id']}"


async def _status_is(client: httpx.AsyncClient, url: str, status: int) -> bool:
    return (await client.get(url)).status_code == status


async def _events_on(topic: str, types: set[str], mention: str) -> dict[str, dict[str, str]]:
    """Read a topic from the start as an outside consumer; the headers of the first event of each
    type whose payload mentions `mention`."""
    import json
    import time

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=KAFKA, group_id=f"outsider-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: dict[str, dict[str, str]] = {}
    deadline = time.monotonic() + 30
    try:
        while set(found) != types and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    headers = {k: v.decode() for k, v in r.headers}
                    if headers.get("ce_type") in types and mention in json.dumps(json.loads(r.value)):
                        found.setdefault(headers["ce_type"], headers)
    finally:
        await consumer.stop()
    assert set(found) == types, f"only saw {set(found)} on {topic}"
    return found
