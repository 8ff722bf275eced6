"""The fault suite's own PostgreSQL cluster and Kafka broker: scripts/pg.sh and scripts/kafka.sh
with another state folder (LEDGERLINE_STATE_DIR) and other ports, so that stopping them never
touches the developer's infrastructure (make infra-up) nor anyone else's.

Ports (all below the kernel's ephemeral range 32768-60999), overridable for a second run on the
same machine: LEDGERLINE_FAULTS_PG_PORT (26432), LEDGERLINE_FAULTS_KAFKA_PORT (30092),
LEDGERLINE_FAULTS_KAFKA_CONTROLLER_PORT (30093); state in LEDGERLINE_FAULTS_STATE_DIR
(.local/faults)."""
from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.infra import Endpoints

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"


class InfraCommandFailed(RuntimeError):
    pass


@dataclass
class FaultInfra:
    state_dir: Path
    pg_port: int
    kafka_port: int
    kafka_controller_port: int

    @classmethod
    def from_env(cls) -> "FaultInfra":
        env = os.environ
        return cls(
            state_dir=Path(env.get("LEDGERLINE_FAULTS_STATE_DIR", str(ROOT / ".local" / "faults"))).resolve(),
            pg_port=int(env.get("LEDGERLINE_FAULTS_PG_PORT", "26432")),
            kafka_port=int(env.get("LEDGERLINE_FAULTS_KAFKA_PORT", "30092")),
            kafka_controller_port=int(env.get("LEDGERLINE_FAULTS_KAFKA_CONTROLLER_PORT", "30093")),
        )

    def __post_init__(self) -> None:
        for port in (self.pg_port, self.kafka_port, self.kafka_controller_port):
            # In the ephemeral range an outgoing connection may hold the port when a server
            # restarts (issue 13: Kafka could not come back for 11 minutes).
            assert 1024 <= port < 32768, f"port {port} must lie below the ephemeral range 32768-60999"

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints("127.0.0.1", self.pg_port, f"127.0.0.1:{self.kafka_port}")

    def script_env(self) -> dict[str, str]:
        return {**os.environ,
                "LEDGERLINE_STATE_DIR": str(self.state_dir),
                "LEDGERLINE_PG_PORT": str(self.pg_port),
                "LEDGERLINE_KAFKA_PORT": str(self.kafka_port),
                "LEDGERLINE_KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port)}

    async def run(self, script: str, action: str, timeout: float = 240.0) -> float:
        """Runs scripts/<script> <action> without blocking the event loop (the load and the
        readiness probes go on meanwhile); returns how long it took. Raises when it fails."""
        started = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = self.state_dir / f"{script}.{action}.log"
        with log.open("a") as out:
            proc = await asyncio.create_subprocess_exec("bash", str(SCRIPTS / script), action, cwd=ROOT,
                                                        env=self.script_env(), stdout=out, stderr=out,
                                                        stdin=asyncio.subprocess.DEVNULL)
            try:
                rc = await asyncio.wait_for(proc.wait(), timeout)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
                raise InfraCommandFailed(f"scripts/{script} {action} did not finish in {timeout}s (log {log})")
        if rc != 0:
            raise InfraCommandFailed(f"scripts/{script} {action} exited {rc}:\n{log.read_text()[-3000:]}")
        return time.monotonic() - started

    async def up(self) -> None:
        await self.run("pg.sh", "up")
        await self.run("kafka.sh", "up")

    async def down(self) -> None:
        errors = []
        for script in ("kafka.sh", "pg.sh"):
            try:
                await self.run(script, "down")
            except InfraCommandFailed as exc:
                errors.append(str(exc))
        if errors:
            raise InfraCommandFailed("; ".join(errors))
