"""The import's parse workers die with the service process, even when it is SIGKILLed (they used
to live on as orphans, each holding its memory, after a crash or a test run's teardown)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

SERVICE = """
import os, sys
from services.cash_application.application.imports import _parse_pool
pool = _parse_pool(2)
pids = {pool.submit(os.getpid).result(timeout=60) for _ in range(8)}
print(" ".join(map(str, sorted(pids))), flush=True)
sys.stdin.read()  # wait until the test kills this process
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_parse_workers_end_when_the_service_process_is_killed():
    service = subprocess.Popen([sys.executable, "-c", SERVICE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    try:
        workers = [int(p) for p in service.stdout.readline().split()]
        assert workers and service.pid not in workers
        assert all(_alive(p) for p in workers)
        service.send_signal(signal.SIGKILL)
        service.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in workers if _alive(p)], "parse workers outlived the service"
    finally:
        if service.poll() is None:
            service.kill()


NICE = """
import os
from services.cash_application.application.imports import _parse_pool
print(os.nice(0), _parse_pool(1, 7).submit(os.nice, 0).result(timeout=60), flush=True)
"""


def test_parse_workers_run_at_the_import_worker_nice_level():
    """They also match a large file's chunks: their CPU yields to the service's requests."""
    out = subprocess.run([sys.executable, "-c", NICE], capture_output=True, text=True, timeout=120)
    service, worker = map(int, out.stdout.split())
    assert worker == min(19, service + 7), out.stderr
