"""The platform benchmark's statistics and its load generator's rate control (bench/platform):
nearest-rank percentiles, the open-loop schedule, and a generator run against a local responder
that answers slowly (an open loop keeps its rate and counts the wait in the latency; a closed
loop slows down with the answers)."""
from __future__ import annotations

import asyncio
import math
import time

import pytest

from bench.platform import loadgen
from bench.platform.stats import arrival_times, percentile, summary_ms, sustained_rate


def test_percentile_is_nearest_rank() -> None:
    samples = list(range(1, 101))  # 1..100
    assert percentile(samples, 50) == 50
    assert percentile(samples, 99) == 99
    assert percentile(samples, 100) == 100
    assert percentile([7.0], 99) == 7.0
    # one slow request in 200 is not the p99; three are
    assert percentile([1.0] * 199 + [9.0], 99) == 1.0
    assert percentile([1.0] * 197 + [9.0] * 3, 99) == 9.0
    assert percentile(list(reversed(samples)), 50) == 50  # order of the input does not matter
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(samples, 0)


def test_summary_in_milliseconds() -> None:
    s = summary_ms([0.010, 0.020, 0.030, 0.040])
    assert s == {"n": 4, "p50": 20.0, "p99": 40.0, "max": 40.0}


def test_arrival_schedule_is_a_constant_rate() -> None:
    times = arrival_times(200, 2.0, start=10.0)
    assert len(times) == 400
    assert times[0] == 10.0
    assert times[-1] == pytest.approx(10.0 + 399 / 200)
    gaps = {round(b - a, 9) for a, b in zip(times, times[1:])}
    assert gaps == {0.005}
    assert len(arrival_times(3, 1.0)) == 3
    with pytest.raises(ValueError):
        arrival_times(0, 1.0)


def test_sustained_rate_counts_the_window_after_warmup() -> None:
    completions = [0.5, 1.5, 2.0, 2.5, 3.0, 9.0]
    assert sustained_rate(completions, start=0.0, end=3.0, warmup=1.0) == pytest.approx(4 / 2.0)


def test_invoice_bodies_are_deterministic() -> None:
    customers = [("A", "USD"), ("B", "EUR")]
    body = loadgen.invoice_body("o-", 3, customers)
    assert body["invoice_id"] == "o-0000003"
    assert (body["customer_id"], body["currency"]) == ("B", "EUR")
    assert body["lines"][0]["unit_price"] == loadgen.amount_of(3)
    amounts = {loadgen.amount_of(n) for n in range(1000)}
    assert all(a.count(".") == 1 and len(a.split(".")[1]) == 2 for a in amounts)
    assert len(amounts) == 1000


class _SlowResponder(asyncio.Protocol):
    """Answers each request with a 201 after `delay` seconds, one request at a time per
    connection (like a server busy with each request)."""

    delay = 0.05

    def connection_made(self, transport) -> None:
        self.transport, self.buffer, self.queue = transport, b"", asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self.answer())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = int([l for l in self.buffer[:end].split(b"\r\n") if l.lower().startswith(b"content-length")][0]
                         .split(b":")[1])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            self.queue.put_nowait(None)

    async def answer(self) -> None:
        while True:
            await self.queue.get()
            await asyncio.sleep(self.delay)
            self.transport.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}")

    def connection_lost(self, exc) -> None:
        self.task.cancel()


async def _run_against_responder(mode: str, **kwargs) -> loadgen.LoadResult:
    server = await asyncio.get_running_loop().create_server(_SlowResponder, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        spec = loadgen.LoadSpec(targets=[f"127.0.0.1:{port}"], path="/x", mode=mode, prefix="t-",
                                customers=[("A", "USD")], start_at=time.monotonic(), **kwargs)
        return await loadgen._run(spec)
    finally:
        server.close()


def test_open_loop_keeps_its_rate_and_counts_slow_answers_as_latency() -> None:
    result = asyncio.run(_run_against_responder("open", rate=100, duration=1.0))
    assert len(result.n) == 100
    assert set(result.status) == {201}
    assert sorted(result.n) == list(range(100))
    latencies = [d - due for d, due in zip(result.done, result.due)]
    # every answer takes >= 50 ms, none is lost in queueing behind another (a connection each)
    assert min(latencies) >= 0.05
    assert percentile(latencies, 50) < 0.2
    dues = sorted(result.due)
    assert dues[-1] - dues[0] == pytest.approx(0.99, abs=1e-6)


def test_closed_loop_rate_follows_the_answers() -> None:
    result = asyncio.run(_run_against_responder("closed", concurrency=4, duration=1.0))
    # 4 clients x (1 s / 50 ms) = about 80 requests, never many more
    assert 40 <= len(result.n) <= 90
    assert set(result.status) == {201}
    assert len(set(result.n)) == len(result.n)  # every request its own invoice number


def test_open_loop_sheds_arrivals_beyond_the_in_flight_cap() -> None:
    # 100/s against 50 ms answers needs about 5 requests in flight; with 2 allowed, the rest of
    # the arrivals are recorded as not sent (-1), never queued without end
    result = asyncio.run(_run_against_responder("open", rate=100, duration=1.0, max_in_flight=2))
    assert len(result.n) == 100
    assert result.shed == result.status.count(-1) > 30
    assert result.status.count(201) == 100 - result.shed
