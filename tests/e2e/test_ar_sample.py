"""The public IBM 'Accounts Receivable' sample through the APIs: every invoice issued on its
InvoiceDate and paid in full on its SettledDate; reporting's aging as of 2013-06-30 must equal
an independent computation from the CSV, to the cent, per bucket and per customer; and for
each month of 2013 its DSO, CEI, month-end aging and average days late must equal the same
figures computed here from the CSV alone. The book is loaded once for the module."""
from __future__ import annotations

import asyncio
import calendar
import csv
import io
import uuid
from collections import defaultdict
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import httpx
import pytest

from tests.support.platform import eventually

CSV = Path(__file__).resolve().parents[3] / "shared" / "data" / "ar-sample" / "WA_Fn-UseC_-Accounts-Receivable.csv"
AS_OF = date(2013, 6, 30)


def _day(text: str) -> date:
    return datetime.strptime(text, "%m/%d/%Y").date()


def load_rows() -> list[dict]:
    with CSV.open(newline="") as f:
        return [{"customer": r["customerID"], "number": r["invoiceNumber"], "issued": _day(r["InvoiceDate"]),
                 "due": _day(r["DueDate"]), "settled": _day(r["SettledDate"]), "amount": Decimal(r["InvoiceAmount"]),
                 "late": int(r["DaysLate"])}
                for r in csv.DictReader(f)]


def expected_aging(rows: list[dict], as_of: date) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """Written from the CSV alone: open = issued on or before as_of and settled after it."""
    buckets = {"current": Decimal("0"), "1-30": Decimal("0"), "31-60": Decimal("0"), "61-90": Decimal("0"), "90+": Decimal("0")}
    per_customer: dict[str, Decimal] = defaultdict(Decimal)
    for r in rows:
        if r["issued"] <= as_of < r["settled"]:
            late = (as_of - r["due"]).days
            name = "current" if late <= 0 else "1-30" if late <= 30 else "31-60" if late <= 60 else "61-90" if late <= 90 else "90+"
            buckets[name] += r["amount"]
            per_customer[r["customer"]] += r["amount"]
    return buckets, dict(per_customer)


async def _gather_limited(coros, limit: int = 12):
    sem = asyncio.Semaphore(limit)

    async def run(coro):
        async with sem:
            return await coro
    return await asyncio.gather(*[run(c) for c in coros])


@pytest.fixture(scope="module")
async def loaded(platform) -> list[dict]:
    """The whole sample through the APIs as an ERP and a bank would send it: the customers one by
    one, the invoices in one batch (POST /v1/invoice-batches), and the payments as one lockbox
    file (CSV, one check per invoice with its remittance line); then reporting caught up."""
    rows = load_rows()
    assert len(rows) == 2466
    inv_url, cash_url, rep_url = platform.urls["invoicing"], platform.urls["cash_application"], platform.urls["reporting"]
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(timeout=300, limits=limits) as c:
        async def post(url: str, body: dict) -> dict:
            r = await c.post(url, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
            assert r.status_code == 201, f"{url}: {r.status_code} {r.text}"
            return r.json()

        await _gather_limited([post(f"{inv_url}/v1/customers", {
            "customer_id": cust, "name": f"AR sample {cust}", "currency": "USD", "payment_terms_days": 30,
            "credit_limit": "1000000.00"}) for cust in sorted({r["customer"] for r in rows})])
        batch = await post(f"{inv_url}/v1/invoice-batches", {"invoices": [{
            "invoice_id": f"ar-{r['number']}", "invoice_number": r["number"], "customer_id": r["customer"],
            "issue_date": r["issued"].isoformat(), "due_date": r["due"].isoformat(),
            "lines": [{"description": "AR sample invoice", "quantity": "1", "unit_price": str(r["amount"])}]}
            for r in rows]})
        assert [(x["status"], x["invoice"]["due_date"]) for x in batch["results"]] == \
            [("issued", r["due"].isoformat()) for r in rows]

        pending = {f"ar-{r['number']}" for r in rows}

        async def open_items_arrived():
            cursor = None
            while True:  # every open item cash application knows, a page of 500 at a time
                params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
                body = (await c.get(f"{cash_url}/v1/open-items", params=params)).json()
                pending.difference_update(item["invoice_id"] for item in body["data"])
                if not (cursor := body.get("next_cursor")):
                    return not pending
        await eventually(open_items_arrived, timeout=180, interval=1)

        lockbox = io.StringIO()
        writer = csv.writer(lockbox)
        writer.writerow(["receipt_id", "value_date", "amount", "currency", "customer_id", "invoice_reference",
                         "invoice_amount"])
        for r in rows:
            writer.writerow([f"CHK-{r['number']}", r["settled"].isoformat(), str(r["amount"]), "USD", r["customer"],
                             r["number"], str(r["amount"])])
        response = await c.post(f"{cash_url}/v1/bank-files", params={"format": "csv", "file_name": "ar-sample.csv"},
                                content=lockbox.getvalue().encode(), headers={
                                    "Idempotency-Key": str(uuid.uuid4()), "Content-Type": "text/plain"})
        assert response.status_code == 201, response.text
        result = response.json()
        assert (result["receipts"], result["auto_applied"], result["partially_applied"], result["unapplied"]) == \
            (len(rows), len(rows), 0, 0), {k: v for k, v in result.items() if k != "payments"}

        # Reporting has everything once the book is fully paid as of the last settlement.
        total_paid = sum((r["amount"] for r in rows), Decimal("0"))

        async def reporting_caught_up():
            r = await c.get(f"{rep_url}/v1/reports/aging", params={"as_of": "2014-12-31", "currency": "USD"})
            body = r.json()
            return r.status_code == 200 and body["total"] == "0.00" and body["tie_out"]["invoiced"] == str(total_paid) \
                and body["tie_out"]["applied"] == str(total_paid)
        await eventually(reporting_caught_up, timeout=180, interval=1)
    return rows


async def test_ar_sample_aging_equals_independent_computation(platform, loaded):
    rows, rep_url = loaded, platform.urls["reporting"]
    async with httpx.AsyncClient(timeout=60) as c:
        buckets, per_customer = expected_aging(rows, AS_OF)
        aging = await full_aging(c, rep_url, AS_OF)
        assert {k: Decimal(v) for k, v in aging["buckets"].items()} == buckets
        assert Decimal(aging["total"]) == Decimal(aging["total_open_balance"]) == sum(buckets.values())
        assert {row["customer_id"]: Decimal(row["total"]) for row in aging["customers"]} == per_customer
        assert sum(buckets.values()) > 0 and buckets["1-30"] > 0  # the date really has open and late items


async def full_aging(c: httpx.AsyncClient, rep_url: str, as_of: date) -> dict:
    """The full aging report with every customer, following next_cursor (pages of 100)."""
    params = {"as_of": as_of.isoformat(), "currency": "USD"}
    body = (await c.get(f"{rep_url}/v1/reports/aging", params=params)).json()
    customers, cursor = body["customers"], body["next_cursor"]
    while cursor is not None:
        more = (await c.get(f"{rep_url}/v1/reports/aging", params={**params, "cursor": cursor})).json()
        assert (more["buckets"], more["tie_out"]) == (body["buckets"], body["tie_out"])
        customers, cursor = customers + more["customers"], more["next_cursor"]
    return {**body, "customers": customers}


def _round(value: Decimal, places: str = "0.01") -> str:
    return str(value.quantize(Decimal(places), rounding=ROUND_HALF_UP))


def expected_month(rows: list[dict], start: date, end: date) -> dict[str, str | None]:
    """DSO, CEI and average days late for [start, end], from the CSV alone: an invoice is open
    at the end of day D when issued on or before D and settled after D; current when also due
    on or after D. Days late come from the CSV's DaysLate column of the invoices settled in the
    month (each settled in full by one payment)."""
    def open_at(day: date, current_only: bool = False) -> Decimal:
        return sum((r["amount"] for r in rows if r["issued"] <= day < r["settled"]
                    and (not current_only or r["due"] >= day)), Decimal("0"))

    days = (end - start).days + 1
    beginning = open_at(date.fromordinal(start.toordinal() - 1))
    ending, current = open_at(end), open_at(end, current_only=True)
    sales = sum((r["amount"] for r in rows if start <= r["issued"] <= end), Decimal("0"))
    paid = [r for r in rows if start <= r["settled"] <= end]
    paid_amount = sum((r["amount"] for r in paid), Decimal("0"))
    return {
        "ending_ar": _round(ending), "credit_sales": _round(sales), "beginning_ar": _round(beginning),
        "dso": _round(ending * days / sales) if sales else None,
        "cei": _round((beginning + sales - ending) * 100 / (beginning + sales - current)),
        "average_days_late": _round(sum((r["amount"] * r["late"] for r in paid), Decimal("0")) / paid_amount),
        "average_days_late_by_count": _round(Decimal(sum(r["late"] for r in paid)) / len(paid)),
    }


async def test_2013_monthly_dso_cei_aging_and_days_late_equal_the_csv(platform, loaded):
    rows, rep_url = loaded, platform.urls["reporting"]
    async with httpx.AsyncClient(timeout=60) as c:
        r = await c.get(f"{rep_url}/v1/reports/kpis/trend",
                        params={"from": "2013-01-01", "to": "2013-12-31", "currency": "USD"})
        assert r.status_code == 200, r.text
        periods = r.json()["periods"]
        assert len(periods) == 12
        for month, got in enumerate(periods, start=1):
            start = date(2013, month, 1)
            end = date(2013, month, calendar.monthrange(2013, month)[1])
            assert (got["from"], got["to"]) == (start.isoformat(), end.isoformat())
            expected = expected_month(rows, start, end)
            assert {k: got[k] for k in expected} == expected, start
            buckets, per_customer = expected_aging(rows, end)
            aging = await full_aging(c, rep_url, end)
            assert {k: Decimal(v) for k, v in aging["buckets"].items()} == buckets, end
            assert {row["customer_id"]: Decimal(row["total"]) for row in aging["customers"]} == per_customer, end
            assert aging["tie_out"]["ties_out"] is True
