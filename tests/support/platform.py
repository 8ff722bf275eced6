"""Start the five services as real processes (uvicorn via `python -m services.<context> serve`)
on fresh databases and an isolated topic prefix, against the local PostgreSQL and Kafka."""
from __future__ import annotations

import asyncio
import os
import signal
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

from tests.support.infra import LOCAL, Endpoints
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


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """The service gets SIGKILL when the test process dies, however it dies (Linux prctl)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class ServiceProcess:
    """One OS process of a service (`python -m services.<context> serve`, role all), in its own
    process group, dying with the test process."""

    context: str
    name: str  # e.g. invoicing#2
    port: int
    log: Path
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Signal the whole process group (uvicorn and anything it started)."""
        if self.alive():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self, timeout: float = 30.0) -> None:
        """SIGKILL and reap."""
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=timeout)

    def terminate(self, timeout: float = 20.0) -> None:
        """SIGTERM (a graceful stop), SIGKILL after `timeout`."""
        self.signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


class Platform:
    """The five services as processes on fresh databases and an isolated topic prefix. Each
    context has a list of live instances; the first is the one `urls` names (what a load
    balancer would route to). Tests may start more instances, kill or restart them."""

    def __init__(self, endpoints: Endpoints, log_dir: Path, run_id: str, extra_env: dict[str, str] | None) -> None:
        self.endpoints = endpoints
        self.log_dir = log_dir
        self.run_id = run_id
        self.topic_prefix = f"e2e{run_id}"
        self.databases = {c: f"ll_e2e_{run_id}_{c}" for c in CONTEXTS}
        self.extra_env = dict(extra_env or {})
        self.instances: dict[str, list[ServiceProcess]] = {c: [] for c in CONTEXTS}
        self.every_process: list[ServiceProcess] = []
        self._started: dict[str, int] = {c: 0 for c in CONTEXTS}

    @property
    def urls(self) -> dict[str, str]:
        return {c: self.instances[c][0].url for c in CONTEXTS if self.instances[c]}

    @property
    def logs(self) -> dict[str, Path]:
        return {c: self.instances[c][0].log for c in CONTEXTS if self.instances[c]}

    def topic(self, context: str) -> str:
        return f"{self.topic_prefix}.{context}.events"

    def service_env(self, context: str, port: int | None = None) -> dict[str, str]:
        """The environment of a process of `context` on this platform."""
        env_prefix = f"LEDGERLINE_{context.upper()}_"
        env = {**os.environ,
               env_prefix + "DATABASE_URL": self.endpoints.sqlalchemy_url(self.databases[context]),
               env_prefix + "KAFKA_BOOTSTRAP_SERVERS": self.endpoints.kafka,
               env_prefix + "ROLE": "all",
               env_prefix + "TOPIC_PREFIX": self.topic_prefix,
               env_prefix + "LOG_LEVEL": "WARNING",
               # Closed by default: open mode is asked for explicitly (it changes nothing
               # for a service that extra_env gives API keys).
               env_prefix + "ALLOW_OPEN": "true",
               **self.extra_env}
        if port is not None:
            env[env_prefix + "PORT"] = str(port)
        return env

    async def cli(self, context: str, *args: str, timeout: float = 120.0) -> str:
        """Run `python -m services.<context> ARGS` (e.g. dead-letters) on this platform; its stdout."""
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", f"services.{context}", *args, cwd=ROOT,
                                                    env=self.service_env(context), stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"services.{context} {' '.join(args)} exited {proc.returncode}: {err.decode()[-2000:]}")
        return out.decode()

    def spawn(self, context: str, port: int | None = None) -> ServiceProcess:
        """Start one more process of `context` (not waiting for it: see `ready`)."""
        port = port or free_port()
        env = self.service_env(context, port)
        self._started[context] += 1
        name = f"{context}#{self._started[context]}"
        log = self.log_dir / f"{context}.{self._started[context]}.log"
        with log.open("a") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen([sys.executable, "-m", f"services.{context}", "serve"], cwd=ROOT, env=env,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, preexec_fn=_die_with_parent)
        instance = ServiceProcess(context, name, port, log, proc)
        self.instances[context].append(instance)
        self.every_process.append(instance)
        return instance

    async def start(self, context: str, port: int | None = None, timeout: float = 90.0) -> ServiceProcess:
        instance = self.spawn(context, port)
        await _wait_ready(instance.url, instance.proc, instance.log, timeout)
        return instance

    def forget(self, instance: ServiceProcess) -> None:
        if instance in self.instances[instance.context]:
            self.instances[instance.context].remove(instance)

    def make_primary(self, instance: ServiceProcess) -> None:
        """Route `urls` to this instance (as a load balancer would after a health check)."""
        self.forget(instance)
        self.instances[instance.context].insert(0, instance)

    def kill(self, instance: ServiceProcess) -> None:
        instance.kill()
        self.forget(instance)

    async def restart(self, instance: ServiceProcess, timeout: float = 90.0) -> ServiceProcess:
        """A new process on the same port in the dead one's place (it must be dead already)."""
        assert not instance.alive(), f"{instance.name} still runs"
        position = self.instances[instance.context].index(instance) if instance in self.instances[instance.context] else 0
        self.forget(instance)
        replacement = self.spawn(instance.context, instance.port)
        self.forget(replacement)
        self.instances[instance.context].insert(position, replacement)
        await _wait_ready(replacement.url, replacement.proc, replacement.log, timeout)
        return replacement

    def stop_all(self) -> None:
        for instance in self.every_process:
            if instance.alive():
                instance.signal(signal.SIGCONT)
                instance.signal(signal.SIGTERM)
        for instance in self.every_process:
            if instance.alive():
                try:
                    instance.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    instance.kill()


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


async def create_event_topics(prefix: str, bootstrap: str = LOCAL.kafka) -> list[str]:
    """The publishing contexts' topics under a prefix, configured as scripts/kafka.sh does."""
    topics = [f"{prefix}.{c}.events" for c in PUBLISHERS]
    kafka_admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await kafka_admin.start()
    try:
        await kafka_admin.create_topics([NewTopic(t, 3, 1, topic_configs=EVENT_TOPIC_CONFIG) for t in topics])
    finally:
        await kafka_admin.close()
    return topics


@asynccontextmanager
async def running_platform(log_dir: Path, extra_env: dict[str, str] | None = None,
                           endpoints: Endpoints = LOCAL) -> AsyncIterator[Platform]:
    """extra_env: more environment for the service processes, e.g. LEDGERLINE_COLLECTIONS_SMTP_PORT.
    endpoints: the PostgreSQL and Kafka to run against (the developer's by default)."""
    platform = Platform(endpoints, log_dir, uuid.uuid4().hex[:8], extra_env)
    admin_pg = await asyncpg.connect(endpoints.asyncpg_dsn("postgres"))
    for name in platform.databases.values():
        await admin_pg.execute(f'CREATE DATABASE "{name}"')
    await admin_pg.close()
    await create_event_topics(platform.topic_prefix, endpoints.kafka)

    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        for context in CONTEXTS:
            platform.spawn(context)
        await asyncio.gather(*[_wait_ready(i.url, i.proc, i.log) for c in CONTEXTS for i in platform.instances[c]])
        yield platform
    finally:
        platform.stop_all()
        admin_pg = await asyncpg.connect(endpoints.asyncpg_dsn("postgres"))
        for name in platform.databases.values():
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
