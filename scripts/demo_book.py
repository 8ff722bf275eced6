"""Load a demo book into a running Ledgerline, through its public APIs only, so that the people
`make run` creates find work in the workbench: the public IBM 'Accounts Receivable' sample
(../shared/data/ar-sample, 100 customers), moved so that its as-of day 2013-06-30 is today.

- every customer, with net-30 terms and a credit limit;
- every invoice issued by that day, in invoice batches (POST /v1/invoice-batches), as an ERP would;
- what was settled by that day, paid by one lockbox file (POST /v1/bank-files?format=csv: one
  check per invoice with its remittance line), as a bank would send it;
- the open invoices the sample marks as disputed, disputed (POST /v1/disputes);
- the customers assigned to the demo collectors alice and camille in turn;
- three receipts nobody can match, waiting in the cash applier's queue.

It runs once: if the book's first customer exists, it says so and stops. Usage:

    python scripts/demo_book.py [--csv PATH] [--as-of YYYY-MM-DD]

The services' URLs come from LEDGERLINE_DEMO_<CONTEXT>_URL (default http://127.0.0.1:810x, the
ports `make run` uses) and an API key, if the services are closed, from LEDGERLINE_DEMO_API_KEY.
A missing CSV is not an error: the platform then starts with an empty book."""
from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import sys
import time
import uuid
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = ROOT.parent / "shared" / "data" / "ar-sample" / "WA_Fn-UseC_-Accounts-Receivable.csv"
SAMPLE_AS_OF = date(2013, 6, 30)
PORTS = {"invoicing": 8101, "cash_application": 8102, "collections": 8103, "disputes": 8104}
COLLECTORS = ("alice", "camille")
BATCH = 1000


def _day(text: str) -> date:
    return datetime.strptime(text, "%m/%d/%Y").date()


def read_sample(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return [{"customer": r["customerID"], "number": r["invoiceNumber"], "issued": _day(r["InvoiceDate"]),
                 "due": _day(r["DueDate"]), "settled": _day(r["SettledDate"]),
                 "amount": Decimal(r["InvoiceAmount"]).quantize(Decimal("0.01")), "disputed": r["Disputed"] == "Yes"}
                for r in csv.DictReader(f)]


def book_as_of(rows: list[dict], today: date) -> tuple[list[dict], dict[str, list[dict]]]:
    """The invoices issued by the sample's as-of day, moved to end today (issue, due and
    settlement dates shifted alike), and per customer. An invoice settled after that day is open."""
    shift = today - SAMPLE_AS_OF
    kept = [{**r, "issued": r["issued"] + shift, "due": r["due"] + shift, "settled": r["settled"] + shift,
             "open": r["settled"] > SAMPLE_AS_OF, "invoice_id": f"demo-{r['number']}"}
            for r in rows if r["issued"] <= SAMPLE_AS_OF]
    by_customer: dict[str, list[dict]] = defaultdict(list)
    for r in kept:
        by_customer[r["customer"]].append(r)
    return kept, dict(sorted(by_customer.items()))


def lockbox_file(paid: list[dict], today: date) -> bytes:
    """A lockbox CSV in cash application's default column layout: one check per invoice, and
    three wires from payers nobody knows (for the cash applier's unapplied queue)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["receipt_id", "value_date", "amount", "currency", "customer_id", "invoice_reference",
                     "invoice_amount", "payer_name"])
    for r in paid:
        writer.writerow([f"CHK-{r['number']}", r["settled"].isoformat(), str(r["amount"]), "USD", r["customer"],
                         r["number"], str(r["amount"]), f"Customer {r['customer']}"])
    for n in range(1, 4):
        writer.writerow([f"WIRE-{today:%Y%m%d}-{n}", today.isoformat(), f"{n * 137}.50", "USD", "", "", "",
                         f"Unknown payer {n}"])
    return out.getvalue().encode()


class Api:
    def __init__(self, client: httpx.AsyncClient, urls: dict[str, str]):
        self.client, self.urls = client, urls

    async def post(self, context: str, path: str, body: dict | None = None, *, content: bytes | None = None,
                   params: dict | None = None, expect: tuple[int, ...] = (200, 201)) -> dict:
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        if content is not None:
            headers["Content-Type"] = "text/plain"
        r = await self.client.post(f"{self.urls[context]}{path}", json=body, content=content, params=params,
                                   headers=headers)
        if r.status_code not in expect:
            raise SystemExit(f"[demo] {context} {path}: {r.status_code} {r.text[:500]}")
        return r.json()

    async def until(self, what: str, probe, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not await probe():
            if time.monotonic() > deadline:
                raise SystemExit(f"[demo] gave up waiting for {what} after {timeout:.0f} s")
            await asyncio.sleep(1)


async def load(urls: dict[str, str], headers: dict[str, str], sample: Path, today: date) -> int:
    if not sample.is_file():
        print(f"[demo] no demo book: the AR sample is not at {sample} (the platform starts with an empty book)")
        return 0
    invoices, by_customer = book_as_of(read_sample(sample), today)
    async with httpx.AsyncClient(timeout=600, headers=headers) as client:
        api = Api(client, urls)
        first = next(iter(by_customer))
        known = await client.get(f"{urls['invoicing']}/v1/customers/{first}")
        if known.status_code == 200:
            print(f"[demo] the demo book is already loaded (customer {first} exists)")
            return 0
        started = time.monotonic()
        for customer, rows in by_customer.items():
            await api.post("invoicing", "/v1/customers", {
                "customer_id": customer, "name": f"Customer {customer}", "currency": "USD", "payment_terms_days": 30,
                "credit_limit": "250000.00", "registered_on": min(r["issued"] for r in rows).isoformat()})
        for at in range(0, len(invoices), BATCH):
            report = await api.post("invoicing", "/v1/invoice-batches", {"invoices": [{
                "invoice_id": r["invoice_id"], "invoice_number": r["number"], "customer_id": r["customer"],
                "issue_date": r["issued"].isoformat(), "due_date": r["due"].isoformat(),
                "lines": [{"description": "Goods", "quantity": "1", "unit_price": str(r["amount"])}]}
                for r in invoices[at:at + BATCH]]})
            refused = [x for x in report["results"] if x["status"] not in ("issued", "already_issued")]
            if refused:
                raise SystemExit(f"[demo] invoices refused: {refused[:3]}")

        # Cash application and collections learn the invoices from invoicing's events.
        pending = {r["invoice_id"] for r in invoices}

        async def cash_knows_them() -> bool:
            cursor = None
            while True:
                params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
                body = (await client.get(f"{urls['cash_application']}/v1/open-items", params=params)).json()
                pending.difference_update(item["invoice_id"] for item in body.get("data", []))
                if not (cursor := body.get("next_cursor")):
                    return not pending
        await api.until("cash application to know the invoices", cash_knows_them)

        paid = [r for r in invoices if not r["open"]]
        result = await api.post("cash_application", "/v1/bank-files", content=lockbox_file(paid, today),
                                params={"format": "csv", "file_name": f"demo-lockbox-{today.isoformat()}.csv"})

        disputed = [r for r in invoices if r["open"] and r["disputed"]]
        async def dispute(r: dict) -> bool:  # disputes learns the invoice from invoicing's events
            response = await client.post(f"{urls['disputes']}/v1/disputes", headers={
                "Idempotency-Key": str(uuid.uuid4())}, json={
                "dispute_id": f"demo-{r['number']}", "invoice_id": r["invoice_id"], "amount": str(r["amount"]),
                "reason_code": "PRICING", "opened_on": min(today, r["due"]).isoformat(),
                "description": "Marked disputed in the sample"})
            if response.status_code in (200, 201, 409):
                return True
            if response.status_code == 422 and "not known" in response.text:
                return False
            raise SystemExit(f"[demo] dispute on {r['invoice_id']}: {response.status_code} {response.text[:500]}")
        for r in disputed:
            await api.until(f"disputes to know {r['invoice_id']}", lambda r=r: dispute(r))

        async def assign(customer: str, collector: str) -> bool:
            r = await client.put(f"{urls['collections']}/v1/customers/{customer}/collector",
                                 json={"collector_id": collector})
            return r.status_code in (200, 201, 204)
        for n, customer in enumerate(by_customer):
            collector = COLLECTORS[n % len(COLLECTORS)]
            await api.until(f"collections to know {customer}", lambda c=customer, who=collector: assign(c, who))
        print(f"[demo] loaded in {time.monotonic() - started:.0f} s: {len(by_customer)} customers,"
              f" {len(invoices)} invoices ({sum(r['open'] for r in invoices)} open),"
              f" {result.get('auto_applied')} payments applied from a lockbox file,"
              f" {result.get('unapplied')} receipts unmatched, {len(disputed)} disputes;"
              f" collectors {', '.join(COLLECTORS)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=Path(os.environ.get("LEDGERLINE_DEMO_BOOK_CSV", DEFAULT_CSV)))
    parser.add_argument("--as-of", type=date.fromisoformat, default=date.today())
    args = parser.parse_args(argv)
    urls = {c: os.environ.get(f"LEDGERLINE_DEMO_{c.upper()}_URL", f"http://127.0.0.1:{p}") for c, p in PORTS.items()}
    key = os.environ.get("LEDGERLINE_DEMO_API_KEY")
    return asyncio.run(load(urls, {"Authorization": f"Bearer {key}"} if key else {}, args.csv, args.as_of))


if __name__ == "__main__":
    sys.exit(main())
