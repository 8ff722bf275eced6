"""Every read model against the ledger of accepted writes, through the services' APIs only.

`differences` answers what differs (empty when every read model equals what was accepted):
- invoicing: the customers, and each invoice's paid amount and open balance;
- cash_application: each open item's open balance, each payment's applied and unapplied cash;
- disputes: one deduction per short pay, for the shortfall (none lost, none twice);
- collections: each customer's open invoices and their balances;
- reporting: the aging book total and each customer's total (as of a date after everything)."""
from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx

from tests.faults.load import AS_OF, Ledger

MAX_SHOWN = 12


async def _pages(client: httpx.AsyncClient, url: str, params: dict[str, Any] | None = None,
                 key: str = "data", limit: int = 500) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**(params or {}), "limit": limit}
        if cursor:
            query["cursor"] = cursor
        r = await client.get(url, params=query)
        r.raise_for_status()
        body = r.json()
        rows.extend(body[key] or [])
        cursor = body.get("next_cursor")
        if not cursor:
            return rows


def _compare(name: str, expected: dict, actual: dict, out: list[str]) -> None:
    for k in sorted(set(expected) | set(actual), key=str):
        if expected.get(k) != actual.get(k):
            out.append(f"{name} {k}: expected {expected.get(k)}, read {actual.get(k)}")


async def differences(client: httpx.AsyncClient, urls: dict[str, str], ledger: Ledger) -> list[str]:
    """What the read models say that differs from the ledger (empty list: converged)."""
    out: list[str] = []
    try:
        await _cheap_checks(client, urls, ledger, out)
        if not out:  # one request per customer: only once everything else agrees
            await _collections(client, urls["collections"], ledger, out)
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        out.append(f"read failed: {exc!r}")
    return out


async def _cheap_checks(client: httpx.AsyncClient, urls: dict[str, str], ledger: Ledger, out: list[str]) -> None:
    inv, cash, dis, rep = (urls[c] for c in ("invoicing", "cash_application", "disputes", "reporting"))
    customers, invoices, items, payments, disputes, aging = await asyncio.gather(
        _pages(client, f"{inv}/v1/customers"),
        _pages(client, f"{inv}/v1/invoices"),
        _pages(client, f"{cash}/v1/open-items"),
        _pages(client, f"{cash}/v1/payments"),
        _pages(client, f"{dis}/v1/disputes"),
        _pages(client, f"{rep}/v1/reports/aging", {"as_of": AS_OF, "currency": "USD"}, key="customers", limit=1000)
        if ledger.invoices else asyncio.sleep(0, []),
    )
    _compare("invoicing customer", {c: True for c in ledger.customers}, {c["customer_id"]: True for c in customers}, out)
    _compare("invoicing invoice (paid, open)",
             {i: (str(v.applied), str(v.open)) for i, v in ledger.invoices.items()},
             {i["invoice_id"]: (i["paid_amount"], i["open_balance"]) for i in invoices}, out)
    _compare("cash_application open item",
             {i: str(v.open) for i, v in ledger.invoices.items()},
             {i["invoice_id"]: i["open_balance"] for i in items}, out)
    _compare("cash_application payment (applied, unapplied)",
             {p: (str(v.applied), str(v.unapplied)) for p, v in ledger.payments.items()},
             {p["payment_id"]: (p["applied_amount"], p["unapplied_amount"]) for p in payments}, out)
    seen: dict[tuple[str, str], list[str]] = {}
    for d in disputes:
        seen.setdefault((d["payment_id"], d["invoice_id"]), []).append(d["amount"])
    _compare("disputes deduction (payment, invoice)",
             {k: [str(v)] for k, v in ledger.deductions.items()}, seen, out)
    expected_customers = {c: str(v) for c, v in ledger.customer_open().items() if v != 0}
    reported = {c["customer_id"]: c["total"] for c in aging if Decimal(c["total"]) != 0}
    _compare("reporting aging customer total", expected_customers, reported, out)
    if ledger.invoices:  # the book's total: the full report's, and the pre-aggregated summary's
        for path in ("/v1/reports/aging", "/v1/reports/aging/summary"):
            r = await client.get(f"{rep}{path}", params={"as_of": AS_OF, "currency": "USD", "limit": 1}
                                 if path.endswith("aging") else {"as_of": AS_OF, "currency": "USD"})
            r.raise_for_status()
            total = r.json()["total"]
            if Decimal(str(total)) != ledger.book_open():
                out.append(f"reporting {path} book total: expected {ledger.book_open()}, read {total}")


async def _collections(client: httpx.AsyncClient, url: str, ledger: Ledger, out: list[str]) -> None:
    expected: dict[str, dict[str, str]] = {c: {} for c in ledger.customers}
    for i, amount in ledger.open_invoices().items():
        expected[ledger.invoices[i].customer_id][i] = str(amount)
    gate = asyncio.Semaphore(8)

    async def one(customer_id: str) -> None:
        async with gate:
            r = await client.get(f"{url}/v1/customers/{customer_id}", params={"as_of": AS_OF})
        if r.status_code != 200:
            out.append(f"collections customer {customer_id}: HTTP {r.status_code}")
            return
        actual = {i["invoice_id"]: i["open_balance"] for i in r.json().get("open_invoices") or []}
        _compare(f"collections customer {customer_id} open invoice", expected[customer_id], actual, out)

    await asyncio.gather(*(one(c) for c in ledger.customers))


def shown(diffs: list[str]) -> str:
    more = f"\n... and {len(diffs) - MAX_SHOWN} more" if len(diffs) > MAX_SHOWN else ""
    return "\n".join(diffs[:MAX_SHOWN]) + more
