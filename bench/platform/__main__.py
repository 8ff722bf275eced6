"""make bench-platform: the whole platform under load, every aim of issue 9 beside its measured
value and its raw ceiling, from one run.

The five services run as real processes (`python -m services.<context> serve`, as `make run` and
the end-to-end tests start them: tests/support/platform.py) on fresh databases and topics of the
local PostgreSQL and Kafka (`make infra-up`), on ports of the listening range 20000-31999. In the
same run, under the same load generator (bench/platform/loadgen.py, in worker processes of its
own): a bare HTTP responder (the generator's own ceiling) and a minimal FastAPI + asyncpg service
inserting the same invoice row (bench/platform/raw_app.py, the raw ceiling).

Phases (about 9 minutes with the defaults):
 1. generator ceiling: 32 closed-loop clients against the bare responder;
 2. raw ceiling: 32 clients, then 200/s open loop, against raw_app;
 3. the platform, one invoice per request: 32 clients (max sustained rate, latency);
 4. the platform at 200 invoices/s open loop: latency, and the lag from each 201 to the invoice
    in every read model that uses it (probe.py says what is measured);
 5. the batch endpoint: a portfolio of invoices in batches of 5,000 (raw ceiling: the same
    bodies to raw_app's COPY batch route), and how fast each read model absorbs them;
 6. 200 invoices/s again while cash application imports a bank file of 10,000 receipts for
    that portfolio: the lag during the import and its fan-out;
 7. after the lag has drained: every read model's count and sum per currency against what was
    accepted, to the cent (a mismatch fails the run), and a plain consumer inserting the same
    InvoiceIssued rows with COPY (the projections' ceiling);
 8. the aims no HTTP load shows (bench/platform/backlog.py): event appends beside raw asyncpg
    inserts of the same rows, the outbox relay beside a plain aiokafka producer, and every
    service's live projection draining a backlog of --backlog-events events with its real
    consumers beside a plain consumer COPYing the same events;
 each service's RSS sampled from /proc every 0.5 s throughout; during phases 3 and 6 the CPU
 time of every part of the platform (each service's process tree, its database's sessions,
 PostgreSQL's own processes, Kafka, the generator), from /proc, per accepted invoice / receipt:
 what a figure costs, and how far the host's two cores go at that cost.

Options (or BENCH_PLATFORM_* variables): --instances 2 runs two processes of every service (the
generator spreads requests over both; consumers share partitions; one relay leader per context);
--profile records a py-spy flame graph of every service process over the whole run. Artifacts
(service logs, results.json, flame graphs) go to .local/bench-artifacts/platform/<time>/.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import math
import multiprocessing
import os
import platform as pyplatform
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx

from bench.platform import backlog, loadgen
from bench.platform.probe import READ_MODELS, CpuAccount, MemorySampler, VisibilityProbe, WaitSampler, read_model_totals
from bench.platform.stats import percentile, summary_ms
from tests.support.infra import LOCAL
from tests.support.platform import CONTEXTS, ROOT, _die_with_parent, free_port, running_platform

AIM_RATE = 400.0
AIM_P99_MS = 150.0
AIM_BATCH = 5000.0
AIM_LAG_P99_MS = 500.0
AIM_LAG_IMPORT_P99_MS = 1000.0
AIM_RSS_MB = 300.0
AIM_DRAIN = 10_000.0
AIM_APPEND_SHARE = 0.6     # event appends / plain asyncpg inserts of the same rows
AIM_RELAY_SHARE = 0.7      # outbox relay / a plain aiokafka producer of the same messages

LOAD_CURRENCIES = ("USD", "EUR")


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(f"BENCH_PLATFORM_{name}", default))


@dataclass
class Config:
    instances: int = 1
    profile: bool = False
    profile_format: str = "flamegraph"   # or raw: collapsed stacks
    clients: int = 32
    closed_seconds: float = 20.0
    rate: float = 200.0
    open_seconds: float = 20.0
    generator_workers: int = 2
    batch_invoices: int = 20_000
    batch_size: int = 1_000
    batch_seconds: float = 45.0           # no new batch is posted after this long
    half_seconds: float = 20.0            # the open loop at half the sustained rate
    receipts: int = 10_000
    import_seconds: float = 60.0          # open-loop window around the bank import
    drain_timeout: float = 240.0
    backlog_events: int = 20_000          # the backlog each service's live projection drains


@dataclass
class Figures:
    rows: list[tuple[str, str, str, str, str]] = field(default_factory=list)  # aim, measured, ceiling, ratio, verdict
    notes: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def add(self, label: str, measured: str, ceiling: str = "", ratio: str = "", verdict: str = "") -> None:
        self.rows.append((label, measured, ceiling, ratio, verdict))


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


# ------------------------------------------------------------------------------ processes we own

class Owned:
    """Every helper process this benchmark starts (not the services: Platform stops those), each
    in its own session, SIGKILLed by the kernel if the benchmark dies; stopped by PID."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
        with log.open("a") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env or os.environ.copy(), start_new_session=True,
                                    preexec_fn=_die_with_parent)
        self.procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            except ProcessLookupError:
                pass

    def stop_all(self) -> None:
        for _, proc in reversed(self.procs):
            self.stop(proc)


async def wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process on :{port} exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            await asyncio.sleep(0.2)
    raise RuntimeError(f"nothing listens on :{port} after {timeout}s; see {log}")


# --------------------------------------------------------------------------------------- load

class Generator:
    """Runs a LoadSpec on `workers` worker processes at once (each sends its share)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    async def warm(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*[loop.run_in_executor(self.pool, time.sleep, 0.2) for _ in range(self.workers)])

    async def run(self, targets: list[str], path: str, mode: str, duration: float, prefix: str,
                  customers: list[tuple[str, str]], concurrency: int = 32, rate: float = 200.0,
                  workers: int | None = None) -> loadgen.LoadResult:
        workers = workers or self.workers
        start_at = time.monotonic() + 1.0
        specs = [loadgen.LoadSpec(targets=targets, path=path, mode=mode, duration=duration, prefix=prefix,
                                  customers=customers, concurrency=max(1, concurrency // workers), rate=rate / workers,
                                  start_at=start_at, worker=w, workers=workers) for w in range(workers)]
        loop = asyncio.get_running_loop()
        results = await asyncio.wait_for(
            asyncio.gather(*[loop.run_in_executor(self.pool, loadgen.run_load, s) for s in specs]), duration + 90)
        return loadgen.merge(results)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def load_figures(result: loadgen.LoadResult, warmup: float = 2.0) -> dict:
    ok_done = [d for d, s in zip(result.done, result.status) if s == 201]
    # a request not accepted (no answer within the timeout, an error, or not sent because too
    # many answers were pending) counts as infinitely slow: a p99 with more than 1 % of them is
    # infinite, never a flattering figure from the survivors
    latencies = [d - due if s == 201 else math.inf for d, due, s in zip(result.done, result.due, result.status)]
    # closed loop: completions per second after a warm-up; open loop: the accepted share of the
    # arrivals over the schedule's length (what the service kept up with)
    if result.mode == "open":
        rate = len(ok_done) / result.duration
    else:
        window_start = result.started + warmup
        window = max(0.001, result.ended - window_start)
        rate = sum(1 for d in ok_done if d >= window_start) / window
    return {"sent": len(result.n), "accepted": len(ok_done), "failed": len(result.n) - len(ok_done),
            "rate": rate, **{f"latency_{k}": v for k, v in summary_ms(latencies).items()},
            "schedule_late_max_ms": result.late_max * 1000, "shed": result.shed, "errors": result.errors[:5]}


def accepted(result: loadgen.LoadResult, prefix: str) -> dict[str, float]:
    """invoice_id -> time of its 201."""
    return {loadgen.invoice_id(prefix, n): d for n, s, d in zip(result.n, result.status, result.done) if s == 201}


def unanswered(result: loadgen.LoadResult, prefix: str) -> list[str]:
    """Requests that got no answer (timeout, dropped connection): their outcome is unknown."""
    return [loadgen.invoice_id(prefix, n) for n, s in zip(result.n, result.status) if s == 0]


# ------------------------------------------------------------------------------------ the run

class Bench:
    def __init__(self, config: Config, artifacts: Path) -> None:
        self.config = config
        self.artifacts = artifacts
        self.figures = Figures()
        self.owned = Owned()
        self.expected: dict[str, list] = {}   # currency -> [count, Decimal sum]
        self.unknown: list[str] = []

    def expect(self, currency: str, amount: str | Decimal) -> None:
        entry = self.expected.setdefault(currency, [0, Decimal(0)])
        entry[0] += 1
        entry[1] += Decimal(amount)

    def expect_load(self, result: loadgen.LoadResult, prefix: str, customers: list[tuple[str, str]]) -> None:
        for n, s in zip(result.n, result.status):
            if s == 201:
                self.expect(customers[n % len(customers)][1], loadgen.amount_of(n))
        self.unknown += [(i, customers[int(i[len(prefix):]) % len(customers)][1], loadgen.amount_of(int(i[len(prefix):])))
                         for i in unanswered(result, prefix)]

    async def run(self) -> int:
        cfg = self.config
        f = self.figures
        load_before = os.getloadavg()
        f.data["machine"] = machine()
        f.data["load_average_start"] = load_before
        f.data["config"] = cfg.__dict__
        started = time.monotonic()
        log_dir = self.artifacts / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        print(f"[bench-platform] artifacts in {self.artifacts}", flush=True)
        extra_env = {"LEDGERLINE_OPEN_MODE": "true"}
        raw_db = f"ll_bench_raw_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(LOCAL.asyncpg_dsn("postgres"))
        await admin.execute(f'CREATE DATABASE "{raw_db}"')
        await admin.close()
        generator = Generator(cfg.generator_workers)
        profilers: list[subprocess.Popen] = []
        try:
            async with running_platform(log_dir, extra_env=extra_env) as platform:
                for _ in range(cfg.instances - 1):
                    for context in CONTEXTS:
                        await platform.start(context)
                print(f"[bench-platform] {cfg.instances} instance(s) of each service ready"
                      f" ({time.monotonic() - started:.0f} s)", flush=True)
                pids = {inst.name: inst.pid for c in CONTEXTS for inst in platform.instances[c]}
                memory = MemorySampler(pids)
                stop_sampling = asyncio.Event()
                sampler = asyncio.create_task(memory.run(stop_sampling))
                waits_conn = await asyncpg.connect(LOCAL.asyncpg_dsn("postgres"))
                waits = WaitSampler(waits_conn, platform.databases)
                wait_sampler = asyncio.create_task(waits.run(stop_sampling))
                if cfg.profile:
                    profilers = self.start_profilers(pids)
                sink_port, raw_port = free_port(), free_port()
                sink = self.owned.start("sink", [sys.executable, "-m", "bench.platform.sink", "--port", str(sink_port)],
                                        log_dir / "sink.log")
                raw = self.owned.start("raw_app", [sys.executable, "-m", "bench.platform.raw_app", "--port", str(raw_port),
                                                   "--dsn", LOCAL.asyncpg_dsn(raw_db)], log_dir / "raw_app.log")
                await wait_port(sink_port, sink, log_dir / "sink.log")
                await wait_port(raw_port, raw, log_dir / "raw_app.log")
                await generator.warm()
                conns = {c: await asyncpg.connect(LOCAL.asyncpg_dsn(platform.databases[c])) for c in READ_MODELS}
                try:
                    await self.phases(platform, generator, conns, sink_port, raw_port, raw_db)
                finally:
                    for conn in conns.values():
                        await conn.close()
                    stop_sampling.set()
                    await sampler
                    await wait_sampler
                    await waits_conn.close()
                    self.memory_rows(memory)
                    self.wait_notes(waits)
                    for proc in profilers:
                        self.owned.stop(proc, signal.SIGINT, timeout=60)
        finally:
            generator.close()
            self.owned.stop_all()
            admin = await asyncpg.connect(LOCAL.asyncpg_dsn("postgres"))
            await admin.execute(f'DROP DATABASE IF EXISTS "{raw_db}" WITH (FORCE)')
            await admin.close()
        f.data["load_average_end"] = os.getloadavg()
        f.data["wall_seconds"] = time.monotonic() - started
        self.print_table()
        (self.artifacts / "results.json").write_text(json.dumps(
            {"rows": f.rows, "notes": f.notes, "failures": f.failures, **f.data}, indent=2, default=str))
        return 1 if f.failures else 0

    # -------------------------------------------------------------------------------- phases

    async def phases(self, platform, generator: Generator, conns, sink_port: int, raw_port: int, raw_db: str) -> None:
        cfg = self.config
        f = self.figures
        urls = {c: [i.url for i in platform.instances[c]] for c in CONTEXTS}
        invoicing = [u.removeprefix("http://") for u in urls["invoicing"]]
        customers = await self.register_customers(urls["invoicing"][0])
        invoicing_db = await asyncpg.connect(LOCAL.asyncpg_dsn(platform.databases["invoicing"]))
        try:
            await self._phases(cfg, f, urls, invoicing, customers, generator, conns, sink_port, raw_port, raw_db,
                               platform, invoicing_db)
        finally:
            await invoicing_db.close()

    async def _phases(self, cfg, f, urls, invoicing, customers, generator, conns, sink_port, raw_port, raw_db,
                      platform, invoicing_db) -> None:

        step("generator ceiling: closed loop against a bare responder")
        sink_result = load_figures(await generator.run([f"127.0.0.1:{sink_port}"], "/sink", "closed", 10, "s-",
                                                       customers, concurrency=cfg.clients))
        f.data["generator_ceiling"] = sink_result
        show("generator alone", sink_result)

        step("raw ceiling: FastAPI + asyncpg, one row per request")
        raw_closed = load_figures(await generator.run([f"127.0.0.1:{raw_port}"], "/raw/invoices", "closed",
                                                      cfg.closed_seconds, "r-", customers, concurrency=cfg.clients))
        raw_open = load_figures(await generator.run([f"127.0.0.1:{raw_port}"], "/raw/invoices", "open",
                                                    cfg.open_seconds, "ro-", customers, rate=cfg.rate))
        f.data["raw_closed"], f.data["raw_open"] = raw_closed, raw_open
        show("raw, closed loop", raw_closed)
        show("raw, open loop", raw_open)

        step(f"platform: {cfg.clients} clients, one invoice per request")
        cpu = CpuAccount({i.name: i.pid for c in CONTEXTS for i in platform.instances[c]}, platform.databases)
        cpu_before, started = cpu.snapshot(), time.monotonic()
        closed = await generator.run(invoicing, "/v1/invoices", "closed", cfg.closed_seconds, "c-", customers,
                                     concurrency=cfg.clients)
        self.cpu_note("the closed loop", cpu.spent(cpu_before, cpu.snapshot()), time.monotonic() - started,
                      sum(1 for s in closed.status if s == 201), "accepted invoice")
        self.expect_load(closed, "c-", customers)
        platform_closed = load_figures(closed)
        f.data["platform_closed"] = platform_closed
        show("platform, closed loop", platform_closed)
        check_errors("platform closed loop", platform_closed, f)
        await self.settle(invoicing_db, conns, "the closed loop")

        step(f"platform: {cfg.rate:.0f} invoices/s open loop, lag to every read model")
        open_ids = [loadgen.invoice_id("o-", n) for n in range(int(cfg.rate * cfg.open_seconds) + 1)]
        open_result, open_probe = await self.with_probe(conns, open_ids, generator.run(
            invoicing, "/v1/invoices", "open", cfg.open_seconds, "o-", customers, rate=cfg.rate), prefix="o-")
        self.expect_load(open_result, "o-", customers)
        platform_open = load_figures(open_result)
        f.data["platform_open"] = platform_open
        await self.settle(invoicing_db, conns, "the open loop")
        check_errors("platform open loop", platform_open, f)
        open_answered = accepted(open_result, "o-")
        lag_open = {c: summary_ms(open_probe.lags(c, open_answered)) for c in READ_MODELS}
        f.data["lag_open"] = lag_open
        show("platform, open loop", platform_open)
        show_lag("at the open-loop rate", lag_open)

        half_rate = max(5.0, round(platform_closed["rate"] / 2))
        step(f"platform: {half_rate:.0f} invoices/s open loop (half the sustained rate), lag to every read model")
        half_ids = [loadgen.invoice_id("h-", n) for n in range(int(half_rate * cfg.half_seconds) + 1)]
        half_result, half_probe = await self.with_probe(conns, half_ids, generator.run(
            invoicing, "/v1/invoices", "open", cfg.half_seconds, "h-", customers, rate=half_rate, workers=1),
            prefix="h-")
        self.expect_load(half_result, "h-", customers)
        platform_half = load_figures(half_result)
        f.data["platform_half"] = {**platform_half, "rate_asked": half_rate}
        await self.settle(invoicing_db, conns, "the half-rate open loop")
        check_errors("platform half-rate open loop", platform_half, f)
        lag_half = {c: summary_ms(half_probe.lags(c, accepted(half_result, "h-"))) for c in READ_MODELS}
        f.data["lag_half"] = lag_half
        show("platform, half-rate open loop", platform_half)
        show_lag(f"at {half_rate:.0f}/s", lag_half)

        step(f"batch endpoint: up to {cfg.batch_invoices:,} invoices in batches of {cfg.batch_size:,}"
             f" for at most {cfg.batch_seconds:.0f} s")
        from bench.cash_application.generator import generate

        portfolio = generate(seed=7, invoices=cfg.batch_invoices, receipts=cfg.receipts)
        await self.register_portfolio_customers(urls["invoicing"][0], portfolio)
        bodies = [{"invoice_id": i.invoice_id, "invoice_number": i.invoice_number, "customer_id": i.customer_id,
                   "currency": "USD", "issue_date": (i.due_date - timedelta(days=30)).isoformat(),
                   "due_date": i.due_date.isoformat(),
                   "lines": [{"description": "Portfolio invoice", "quantity": "1", "unit_price": f"{i.amount:.2f}"}]}
                  for i in portfolio.invoices]
        batch_ids = sorted(b["invoice_id"] for b in bodies)
        (batch_rate, batch_issued), batch_probe = await self.with_probe(conns, batch_ids, self.post_batches(
            urls["invoicing"], "/v1/invoice-batches", bodies, "invoicing"), interval=0.1, drain_timeout=cfg.drain_timeout)
        raw_batch_rate, _ = await self.post_batches([f"http://127.0.0.1:{raw_port}"], "/raw/invoice-batches", bodies, None)
        f.data["batch_issued"] = len(batch_issued)
        f.data["batch"] = {"rate": batch_rate, "raw_rate": raw_batch_rate}
        absorb = {}
        for c in READ_MODELS:
            times = [t for i, t in batch_probe.seen[c].items() if i in batch_issued]
            if len(times) > 1:
                absorb[c] = len(times) / max(0.001, max(times) - min(times))
        f.data["batch_absorb"] = absorb
        print(f"[bench-platform]   batches: {batch_rate:,.0f} invoices/s (raw COPY route {raw_batch_rate:,.0f}/s);"
              f" read models absorbed them at " + ", ".join(f"{c} {r:,.0f}/s" for c, r in absorb.items()), flush=True)

        await self.settle(invoicing_db, conns, "the batches")
        # at 200/s, or at half the sustained rate where that is lower: the lag then shows what the
        # import does to the read side, not invoicing's own overload (measured above)
        import_rate = min(cfg.rate, half_rate)
        step(f"{import_rate:.0f} invoices/s while cash application imports {cfg.receipts:,} receipts")
        bank_ids = [loadgen.invoice_id("b-", n) for n in range(int(import_rate * cfg.import_seconds) + 1)]
        csv_bytes = portfolio.csv().encode()
        import_window: dict[str, float] = {}

        async def load_and_import():
            load = asyncio.create_task(generator.run(invoicing, "/v1/invoices", "open", cfg.import_seconds, "b-",
                                                     customers, rate=import_rate, workers=1))
            await asyncio.sleep(4.0)
            import_window["start"] = time.monotonic()
            cpu_before = cpu.snapshot()
            async with httpx.AsyncClient(timeout=300) as client:
                r = await client.post(f"{urls['cash_application'][0]}/v1/bank-files",
                                      params={"format": "csv", "file_name": "bench-platform.csv"}, content=csv_bytes,
                                      headers={"Idempotency-Key": str(uuid.uuid4()), "X-Actor": "bench"})
            import_window["end"] = time.monotonic()
            self.cpu_note("the bank import (its receipts, their events' fan-out, invoices at the import's rate)",
                          cpu.spent(cpu_before, cpu.snapshot()), import_window["end"] - import_window["start"],
                          cfg.receipts, "receipt")
            if r.status_code != 201:
                raise RuntimeError(f"bank import answered {r.status_code}: {r.text[:500]}")
            import_window["receipts"] = r.json().get("receipts", 0)
            return await load

        bank_result, bank_probe = await self.with_probe(conns, bank_ids, load_and_import(), prefix="b-")
        self.expect_load(bank_result, "b-", customers)
        platform_bank = load_figures(bank_result)
        f.data["platform_during_import"] = platform_bank
        check_errors("platform during the import", platform_bank, f)
        bank_answered = accepted(bank_result, "b-")
        # the invoices answered from the import's start until 10 s after it answered, while its
        # receipts' events fan out to collections and reporting
        window_end = import_window["end"] + 10.0
        during = {i: t for i, t in bank_answered.items() if import_window["start"] <= t <= window_end}
        lag_import = {c: summary_ms(bank_probe.lags(c, during)) for c in READ_MODELS}
        f.data["import"] = {"rate": import_rate, "seconds": import_window["end"] - import_window["start"],
                            "receipts": import_window.get("receipts"), "window_invoices": len(during)}
        f.data["lag_import"] = lag_import
        show("platform during the import", platform_bank)
        print(f"[bench-platform]   import: {f.data['import']}", flush=True)
        show_lag("during the import", lag_import)

        step("drain, then the read models against what was accepted")
        await self.settle(invoicing_db, conns, "the import")
        await self.resolve_unknown(urls["invoicing"][0])
        totals = await self.settled_totals(conns)
        self.check_totals(totals)
        await self.check_reporting_api(urls["reporting"][0])

        step("ceiling of the projections: a plain consumer COPYing the same InvoiceIssued rows")
        try:
            copy_rate, copied, redelivered = await raw_copy_consumer(platform.topic("invoicing"), LOCAL.asyncpg_dsn(raw_db))
            if redelivered:
                f.notes.append(f"the invoicing topic holds {redelivered} InvoiceIssued events twice (the relay delivers at"
                               " least once; the services' inboxes apply each once, as the check shows)")
        except Exception as exc:  # the ceiling is missing from the table, the rest stands
            f.failures.append(f"the COPY consumer failed: {type(exc).__name__}: {exc}")
            copy_rate, copied, redelivered = 0.0, 0, 0
        f.data["copy_consumer"] = {"rate": copy_rate, "events": copied, "redelivered": redelivered}

        self.build_rows(sink_result, raw_closed, raw_open, platform_closed, platform_open, lag_open,
                        batch_rate, raw_batch_rate, absorb, copy_rate, lag_import, half_rate, platform_half, lag_half)

        step("event appends and the outbox relay beside raw asyncpg inserts and a plain aiokafka producer")
        mech = await backlog.measure_mechanisms()
        f.data["mechanisms"] = mech.__dict__
        f.add(f"event appends, events/s (aim >= {AIM_APPEND_SHARE:.1f} of raw asyncpg inserts)",
              f"{mech.append_rate:,.0f}", f"{mech.raw_insert_rate:,.0f}", ratio(mech.append_rate, mech.raw_insert_rate),
              verdict(mech.append_rate >= AIM_APPEND_SHARE * mech.raw_insert_rate))
        f.add(f"outbox relay to Kafka, events/s (aim >= {AIM_RELAY_SHARE:.1f} of a plain aiokafka producer)",
              f"{mech.relay_rate:,.0f}", f"{mech.raw_produce_rate:,.0f}", ratio(mech.relay_rate, mech.raw_produce_rate),
              verdict(mech.relay_rate >= AIM_RELAY_SHARE * mech.raw_produce_rate))

        step(f"every service's live projection draining a backlog of {cfg.backlog_events:,} events"
             " beside a plain consumer COPYing them")
        drains = await backlog.measure_drains(cfg.backlog_events)
        f.data["backlog_drains"] = [d.__dict__ for d in drains]
        for d in drains:
            f.add(f"{d.service} live projection draining a backlog, events/s (aim >= {AIM_DRAIN:,.0f})",
                  f"{d.rate:,.0f}", f"{d.ceiling:,.0f}", ratio(d.rate, d.ceiling), verdict(d.rate >= AIM_DRAIN))
            if d.parked or d.anomalies:
                f.failures.append(f"{d.service} parked {d.parked} and recorded {d.anomalies} stream anomalies"
                                  f" draining the backlog (expected none)")

    # ------------------------------------------------------------------------------ helpers

    async def with_probe(self, conns, ids: list[str], work, interval: float = 0.025, drain_timeout: float | None = None,
                         prefix: str = ""):
        probe = VisibilityProbe(conns, ids, interval)
        stop = asyncio.Event()
        watcher = asyncio.create_task(probe.run(stop))
        try:
            result = await work
        finally:
            stop.set()
            await watcher
        if isinstance(result, loadgen.LoadResult):
            answered = set(accepted(result, prefix))
            probe.give_up_on(set(ids) - answered)
        elif isinstance(result, tuple) and isinstance(result[1], set):  # post_batches: (rate, issued ids)
            probe.give_up_on(set(ids) - result[1])
        drained = await probe.drain(drain_timeout or self.config.drain_timeout)
        if not drained:
            stuck = {c: sum(1 for i in ids if i not in probe.seen[c] and i not in probe._skip) for c in conns}
            self.figures.failures.append(f"read models did not catch up within {drain_timeout or self.config.drain_timeout:.0f} s:"
                                         f" invoices still missing {stuck}")
        return result, probe

    async def settle(self, invoicing_conn, conns, what: str) -> None:
        """Between phases: wait until invoicing has finished what it was still doing (requests
        whose client gave up are still served) and every read model holds every invoice, so the
        next phase starts on a quiet platform."""
        deadline = time.monotonic() + self.config.drain_timeout
        stable_since, last = time.monotonic(), -1
        while time.monotonic() < deadline:
            issued = await invoicing_conn.fetchval("SELECT count(*) FROM invoices")
            if issued != last:
                stable_since, last = time.monotonic(), issued
            counts = {}
            for c, conn in conns.items():
                table, _, condition = READ_MODELS[c]
                counts[c] = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {condition}")
            if time.monotonic() - stable_since >= 2.0 and all(n == issued for n in counts.values()):
                return
            await asyncio.sleep(0.5)
        self.figures.failures.append(f"after {what}: the platform did not settle within {self.config.drain_timeout:.0f} s"
                                     f" (invoicing {last} invoices, read models {counts})")

    async def register_customers(self, url: str) -> list[tuple[str, str]]:
        customers = [(f"LOAD-{cur}-{k:03d}", cur) for cur in LOAD_CURRENCIES for k in range(50)]
        await self.register(url, [{"customer_id": cid, "name": f"Load customer {cid}", "currency": cur,
                                   "credit_limit": "999999999.00", "registered_on": "2024-01-01"}
                                  for cid, cur in customers])
        # alternate currencies: n % len picks USD and EUR customers in turn
        return [c for pair in zip(customers[:50], customers[50:]) for c in pair]

    async def register_portfolio_customers(self, url: str, portfolio) -> None:
        await self.register(url, [{"customer_id": c.customer_id, "name": c.name, "currency": "USD",
                                   "credit_limit": "999999999.00", "registered_on": "2023-01-01"}
                                  for c in portfolio.customers])

    async def register(self, url: str, bodies: list[dict]) -> None:
        sem = asyncio.Semaphore(8)
        async with httpx.AsyncClient(timeout=60) as client:
            async def one(body: dict) -> None:
                async with sem:
                    r = await client.post(f"{url}/v1/customers", json=body,
                                          headers={"Idempotency-Key": f"bench-{body['customer_id']}", "X-Actor": "bench"})
                    if r.status_code not in (200, 201):
                        raise RuntimeError(f"registering {body['customer_id']}: {r.status_code} {r.text[:300]}")
            await asyncio.gather(*[one(b) for b in bodies])

    async def post_batches(self, urls: list[str], path: str, bodies: list[dict],
                           context: str | None) -> tuple[float, set[str]]:
        """The bodies in batches of batch_size, two batches in flight (per instance), no new batch
        after batch_seconds; (invoices issued per second, the ids issued)."""
        size = self.config.batch_size
        deadline = time.monotonic() + self.config.batch_seconds
        issued_ids: set[str] = set()
        batches = [bodies[i:i + size] for i in range(0, len(bodies), size)]
        queue: asyncio.Queue = asyncio.Queue()
        for k, b in enumerate(batches):
            queue.put_nowait((k, b))
        issued = 0

        async def worker(url: str) -> None:
            nonlocal issued
            async with httpx.AsyncClient(timeout=600) as client:
                while not queue.empty() and (context is None or time.monotonic() < deadline):
                    k, batch = queue.get_nowait()
                    r = await client.post(f"{url}{path}", json={"invoices": batch},
                                          headers={"Idempotency-Key": f"bench-batch-{path}-{k}-{uuid.uuid4().hex[:6]}",
                                                   "X-Actor": "bench"})
                    if r.status_code not in (200, 201):
                        raise RuntimeError(f"{path} answered {r.status_code}: {r.text[:500]}")
                    if context is not None:
                        for item in r.json()["results"]:
                            if item["status"] == "issued":
                                issued += 1
                                issued_ids.add(item["invoice_id"])
                                self.expect("USD", batch[item["index"]]["lines"][0]["unit_price"])
                            else:
                                self.figures.failures.append(f"batch item {item['invoice_id']}: {item['status']}"
                                                             f" {item.get('errors')}")
                    else:
                        issued += r.json()["issued"]

        started = time.monotonic()
        await asyncio.gather(*[worker(u) for u in urls for _ in range(2)])
        return issued / (time.monotonic() - started), issued_ids

    async def resolve_unknown(self, url: str) -> None:
        """A request that got no answer may have been accepted: invoicing says which were."""
        if not self.unknown:
            return
        async with httpx.AsyncClient(timeout=30) as client:
            for invoice_id, currency, amount in self.unknown:
                r = await client.get(f"{url}/v1/invoices/{invoice_id}")
                if r.status_code == 200:
                    self.expect(currency, amount)
        self.figures.notes.append(f"{len(self.unknown)} request(s) got no answer; invoicing was asked which were issued")

    async def settled_totals(self, conns) -> dict:
        """The read models' totals once they stop changing and match the expected count (or time out)."""
        want = {cur: n for cur, (n, _) in self.expected.items()}
        deadline = time.monotonic() + self.config.drain_timeout
        totals = await read_model_totals(conns)
        while time.monotonic() < deadline:
            if all({cur: v[0] for cur, v in totals[c].items()} == want for c in totals):
                break
            await asyncio.sleep(1.0)
            totals = await read_model_totals(conns)
        return totals

    def check_totals(self, totals: dict) -> None:
        f = self.figures
        expected = {cur: (n, f"{total:.2f}") for cur, (n, total) in sorted(self.expected.items())}
        f.data["accepted"] = expected
        f.data["read_models"] = totals
        for context, got in totals.items():
            if got != expected:
                f.failures.append(f"{context}'s read model holds {got}, accepted were {expected}")
        f.notes.append("accepted (count, sum) per currency: " + ", ".join(f"{c} {n:,} / {s}" for c, (n, s) in expected.items()))

    async def check_reporting_api(self, url: str) -> None:
        """Reporting's own figure through its API: the roll-forward's invoiced amount per currency."""
        f = self.figures
        async with httpx.AsyncClient(timeout=120) as client:
            for currency, (_, total) in sorted(self.expected.items()):
                r = await client.get(f"{url}/v1/reports/roll-forward",
                                     params={"currency": currency, "from": "2023-01-01", "to": "2024-12-31"})
                if r.status_code != 200:
                    f.failures.append(f"reporting roll-forward {currency}: {r.status_code} {r.text[:300]}")
                    continue
                invoiced = Decimal(r.json()["invoiced"])
                if invoiced != total:
                    f.failures.append(f"reporting's roll-forward says {currency} {invoiced} invoiced, accepted {total:.2f}")
                f.data.setdefault("reporting_api_invoiced", {})[currency] = str(invoiced)

    def start_profilers(self, pids: dict[str, int]) -> list[subprocess.Popen]:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            raise SystemExit("--profile needs py-spy: pip install -r requirements.lock (it pins py-spy)")
        out = self.artifacts / "profiles"
        out.mkdir(parents=True, exist_ok=True)
        procs = []
        for name, pid in pids.items():
            raw = self.config.profile_format == "raw"  # collapsed stacks, to sum by frame with a script
            target = out / f"{name.replace('#', '-')}.{'txt' if raw else 'svg'}"
            procs.append(self.owned.start(f"py-spy {name}", [spy, "record", "--pid", str(pid), "--rate", "25", "--nonblocking",
                                                             "--subprocesses", "--output", str(target), "--format",
                                                             self.config.profile_format], out / f"{name.replace('#', '-')}.log"))
        self.figures.notes.append(f"flame graphs: {out}")
        return procs

    # ------------------------------------------------------------------------------- output

    def cpu_note(self, phase: str, spent: dict[str, float], wall: float, units: int, unit: str) -> None:
        """Where the CPU went during a phase: CPU seconds by part of the platform, share of one
        core, and per `unit` (what the phase produced), the total against the host's cores."""
        f = self.figures
        total = sum(spent.values())
        f.data.setdefault("cpu", {})[phase] = {"wall_s": wall, "units": units, "cpu_s": spent}
        f.notes.append(f"CPU during {phase}: {total:.1f} CPU-seconds in {wall:.1f} s ({total / wall:.2f} of"
                       f" {os.cpu_count()} cores), {1000 * total / max(1, units):.2f} ms per {unit}:")
        for name, seconds in spent.items():
            if seconds >= 0.05:
                f.notes.append(f"  {name:48} {seconds:6.2f} s  {100 * seconds / wall:5.1f}% of a core"
                               f"  {1000 * seconds / max(1, units):6.2f} ms per {unit}")

    def wait_notes(self, waits: WaitSampler) -> None:
        f = self.figures
        f.data["db_sessions"] = {c: waits.top(c, 6) for c in CONTEXTS}
        f.notes.append(f"database sessions over the run ({waits.samples} samples of pg_stat_activity; average busy"
                       " sessions by state):")
        for c in CONTEXTS:
            f.notes.append(f"  {c:17} " + ", ".join(f"{k} {v:.2f}" for k, v in waits.top(c, 4)))

    def memory_rows(self, memory: MemorySampler) -> None:
        f = self.figures
        f.data["rss_peak_mb"] = memory.peak
        for name, peak in memory.peak.items():
            f.add(f"RSS peak of {name}, MB (aim < {AIM_RSS_MB:.0f})", f"{peak:.0f}", "", "", verdict(peak < AIM_RSS_MB))
            parts = memory.peak_parts[name]
            if len(parts) > 1:  # a worker process was running at the peak: what each process held
                f.notes.append(f"RSS peak of {name}: " + " + ".join(f"{role} {rss:.0f} MB" for role, rss in parts))
        f.data["rss_peak_parts_mb"] = memory.peak_parts

    def build_rows(self, sink, raw_closed, raw_open, closed, opened, lag_open, batch_rate, raw_batch_rate,
                   absorb, copy_rate, lag_import, half_rate, half, lag_half) -> None:
        f = self.figures
        cfg = self.config
        f.add(f"generator alone, {cfg.clients} clients, req/s (its own ceiling)", f"{sink['rate']:,.0f}")
        f.add(f"invoices/s, {cfg.clients} clients, one per request (aim >= {AIM_RATE:.0f})", f"{closed['rate']:,.0f}",
              f"{raw_closed['rate']:,.0f}", ratio(closed["rate"], raw_closed["rate"]), verdict(closed["rate"] >= AIM_RATE))
        f.add("  latency p50 / p99 at that load, ms", f"{ms(closed['latency_p50'])} / {ms(closed['latency_p99'])}",
              f"{ms(raw_closed['latency_p50'])} / {ms(raw_closed['latency_p99'])}")
        f.add(f"latency p50 at {cfg.rate:.0f}/s open loop, ms", ms(opened["latency_p50"]), ms(raw_open["latency_p50"]))
        f.add(f"latency p99 at {cfg.rate:.0f}/s open loop, ms (aim < {AIM_P99_MS:.0f})", ms(opened["latency_p99"]),
              ms(raw_open["latency_p99"]), ratio(opened["latency_p99"], raw_open["latency_p99"]),
              verdict(opened["latency_p99"] < AIM_P99_MS))
        f.add(f"batch endpoint, invoices/s (aim >= {AIM_BATCH:,.0f})", f"{batch_rate:,.0f}", f"{raw_batch_rate:,.0f}",
              ratio(batch_rate, raw_batch_rate), verdict(batch_rate >= AIM_BATCH))
        for c in READ_MODELS:
            lag = lag_open[c]
            f.add(f"lag 201 -> {c} at {cfg.rate:.0f}/s, p50 / p99 ms (aim p99 < {AIM_LAG_P99_MS:.0f})",
                  f"{ms(lag['p50'])} / {ms(lag['p99'])}", "", "", verdict(lag["p99"] < AIM_LAG_P99_MS))
        f.add(f"latency p50 / p99 at {half_rate:.0f}/s (half the sustained rate), ms",
              f"{ms(half['latency_p50'])} / {ms(half['latency_p99'])}")
        for c in READ_MODELS:
            lag = lag_half[c]
            f.add(f"lag 201 -> {c} at {half_rate:.0f}/s, p50 / p99 ms", f"{ms(lag['p50'])} / {ms(lag['p99'])}")
        for c in READ_MODELS:
            lag = lag_import[c]
            f.add(f"lag 201 -> {c} during the bank import at {self.figures.data['import']['rate']:.0f}/s, p50 / p99 ms"
                  f" (aim p99 < {AIM_LAG_IMPORT_P99_MS:.0f})",
                  f"{ms(lag['p50'])} / {ms(lag['p99'])}", "", "", verdict(lag["p99"] < AIM_LAG_IMPORT_P99_MS))
        for c in READ_MODELS:
            rate = absorb.get(c, 0.0)
            f.add(f"{c} absorbing the batches, invoices/s (aim >= {AIM_DRAIN:,.0f} events/s)", f"{rate:,.0f}",
                  f"{copy_rate:,.0f}", ratio(rate, copy_rate), verdict(rate >= AIM_DRAIN))

    def print_table(self) -> None:
        f = self.figures
        d = f.data
        la0, la1 = d.get("load_average_start", (0, 0, 0)), d.get("load_average_end", (0, 0, 0))
        print()
        print(f"Platform load benchmark ({self.config.instances} instance(s) per service) on {d['machine']}")
        print(f"load average at start {la0[0]:.2f} {la0[1]:.2f} {la0[2]:.2f}, at end {la1[0]:.2f} {la1[1]:.2f} {la1[2]:.2f};"
              f" wall time {d.get('wall_seconds', 0):.0f} s")
        width = max([len(r[0]) for r in f.rows] + [40])
        print(f"{'aim / measure':{width}}  {'measured':>14}  {'raw ceiling':>14}  {'ratio':>6}  verdict")
        for label, measured, ceiling, rat, ver in f.rows:
            print(f"{label:{width}}  {measured:>14}  {ceiling:>14}  {rat:>6}  {ver}")
        if "import" in d:
            imp = d["import"]
            print(f"bank import: {imp['receipts']} receipts in {imp['seconds']:.1f} s;"
                  f" lag during it over {imp['window_invoices']} invoices answered from its start to 10 s after its 201")
        for note in f.notes:
            print(note)
        if f.failures:
            print("\nFAILED:")
            for failure in f.failures:
                print(f"  - {failure}")
        else:
            print("\nread models checked against what was accepted: every count and sum matches to the cent")


def ratio(a: float, b: float) -> str:
    if not b or not math.isfinite(a) or not math.isfinite(b):
        return ""
    return f"{a / b:.2f}"


def ms(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "timeout"
    return f"{value:.0f}"


def check_errors(what: str, figures: dict, f: Figures) -> None:
    if figures["failed"]:
        f.notes.append(f"{what}: {figures['failed']} of {figures['sent']} requests not accepted ({figures['shed']} not sent:"
                       f" 256 answers pending), e.g. {figures['errors'][:2]}")


def show(what: str, figures: dict) -> None:
    print(f"[bench-platform]   {what}: {figures['accepted']:,} accepted of {figures['sent']:,}, {figures['rate']:,.0f}/s,"
          f" latency p50 {ms(figures['latency_p50'])} ms p99 {ms(figures['latency_p99'])} ms"
          f" (generator behind schedule by {figures['schedule_late_max_ms']:.0f} ms at most)", flush=True)


def show_lag(what: str, lag: dict) -> None:
    print(f"[bench-platform]   lag {what}: " + ", ".join(f"{c} p50 {ms(v['p50'])} p99 {ms(v['p99'])} ms (n {v['n']})"
                                                      for c, v in lag.items()), flush=True)


def step(text: str) -> None:
    print(f"[bench-platform] {datetime.now(timezone.utc):%H:%M:%S} {text}", flush=True)


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem = 0
    return f"{os.cpu_count()} CPUs ({model}), {mem / 1024 / 1024:.1f} GiB, {pyplatform.system()} {pyplatform.release()}"


async def raw_copy_consumer(topic: str, dsn: str) -> tuple[float, int, int]:
    """A plain consumer of the invoicing topic (no inbox, no offsets in the database) inserting
    each InvoiceIssued row with COPY, one COPY per fetched batch; events/s over every message
    the topic holds."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    conn = await asyncpg.connect(dsn)
    # no key: the relay delivers at least once (the services' inboxes drop a redelivery), and the
    # ceiling is the insert itself
    await conn.execute("CREATE TABLE copy_invoices (invoice_id text, customer_id text, currency char(3),"
                       " total_amount numeric(20, 4), issue_date date, due_date date)")
    consumer = AIOKafkaConsumer(bootstrap_servers=LOCAL.kafka, enable_auto_commit=False, auto_offset_reset="earliest",
                                isolation_level="read_committed", max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=LOCAL.kafka)
        await admin.start()
        try:
            described = await admin.describe_topics([topic])
        finally:
            await admin.close()
        partitions = [TopicPartition(topic, p["partition"]) for p in described[0]["partitions"]]
        if not partitions:
            raise RuntimeError(f"topic {topic} has no partitions")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        total = 0
        event_ids: set[bytes] = set()
        redelivered = 0
        started = time.monotonic()
        async def behind() -> bool:
            for tp in partitions:
                if await consumer.position(tp) < ends[tp]:
                    return True
            return False

        while await behind():
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            rows = []
            for messages in batches.values():
                for m in messages:
                    total += 1
                    headers = dict(m.headers)
                    if headers.get("ce_type") != b"InvoiceIssued":
                        continue
                    if headers.get("ce_id") in event_ids:
                        redelivered += 1
                    event_ids.add(headers.get("ce_id"))
                    d = json.loads(m.value)
                    rows.append((d["invoice_id"], d["customer_id"], d["currency"], Decimal(d["total_amount"]),
                                 datetime.fromisoformat(d["issue_date"]).date(), datetime.fromisoformat(d["due_date"]).date()))
            if rows:
                async with conn.transaction():
                    await conn.copy_records_to_table("copy_invoices", records=rows)
            if time.monotonic() - started > 120:
                raise RuntimeError("the COPY consumer did not reach the end of the topic in 120 s")
        rate = total / (time.monotonic() - started)
    finally:
        await consumer.stop()
        await conn.close()
    return rate, total, redelivered


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.platform", description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=env_int("INSTANCES", 1), choices=(1, 2))
    parser.add_argument("--profile", action="store_true", default=os.environ.get("BENCH_PLATFORM_PROFILE") == "1")
    parser.add_argument("--profile-format", choices=("flamegraph", "raw"),
                        default=os.environ.get("BENCH_PLATFORM_PROFILE_FORMAT", "flamegraph"))
    parser.add_argument("--open-seconds", type=float, default=env_int("OPEN_SECONDS", 20))
    parser.add_argument("--closed-seconds", type=float, default=env_int("CLOSED_SECONDS", 20))
    parser.add_argument("--batch-invoices", type=int, default=env_int("BATCH_INVOICES", 20_000))
    parser.add_argument("--batch-seconds", type=float, default=env_int("BATCH_SECONDS", 45))
    parser.add_argument("--receipts", type=int, default=env_int("RECEIPTS", 10_000))
    parser.add_argument("--import-seconds", type=float, default=env_int("IMPORT_SECONDS", 60),
                        help="how long the 200/s load runs around the bank import (it starts 4 s in)")
    parser.add_argument("--backlog-events", type=int, default=env_int("BACKLOG_EVENTS", 20_000),
                        help="the backlog each service's live projection drains (the 10,000 events/s aim)")
    args = parser.parse_args()
    config = Config(instances=args.instances, profile=args.profile, profile_format=args.profile_format,
                    open_seconds=args.open_seconds,
                    closed_seconds=args.closed_seconds, batch_invoices=args.batch_invoices, receipts=args.receipts,
                    import_seconds=args.import_seconds, batch_seconds=args.batch_seconds,
                    backlog_events=args.backlog_events)
    artifacts = ROOT / ".local" / "bench-artifacts" / "platform" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    bench = Bench(config, artifacts)

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    try:
        code = asyncio.run(asyncio.wait_for(bench.run(), timeout=2400))
    except KeyboardInterrupt:
        print("[bench-platform] interrupted; every process it started was stopped", file=sys.stderr)
        code = 130
    except (RuntimeError, asyncio.TimeoutError) as exc:
        print(f"[bench-platform] FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
