"""What a failure of the database means for the caller, read from an exception of any layer
(SQLAlchemy, its asyncpg adapter, asyncpg, the socket): the database is out of reach for now
(retry later), the input did not fit a column (a client error), a constraint refused it (a
conflict), or none of these (a bug)."""
from __future__ import annotations

import asyncio
import socket
from enum import Enum
from typing import Iterator

import asyncpg
import sqlalchemy.exc


class DatabaseFailure(Enum):
    UNAVAILABLE = "unavailable"
    INVALID_DATA = "invalid-data"
    CONFLICT = "conflict"


# SQLSTATE classes: 08 connection exception, 53 insufficient resources, 57 operator intervention
# (shutdown, cannot connect now, query canceled), 40 transaction rollback (serialization,
# deadlock: a retry succeeds), 55P03 lock not available, 22 data exception, 23 integrity.
_UNAVAILABLE_STATES = ("08", "53", "57", "40", "55P03")
_INVALID_DATA_STATES = ("22",)
_CONFLICT_STATES = ("23",)

_UNAVAILABLE_TYPES: tuple[type[BaseException], ...] = (
    ConnectionError,            # refused, reset, aborted
    TimeoutError,               # connect or command timeout
    asyncio.TimeoutError,
    socket.gaierror,
    asyncpg.InterfaceError,     # connection closed or broken under the driver
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection in time
    sqlalchemy.exc.InterfaceError,
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend([getattr(current, "orig", None), current.__cause__, current.__context__])


def sqlstate(exc: BaseException) -> str | None:
    for current in _chain(exc):
        state = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(state, str) and state:
            return state
    return None


def classify(exc: BaseException) -> DatabaseFailure | None:
    state = sqlstate(exc)
    if state:
        if state.startswith(_UNAVAILABLE_STATES):
            return DatabaseFailure.UNAVAILABLE
        if state.startswith(_INVALID_DATA_STATES):
            return DatabaseFailure.INVALID_DATA
        if state.startswith(_CONFLICT_STATES):
            return DatabaseFailure.CONFLICT
    for current in _chain(exc):
        if isinstance(current, _UNAVAILABLE_TYPES):
            return DatabaseFailure.UNAVAILABLE
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return DatabaseFailure.UNAVAILABLE
    if any(isinstance(c, sqlalchemy.exc.OperationalError) for c in _chain(exc)):
        return DatabaseFailure.UNAVAILABLE
    return None
