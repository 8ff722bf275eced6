"""A head office paying for its 50 stores, through five service processes on real PostgreSQL and
Kafka. Invoicing puts 50 customers under one parent account (CustomerParentChanged), refuses a
cycle, and counts the stores' exposure against the parent's credit limit. The head office pays
twice: a remittance naming each store's first invoice (remittance references decide), then a
bank file lump sum with no reference at all, which the matching engine identifies as the head
office's by its payer name and applies across the 50 stores' remaining invoices. A third receipt
quotes only the RF creditor reference printed on the head office's own invoice. Every invoice
closes in invoicing, cash application and reporting; reporting's rolled-up aging and statement
for the parent cover the 51 accounts and tie out before and after; the roll-forward ties out."""
from __future__ import annotations

import io
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
from pypdf import PdfReader

from tests.support.platform import eventually, running_platform

RUN = uuid.uuid4().hex[:6]
STORES = 50
PARENT_LIMIT = Decimal("9500.00")


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def post(client: httpx.AsyncClient, url: str, body: dict, expect: int = 201) -> dict:
    r = await client.post(url, json=body, headers=key())
    assert r.status_code == expect, r.text
    return r.json()


async def test_a_parents_lump_sum_across_50_child_accounts_is_applied_and_ties_out(tmp_path: Path):
    async with running_platform(tmp_path / "logs") as platform, httpx.AsyncClient(timeout=60) as c:
        inv, cash, rep = (platform.urls[x] for x in ("invoicing", "cash_application", "reporting"))
        parent = f"HQ-{RUN}"
        await post(c, f"{inv}/v1/customers", {"customer_id": parent, "name": "Northwind Head Office", "currency": "USD",
                                               "payment_terms": "NET30", "credit_limit": "9500.00",
                                               "registered_on": "2024-01-01"})
        stores = [f"ST-{RUN}-{n:02d}" for n in range(STORES)]
        first, second = {}, {}
        for n, store in enumerate(stores):
            await post(c, f"{inv}/v1/customers", {"customer_id": store, "name": f"Northwind Store {n:02d} of {RUN}",
                                                   "currency": "USD", "payment_terms": "NET30",
                                                   "credit_limit": "1000.00", "registered_on": "2024-01-01"})
            linked = await post(c, f"{inv}/v1/customers/{store}/parent",
                                {"parent_customer_id": parent, "effective_on": "2024-02-01"})
            assert linked["parent_customer_id"] == parent
            for book, number, amount in ((first, f"{RUN}-A{n:02d}", Decimal(100 + n)),
                                         (second, f"{RUN}-B{n:02d}", Decimal(50) + Decimal(n) / 4)):
                issued = await post(c, f"{inv}/v1/invoices", {
                    "customer_id": store, "invoice_number": number, "issue_date": "2024-03-01",
                    "lines": [{"description": "Weekly delivery", "quantity": "1", "unit_price": f"{amount:.2f}"}]})
                book[issued["invoice_id"]] = (number, f"{amount:.2f}")
        # The head office buys too (due after its stores' invoices): its own invoice carries an ISO
        # 11649 RF payment reference.
        own = await post(c, f"{inv}/v1/invoices", {
            "customer_id": parent, "invoice_number": f"{RUN}-HQ1", "issue_date": "2024-03-10",
            "lines": [{"description": "Head office supplies", "quantity": "1", "unit_price": "77.70"}]})
        assert own["payment_reference"].startswith("RF")
        total_first = sum(Decimal(a) for _, a in first.values())
        total_second = sum(Decimal(a) for _, a in second.values())
        total = total_first + total_second + Decimal("77.70")

        # No cycles: the head office cannot go under one of its stores; 422 names the field.
        r = await c.post(f"{inv}/v1/customers/{parent}/parent", json={"parent_customer_id": stores[0]}, headers=key())
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert r.json()["errors"][0]["field"] == "parent_customer_id" and "cycle" in r.json()["detail"]

        # Credit limits at either level: a store's exposure counts against the head office's limit.
        store0 = (await c.get(f"{inv}/v1/customers/{stores[0]}")).json()
        assert (store0["open_balance"], store0["parent_customer_id"]) == ("150.00", parent)
        assert store0["available_credit"] == f"{PARENT_LIMIT - total:.2f}"  # the parent's headroom is less
        family = (await c.get(f"{inv}/v1/customers/{parent}/hierarchy")).json()
        assert len(family["descendants"]) == STORES and family["family_open_balance"] == f"{total:.2f}"
        assert family["credit_levels"][0]["available"] == f"{PARENT_LIMIT - total:.2f}"

        async def rollup(as_of: str, expected_total: Decimal):
            async def probe():
                r = await c.get(f"{rep}/v1/reports/aging/rollup", params={"customer_id": parent, "as_of": as_of,
                                                                          "currency": "USD"})
                body = r.json() if r.status_code == 200 else {}
                return body if body.get("total") == f"{expected_total:.2f}" and body.get("members") == STORES + 1 \
                    else None
            return await eventually(probe, timeout=120)

        before = await rollup("2024-03-15", total)
        assert before["ties_out"] and len(before["customers"]) == STORES + 1
        assert {m["parent_customer_id"] for m in before["customers"] if m["customer_id"] != parent} == {parent}

        # The parent's statement of account covers its family, as JSON and as a PDF in French.
        statement = (await c.get(f"{rep}/v1/reports/statements/{parent}",
                                 params={"as_of": "2024-03-15", "currency": "USD"})).json()
        assert len(statement["members"]) == STORES + 1 and len(statement["open_items"]) == 2 * STORES + 1
        assert statement["open_total"] == statement["balance_due"] == f"{total:.2f}"
        r = await c.get(f"{rep}/v1/reports/statements/{parent}", params={"as_of": "2024-03-15", "currency": "USD",
                                                                          "format": "pdf", "language": "fr"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
        text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(r.content)).pages)
        assert "Relevé de compte" in text and f"{RUN}-A49" in text and f"{total:.2f}".replace(".", ",") in text

        async def cash_knows_the_family():
            items = (await c.get(f"{cash}/v1/open-items", params={"status": "open", "limit": 300})).json()["data"]
            return len([i for i in items if i["customer_id"] in stores + [parent]]) == 2 * STORES + 1 or None
        await eventually(cash_knows_the_family, timeout=120)

        # 1. The head office's remittance names each store's first invoice: applied as remitted.
        payment = await post(c, f"{cash}/v1/payments", {
            "customer_id": parent, "amount": f"{total_first:.2f}", "currency": "USD", "value_date": "2024-03-28",
            "method": "ach", "reference": f"HQ-REMIT-{RUN}",
            "remittance": [{"invoice_number": number, "amount": amount} for number, amount in first.values()]})
        assert payment["unapplied_amount"] == "0.00", payment
        applied = {a["invoice_id"]: (a["customer_id"], a["amount"]) for a in payment["applications"]}
        assert set(applied) == set(first)
        assert {customer for customer, _ in applied.values()} == set(stores)  # each names the store

        # 2. A lump sum in the bank file with no reference: the payer name identifies the head
        # office, and its 50 stores' remaining invoices add up to the amount.
        csv = ("receipt_id,value_date,amount,currency,payer_name,text\n"
               f"LUMP-{RUN},2024-04-02,{total_second:.2f},USD,NORTHWIND HEAD OFFICE,WEEKLY SETTLEMENT\n")
        r = await c.post(f"{cash}/v1/bank-files", params={"format": "csv"}, content=csv.encode(), headers=key())
        assert r.status_code == 201, r.text
        lump = (await c.get(f"{cash}/v1/payments", params={"customer_id": parent, "limit": 10})).json()["data"]
        lump = [p for p in lump if p["payment_id"] != payment["payment_id"]]
        assert len(lump) == 1 and lump[0]["unapplied_amount"] == "0.00", lump
        detail = (await c.get(f"{cash}/v1/payments/{lump[0]['payment_id']}")).json()
        assert {a["invoice_id"] for a in detail["applications"]} == set(second)

        # 3. A bank receipt from a payer nobody knows, quoting only the RF reference printed on the
        # head office's invoice (in groups of four): check digits verified, matched to that invoice.
        csv = ("receipt_id,value_date,amount,currency,payer_name,text\n"
               f"RF-{RUN},2024-04-03,77.70,USD,SOME CLEARING BANK,PAYMENT {own['payment_reference'][:4]}"
               f" {own['payment_reference'][4:8]} {own['payment_reference'][8:]}\n")
        r = await c.post(f"{cash}/v1/bank-files", params={"format": "csv"}, content=csv.encode(), headers=key())
        assert r.status_code == 201, r.text
        by_rf = (await c.get(f"{cash}/v1/payments", params={"customer_id": parent, "limit": 10})).json()["data"]
        by_rf = [p for p in by_rf if p["amount"] == "77.70"]
        assert len(by_rf) == 1 and [(a["invoice_id"], a["rule"]) for a in by_rf[0]["applications"]] == [
            (own["invoice_id"], "creditor_reference")]

        async def everything_closed():
            invoices = []
            for store in stores:
                invoices += (await c.get(f"{inv}/v1/invoices", params={"customer_id": store})).json()["data"]
            invoices += (await c.get(f"{inv}/v1/invoices", params={"customer_id": parent})).json()["data"]
            items = (await c.get(f"{cash}/v1/open-items", params={"status": "open", "limit": 300})).json()["data"]
            return (all(i["status"] == "closed" for i in invoices) and len(invoices) == 2 * STORES + 1
                    and not [i for i in items if i["customer_id"] in stores + [parent]]) or None
        await eventually(everything_closed, timeout=120)

        after = await rollup("2024-04-30", Decimal(0))
        assert after["ties_out"] and after["customers"] == [] and after["ledger_net"] == "0.00"
        assert (await c.get(f"{inv}/v1/customers/{parent}")).json()["family_open_balance"] == "0.00"
        closed = (await c.get(f"{rep}/v1/reports/statements/{parent}", params={"as_of": "2024-04-30"})).json()
        assert (closed["open_items"], closed["unapplied_cash"], closed["balance_due"]) == ([], "0.00", "0.00")

        async def roll_forward():
            r = await c.get(f"{rep}/v1/reports/roll-forward", params={"from": "2024-03-01", "to": "2024-04-30",
                                                                       "currency": "USD"})
            body = r.json()
            return body if r.status_code == 200 and body["cash_applied"] == f"{total:.2f}" else None
        roll = await eventually(roll_forward, timeout=120)
        assert {k: roll[k] for k in ("opening", "invoiced", "cash_applied", "credits", "write_offs", "adjustments",
                                     "closing", "ties")} == {
            "opening": "0.00", "invoiced": f"{total:.2f}", "cash_applied": f"{total:.2f}", "credits": "0.00",
            "write_offs": "0.00", "adjustments": "0.00", "closing": "0.00", "ties": True}
