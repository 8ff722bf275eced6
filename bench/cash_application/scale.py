"""make bench-cash, at scale: a 100,000-receipt file against 500,000 open invoices, end to end
through the HTTP API (in-process app on a fresh PostgreSQL database), while a prober asks
/healthz every 100 ms. Reported: wall time and receipts/s, the service's peak memory (the API
process plus its parse worker, sampled from /proc every 100 ms), and the slowest health answer;
beside the raw baseline on the same receipts (the plain dict lookup of each remittance word,
in memory, no database).

BENCH_CASH_SCALE_INVOICES / BENCH_CASH_SCALE_RECEIPTS change the sizes; BENCH_CASH_SCALE=0
skips this part of make bench-cash."""
from __future__ import annotations

import asyncio
import os
import time
import uuid

import httpx

from bench.cash_application.generator import generate
from services.cash_application.adapters.bank_files import parse_file
from services.cash_application.application import imports
from services.cash_application.main import definition
from services.cash_application.settings import CashApplicationSettings
from shared.service import build_app
from tests.support.infra import asyncpg_dsn, fresh_database, sqlalchemy_url

INVOICES = int(os.environ.get("BENCH_CASH_SCALE_INVOICES", "500000"))
RECEIPTS = int(os.environ.get("BENCH_CASH_SCALE_RECEIPTS", "100000"))
SEED = int(os.environ.get("BENCH_CASH_SEED", "7"))


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _service_rss_mb() -> float:
    workers = list(imports._POOL._processes) if imports._POOL is not None else []
    return _rss_mb(os.getpid()) + sum(_rss_mb(pid) for pid in workers)


async def run(portfolio, csv_bytes: bytes) -> dict[str, float]:
    from bench.cash_application.__main__ import load_portfolio

    async with fresh_database("benchscale") as name:
        settings = CashApplicationSettings(database_url=sqlalchemy_url(name), max_file_bytes=200_000_000)
        service = definition(settings)
        service.settings.role = "api"
        if not service.settings.api_keys:
            service.settings.allow_open = True
        app = build_app(service)
        async with app.router.lifespan_context(app):
            await load_portfolio(asyncpg_dsn(name), portfolio)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=3600) as client:
                baseline_rss = _service_rss_mb()
                peak_rss = baseline_rss
                slowest = 0.0
                probes = 0
                started = time.perf_counter()
                task = asyncio.create_task(client.post(
                    "/v1/bank-files", params={"format": "csv", "file_name": "scale.csv"}, content=csv_bytes,
                    headers={"Idempotency-Key": str(uuid.uuid4())}))
                while not task.done():
                    began = time.perf_counter()
                    health = await client.get("/healthz")
                    slowest = max(slowest, time.perf_counter() - began)
                    probes += 1
                    if health.status_code != 200:
                        raise SystemExit(f"/healthz answered {health.status_code}")
                    peak_rss = max(peak_rss, _service_rss_mb())
                    await asyncio.sleep(0.1)
                response = await task
                elapsed = time.perf_counter() - started
                if response.status_code != 201:
                    raise SystemExit(f"import answered {response.status_code}: {response.text[:500]}")
                result = response.json()
    return {"import_s": elapsed, "receipts": result["receipts"], "auto_applied": result["auto_applied"],
            "peak_rss_mb": peak_rss, "baseline_rss_mb": baseline_rss, "slowest_health_s": slowest,
            "probes": probes}


def main() -> None:
    from bench.cash_application.__main__ import baseline_run

    started = time.perf_counter()
    portfolio = generate(seed=SEED, invoices=INVOICES, receipts=RECEIPTS)
    csv_bytes = portfolio.csv().encode()
    lines = parse_file(csv_bytes, "csv").statements[0].lines
    print(f"\ncash application at scale: {len(portfolio.invoices):,} open invoices, {len(lines):,} receipts"
          f" ({len(csv_bytes) / 1e6:.1f} MB CSV; {time.perf_counter() - started:.1f} s to generate)")
    _, base_s = baseline_run(portfolio, lines)
    figures = asyncio.run(run(portfolio, csv_bytes))
    print(f"{'measure':58}{'import (API)':>16}{'raw baseline':>16}")
    print(f"{'wall time, s':58}{figures['import_s']:>16.1f}{base_s:>16.2f}")
    print(f"{'receipts/s':58}{figures['receipts'] / figures['import_s']:>16,.0f}{len(lines) / base_s:>16,.0f}")
    print(f"{'peak memory of the service (API + parse worker), MB':58}{figures['peak_rss_mb']:>16,.0f}{'':>16}")
    print(f"{'slowest /healthz answer during the import, s':58}{figures['slowest_health_s']:>16.3f}{'':>16}")
    print(f"  ({int(figures['probes']):,} health probes; {int(figures['auto_applied']):,} receipts fully auto-applied;"
          f" the raw baseline matches in memory only, no database, no posting)")


if __name__ == "__main__":
    main()
