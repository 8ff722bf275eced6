"""The load generator: raw HTTP/1.1 over keep-alive connections (asyncio streams, no client
library in the way), run in worker processes of its own so that it competes with the services
for the CPU as an ERP's client would, not inside the process that measures.

Two modes:
- closed: `concurrency` clients, each sending its next request as soon as the previous answer
  arrived (the maximum sustained rate at that concurrency);
- open: arrivals at a fixed `rate` on a precomputed schedule (stats.arrival_times), whatever the
  answers do; a request's latency runs from its scheduled time, so a generator or service that
  falls behind shows up in the latency instead of silently lowering the rate.

Every request is an invoice body numbered n (invoice_id = prefix + n, zero-padded), so the
measuring process can find each accepted invoice in the read models afterwards.
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field

from bench.platform.stats import arrival_times

ISSUE_DATE = "2024-06-03"


def invoice_id(prefix: str, n: int) -> str:
    return f"{prefix}{n:07d}"


def amount_of(n: int) -> str:
    """A deterministic amount with cents, 10.00 .. 9009.99."""
    cents = (n * 7919) % 900_000 + 1000
    return f"{cents // 100}.{cents % 100:02d}"


def invoice_body(prefix: str, n: int, customers: list[tuple[str, str]]) -> dict:
    customer_id, currency = customers[n % len(customers)]
    number = invoice_id(prefix, n)
    return {"invoice_id": number, "invoice_number": f"N{number}", "customer_id": customer_id, "currency": currency,
            "issue_date": ISSUE_DATE,
            "lines": [{"description": "Platform load test", "quantity": "1", "unit_price": amount_of(n)}]}


def _request_bytes(host: str, path: str, body: dict, key: str) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Idempotency-Key: {key}\r\nX-Actor: bench\r\nContent-Length: {len(payload)}\r\n\r\n").encode()
    return head + payload


# uvicorn closes a keep-alive connection idle for 5 s (timeout_keep_alive); a request written
# to it as it closes gets no answer. A connection idle longer than this is replaced first.
IDLE_REUSE_SECONDS = 3.0


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.last_used = 0.0

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.writer is not None and time.monotonic() - self.last_used > IDLE_REUSE_SECONDS:
            self.close()
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
            elif name == b"transfer-encoding":
                raise RuntimeError("chunked answers are not supported by the load generator")
        body = await self.reader.readexactly(length) if length else b""
        self.last_used = time.monotonic()
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class LoadSpec:
    targets: list[str]                      # "host:port", requests spread round-robin
    path: str
    mode: str                               # "closed" or "open"
    duration: float                         # seconds
    prefix: str                             # invoice_id prefix of this phase
    customers: list[tuple[str, str]]        # (customer_id, currency), picked by n
    concurrency: int = 32                   # closed mode
    rate: float = 200.0                     # open mode, requests/s of this worker
    start_at: float = 0.0                   # time.monotonic() to begin at (aligns workers)
    worker: int = 0                         # this worker's index ...
    workers: int = 1                        # ... of this many: it sends n = worker, worker + workers, ...
    timeout: float = 10.0
    max_in_flight: int = 256                # open mode: an arrival beyond this many waiting answers is not sent
    keep_errors: int = 5


@dataclass
class LoadResult:
    # one entry per request: n, HTTP status (0: no answer, -1: not sent), due/sent time, answer time
    n: list[int] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    due: list[float] = field(default_factory=list)
    done: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    late_max: float = 0.0                   # open mode: how far behind schedule a send went
    shed: int = 0                           # open mode: arrivals not sent (max_in_flight answers pending)
    started: float = 0.0
    ended: float = 0.0
    mode: str = ""
    duration: float = 0.0


async def _run(spec: LoadSpec) -> LoadResult:
    result = LoadResult(mode=spec.mode, duration=spec.duration)
    hosts = [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in spec.targets]
    idle: list[list[Connection]] = [[] for _ in hosts]
    counter = 0

    def build(n: int, target: int) -> bytes:
        host, port = hosts[target]
        body = invoice_body(spec.prefix, n, spec.customers)
        return _request_bytes(f"{host}:{port}", spec.path, body, f"{spec.prefix}{n}-{uuid.uuid4().hex[:8]}")

    async def send(n: int, due: float, conn: Connection | None = None) -> Connection | None:
        """One request; on `conn` (a closed-mode client's own connection) or on an idle
        connection to the target n picks (open mode)."""
        target = hosts.index((conn.host, conn.port)) if conn is not None else n % len(hosts)
        data = build(n, target)
        own = conn is None
        if conn is None:
            conn = idle[target].pop() if idle[target] else Connection(*hosts[target])
        status = 0
        try:
            async with asyncio.timeout(spec.timeout):
                status, body = await conn.request(data)
            if status >= 300 and len(result.errors) < spec.keep_errors:
                result.errors.append(f"{status}: {body[:300].decode(errors='replace')}")
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
            conn.close()
            if len(result.errors) < spec.keep_errors:
                result.errors.append(f"no answer: {type(exc).__name__} {exc}")
        result.n.append(n)
        result.status.append(status)
        result.due.append(due)
        result.done.append(time.monotonic())
        if own:
            idle[target].append(conn)
            return None
        return conn

    delay = spec.start_at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    start = time.monotonic()
    result.started = start
    end = start + spec.duration

    if spec.mode == "closed":
        async def client(c: int) -> None:
            nonlocal counter
            conn: Connection | None = Connection(*hosts[c % len(hosts)])
            while time.monotonic() < end:
                n = counter * spec.workers + spec.worker
                counter += 1
                conn = await send(n, time.monotonic(), conn)
            if conn:
                conn.close()
        await asyncio.gather(*[client(c) for c in range(spec.concurrency)])
    elif spec.mode == "open":
        tasks: set[asyncio.Task] = set()
        # worker k of K sends the requests k, k+K, ... of one schedule at rate * K
        schedule = arrival_times(spec.rate, spec.duration, start + spec.worker / (spec.rate * spec.workers))
        for i, due in enumerate(schedule):
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                result.late_max = max(result.late_max, -wait)
            if len(tasks) >= spec.max_in_flight:
                # the service is this far behind: recording the arrival as failed keeps the
                # generator from opening connections without end (status -1: not sent)
                result.shed += 1
                result.n.append(i * spec.workers + spec.worker)
                result.status.append(-1)
                result.due.append(due)
                result.done.append(due)
                continue
            task = asyncio.create_task(send(i * spec.workers + spec.worker, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=spec.timeout + 5)
    else:
        raise ValueError(f"unknown mode {spec.mode}")
    result.ended = time.monotonic()
    for pool in idle:
        for conn in pool:
            conn.close()
    return result


def run_load(spec: LoadSpec) -> LoadResult:
    """Entry point of a generator worker process."""
    return asyncio.run(_run(spec))


def merge(results: list[LoadResult]) -> LoadResult:
    out = LoadResult(started=min(r.started for r in results), ended=max(r.ended for r in results),
                     mode=results[0].mode, duration=results[0].duration)
    for r in results:
        out.n += r.n
        out.status += r.status
        out.due += r.due
        out.done += r.done
        out.errors += r.errors
        out.late_max = max(out.late_max, r.late_max)
        out.shed += r.shed
    return out
