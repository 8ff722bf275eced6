"""A small book for the workbench's browser tests: customers and invoices from the public
IBM 'Accounts Receivable' sample (../shared/data/ar-sample), moved so that its as-of day
(2013-06-30) is today, through the real APIs; paid invoices get their payments, plus activity
the sample lacks: collectors assigned, a receipt nobody can match (the cash applier's queue)."""
from __future__ import annotations

import asyncio
import csv
import uuid
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx

from tests.support.platform import eventually

CSV = Path(__file__).resolve().parents[3] / "shared" / "data" / "ar-sample" / "WA_Fn-UseC_-Accounts-Receivable.csv"
SAMPLE_AS_OF = date(2013, 6, 30)


def _day(text: str) -> date:
    return datetime.strptime(text, "%m/%d/%Y").date()


def sample_customers(count: int, invoices_each: int) -> dict[str, list[dict]]:
    """The first `count` customers (file order) with an invoice past due and a paid one at the sample's as-of day,
    each with its last `invoices_each` invoices issued by then."""
    by_customer: dict[str, list[dict]] = defaultdict(list)
    with CSV.open(newline="") as f:
        for r in csv.DictReader(f):
            issued = _day(r["InvoiceDate"])
            if issued <= SAMPLE_AS_OF:
                by_customer[r["customerID"]].append({
                    "number": r["invoiceNumber"], "issued": issued, "due": _day(r["DueDate"]),
                    "settled": _day(r["SettledDate"]), "amount": Decimal(r["InvoiceAmount"]).quantize(Decimal("0.01"))})
    chosen: dict[str, list[dict]] = {}
    for customer, rows in by_customer.items():
        rows.sort(key=lambda r: r["issued"])
        rows = rows[-invoices_each:]
        overdue = [r for r in rows if r["settled"] > SAMPLE_AS_OF and r["due"] < SAMPLE_AS_OF]
        if overdue and any(r["settled"] <= SAMPLE_AS_OF for r in rows):
            chosen[customer] = rows
        if len(chosen) == count:
            break
    return chosen


async def post(client: httpx.AsyncClient, url: str, body: dict, expect: int = 201) -> dict:
    r = await client.post(url, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert r.status_code == expect, f"{url}: {r.status_code} {r.text}"
    return r.json()


async def load(urls: dict[str, str], headers: dict[str, str], collectors: list[str], count: int, run: str,
               today: date) -> dict:
    """Load `count` customers, assigned to the collectors in turn. Answers
    {customers: {sample id: our id}, open: {our customer: [invoice ids]}, unapplied: payment}."""
    shift = today - SAMPLE_AS_OF
    chosen = sample_customers(count, 6)
    out: dict = {"customers": {}, "open": defaultdict(list), "names": {}}
    async with httpx.AsyncClient(timeout=30, headers=headers) as c:
        for n, (sample_id, rows) in enumerate(chosen.items()):
            customer_id = f"{sample_id}-{run}"
            name = f"Client {sample_id}"
            await post(c, f"{urls['invoicing']}/v1/customers", {
                "customer_id": customer_id, "name": name, "currency": "USD", "payment_terms_days": 30,
                "credit_limit": "50000.00"})
            out["customers"][sample_id] = customer_id
            out["names"][customer_id] = name
            for r in rows:
                inv = await post(c, f"{urls['invoicing']}/v1/invoices", {
                    "customer_id": customer_id, "invoice_number": f"{r['number']}-{run}",
                    "issue_date": (r["issued"] + shift).isoformat(), "due_date": (r["due"] + shift).isoformat(),
                    "lines": [{"description": "Goods", "quantity": "1", "unit_price": str(r["amount"])}]})
                r["invoice_id"] = inv["invoice_id"]
                out.setdefault("invoices", defaultdict(list))[customer_id].append(
                    {"invoice_id": inv["invoice_id"], "number": f"{r['number']}-{run}", "amount": str(r["amount"]),
                     "open": r["settled"] > SAMPLE_AS_OF})
                if r["settled"] > SAMPLE_AS_OF:
                    out["open"][customer_id].append(inv["invoice_id"])
        for n, (sample_id, rows) in enumerate(chosen.items()):
            customer_id = out["customers"][sample_id]
            for r in rows:
                await eventually(lambda r=r: _ok(c, f"{urls['cash_application']}/v1/open-items/{r['invoice_id']}"))
                if r["settled"] <= SAMPLE_AS_OF:
                    await post(c, f"{urls['cash_application']}/v1/payments", {
                        "customer_id": customer_id, "amount": str(r["amount"]), "currency": "USD",
                        "value_date": (r["settled"] + shift).isoformat(), "method": "ach",
                        "reference": f"PAY-{r['number']}",
                        "remittance": [{"invoice_id": r["invoice_id"], "amount": str(r["amount"])}]})
            collector = collectors[n % len(collectors)]
            out.setdefault("collector_of", {})[customer_id] = collector
            await eventually(lambda customer_id=customer_id, collector=collector: _put_ok(
                c, f"{urls['collections']}/v1/customers/{customer_id}/collector", {"collector_id": collector}))
        # A receipt whose payer and amount match nothing: it waits in the unapplied queue.
        first = next(iter(out["customers"].values()))
        out["unapplied"] = await post(c, f"{urls['cash_application']}/v1/payments", {
            "customer_id": first, "amount": "12.34", "currency": "USD", "value_date": today.isoformat(),
            "method": "wire", "reference": f"UNMATCHED-{run}"})
    out["chosen"] = chosen
    return out


async def _ok(c: httpx.AsyncClient, url: str) -> bool:
    return (await c.get(url)).status_code == 200


async def _put_ok(c: httpx.AsyncClient, url: str, body: dict) -> bool:
    r = await c.put(url, json=body)
    return r.status_code in (200, 201, 204)
