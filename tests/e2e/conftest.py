import pytest

from tests.support.platform import running_platform


@pytest.fixture(scope="session")
async def platform(artifacts_dir):
    async with running_platform(artifacts_dir / "e2e-logs") as running:
        yield running
