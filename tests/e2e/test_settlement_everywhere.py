"""What settles an invoice, and what undoes it, reaches every read model: five service processes,
real PostgreSQL and Kafka. A payment with a small-balance write-off closes the invoice; the bank
returns it and the invoice is open again in invoicing, cash application, collections and reporting;
an approved write-off then takes it to zero everywhere and reporting counts it as bad debt."""
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


async def test_return_reopens_and_write_off_closes_the_invoice_in_every_service(tmp_path: Path):
    async with running_platform(tmp_path / "logs") as platform, httpx.AsyncClient(timeout=30) as c:
        inv_url, cash_url, col_url, rep_url = (platform.urls[x] for x in
                                               ("invoicing", "cash_application", "collections", "reporting"))
        customer_id = f"cus-{RUN}"
        await post(c, f"{inv_url}/v1/customers", {"customer_id": customer_id, "name": "Harbour Supplies",
                                                   "currency": "USD", "payment_terms": "NET30",
                                                   "credit_limit": "10000.00", "registered_on": "2024-01-01"})
        invoice_id = (await post(c, f"{inv_url}/v1/invoices", {
            "customer_id": customer_id, "invoice_number": f"INV-{RUN}", "issue_date": "2024-01-05",
            "lines": [{"description": "Pallets", "quantity": "4", "unit_price": "250.00"}]}))["invoice_id"]

        async def balances() -> tuple[str | None, ...]:
            invoice = (await c.get(f"{inv_url}/v1/invoices/{invoice_id}")).json()
            item = await c.get(f"{cash_url}/v1/open-items/{invoice_id}")
            account = await c.get(f"{col_url}/v1/customers/{customer_id}", params={"as_of": "2024-06-30"})
            aging = await c.get(f"{rep_url}/v1/reports/aging",
                                params={"as_of": "2024-06-30", "customer_id": customer_id})
            collections_open = {i["invoice_id"]: i["open_balance"] for i in account.json().get("open_invoices", [])} \
                if account.status_code == 200 else None
            reporting_open = {i["invoice_id"]: i["open_balance"] for i in aging.json().get("invoices") or []} \
                if aging.status_code == 200 else None
            return (invoice["open_balance"],
                    item.json()["open_balance"] if item.status_code == 200 else None,
                    collections_open.get(invoice_id, "0.00") if collections_open is not None else None,
                    reporting_open.get(invoice_id, "0.00") if reporting_open is not None else None)

        seen: list[tuple[str | None, ...]] = []

        async def everywhere(expected: str):
            seen.append(await balances())
            return seen[-1] if seen[-1] == (expected,) * 4 else None

        async def settle(expected: str):
            try:
                return await eventually(lambda: everywhere(expected))
            except AssertionError as exc:  # name the read model that lags or is wrong
                raise AssertionError(f"expected {expected} in (invoicing, cash_application, collections, "
                                     f"reporting), last seen {seen[-1]}") from exc

        await settle("1000.00")

        # A lockbox file pays it 3.00 short, quoting the invoice number without its prefix: matched
        # by the normalised reference, and the 3.00 (within the default tolerance) written off.
        lockbox = ("receipt_id,value_date,amount,currency,payer_name,invoice_reference\n"
                   f"CHK-{RUN},2024-02-01,997.00,USD,HARBOUR SUPPLIES LTD,{RUN}\n")
        r = await c.post(f"{cash_url}/v1/bank-files", params={"format": "csv"}, content=lockbox.encode(),
                         headers=key())
        assert r.status_code == 201, r.text
        (payment_id,) = [p["payment_id"] for p in r.json()["payments"]]
        detail = (await c.get(f"{cash_url}/v1/payments/{payment_id}")).json()
        assert [a["invoice_id"] for a in detail["applications"]] == [invoice_id], detail
        assert detail["written_off_amount"] == "3.00"
        await settle("0.00")

        await post(c, f"{cash_url}/v1/payments/{payment_id}/return",
                   {"reason_code": "R01", "reason": "insufficient funds", "returned_on": "2024-02-05"})
        reopened = await settle("1000.00")
        assert reopened == ("1000.00",) * 4
        invoice = (await c.get(f"{inv_url}/v1/invoices/{invoice_id}")).json()
        assert (invoice["paid_amount"], invoice["adjusted_amount"], invoice["status"]) == ("0.00", "0.00", "open")

        await c.put(f"{col_url}/v1/approvers/carl", json={"role": "controller"})
        write_off = await post(c, f"{col_url}/v1/write-offs", {
            "invoice_id": invoice_id, "reason": "customer insolvent", "requested_by": "mia",
            "requested_on": "2024-05-31"})
        assert write_off["amount"] == "1000.00"
        await post(c, f"{col_url}/v1/write-offs/{write_off['write_off_id']}/approval",
                   {"approved_by": "carl", "approved_on": "2024-05-31"})
        await settle("0.00")
        invoice = (await c.get(f"{inv_url}/v1/invoices/{invoice_id}")).json()
        assert (invoice["written_off_amount"], invoice["status"]) == ("1000.00", "closed")

        async def bad_debt():
            r = await c.get(f"{rep_url}/v1/reports/roll-forward",
                            params={"from": "2024-01-01", "to": "2024-06-30", "currency": "USD"})
            body = r.json()
            return body if r.status_code == 200 and body["write_offs"] == "1000.00" else None
        roll = await eventually(bad_debt)
        # invoiced 1000, cash 997 applied and reversed, adjustment 3 made and undone, 1000 written off.
        assert (roll["opening"], roll["invoiced"], roll["closing"], roll["ties"]) == ("0.00", "1000.00", "0.00", True)
