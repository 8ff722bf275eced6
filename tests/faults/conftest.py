"""Fixtures of the fault suite (make test-faults): its own PostgreSQL and Kafka for the whole
session, and per test module a fresh platform (five service processes, fresh databases and
topics) with a load generator whose ledger carries over from one experiment to the next."""
from __future__ import annotations

import re
import signal
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

import pytest

from tests.faults.harness import ARTIFACTS, Experiment
from tests.faults.infra import FaultInfra
from tests.faults.load import LoadGenerator
from tests.support.platform import Platform, running_platform


@dataclass
class Faults:
    platform: Platform
    infra: FaultInfra
    load: LoadGenerator

    @asynccontextmanager
    async def experiment(self, name: str, convergence_bound: float, description: str) -> AsyncIterator[Experiment]:
        """Steady load and readiness probing from entry; figures recorded however it ends. On a
        failure the infrastructure is brought back up, so the next experiment starts whole."""
        exp = Experiment(name, self.platform, self.load, convergence_bound, description)
        await exp.begin()
        outcome = "failed"
        try:
            yield exp
            outcome = "passed"
        finally:
            if self.load.running:
                await self.load.abort()
            await exp.finish()
            exp.record(outcome)
            if outcome != "passed":
                await self.infra.up()
                for instances in self.platform.instances.values():
                    for instance in instances:
                        instance.signal(signal.SIGCONT)


@pytest.fixture(scope="session")
async def fault_infra() -> AsyncIterator[FaultInfra]:
    infra = FaultInfra.from_env()
    await infra.up()
    try:
        yield infra
    finally:
        await infra.down()


@pytest.fixture(scope="module")
async def faults(fault_infra: FaultInfra, request) -> AsyncIterator[Faults]:
    module = re.sub(r"^test_", "", request.module.__name__.rsplit(".", 1)[-1])
    async with running_platform(ARTIFACTS / "logs" / module, endpoints=fault_infra.endpoints) as platform:
        yield Faults(platform, fault_infra, LoadGenerator(lambda: platform.urls))
