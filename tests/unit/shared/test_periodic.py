"""Periodic tasks of worker processes: repeated, failures reported and retried, stopped cleanly."""
from __future__ import annotations

import asyncio

from shared.service import PeriodicTask, Runtime, ServiceDefinition
from shared.settings import ServiceSettings


async def test_periodic_task_repeats_reports_failures_and_stops():
    calls: list[int] = []

    async def work(runtime: Runtime) -> None:
        calls.append(len(calls))
        if len(calls) == 2:
            raise ConnectionError("smtp down")

    definition = ServiceDefinition(
        context="test", title="t", settings=ServiceSettings(role="worker", database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none"), migrations_package="shared.migrations",
        publishes=False, periodic=[PeriodicTask("deliver", lambda settings: 0.01, work)])
    runtime = Runtime(definition)
    runtime.start_workers()
    try:
        for _ in range(200):
            if len(calls) >= 2 and "deliver" in runtime.periodic_errors:
                break
            await asyncio.sleep(0.005)
        assert runtime.periodic_errors["deliver"] == "ConnectionError: smtp down"
        for _ in range(200):  # the failure did not stop the loop; the next success clears it
            if len(calls) >= 4:
                break
            await asyncio.sleep(0.005)
        assert len(calls) >= 4 and "deliver" not in runtime.periodic_errors
    finally:
        await runtime.stop_workers()
        await runtime.dispose()
    stopped_at = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == stopped_at
