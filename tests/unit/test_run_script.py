"""scripts/run.sh keeps a crashed service's log when it starts the service again."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Stands in for the interpreter: `migrate` succeeds, `serve` writes a line and exits (a crash),
# so run.sh's start path runs without PostgreSQL, Kafka or a port.
STUB_PYTHON = """#!/usr/bin/env bash
case "$*" in
  *serve*) echo "stub serve $2"; exit 1 ;;
  *) exit 0 ;;
esac
"""


def test_a_restarted_service_appends_to_its_log_after_a_start_marker(tmp_path: Path) -> None:
    stub = tmp_path / "python"
    stub.write_text(STUB_PYTHON)
    stub.chmod(0o755)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    log = run_dir / "invoicing.log"
    log.write_text("Traceback of the run that crashed\n")
    env = {**os.environ, "LEDGERLINE_RUN_DIR": str(run_dir), "LEDGERLINE_RUN_PYTHON": str(stub)}

    subprocess.run(["bash", str(ROOT / "scripts" / "run.sh"), "up"], env=env, capture_output=True, timeout=60)
    deadline = time.monotonic() + 10
    while "stub serve" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)

    lines = log.read_text().splitlines()
    assert lines[0] == "Traceback of the run that crashed"
    assert lines[1].startswith("===== [run] started ")
    assert "stub serve services.invoicing" in lines[2:]
