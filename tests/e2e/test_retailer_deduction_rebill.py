"""A retailer's short pay followed through five service processes on real PostgreSQL and Kafka:
the remittance's own code (S01) is mapped to the catalogue, the deduction is found invalid and
re-billed as a new invoice linked to it, collections works the re-bill, the customer pays it and
disputes counts the amount recovered. Beside it the same customer's invoices are voided, returned
(RMA) and adjusted. Every read model shows the same balances, and reporting's roll-forward ties
out with the re-bill on its invoiced and credits lines and the void and adjustment on its
adjustments line."""
from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from tests.support.platform import eventually, running_platform

RUN = uuid.uuid4().hex[:6]


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def post(client: httpx.AsyncClient, url: str, body: dict, expect: int = 201) -> dict:
    r = await client.post(url, json=body, headers=key())
    assert r.status_code == expect, r.text
    return r.json()


async def test_short_pay_mapped_rebilled_and_collected_with_the_roll_forward_tying(tmp_path: Path):
    async with running_platform(tmp_path / "logs") as platform, httpx.AsyncClient(timeout=30) as c:
        inv, cash, col, dis, rep = (platform.urls[x] for x in
                                    ("invoicing", "cash_application", "collections", "disputes", "reporting"))
        customer = f"RET-{RUN}"
        await post(c, f"{inv}/v1/customers", {"customer_id": customer, "name": "Big Box Retail", "currency": "USD",
                                               "payment_terms": "NET30", "credit_limit": "50000.00",
                                               "registered_on": "2024-01-01"})
        r = await c.put(f"{dis}/v1/customers/{customer}/deduction-codes", json={"mappings": [
            {"customer_reason_code": "S01", "reason_code": "QUANTITY"}]})
        assert r.status_code == 200, r.text

        async def invoice(n: int, lines: list[tuple[str, str, str]]) -> dict:
            return await post(c, f"{inv}/v1/invoices", {
                "customer_id": customer, "invoice_number": f"{RUN}-{n}", "issue_date": "2024-03-01",
                "lines": [{"description": d, "quantity": q, "unit_price": p} for d, q, p in lines]})

        main_invoice = (await invoice(1, [("Televisions", "4", "250.00")]))["invoice_id"]
        voided = (await invoice(2, [("Installation", "1", "500.00")]))["invoice_id"]
        returned = (await invoice(3, [("Speakers", "3", "100.00")]))["invoice_id"]

        # Item 1 on the same account: a void, a return under an RMA and a credit adjustment.
        await post(c, f"{inv}/v1/invoices/{voided}/void", {"voided_on": "2024-03-05", "reason": "billed in error"})
        memo = await post(c, f"{inv}/v1/invoices/{returned}/returns", {
            "rma_number": f"RMA-{RUN}", "return_date": "2024-03-10", "lines": [{"line_number": 1, "quantity": "1"}]})
        assert memo["amount"] == "100.00"
        await post(c, f"{inv}/v1/invoices/{returned}/adjustments", {
            "direction": "credit", "amount": "20.00", "reason_code": "PRICING_CORRECTION",
            "adjustment_date": "2024-03-12"})

        async def open_items_everywhere(as_of: str) -> tuple[dict, dict, dict, dict]:
            invoices = (await c.get(f"{inv}/v1/invoices", params={"customer_id": customer, "limit": 50})).json()
            invoicing_open = {i["invoice_id"]: i["open_balance"] for i in invoices["data"] if i["open_balance"] != "0.00"}
            items = (await c.get(f"{cash}/v1/open-items", params={"customer_id": customer, "status": "open"})).json()
            cash_open = {i["invoice_id"]: i["open_balance"] for i in items.get("data", [])}
            account = await c.get(f"{col}/v1/customers/{customer}", params={"as_of": as_of})
            col_open = {i["invoice_id"]: i["open_balance"] for i in account.json().get("open_invoices", [])} \
                if account.status_code == 200 else {}
            aging = await c.get(f"{rep}/v1/reports/aging", params={"as_of": as_of, "customer_id": customer,
                                                                    "currency": "USD"})
            rep_open = {i["invoice_id"]: i["open_balance"] for i in aging.json().get("invoices") or []
                        if i["open_balance"] != "0.00"} if aging.status_code == 200 else {}
            return invoicing_open, cash_open, col_open, rep_open

        seen: list = []

        async def settle(expected: dict[str, str], as_of: str):
            async def probe():
                seen.append(await open_items_everywhere(as_of))
                return seen[-1] if all(view == expected for view in seen[-1]) else None
            try:
                return await eventually(probe, timeout=90)
            except AssertionError as exc:
                raise AssertionError(f"expected {expected} in (invoicing, cash_application, collections, "
                                     f"reporting); last seen {seen[-1]}") from exc

        await settle({main_invoice: "1000.00", returned: "180.00"}, "2024-03-31")

        # The retailer pays 880.00, deducting 120.00 under its own code S01.
        payment = await post(c, f"{cash}/v1/payments", {
            "customer_id": customer, "amount": "880.00", "currency": "USD", "value_date": "2024-04-01",
            "method": "ach", "reference": f"ACH-{RUN}",
            "remittance": [{"invoice_number": f"{RUN}-1", "amount": "880.00", "reason_code": "S01"}]})
        assert [s["shortfall"] for s in payment["short_pays"]] == ["120.00"]

        async def deduction():
            r = await c.get(f"{dis}/v1/disputes", params={"invoice_id": main_invoice, "kind": "deduction"})
            data = r.json()["data"] if r.status_code == 200 else []
            return data[0] if data else None
        opened = await eventually(deduction)
        assert (opened["amount"], opened["reason_code"], opened["customer_reason_code"], opened["team"]) == (
            "120.00", "QUANTITY", "S01", "logistics")
        await settle({main_invoice: "120.00", returned: "180.00"}, "2024-04-05")

        # Proof of delivery shows all four delivered: the deduction is invalid and re-billed.
        decided = await post(c, f"{dis}/v1/disputes/{opened['dispute_id']}/decision", {
            "valid_amount": "0.00", "invalid_amount": "120.00", "decided_on": "2024-04-10",
            "note": "signed proof of delivery for 4 units"})
        assert (decided["resolution"], decided["rebill_amount"]) == ("invalid", "120.00")

        async def rebill():
            invoices = (await c.get(f"{inv}/v1/invoices", params={"customer_id": customer, "limit": 50})).json()
            found = [i for i in invoices["data"] if i["invoice_id"].startswith("rebill-")]
            return found[0] if found else None
        rebilled = await eventually(rebill)
        assert (rebilled["total_amount"], rebilled["issue_date"], rebilled["due_date"]) == ("120.00", "2024-04-10",
                                                                                           "2024-05-10")
        assert rebilled["invoice_number"].startswith(f"{RUN}-1-RB-")
        # Back to collections: the original is closed, the re-bill is the open (and later overdue) item.
        await settle({rebilled["invoice_id"]: "120.00", returned: "180.00"}, "2024-05-20")
        account = (await c.get(f"{col}/v1/customers/{customer}", params={"as_of": "2024-05-20"})).json()
        overdue = {i["invoice_id"] for i in account["open_invoices"] if i["due_date"] < "2024-05-20"}
        assert rebilled["invoice_id"] in overdue

        async def linked():
            d = (await c.get(f"{dis}/v1/disputes/{opened['dispute_id']}")).json()
            return d if d["rebill_invoice_id"] == rebilled["invoice_id"] else None
        await eventually(linked)

        # The retailer pays the re-bill: collected, and disputes counts it recovered.
        await post(c, f"{cash}/v1/payments", {
            "customer_id": customer, "amount": "120.00", "currency": "USD", "value_date": "2024-05-25",
            "method": "ach", "reference": f"ACH2-{RUN}",
            "remittance": [{"invoice_number": rebilled["invoice_number"], "amount": "120.00"}]})
        await settle({returned: "180.00"}, "2024-05-31")

        async def recovered():
            r = (await c.get(f"{dis}/v1/reports/deductions", params={"currency": "USD", "group_by": "customer"})).json()
            rows = [row for row in r["data"] if row["key"] == customer]
            return rows[0] if rows and rows[0]["recovered_amount"] == "120.00" else None
        row = await eventually(recovered)
        assert (row["rebilled_amount"], row["credited_amount"], row["avg_cycle_days"]) == ("120.00", "0.00", "9.0")
        steps = (await c.get(f"{dis}/v1/disputes/{opened['dispute_id']}/timeline")).json()["data"]
        assert [s["event_type"] for s in steps] == ["DeductionOpened", "DisputeResolved"]

        async def roll_forward():
            r = await c.get(f"{rep}/v1/reports/roll-forward", params={"from": "2024-03-01", "to": "2024-05-31",
                                                                       "currency": "USD"})
            body = r.json()
            return body if r.status_code == 200 and body["cash_applied"] == "1000.00" else None
        roll = await eventually(roll_forward)
        # invoiced 1000 + 500 + 300 + 120 (the re-bill) = 1920; cash 880 + 120 = 1000; credits 100 (RMA)
        # + 120 (the deduction moved to its re-bill) = 220; adjustments -(500 void + 20 credit) = -520;
        # closing 1920 - 1000 - 220 - 520 = 180 = the returned invoice's balance.
        assert {k: roll[k] for k in ("opening", "invoiced", "cash_applied", "credits", "write_offs", "adjustments",
                                     "closing", "ties")} == {
            "opening": "0.00", "invoiced": "1920.00", "cash_applied": "1000.00", "credits": "220.00",
            "write_offs": "0.00", "adjustments": "-520.00", "closing": "180.00", "ties": True}
