"""make bench-workbench: first render of the workbench's heaviest pages on a large book, through
the real services (processes on PostgreSQL and Kafka, as tests/support/platform starts them).

1. Loads BENCH_WB_ACCOUNTS (default 5,000) customers through invoicing (each with two invoices,
   one past due, in invoice batches), all assigned to one collector through collections, and
   BENCH_WB_RECEIPTS (default 10,000) receipts no one can match, in one lockbox file, into cash
   application's unapplied queue.
2. Waits until every service's consumers have caught up with the load (their lag gauges).
3. Signs in to the workbench (its own process) and times, BENCH_WB_RUNS (default 10) times each:
   the collector's worklist cold (the pages the workbench keeps dropped: collections ranks all
   accounts and answers the first page of 50 by priority, the workbench renders it; with and
   without the refresh timed), another page cold (the 40th by amount past due: collections ranks,
   sorts and pages again) and warm (kept 60 s), the first page of the unapplied-cash queue (50 of
   10,000) in arrival order and sorted by amount, age, customer and suggestion score, and the 11th
   page by amount, beside the bare API calls behind them (the worklist's page of 50, and the whole
   worklist of 5,000 in one answer).
   Figures: median and max in ms, with the load average before and after (the machine is
   shared), printed and written to artifacts/bench/workbench.json. Not a test: nothing asserts a
   time.
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import httpx

from tests.support.infra import fresh_database
from tests.support.platform import eventually, running_platform
from tests.workbench.conftest import _start_workbench

ACCOUNTS = int(os.environ.get("BENCH_WB_ACCOUNTS", "5000"))
RECEIPTS = int(os.environ.get("BENCH_WB_RECEIPTS", "10000"))
RUNS = int(os.environ.get("BENCH_WB_RUNS", "10"))
ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "artifacts" / "bench"
COLLECTOR = "bench-collector"


def log(msg: str) -> None:
    print(f"[bench-workbench] {msg}", file=sys.stderr, flush=True)


async def _bounded(coros, limit: int = 16):
    sem = asyncio.Semaphore(limit)

    async def run(c):
        async with sem:
            return await c
    return await asyncio.gather(*[run(c) for c in coros])


async def _ok(response: httpx.Response, *codes: int) -> dict:
    assert response.status_code in (codes or (200, 201)), f"{response.request.url}: {response.status_code} {response.text[:500]}"
    return response.json() if response.content else {}


async def load(urls: dict[str, str], run: str) -> None:
    today = date.today()
    key = lambda: {"Idempotency-Key": str(uuid.uuid4())}  # noqa: E731
    async with httpx.AsyncClient(timeout=600) as c:
        t0 = time.perf_counter()
        ids = [f"B{run}-{n:05d}" for n in range(ACCOUNTS)]
        await _bounded([c.post(f"{urls['invoicing']}/v1/customers", headers=key(), json={
            "customer_id": cid, "name": f"Bench Customer {n}", "currency": "USD", "payment_terms_days": 30,
            "credit_limit": "100000.00"}) for n, cid in enumerate(ids)])
        log(f"{ACCOUNTS} customers in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        invoices = []
        for n, cid in enumerate(ids):
            for k, days in enumerate((10 + n % 80, -5)):
                issued = today - timedelta(days=30 + days)
                invoices.append({"invoice_id": f"{cid}-I{k}", "invoice_number": f"{cid}-N{k}", "customer_id": cid,
                                 "issue_date": issued.isoformat(), "due_date": (issued + timedelta(days=30)).isoformat(),
                                 "lines": [{"description": "goods", "quantity": "1",
                                            "unit_price": f"{100 + (n * 37) % 900}.{n % 100:02d}"}]})
        for i in range(0, len(invoices), 2500):
            await _ok(await c.post(f"{urls['invoicing']}/v1/invoice-batches", headers=key(),
                                   json={"invoices": invoices[i:i + 2500]}))
        log(f"{len(invoices)} invoices in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()

        async def assign(cid: str):
            async def put():
                r = await c.put(f"{urls['collections']}/v1/customers/{cid}/collector", json={"collector_id": COLLECTOR})
                return r.status_code in (200, 201, 204)
            await eventually(put, timeout=600, interval=1)
        await _bounded([assign(cid) for cid in ids])
        log(f"{ACCOUNTS} collectors assigned in {time.perf_counter() - t0:.1f} s")

        async def all_ranked():
            r = await c.get(f"{urls['collections']}/v1/worklists/{COLLECTOR}", params={"limit": 1})
            return r.status_code == 200 and r.json()["total"] >= ACCOUNTS
        await eventually(all_ranked, timeout=1200, interval=5)
        t0 = time.perf_counter()
        rows = ["receipt_id,value_date,amount,currency,payer_name,customer_id,invoice_reference,reason_code"]
        rows += [f"R{run}{n:06d},{today.isoformat()},{n % 97 + 1}.{n % 89:02d},USD,Unknown Payer {n},,,"
                 for n in range(RECEIPTS)]
        await _ok(await c.post(f"{urls['cash_application']}/v1/bank-files", params={"format": "csv",
                                                                                     "file_name": "bench.csv"},
                               headers=key(), content=("\n".join(rows) + "\n").encode()))
        log(f"{RECEIPTS} unapplied receipts in {time.perf_counter() - t0:.1f} s")


async def settle(urls: dict[str, str]) -> None:
    """Wait until every service's consumers have caught up with the load's events (each partition's
    ledgerline_consumer_lag gauge in /metrics at 0, twice in a row), so that the timings do not share the two cores with projections still draining the load."""
    t0, calm = time.perf_counter(), 0
    async with httpx.AsyncClient(timeout=60) as c:
        while calm < 2 and time.perf_counter() - t0 < 600:
            lags = []
            for url in urls.values():
                text = (await c.get(f"{url}/metrics")).text
                lags += [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                         if line.startswith("ledgerline_consumer_lag{")]
            calm = calm + 1 if lags and max(lags) == 0 else 0
            await asyncio.sleep(5)
    log(f"consumers caught up in {time.perf_counter() - t0:.1f} s")


async def _time(call, runs: int, setup=None) -> dict:
    """call's time, `runs` times; `setup` (untimed) runs before each call."""
    samples = []
    for _ in range(runs):
        if setup is not None:
            await setup()
        t0 = time.perf_counter()
        r = await call()
        samples.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
    return {"median_ms": round(statistics.median(samples), 1), "max_ms": round(max(samples), 1), "runs": runs}


async def measure(workbench: str, urls: dict[str, str]) -> dict:
    async with httpx.AsyncClient(base_url=workbench, timeout=600, follow_redirects=False) as wb:
        page = await wb.get("/login")
        csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        r = await wb.post("/login", data={"username": "admin", "password": "admin-pass-2026", "csrf_token": csrf})
        assert r.status_code == 303, r.text[:300]
        results: dict = {"load_average_before": [round(v, 2) for v in os.getloadavg()]}

        async def refresh():
            # "Refresh" drops the pages the workbench keeps: the next render asks collections again.
            csrf = await _csrf(wb)
            await wb.post("/worklist/refresh", data={"csrf_token": csrf, "collector": COLLECTOR})

        async def cold():
            # As the figures before it were taken: the refresh (and the page its form is read from,
            # the unapplied queue's) timed with the render.
            await refresh()
            return await wb.get("/worklist", params={"collector": COLLECTOR})
        results["worklist_cold"] = await _time(cold, max(3, RUNS // 3))
        # The render alone, the refresh before it untimed; and another page (the 40th by amount
        # past due) after a refresh: collections ranks, sorts and pages again.
        results["worklist_cold_render"] = await _time(
            lambda: wb.get("/worklist", params={"collector": COLLECTOR}), RUNS, setup=refresh)
        results["worklist_cold_page_40"] = await _time(
            lambda: wb.get("/worklist", params={"collector": COLLECTOR, "page": 40, "sort": "amount_past_due"}), RUNS,
            setup=refresh)
        results["worklist_warm_page_40"] = await _time(
            lambda: wb.get("/worklist", params={"collector": COLLECTOR, "page": 40, "sort": "amount_past_due"}), RUNS)
        results["unapplied_first_page"] = await _time(lambda: wb.get("/cash"), RUNS)
        # Sorted by cash application in SQL (keyset cursor): each order's first page, and a page
        # further on (the 11th of 50, reached through the cursors) by amount.
        for sort, order in (("amount", "desc"), ("age", "desc"), ("customer", "asc"), ("score", "desc")):
            results[f"unapplied_sorted_{sort}"] = await _time(
                lambda sort=sort, order=order: wb.get("/cash", params={"sort": sort, "order": order}), RUNS)
        cursor = None
        async with httpx.AsyncClient(timeout=600) as api:
            for _ in range(10):
                body = (await api.get(f"{urls['cash_application']}/v1/unapplied-cash",
                                      params={"sort": "amount", "order": "desc", "limit": 50,
                                              **({"cursor": cursor} if cursor else {})})).json()
                cursor = body["next_cursor"]
        results["unapplied_sorted_amount_page_11"] = await _time(
            lambda: wb.get("/cash", params={"sort": "amount", "order": "desc", "cursor": cursor, "start": 501}), RUNS)
        async with httpx.AsyncClient(timeout=600) as api:
            results["api_worklist_page"] = await _time(
                lambda: api.get(f"{urls['collections']}/v1/worklists/{COLLECTOR}", params={"limit": 50}), RUNS)
            results["api_worklist"] = await _time(lambda: api.get(f"{urls['collections']}/v1/worklists/{COLLECTOR}"),
                                                  max(3, RUNS // 3))
            results["api_unapplied_page"] = await _time(
                lambda: api.get(f"{urls['cash_application']}/v1/unapplied-cash", params={"limit": 50}), RUNS)
            results["api_unapplied_sorted_score"] = await _time(
                lambda: api.get(f"{urls['cash_application']}/v1/unapplied-cash",
                                params={"limit": 50, "sort": "score", "order": "desc"}), RUNS)
        worklist = await wb.get("/worklist", params={"collector": COLLECTOR})
        results["worklist_accounts_shown"] = worklist.text.count("data-row")
        results["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
        results["worklist_total"] = ACCOUNTS
    return results


async def _csrf(wb: httpx.AsyncClient) -> str:
    page = await wb.get("/cash")
    return page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    run = uuid.uuid4().hex[:5]
    async with running_platform(OUT / "workbench-logs") as platform:
        await load(platform.urls, run)
        await settle(platform.urls)
        async with fresh_database("wbbench") as database:
            proc, url = await _start_workbench(database, platform.urls, OUT / "workbench-logs" / "workbench.log",
                                               api_key=None)
            try:
                results = await measure(url, platform.urls)
            finally:
                proc.terminate()
                proc.wait(timeout=20)
    results["accounts"], results["receipts"] = ACCOUNTS, RECEIPTS
    (OUT / "workbench.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
