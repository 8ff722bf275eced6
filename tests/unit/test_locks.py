"""The image's runtime lock stays a subset of the full lock, at the same versions, and carries
no test tools."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            package, version = line.strip().split("==", 1)
            pins[package.lower().replace("_", "-")] = version
    return pins


def test_runtime_lock_is_a_pinned_subset_of_the_full_lock():
    full, runtime = _pins("requirements.lock"), _pins("requirements-runtime.lock")
    assert runtime and all(full.get(p) == v for p, v in runtime.items()), "run make lock"
    for required in ("fastapi", "aiokafka", "asyncpg", "sqlalchemy", "uvicorn", "opentelemetry-sdk", "iso4217"):
        assert required in runtime
    for tool in ("pytest", "hypothesis", "import-linter", "kubernetes-validate"):
        assert tool not in runtime
