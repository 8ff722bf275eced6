"""The cash application's worker processes end with the service (main.definition's on_stop)."""
import os

from services.cash_application.application import chunked_imports, imports
from services.cash_application.main import definition


async def test_the_parse_worker_and_the_matching_process_exit_when_the_service_stops() -> None:
    parse_pool = imports._parse_pool(1)
    parse_pid = parse_pool.submit(os.getpid).result(timeout=60)
    assert parse_pid != os.getpid()
    processes = list(parse_pool._processes.values())

    await chunked_imports.stop_worker_processes()

    assert all(not process.is_alive() for process in processes)
    assert imports._POOL is None  # the next file starts a new worker
    assert chunked_imports._MATCH_POOL is None


def test_the_service_stops_its_worker_processes() -> None:
    assert chunked_imports.stop_worker_processes in definition().on_stop
