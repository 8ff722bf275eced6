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


async def test_a_serving_process_starts_its_parse_worker_before_the_first_file() -> None:
    """main.definition's on_serve: the worker process is running (its modules imported) when the
    service starts serving, not when the first file arrives; an API-less role starts none."""
    from services.cash_application.settings import CashApplicationSettings

    assert chunked_imports.start_worker_processes in definition().on_serve
    await chunked_imports.start_worker_processes(CashApplicationSettings(database_url="x", role="worker"))
    assert imports._POOL is None
    try:
        await chunked_imports.start_worker_processes(CashApplicationSettings(database_url="x"))
        pool = imports._POOL
        assert pool is not None and len(pool._processes) == 1  # started, before any file asked for it
        assert pool.submit(os.getpid).result(timeout=60) != os.getpid()
        assert len(pool._processes) == 1  # the same process answers
    finally:
        await chunked_imports.stop_worker_processes()
