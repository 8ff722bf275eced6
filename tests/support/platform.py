"""Start the five services as real processes (uvicorn via `python -m services.<context> serve`)
on fresh databases and an isolated topic prefix, against the local PostgreSQL and Kafka."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import asyncpg
import httpx
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.support.infra import KAFKA, asyncpg_dsn, sqlalchemy_url
from tests.support.kafka import EVENT_TOPIC_CONFIG

CONTEXTS = ("invoicing", "cash_application", "collections", "disputes", "reporting")
PUBLISHERS = ("invoicing", "cash_application", "collections", "disputes")
ROOT = Path(__file__).resolve().parents[2]


# Test servers listen below the kernel's ephemeral range (32768-60999 on Linux): a port the
# kernel hands out for outgoing connections can be taken by a client just as a server starts.
LISTEN_PORTS = range(20000, 32000)


def free_port() -> int:
    import random

    for _ in range(200):
        port = random.choice(LISTEN_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in the listening range")


@dataclass
class Platform:
    urls: dict[str, str]
    topic_prefix: str
    databases: dict[str, str]
    logs: dict[str, Path]

    def topic(self, context: str) -> str:
        return f"{self.topic_prefix}.{context}.events"


async def _wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{url} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                r = await client.get(f"{url}/readyz")
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError(f"{url} not ready in {timeout}s:\n{log.read_text()[-3000:]}")


async def create_event_topics(prefix: str) -> list[str]:
    """The publishing contexts' topics under a prefix, configured as scripts/kafka.sh does."""
    topics = [f"{prefix}.{c}.events" for c in PUBLISHERS]
    kafka_admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await kafka_admin.start()
    try:
        await kafka_admin.create_topics([NewTopic(t, 3, 1, topic_configs=EVENT_TOPIC_CONFIG) for t in topics])
    finally:
        await kafka_admin.close()
    return topics


@asynccontextmanager
async def running_platform(log_dir: Path, extra_env: dict[str, str] | None = None) -> AsyncIterator[Platform]:
    """extra_env: more environment for the service processes, e.g. LEDGERLINE_COLLECTIONS_SMTP_PORT."""
    run_id = uuid.uuid4().hex[:8]
    prefix = f"e2e{run_id}"
    admin_pg = await asyncpg.connect(asyncpg_dsn("postgres"))
    databases = {c: f"ll_e2e_{run_id}_{c}" for c in CONTEXTS}
    for name in databases.values():
        await admin_pg.execute(f'CREATE DATABASE "{name}"')
    await admin_pg.close()
    await create_event_topics(prefix)

    log_dir.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    urls, logs = {}, {}
    try:
        for context in CONTEXTS:
            port = free_port()
            env_prefix = f"LEDGERLINE_{context.upper()}_"
            env = {**os.environ,
                   env_prefix + "DATABASE_URL": sqlalchemy_url(databases[context]),
                   env_prefix + "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
                   env_prefix + "PORT": str(port),
                   env_prefix + "ROLE": "all",
                   env_prefix + "TOPIC_PREFIX": prefix,
                   env_prefix + "LOG_LEVEL": "WARNING",
                   # Closed by default: open mode is asked for explicitly (it changes nothing
                   # for a service that extra_env gives API keys).
                   env_prefix + "ALLOW_OPEN": "true",
                   **(extra_env or {})}
            log = log_dir / f"{context}.log"
            logs[context] = log
            procs[context] = subprocess.Popen([sys.executable, "-m", f"services.{context}", "serve"], cwd=ROOT, env=env,
                                              stdout=log.open("w"), stderr=subprocess.STDOUT)
            urls[context] = f"http://127.0.0.1:{port}"
        await asyncio.gather(*[_wait_ready(urls[c], procs[c], logs[c]) for c in CONTEXTS])
        yield Platform(urls=urls, topic_prefix=prefix, databases=databases, logs=logs)
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        admin_pg = await asyncpg.connect(asyncpg_dsn("postgres"))
        for name in databases.values():
            await admin_pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin_pg.close()


async def eventually(probe, timeout: float = 60.0, interval: float = 0.25):
    """Poll an async probe until it returns a truthy value; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not reached within {timeout}s (last: {last!r})")
