"""make bench-write: the invoicing write path under load, on this machine.

Starts one invoicing process (`python -m services.invoicing serve`, role all: API, relay and
consumers, as it runs in production) on a fresh database and topic prefix, registers customers,
then measures, with httpx clients on loopback:

- closed loop: CLIENTS clients each posting POST /v1/invoices (one invoice per request, its own
  Idempotency-Key) back to back for SECONDS: accepted invoices/s and latency p50/p99;
- open loop: RATE requests/s for SECONDS (sent on schedule whatever the answers): p50/p99;
- batches: POST /v1/invoice-batches of BATCH invoices each, 2 clients: invoices/s;
- the service's RSS at the end.

Beside them, in the same run, the raw ceiling: a minimal FastAPI + asyncpg endpoint (one INSERT
of the same invoice row per request, same uvicorn, same clients).

--profile DIR attaches py-spy to the service during the closed loop and writes flame graphs
(speedscope JSON and SVG) to DIR. Environment: BENCH_CLIENTS, BENCH_SECONDS, BENCH_RATE, BENCH_BATCH.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from tests.support.infra import KAFKA, fresh_database, sqlalchemy_url
from tests.support.platform import _die_with_parent, create_event_topics, free_port

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "32"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
RATE = float(os.environ.get("BENCH_RATE", "200"))
BATCH = int(os.environ.get("BENCH_BATCH", "1000"))
CUSTOMERS = 50


def invoice_body(n: int, run: str, with_id: bool = False) -> dict:
    body = {"customer_id": f"cus-{n % CUSTOMERS}", "issue_date": "2026-11-02",
            "lines": [{"description": "Consulting", "quantity": "3", "unit_price": f"{100 + n % 900}.25"},
                      {"description": "Travel", "quantity": "1", "unit_price": "42.10"}]}
    if with_id:  # and its own number (the default number is made of the id's first 8 characters)
        body["invoice_id"] = f"{run}-b{n}"
        body["invoice_number"] = f"{run}-B{n}"
    return body


class _Results(dict):
    """Printed as each figure is measured (flushed), so a run cut short still shows its figures."""

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key, value)
        print(f"  [{key}] {value}", flush=True)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def rss_mb(pid: int) -> float:
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def _children(pid: int) -> list[int]:
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    return [int(x) for x in out.split()]


async def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"service exited with {proc.returncode}")
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {timeout}s")


async def closed_loop(url: str, path: str, make_body, clients: int, seconds: float) -> tuple[int, int, list[float]]:
    """(accepted, failed, latencies in ms)."""
    latencies: list[float] = []
    counts = {"ok": 0, "bad": 0}
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        seq = iter(range(10**9))

        async def worker() -> None:
            while time.monotonic() < stop_at:
                n = next(seq)
                started = time.perf_counter()
                r = await client.post(path, json=make_body(n), headers={"Idempotency-Key": str(uuid.uuid4())})
                latencies.append((time.perf_counter() - started) * 1000)
                counts["ok" if r.status_code == 201 else "bad"] += 1
                if r.status_code != 201 and counts["bad"] < 3:
                    print(f"  unexpected {r.status_code}: {r.text[:300]}", file=sys.stderr)

        await asyncio.gather(*[worker() for _ in range(clients)])
    return counts["ok"], counts["bad"], latencies


async def open_loop(url: str, path: str, make_body, rate: float, seconds: float) -> tuple[int, int, list[float]]:
    latencies: list[float] = []
    counts = {"ok": 0, "bad": 0}
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def one(n: int) -> None:
            started = time.perf_counter()
            r = await client.post(path, json=make_body(n), headers={"Idempotency-Key": str(uuid.uuid4())})
            latencies.append((time.perf_counter() - started) * 1000)
            counts["ok" if r.status_code == 201 else "bad"] += 1

        tasks = []
        start = time.monotonic()
        total = int(rate * seconds)
        for n in range(total):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(10**8 + n)))
        await asyncio.gather(*tasks)
    return counts["ok"], counts["bad"], latencies


async def batches(url: str, run: str, size: int, count: int, clients: int = 2) -> tuple[float, int]:
    """(invoices/s issued, errors)."""
    queue = list(range(count))
    issued = {"n": 0, "errors": 0}
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        async def worker() -> None:
            while queue:
                b = queue.pop()
                body = {"invoices": [invoice_body(b * size + i, run, with_id=True) for i in range(size)]}
                r = await client.post("/v1/invoice-batches", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
                if r.status_code != 201:
                    print(f"  batch answered {r.status_code}: {r.text[:300]}", file=sys.stderr)
                    issued["errors"] += size
                    continue
                out = r.json()
                issued["n"] += out["issued"]
                issued["errors"] += out["error"]

        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(clients)])
        elapsed = time.perf_counter() - start
    return issued["n"] / elapsed, issued["errors"]


def start_py_spy(pid: int, out: Path, seconds: float, fmt: str) -> subprocess.Popen | None:
    spy = shutil.which("py-spy") or str(ROOT / ".venv/bin/py-spy")
    if not Path(spy).exists():
        print("  py-spy not installed (pip install -r requirements.lock)", file=sys.stderr)
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
                             "--format", fmt, "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


RAW_APP = '''
import os, asyncpg, uuid
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
app = FastAPI()
@app.on_event("startup")
async def start():
    app.state.pool = await asyncpg.create_pool(os.environ["RAW_DSN"], min_size=10, max_size=10)
    async with app.state.pool.acquire() as c:
        await c.execute("CREATE TABLE IF NOT EXISTS raw_invoices (invoice_id text PRIMARY KEY, customer_id text,"
                        " issue_date date, lines jsonb, total numeric(20,4))")
@app.post("/v1/invoices")
async def create(request: Request):
    body = await request.json()
    invoice_id = str(uuid.uuid4())
    async with app.state.pool.acquire() as c:
        await c.execute("INSERT INTO raw_invoices VALUES ($1, $2, $3::text::date, $4::jsonb, $5)", invoice_id,
                        body["customer_id"], body["issue_date"], __import__("json").dumps(body["lines"]), 0)
    return JSONResponse({"invoice_id": invoice_id}, status_code=201)
'''


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", type=Path, help="write py-spy flame graphs of the closed loop here")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw FastAPI + asyncpg ceiling")
    parser.add_argument("--no-batch", action="store_true")
    parser.add_argument("--batch-only", action="store_true", help="only the batch endpoint (and RSS)")
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    prefix = f"benchw{run}"
    await create_event_topics(prefix, KAFKA)
    results = _Results()
    async with fresh_database("benchw") as db:
        port = free_port()
        env = {**os.environ, "LEDGERLINE_INVOICING_DATABASE_URL": sqlalchemy_url(db),
               "LEDGERLINE_INVOICING_KAFKA_BOOTSTRAP_SERVERS": KAFKA, "LEDGERLINE_INVOICING_PORT": str(port),
               "LEDGERLINE_INVOICING_TOPIC_PREFIX": prefix, "LEDGERLINE_INVOICING_ALLOW_OPEN": "true",
               "LEDGERLINE_INVOICING_LOG_LEVEL": "WARNING"}
        proc = subprocess.Popen([sys.executable, "-m", "services.invoicing", "serve"], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_die_with_parent)
        url = f"http://127.0.0.1:{port}"
        try:
            await wait_ready(url, proc)
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                for c in range(CUSTOMERS):
                    r = await client.post("/v1/customers", json={"customer_id": f"cus-{c}", "name": f"Customer {c}",
                                                                 "currency": "USD", "credit_limit": "100000000.00"},
                                          headers={"Idempotency-Key": str(uuid.uuid4())})
                    assert r.status_code == 201, r.text
            # warm up
            await closed_loop(url, "/v1/invoices", lambda n: invoice_body(n, run), CLIENTS, 2)
            if args.batch_only:
                spy = None
                if args.profile:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    spy = start_py_spy(proc.pid, args.profile / "invoicing-invoice-batches.svg", 20, "flamegraph")
                rate, errors = await batches(url, run, BATCH, args.batches)
                if spy is not None:
                    spy.communicate(timeout=120)
                results["batch"] = f"{rate:8.1f} invoices/s  ({args.batches} batches of {BATCH}, 2 clients, {errors} errors)"
                results["rss"] = f"{rss_mb(proc.pid):8.1f} MB RSS after the run"
                return
            spies = []
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                spies = [start_py_spy(proc.pid, args.profile / "invoicing-post-invoices.svg", SECONDS, "flamegraph"),
                         start_py_spy(proc.pid, args.profile / "invoicing-post-invoices.speedscope.json", SECONDS,
                                      "speedscope")]
            ok, bad, lat = await closed_loop(url, "/v1/invoices", lambda n: invoice_body(n, run), CLIENTS, SECONDS)
            for spy in spies:
                if spy is not None:
                    _, err = spy.communicate(timeout=120)
                    if spy.returncode != 0:
                        print(f"  py-spy: {err.decode()[-500:]}", file=sys.stderr)
            results["closed"] = (f"{ok / SECONDS:8.1f} invoices/s  p50 {percentile(lat, 50):6.1f} ms  "
                                 f"p99 {percentile(lat, 99):6.1f} ms  ({CLIENTS} clients, {SECONDS:.0f} s, {bad} failed)")
            if ok / SECONDS >= RATE:
                ok, bad, lat = await open_loop(url, "/v1/invoices", lambda n: invoice_body(n, run), RATE, SECONDS)
                results["open"] = (f"{ok / SECONDS:8.1f} invoices/s  p50 {percentile(lat, 50):6.1f} ms  "
                                   f"p99 {percentile(lat, 99):6.1f} ms  (offered {RATE:.0f}/s, {bad} failed)")
            else:  # the queue would only grow: its latency says nothing but "over capacity"
                results["open"] = f"not run: capacity {ok / SECONDS:.0f}/s is below the offered {RATE:.0f}/s"
            if not args.no_batch:
                rate, errors = await batches(url, run, BATCH, args.batches)
                results["batch"] = f"{rate:8.1f} invoices/s  ({args.batches} batches of {BATCH}, 2 clients, {errors} errors)"
            results["rss"] = f"{rss_mb(proc.pid):8.1f} MB RSS after the run"
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not args.no_raw:
            from tests.support.infra import asyncpg_dsn
            raw_port = free_port()
            app_file = ROOT / ".local" / "bench_raw_app.py"
            app_file.parent.mkdir(exist_ok=True)
            app_file.write_text(RAW_APP)
            raw = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench_raw_app:app", "--port", str(raw_port),
                                    "--log-level", "warning", "--no-access-log"], cwd=app_file.parent,
                                   env={**os.environ, "RAW_DSN": asyncpg_dsn(db)}, stdin=subprocess.DEVNULL,
                                   start_new_session=True, preexec_fn=_die_with_parent)
            raw_url = f"http://127.0.0.1:{raw_port}"
            try:
                deadline = time.monotonic() + 30
                async with httpx.AsyncClient() as client:
                    while True:
                        try:
                            await client.get(f"{raw_url}/docs")
                            break
                        except httpx.HTTPError:
                            if time.monotonic() > deadline:
                                raise
                            await asyncio.sleep(0.2)
                await closed_loop(raw_url, "/v1/invoices", lambda n: invoice_body(n, run), CLIENTS, 2)
                ok, bad, lat = await closed_loop(raw_url, "/v1/invoices", lambda n: invoice_body(n, run), CLIENTS, SECONDS)
                results["raw"] = (f"{ok / SECONDS:8.1f} invoices/s  p50 {percentile(lat, 50):6.1f} ms  "
                                  f"p99 {percentile(lat, 99):6.1f} ms  ({CLIENTS} clients, {bad} failed)")
            finally:
                raw.send_signal(signal.SIGTERM)
                try:
                    raw.wait(30)
                except subprocess.TimeoutExpired:
                    raw.kill()
    print(f"\nInvoicing write path, {os.cpu_count()} cores, one process (role all), loopback httpx clients\n")
    labels = {"closed": "POST /v1/invoices, closed loop", "open": "POST /v1/invoices, open loop",
              "batch": "POST /v1/invoice-batches", "rss": "invoicing process",
              "raw": "ceiling: FastAPI + asyncpg INSERT"}
    for key, label in labels.items():
        if key in results:
            print(f"  {label:<36}{results[key]}")


if __name__ == "__main__":
    asyncio.run(main())
