import hypothesis  # noqa: F401  (imported up front: CPython 3.11.7 fails to compile it lazily in
import pytest       # pytest's terminal summary after aiokafka logged a fenced producer's futures)

from shared.db import apply_migrations, make_engine, sql_files
from tests.support.infra import fresh_database, sqlalchemy_url


@pytest.fixture
async def platform_db():
    """A fresh database with the platform tables (events, checkpoints, inbox, ...). Yields (engine, url)."""
    async with fresh_database("shared") as name:
        url = sqlalchemy_url(name)
        engine = make_engine(url, pool_size=20, max_overflow=40)
        await apply_migrations(engine, sql_files("shared.migrations", "."))
        try:
            yield engine, url
        finally:
            await engine.dispose()
