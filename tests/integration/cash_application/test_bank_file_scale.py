"""Imports at scale on a real PostgreSQL database: the body is refused (413) before it is read
past the limit, declared or streamed; and while a large file is parsed (worker process) and
matched (worker thread), the service keeps answering its health check (the latency of those
answers at 100,000 receipts is measured by make bench-cash, not asserted here)."""
from __future__ import annotations

import asyncio
from datetime import date, timedelta

import pytest

from services.cash_application.main import definition
from services.cash_application.settings import CashApplicationSettings
from tests.support.infra import idem, service_client


@pytest.fixture
async def small_limit():
    settings = CashApplicationSettings(max_file_bytes=2_000)
    async with service_client(lambda url: definition(settings.model_copy(update={"database_url": url}))) as (c, app):
        yield c


async def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(small_limit):
    response = await small_limit.post("/v1/bank-files", params={"format": "csv"}, content=b"x" * 2_001,
                                      headers=idem())
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"].endswith("file-too-large") and problem["errors"][0]["field"] == "file"
    assert (await small_limit.get("/v1/bank-files")).json()["data"] == []


async def test_a_streamed_body_is_cut_off_at_the_limit(small_limit):
    sent = 0

    async def body():
        nonlocal sent
        for _ in range(100):  # 100 KB offered in 1 KB chunks, no Content-Length
            sent += 1
            yield b"y" * 1_000

    response = await small_limit.post("/v1/bank-files", params={"format": "csv"}, content=body(), headers=idem())
    assert response.status_code == 413
    assert sent < 100  # the service stopped reading; it did not take the whole body first
    ok = await small_limit.post("/v1/bank-files", params={"format": "csv"},
                                content=b"value_date,amount,currency,text\n2024-01-02,10.00,USD,x\n", headers=idem())
    assert ok.status_code == 201


def _big_csv(receipts: int) -> bytes:
    day = date(2024, 1, 2)
    rows = ["receipt_id,value_date,amount,currency,payer_name,text"]
    for n in range(receipts):
        rows.append(f"R{n},{(day + timedelta(days=n % 20)).isoformat()},{100 + n % 900}.{n % 100:02d},USD,"
                    f"Payer {n % 300},INV-{n}")
    return ("\n".join(rows) + "\n").encode()


async def test_the_health_check_is_answered_while_a_large_file_imports():
    settings = CashApplicationSettings(parse_workers=1)
    async with service_client(lambda url: definition(settings.model_copy(update={"database_url": url}))) as (c, app):
        content = _big_csv(4_000)
        task = asyncio.create_task(c.post("/v1/bank-files", params={"format": "csv"}, content=content,
                                          headers=idem()))
        probes = 0
        while not task.done():
            health = await c.get("/healthz")
            probes += 1
            assert health.status_code == 200
            await asyncio.sleep(0.05)
        response = await task
        assert response.status_code == 201, response.text
        assert response.json()["receipts"] == 4_000
        # Answered all along (how fast is the bench's figure, not a timed test's: make bench-cash).
        assert probes >= 5
