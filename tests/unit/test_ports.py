"""Every port the project listens on lies outside the kernel's ephemeral range.

A port inside it can be taken by an outgoing connection (a client retrying against a stopped
broker even connects to itself), and the server then cannot bind it when it restarts."""
from __future__ import annotations

import re
from pathlib import Path

from shared import settings
from tests.support.platform import LISTEN_PORTS

ROOT = Path(__file__).resolve().parents[2]


def ephemeral_range() -> range:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except OSError:  # not Linux: Linux's default range
        return range(32768, 61000)


def script_default(script: str, variable: str) -> int:
    text = (ROOT / "scripts" / script).read_text()
    match = re.search(r"\$\{" + variable + r":-(\d+)\}", text)
    assert match, f"{script} has no default for {variable}"
    return int(match.group(1))


def test_infrastructure_ports_are_outside_the_ephemeral_range() -> None:
    ephemeral = ephemeral_range()
    ports = {
        "PostgreSQL (pg.sh)": script_default("pg.sh", "LEDGERLINE_PG_PORT"),
        "Kafka broker (kafka.sh)": script_default("kafka.sh", "LEDGERLINE_KAFKA_PORT"),
        "Kafka controller (kafka.sh)": script_default("kafka.sh", "LEDGERLINE_KAFKA_CONTROLLER_PORT"),
        "services' PostgreSQL default": int(settings.LOCAL_PG_PORT),
        "services' Kafka default": int(settings.LOCAL_KAFKA.rsplit(":", 1)[1]),
    }
    inside = {name: port for name, port in ports.items() if port in ephemeral}
    assert not inside, f"ports inside the ephemeral range {ephemeral.start}-{ephemeral.stop - 1}: {inside}"


def test_run_script_and_test_servers_listen_outside_the_ephemeral_range() -> None:
    ephemeral = ephemeral_range()
    run = (ROOT / "scripts" / "run.sh").read_text()
    service_ports = [int(p) for p in re.findall(r"\]=(\d+)", run)]
    assert len(service_ports) == 6  # the five services and the workbench
    assert not [p for p in service_ports if p in ephemeral]
    assert LISTEN_PORTS.stop <= ephemeral.start
