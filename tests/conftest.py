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


@pytest.fixture(scope="session")
def artifacts_dir() -> pathlib.Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


os.environ.setdefault("PYTHONHASHSEED", "0")
