"""One fault experiment: steady load, a fault, its end, then convergence of every read model to
what was accepted, with /readyz sampled all along. Figures go to artifacts/faults/<name>.json.

Time is measured from the experiment's start (seconds, monotonic). The recovery time is from the
fault's end to the first moment every read model equals the ledger; every wait is a polled
condition with an explicit bound."""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import httpx

from tests.faults.load import LoadGenerator
from tests.faults.readmodels import differences, shown
from tests.support.platform import Platform, ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "faults"


@dataclass
class Sample:
    t: float
    instance: str
    status: int | None  # None: no answer within the probe's timeout
    body: dict[str, Any] | None

    @property
    def ready(self) -> bool:
        return self.status == 200

    def state(self) -> str:
        if self.status is None:
            return "no answer"
        return "ready" if self.status == 200 else f"not ready ({self.status})"


def _brief(body: dict[str, Any] | None) -> dict[str, Any] | None:
    """The checks worth keeping in a timeline: their flags and whether they report an error,
    not the counters or the error's text (which changes with every retry)."""
    if not isinstance(body, dict):
        return None
    out: dict[str, Any] = {}
    for name, check in (body.get("checks") or {}).items():
        if isinstance(check, dict):
            flags: dict[str, Any] = {k: v for k, v in check.items() if isinstance(v, bool)}
            if any(check.get(k) for k in ("last_error", "error", "reason")):
                flags["error"] = True
            out[name] = flags
        else:
            out[name] = check if check == "ok" else str(check)[:80]
    return out


class ReadinessProbe:
    """GET /readyz of every live instance every `interval` seconds."""

    def __init__(self, platform: Platform, clock: Callable[[], float], interval: float = 1.0,
                 timeout: float = 2.5) -> None:
        self.platform = platform
        self.clock = clock
        self.interval = interval
        self.timeout = timeout
        self.samples: list[Sample] = []
        self.watched: dict[str, ServiceProcess] = {}
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()

    def watch(self, instance: ServiceProcess) -> None:
        self.watched[instance.name] = instance

    def start(self) -> None:
        for instances in self.platform.instances.values():
            for instance in instances:
                self.watch(instance)
        self._task = asyncio.create_task(self._loop(), name="readiness-probe")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task:
            await self._task

    async def _loop(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            while not self._stopping.is_set():
                for instances in self.platform.instances.values():
                    for instance in instances:
                        self.watch(instance)
                await asyncio.gather(*(self._probe(client, i) for i in list(self.watched.values())))
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=self.interval)
                except asyncio.TimeoutError:
                    pass

    async def _probe(self, client: httpx.AsyncClient, instance: ServiceProcess) -> None:
        t = self.clock()
        if not instance.alive() and any(i.alive() and i.port == instance.port for i in self.platform.every_process):
            # Dead, its port taken over by its replacement: the answer would be the replacement's.
            self.samples.append(Sample(t, instance.name, None, None))
            return
        try:
            r = await client.get(f"{instance.url}/readyz")
            try:
                body = r.json()
            except ValueError:
                body = {"text": r.text[:200]}
            self.samples.append(Sample(t, instance.name, r.status_code, body))
        except httpx.HTTPError:
            self.samples.append(Sample(t, instance.name, None, None))

    def of(self, instance: str, since: float = float("-inf"), until: float = float("inf")) -> list[Sample]:
        return [s for s in self.samples if s.instance == instance and since <= s.t < until]

    def timeline(self) -> dict[str, list[dict[str, Any]]]:
        """Per instance, each change of state with the checks that explain it."""
        out: dict[str, list[dict[str, Any]]] = {}
        for name in self.watched:
            last = None
            for s in self.of(name):
                key = (s.state(), json.dumps(_brief(s.body), sort_keys=True, default=str))
                if key != last:
                    out.setdefault(name, []).append({"t": round(s.t, 1), "state": s.state(), "checks": _brief(s.body)})
                    last = key
        return out


@dataclass
class Experiment:
    name: str
    platform: Platform
    load: LoadGenerator
    convergence_bound: float
    description: str = ""
    started: float = field(default_factory=time.monotonic)
    marks: dict[str, float] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    probe: ReadinessProbe | None = None
    outcome: str = "running"
    _log_sizes: dict[str, dict[str, int]] = field(default_factory=dict)

    def clock(self) -> float:
        return time.monotonic() - self.started

    def mark(self, name: str) -> float:
        self.marks[name] = self.clock()
        if name in ("fault_start", "fault_end"):
            self._log_sizes[name] = self._log_bytes()
        return self.marks[name]

    def _log_bytes(self) -> dict[str, int]:
        return {i.name: i.log.stat().st_size for i in self.platform.every_process if i.log.exists()}

    def log_growth(self) -> dict[str, int]:
        """Bytes each service process logged during the fault (a retry storm shows here)."""
        before, after = self._log_sizes.get("fault_start", {}), self._log_sizes.get("fault_end", {})
        return {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name)}

    async def begin(self) -> None:
        self.started = time.monotonic()
        self.load.clock = lambda: time.monotonic() - self.started
        self.load.attempts.clear()
        self.probe = ReadinessProbe(self.platform, self.clock)
        self.probe.start()
        self.load.start()
        self.mark("load_start")

    async def hold(self, seconds: float) -> None:
        """Let the load run (the fault's own length, or steady load before and after it)."""
        await asyncio.sleep(seconds)

    async def wait_for(self, what: str, probe: Callable[[], Awaitable[Any]], bound: float,
                       interval: float = 0.5) -> tuple[Any, float]:
        """Poll `probe` until truthy within `bound` seconds; returns (value, seconds taken)."""
        started = self.clock()
        last = None
        while self.clock() - started < bound:
            last = await probe()
            if last:
                return last, self.clock() - started
            await asyncio.sleep(interval)
        raise AssertionError(f"{self.name}: {what} not reached within {bound}s (last: {last!r})")

    async def converge(self) -> float:
        """Stop the load (each client's last request retried until accepted), then poll every
        read model until all equal the ledger. Returns the recovery time (from the fault's end)."""
        fault_end = self.marks.get("fault_end", self.clock())
        self.figures["load_drain_s"] = round(await self.load.stop(), 2)
        self.mark("load_stop")
        last: list[str] = []
        async with httpx.AsyncClient(timeout=20) as client:
            while self.clock() - fault_end < self.convergence_bound:
                last = await differences(client, self.platform.urls, self.load.ledger)
                if not last:
                    converged = self.mark("converged")
                    self.figures["recovery_s"] = round(converged - fault_end, 2)
                    return converged - fault_end
                await asyncio.sleep(0.5)
        self.figures["unconverged"] = last[:50]
        raise AssertionError(f"{self.name}: read models differ from the accepted writes {self.convergence_bound}s"
                             f" after the fault ended ({len(last)} differences):\n{shown(last)}")

    async def finish(self) -> None:
        if self.probe:
            await self.probe.stop()

    def record(self, outcome: str) -> Path:
        self.outcome = outcome
        ledger = self.load.ledger
        fault_start, fault_end = self.marks.get("fault_start"), self.marks.get("fault_end")
        body = {
            "experiment": self.name,
            "description": self.description,
            "outcome": outcome,
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "marks_s": {k: round(v, 2) for k, v in self.marks.items()},
            "fault_s": round(fault_end - fault_start, 2) if fault_start is not None and fault_end is not None else None,
            "convergence_bound_s": self.convergence_bound,
            "figures": self.figures,
            "service_log_bytes_during_fault": self.log_growth(),
            "load": {
                "clients": self.load.clients,
                "accepted_total_so_far": {"customers": len(ledger.customers), "invoices": len(ledger.invoices),
                                          "payments": len(ledger.payments), "deductions": len(ledger.deductions)},
                "requests_before_fault": self.load.summary(0, fault_start) if fault_start is not None else None,
                "requests_during_fault": self.load.summary(fault_start, fault_end) if fault_start is not None else None,
                "requests_after_fault": self.load.summary(fault_end) if fault_end is not None else None,
                "rejected": self.load.rejections[:20],
            },
            "readiness": self.probe.timeline() if self.probe else {},
        }
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}.json"
        path.write_text(json.dumps(body, indent=2, default=str))
        return path
