"""SIGTERM (what Kubernetes and `docker compose stop` send) drains in-flight requests: a service
under steady concurrent writes is told to stop, and every request it had accepted completes;
requests after that are refused at connect, and the process exits 0 after stopping its relay and
consumers. A connection the kernel completed in the listener's backlog but the server never
accepted is reset when the listener closes (the client reads an error, whatever the server does):
such a request must come after the signal and must not have been processed, so the client's
retry with its Idempotency-Key is safe. Real process, real PostgreSQL and Kafka."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid

import httpx
from sqlalchemy import text as text_sql
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.infra import KAFKA, fresh_database, sqlalchemy_url
from tests.support.platform import ROOT, _wait_ready, free_port


async def test_sigterm_drains_in_flight_requests_and_exits_cleanly(artifacts_dir):
    async with fresh_database("drain") as database:
        port = free_port()
        log = artifacts_dir / "graceful-shutdown-invoicing.log"
        env = {**os.environ, "LEDGERLINE_INVOICING_DATABASE_URL": sqlalchemy_url(database),
               "LEDGERLINE_INVOICING_KAFKA_BOOTSTRAP_SERVERS": KAFKA, "LEDGERLINE_INVOICING_PORT": str(port),
               "LEDGERLINE_INVOICING_ROLE": "all", "LEDGERLINE_INVOICING_TOPIC_PREFIX": f"drain{uuid.uuid4().hex[:6]}",
               "LEDGERLINE_INVOICING_ALLOW_OPEN": "true", "LEDGERLINE_INVOICING_LOG_LEVEL": "INFO",
               "LEDGERLINE_INVOICING_SHUTDOWN_GRACE_SECONDS": "20"}
        proc = subprocess.Popen([sys.executable, "-m", "services.invoicing", "serve"], cwd=ROOT, env=env,
                                stdout=log.open("w"), stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            await _wait_ready(url, proc, log)
            completed, refused, cut_off = [], [], []
            signalled = asyncio.Event()

            async def writer(client: httpx.AsyncClient, n: int) -> None:
                i = 0
                while True:
                    i += 1
                    body = {"customer_id": f"C-{n}-{i}", "name": f"Customer {n}/{i}", "currency": "USD",
                            "payment_terms_days": 30, "credit_limit": "1000.00"}
                    try:
                        r = await client.post(f"{url}/v1/customers", json=body,
                                              headers={"Idempotency-Key": str(uuid.uuid4())})
                    except httpx.ConnectError:
                        refused.append(n)
                        return  # the listener is closed: nothing was accepted, nothing lost
                    except httpx.HTTPError as exc:  # reset: it must not have been processed (below)
                        cut_off.append((signalled.is_set(), body["customer_id"], repr(exc)))
                        return
                    completed.append((signalled.is_set(), r.status_code))
                    if signalled.is_set() and len([c for c in completed if c[0]]) > 200:
                        return

            # One connection per request: a request either reaches the listener or is refused.
            limits = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                writers = [asyncio.create_task(writer(client, n)) for n in range(12)]
                await asyncio.sleep(3)
                proc.send_signal(signal.SIGTERM)
                signalled.set()
                await asyncio.wait_for(asyncio.gather(*writers), timeout=60)
            code = await asyncio.to_thread(proc.wait, 40)
        finally:
            if proc.poll() is None:
                proc.kill()
        text = log.read_text()
        assert all(after for after, _, _ in cut_off), f"a request failed before SIGTERM: {cut_off[:5]}\n{text[-2000:]}"
        engine = create_async_engine(sqlalchemy_url(database))
        try:
            async with engine.connect() as conn:
                processed = (await conn.execute(text_sql("SELECT customer_id FROM customers WHERE customer_id = ANY(:ids)"),
                                                {"ids": [c for _, c, _ in cut_off]})).scalars().all()
        finally:
            await engine.dispose()
        assert processed == [], f"requests processed, then cut off without their answer: {processed}"
        assert completed and all(status == 201 for _, status in completed), completed[:10]
        # uvicorn finishes its shutdown, then re-raises the signal it caught: exit by SIGTERM
        assert code in (0, -signal.SIGTERM), text[-3000:]
        assert "Application shutdown complete" in text and "Finished server process" in text, text[-2000:]
        print(f"{len(completed)} requests completed ({sum(1 for s, _ in completed if s)} finished after SIGTERM), "
              f"{len(refused)} writers refused at connect after the listener closed, {len(cut_off)} reset in the "
              f"backlog (none processed)")
