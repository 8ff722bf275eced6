"""make bench-cash, at scale: a 100,000-receipt file against 500,000 open invoices, end to end
through the HTTP API of the service running as its own process (`python -m
services.cash_application serve`, API role, on a fresh PostgreSQL database), while a prober asks
/healthz every 100 ms over loopback. Reported: wall time and receipts/s, the service's peak memory
(the service process and its children, i.e. the parse worker, sampled from /proc every 100 ms:
the harness, which holds the generated portfolio, is not in it), and the slowest health answer;
beside the raw baseline on the same receipts (the plain dict lookup of each remittance word, in
memory, no database).

BENCH_CASH_SCALE_INVOICES / BENCH_CASH_SCALE_RECEIPTS change the sizes; BENCH_CASH_SCALE=0
skips this part of make bench-cash. BENCH_CASH_PROFILE=path records the service with py-spy
(10 samples/s, every thread and the parse worker) into that file (`.svg` a flame graph, `.txt`
collapsed stacks). BENCH_CASH_LOG_LEVEL=INFO writes each chunk of the import, with where its time
went, into the service's log (.local/bench-cash-scale-service.log)."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from bench.cash_application.generator import generate
from services.cash_application.adapters.bank_files import parse_file
from tests.support.infra import asyncpg_dsn, fresh_database, sqlalchemy_url
from tests.support.platform import ROOT, _wait_ready, free_port

INVOICES = int(os.environ.get("BENCH_CASH_SCALE_INVOICES", "500000"))
RECEIPTS = int(os.environ.get("BENCH_CASH_SCALE_RECEIPTS", "100000"))
SEED = int(os.environ.get("BENCH_CASH_SEED", "7"))
PROFILE = os.environ.get("BENCH_CASH_PROFILE")


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _tree(pid: int) -> list[int]:
    """The process and its descendants (the service's parse worker)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo.extend(int(c) for c in children.read().split())
        except OSError:
            pass
    return found


def _service_rss_mb(pid: int) -> float:
    return sum(_rss_mb(p) for p in _tree(pid))


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """The process's CPU time so far (user + system), seconds."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


class _CpuBook:
    """CPU seconds spent during the import by the service's process, its worker processes and
    PostgreSQL's (the postmaster's tree), from /proc, sampled with the health probes (a process
    that ends between two samples loses its last 100 ms)."""

    def __init__(self, service_pid: int, postmaster_pid: int) -> None:
        self.roots = {"service": service_pid, "postgres": postmaster_pid}
        self.start: dict[int, float] = {}
        self.last: dict[str, dict[int, float]] = {"service": {}, "postgres": {}}
        self.sample(first=True)

    def sample(self, first: bool = False) -> None:
        for side, root in self.roots.items():
            for pid in _tree(root):
                cpu = _cpu_s(pid)
                self.start.setdefault(pid, cpu if first else 0.0)  # a process born during the import: all of it
                self.last[side][pid] = max(self.last[side].get(pid, 0.0), cpu)

    def spent(self) -> dict[str, float]:
        used = {side: {pid: cpu - self.start[pid] for pid, cpu in pids.items()} for side, pids in self.last.items()}
        service_pid = self.roots["service"]
        return {"service_cpu_s": used["service"].get(service_pid, 0.0),
                "workers_cpu_s": sum(v for pid, v in used["service"].items() if pid != service_pid),
                "postgres_cpu_s": sum(used["postgres"].values())}


def _spawn(database: str, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ,
           "LEDGERLINE_CASH_APPLICATION_DATABASE_URL": sqlalchemy_url(database),
           "LEDGERLINE_CASH_APPLICATION_ROLE": "api",
           "LEDGERLINE_CASH_APPLICATION_ALLOW_OPEN": "true",
           "LEDGERLINE_CASH_APPLICATION_PORT": str(port),
           # INFO shows the import's chunks, each with where its time went, in the service's log
           "LEDGERLINE_CASH_APPLICATION_LOG_LEVEL": os.environ.get("BENCH_CASH_LOG_LEVEL", "WARNING"),
           "LEDGERLINE_CASH_APPLICATION_MAX_FILE_BYTES": "200000000"}
    command = [sys.executable, "-m", "services.cash_application", "serve"]
    if PROFILE:
        fmt = "raw" if PROFILE.endswith(".txt") else "flamegraph"
        command = [str(Path(sys.executable).parent / "py-spy"), "record", "-r", "10", "--subprocesses",
                   "--format", fmt, "-o", PROFILE, "--"] + command
    with log.open("w") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


async def run(portfolio, csv_bytes: bytes) -> dict[str, float]:
    from bench.cash_application.__main__ import load_portfolio

    log = ROOT / ".local" / "bench-cash-scale-service.log"
    log.parent.mkdir(exist_ok=True)
    async with fresh_database("benchscale") as name:
        port = free_port()
        service = _spawn(name, port, log)
        try:
            url = f"http://127.0.0.1:{port}"
            await _wait_ready(url, service, log, timeout=180)  # its lifespan has applied the migrations
            await load_portfolio(asyncpg_dsn(name), portfolio)
            async with httpx.AsyncClient(base_url=url, timeout=3600) as client, \
                    httpx.AsyncClient(base_url=url, timeout=60) as prober:
                baseline_rss = _service_rss_mb(service.pid)
                conn = await asyncpg.connect(asyncpg_dsn(name))
                try:  # a backend's parent is the postmaster
                    with open(f"/proc/{await conn.fetchval('SELECT pg_backend_pid()')}/stat") as stat:
                        postmaster = int(stat.read().rsplit(")", 1)[1].split()[1])
                finally:
                    await conn.close()
                cpu = _CpuBook(service.pid, postmaster)
                peak_rss = baseline_rss
                slowest = 0.0
                probes = 0
                load = os.getloadavg()
                started = time.perf_counter()
                task = asyncio.create_task(client.post(
                    "/v1/bank-files", params={"format": "csv", "file_name": "scale.csv"}, content=csv_bytes,
                    headers={"Idempotency-Key": str(uuid.uuid4())}))
                while not task.done():
                    began = time.perf_counter()
                    health = await prober.get("/healthz")
                    slowest = max(slowest, time.perf_counter() - began)
                    probes += 1
                    if health.status_code != 200:
                        raise SystemExit(f"/healthz answered {health.status_code}")
                    peak_rss = max(peak_rss, _service_rss_mb(service.pid))
                    cpu.sample()
                    await asyncio.sleep(0.1)
                response = await task
                elapsed = time.perf_counter() - started
                if response.status_code != 201:
                    raise SystemExit(f"import answered {response.status_code}: {response.text[:500]}")
                result = response.json()
        finally:
            if PROFILE:  # stop the service under py-spy, which then writes the profile and exits
                for child in _tree(service.pid)[1:2]:
                    os.kill(child, signal.SIGTERM)
            else:
                os.killpg(service.pid, signal.SIGTERM)  # the service's own process group
            try:
                service.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(service.pid, signal.SIGKILL)
                service.wait()
    return {"import_s": elapsed, "receipts": result["receipts"], "auto_applied": result["auto_applied"],
            "peak_rss_mb": peak_rss, "baseline_rss_mb": baseline_rss, "slowest_health_s": slowest,
            "probes": probes, "load_before": load[0], "load_after": os.getloadavg()[0], **cpu.spent()}


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
          f" the service's memory before the import {figures['baseline_rss_mb']:,.0f} MB; load average (1 min)"
          f" {figures['load_before']:.1f} at the start, {figures['load_after']:.1f} at the end;"
          f" the raw baseline matches in memory only, no database, no posting)")
    print(f"  CPU seconds during the import: the service's process {figures['service_cpu_s']:.1f}, its worker"
          f" process(es) {figures['workers_cpu_s']:.1f}, PostgreSQL {figures['postgres_cpu_s']:.1f}"
          f" (the machine has {os.cpu_count()} cores: {os.cpu_count() * figures['import_s']:.0f} core-seconds in the wall time)")


if __name__ == "__main__":
    main()
