import gc
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"


FAULTS = pathlib.Path(__file__).resolve().parent / "faults"


def pytest_ignore_collect(collection_path, config):
    """The fault suite (tests/faults, `make test-faults`) runs only when asked for by path: it
    starts its own PostgreSQL and Kafka and takes minutes, so `pytest tests` leaves it out."""
    if collection_path == FAULTS:
        asked = [pathlib.Path(arg.split("::")[0]).resolve() for arg in config.args]
        if not any(a == FAULTS or FAULTS in a.parents for a in asked):
            return True
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = str(item.fspath)
        if "/tests/faults/" in path:
            item.add_marker(pytest.mark.faults)
        if "/tests/integration/" in path:
            item.add_marker(pytest.mark.integration)
        if "/tests/e2e/" in path:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _collect_garbage_between_tests():
    """Finalise the previous test's garbage here, not in the middle of the next test. CPython
    3.11.7 raises SystemError ("AST constructor recursion depth mismatch") when a cyclic
    collection during ast.parse (schemathesis, hypothesis, traceback carets) finalises an
    asyncio future whose "exception was never retrieved" log formats a traceback, which parses
    again (e.g. a fenced Kafka producer's futures left by a relay test)."""
    yield
    gc.collect()
    # What is still alive now (the imported modules, session and module fixtures) moves to the
    # permanent generation, so the next collection scans only what the next test makes: without
    # it each full collection walked every object of the session again (141 s of the 179 s of
    # the unit tests under load, more with the integration suites' imports).
    gc.freeze()


@pytest.fixture(scope="session")
def artifacts_dir() -> pathlib.Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


os.environ.setdefault("PYTHONHASHSEED", "0")
