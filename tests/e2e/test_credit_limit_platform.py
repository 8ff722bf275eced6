"""Credit limits on the running platform: five service processes, real PostgreSQL and Kafka, HTTP
only. An invoice over the customer's limit is refused; cash applied by cash application reaches
invoicing as PaymentApplied over Kafka and frees the credit; an invoice over the parent's limit is
refused until a credit override, and the overridden invoice flows to the other contexts like any."""
from __future__ import annotations

import uuid

import httpx

from tests.support.platform import eventually

RUN = uuid.uuid4().hex[:6]


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def post(client: httpx.AsyncClient, url: str, body: dict, expect: int = 201) -> dict:
    r = await client.post(url, json=body, headers=key())
    assert r.status_code == expect, f"{url}: {r.status_code} {r.text}"
    return r.json()


def invoice(customer_id: str, number: str, amount: str, **extra) -> dict:
    return {"customer_id": customer_id, "invoice_number": f"{number}-{RUN}", "issue_date": "2024-03-01",
            "lines": [{"description": "Goods", "quantity": "1", "unit_price": amount}], **extra}


async def test_credit_limits_across_the_platform(platform):
    inv, cash, col = (platform.urls[x] for x in ("invoicing", "cash_application", "collections"))
    own, hq, store = f"CL-{RUN}", f"CLHQ-{RUN}", f"CLST-{RUN}"
    async with httpx.AsyncClient(timeout=30) as c:
        await post(c, f"{inv}/v1/customers", {"customer_id": own, "name": "Limited", "currency": "EUR",
                                              "credit_limit": "1000.00", "registered_on": "2024-01-01"})
        first = await post(c, f"{inv}/v1/invoices", invoice(own, "A", "800.00"))
        refused = await post(c, f"{inv}/v1/invoices", invoice(own, "B", "300.00"), expect=422)
        assert refused["credit_limit_exceeded"]["exposure"] == "800.00"

        # Cash application applies 500.00 to the first invoice; invoicing consumes PaymentApplied
        # from Kafka, and the exposure drops to 300.00: the 300.00 invoice fits now.
        async def open_item():
            return (await c.get(f"{cash}/v1/open-items/{first['invoice_id']}")).status_code == 200
        await eventually(open_item, timeout=90)
        await post(c, f"{cash}/v1/payments", {
            "customer_id": own, "amount": "500.00", "currency": "EUR", "value_date": "2024-03-05", "method": "wire",
            "remittance": [{"invoice_id": first["invoice_id"], "amount": "500.00"}]})

        async def exposure_dropped():
            return (await c.get(f"{inv}/v1/customers/{own}")).json()["open_balance"] == "300.00"
        await eventually(exposure_dropped, timeout=90)
        await post(c, f"{inv}/v1/invoices", invoice(own, "B", "300.00"))

        # The parent's limit holds for its store; an override gets through and flows on.
        await post(c, f"{inv}/v1/customers", {"customer_id": hq, "name": "Head office", "currency": "EUR",
                                              "credit_limit": "1500.00", "registered_on": "2024-01-01"})
        await post(c, f"{inv}/v1/customers", {"customer_id": store, "name": "Store", "currency": "EUR",
                                              "registered_on": "2024-01-01"})
        await post(c, f"{inv}/v1/customers/{store}/parent", {"parent_customer_id": hq, "effective_on": "2024-01-01"})
        await post(c, f"{inv}/v1/invoices", invoice(hq, "H", "1000.00"))
        over = await post(c, f"{inv}/v1/invoices", invoice(store, "S", "600.00"), expect=422)
        assert (over["credit_limit_exceeded"]["level"], over["credit_limit_exceeded"]["customer_id"]) == ("parent", hq)
        approved = await post(c, f"{inv}/v1/invoices", invoice(
            store, "S", "600.00", credit_override={"approved_by": "credit.manager", "reason": "seasonal stock"}))
        assert approved["credit_override"]["exceeded"][0]["exposure"] == "1000.00"

        async def flowed():
            item = await c.get(f"{cash}/v1/open-items/{approved['invoice_id']}")
            account = await c.get(f"{col}/v1/customers/{store}")
            return (item.status_code == 200 and item.json()["open_balance"] == "600.00" and account.status_code == 200
                    and [(i["invoice_id"], i["open_balance"]) for i in account.json()["open_invoices"]]
                    == [(approved["invoice_id"], "600.00")])
        await eventually(flowed, timeout=90)
