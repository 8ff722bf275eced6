"""Test helpers for the real local infrastructure (make infra-up): fresh PostgreSQL databases
and in-process service apps. Never a mock or in-memory stand-in."""
from __future__ import annotations

import os
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Callable

import asyncpg
import httpx

PG_HOST = os.environ.get("LEDGERLINE_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("LEDGERLINE_PG_PORT", "25432"))
PG_USER = os.environ.get("LEDGERLINE_PG_USER", "ledgerline")
PG_PASSWORD = os.environ.get("LEDGERLINE_PG_PASSWORD", "ledgerline")
KAFKA = os.environ.get("LEDGERLINE_KAFKA_BOOTSTRAP", f"127.0.0.1:{os.environ.get('LEDGERLINE_KAFKA_PORT', '29092')}")


@dataclass(frozen=True)
class Endpoints:
    """Where a PostgreSQL cluster and a Kafka broker answer: the developer's (LOCAL, from the
    environment) or another pair, such as the fault suite's own (tests/faults)."""

    pg_host: str
    pg_port: int
    kafka: str

    def sqlalchemy_url(self, database: str) -> str:
        return f"postgresql+asyncpg://{PG_USER}:{PG_PASSWORD}@{self.pg_host}:{self.pg_port}/{database}"

    def asyncpg_dsn(self, database: str) -> str:
        return f"postgresql://{PG_USER}:{PG_PASSWORD}@{self.pg_host}:{self.pg_port}/{database}"


LOCAL = Endpoints(PG_HOST, PG_PORT, KAFKA)


def sqlalchemy_url(database: str) -> str:
    return LOCAL.sqlalchemy_url(database)


def asyncpg_dsn(database: str) -> str:
    return LOCAL.asyncpg_dsn(database)


@asynccontextmanager
async def fresh_database(prefix: str = "t") -> AsyncIterator[str]:
    """A new empty database for one test or module; dropped afterwards. Yields its name."""
    name = f"ll_{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(asyncpg_dsn("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield name
    finally:
        admin = await asyncpg.connect(asyncpg_dsn("postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def service_client(make_definition: Callable[[str], object]) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    """Run a service's FastAPI app in-process (API role: no relay or consumers) on a fresh
    database, migrations applied by its lifespan. Yields (client, app)."""
    from shared.service import build_app

    async with fresh_database("svc") as db:
        definition = make_definition(sqlalchemy_url(db))
        definition.settings.role = "api"
        # Closed by default: a test that configures no keys asks for open mode explicitly.
        if not definition.settings.api_keys:
            definition.settings.allow_open = True
        app = build_app(definition)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield client, app


def idem() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}
