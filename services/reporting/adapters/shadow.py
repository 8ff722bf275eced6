"""A shadow read model for the batch rebuild: the fact tables (and the views over them) are
copied empty into a schema of their own, with the same columns, defaults, identities, checks,
constraints and index names; the rebuild fills them while readers keep reading the live ones;
then `swap` moves the live tables out and the shadow ones in, by renames only (catalog
changes, milliseconds), and drops the old ones. Writes to the shadow go through the search
path: unqualified names resolve to the shadow first."""
from __future__ import annotations

import asyncio
import logging
from typing import Sequence

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db_errors import sqlstate

log = logging.getLogger(__name__)

SHADOW = "reporting_rebuild"
RETIRED = "reporting_retired"
LOCK_NOT_AVAILABLE = "55P03"


async def _views(conn: AsyncConnection) -> list[tuple[str, str]]:
    """The live schema's views with their definitions, in creation order (dependencies first)."""
    rows = await conn.execute(text(
        "SELECT c.relname, pg_get_viewdef(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relkind = 'v' ORDER BY c.oid"))
    return [(r[0], r[1]) for r in rows]


async def create(conn: AsyncConnection, tables: Sequence[str]) -> str:
    """An empty shadow of the live tables and views, then the search path set (for this
    transaction) to write into it. Returns the live schema's name."""
    live = (await conn.execute(text("SELECT current_schema()"))).scalar_one()
    views = await _views(conn)
    await conn.execute(text(f"DROP SCHEMA IF EXISTS {SHADOW} CASCADE"))
    await conn.execute(text(f"CREATE SCHEMA {SHADOW}"))
    for table in tables:
        await conn.execute(text(
            f"CREATE TABLE {SHADOW}.{table} (LIKE {live}.{table} INCLUDING DEFAULTS INCLUDING IDENTITY"
            " INCLUDING GENERATED INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS)"))
        # Primary keys, unique and exclusion constraints under their own names, then the other
        # indexes under theirs (names are per schema): after the swap the catalog reads as before.
        constraints = await conn.execute(text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = CAST(:t AS regclass) AND contype IN ('p', 'u', 'x') ORDER BY oid"),
            {"t": f"{live}.{table}"})
        for name, definition in constraints.all():
            await conn.execute(text(f'ALTER TABLE {SHADOW}.{table} ADD CONSTRAINT "{name}" {definition}'))
        indexes = await conn.execute(text(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = CAST(:t AS regclass)"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) ORDER BY i.indexrelid"),
            {"t": f"{live}.{table}"})
        for (definition,) in indexes.all():
            await conn.execute(text(definition.replace(f" ON {live}.{table} ", f" ON {SHADOW}.{table} ", 1)))
    await conn.execute(text(f"SET LOCAL search_path = {SHADOW}, {live}"))
    for name, definition in views:  # bound to the shadow tables by the search path
        await conn.execute(text(f"CREATE VIEW {SHADOW}.{name} AS {definition}"))
    return live


async def swap(conn: AsyncConnection, tables: Sequence[str], live: str, *, lock_timeout_ms: int = 200,
               attempts: int = 1200) -> None:
    """Move the live tables and views out and the shadow ones in, in the caller's transaction.
    Each try waits at most lock_timeout_ms for a running report to finish (readers queue behind
    a waiting rename, so it never waits long), then backs off and tries again."""
    views = [name for (name,) in (await conn.execute(text(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = :s AND c.relkind = 'v'"), {"s": SHADOW})).all()]
    for attempt in range(attempts):
        try:
            async with conn.begin_nested():
                await conn.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'"))
                await conn.execute(text(f"DROP SCHEMA IF EXISTS {RETIRED} CASCADE"))
                await conn.execute(text(f"CREATE SCHEMA {RETIRED}"))
                for name in views:
                    await conn.execute(text(f"ALTER VIEW IF EXISTS {live}.{name} SET SCHEMA {RETIRED}"))
                for table in tables:
                    await conn.execute(text(f"ALTER TABLE {live}.{table} SET SCHEMA {RETIRED}"))
                for table in tables:
                    await conn.execute(text(f"ALTER TABLE {SHADOW}.{table} SET SCHEMA {live}"))
                for name in views:
                    await conn.execute(text(f"ALTER VIEW {SHADOW}.{name} SET SCHEMA {live}"))
                await conn.execute(text("SET LOCAL lock_timeout = 0"))
            break
        except DBAPIError as exc:
            if sqlstate(exc) != LOCK_NOT_AVAILABLE or attempt == attempts - 1:
                raise
            log.info("rebuild swap: a report holds a table; trying again (%d)", attempt + 1)
            await asyncio.sleep(min(0.05 * (attempt + 1), 1.0))
    await conn.execute(text(f"SET LOCAL search_path = {live}"))
    await conn.execute(text(f"DROP SCHEMA {RETIRED} CASCADE"))
    await conn.execute(text(f"DROP SCHEMA {SHADOW}"))
