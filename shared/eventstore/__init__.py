"""Append-only event store on PostgreSQL; also each context's outbox.

- append() takes the stream's expected version: a lost race is ConcurrencyError (HTTP 409).
- read_all() returns committed events after a position, never skips one that commits later,
  and returns each stream's events in version order.

How reading is safe (the reasoning; docs/architecture.md repeats it):

Every row carries commit_order = greatest(pg_current_xact_id(), commit_order of the stream's
previous version) (a new stream's first rows: the transaction's own id). A reader takes only
rows with commit_order below the horizon H of its statement's snapshot: the smallest id among the
snapshot's running transactions, leaving out those pg_stat_activity shows belong to a session of
another database, or else the snapshot's xmax (the first id not yet assigned). It reads them in
(commit_order, global_position) order and keeps the last (commit_order, global_position) it read.

1. Nothing is skipped. commit_order >= the id of the transaction that wrote the row. A row not
   yet visible to the reader belongs to a transaction still running or not started yet. One
   running in this database has an id >= H (only other databases' transactions are left out,
   and no session writes another database's tables); one not started yet will get an id >= xmax
   >= H. Either way its commit_order >= H: it is not in the set the reader reads now, and it
   sorts after everything the reader has read (all of which is < H). Rows with commit_order < H
   were written by transactions of this database that have ended: that set can never grow, so
   reading it in order and keeping the last position skips nothing. (Before, H was the
   snapshot's xmin, the whole cluster's oldest running transaction: a long transaction in any
   database on the server held back every reader.)
2. Each stream is read in version order. Version n+1 is inserted only after version n committed
   (the unique (stream_id, version) and READ COMMITTED: the appender saw n committed, or it
   wrote n itself), so global_position(n+1) > global_position(n), and commit_order(n+1) >=
   commit_order(n) by the greatest(). Ordering by (commit_order, global_position) therefore
   keeps versions in order. Ordering by the transaction id alone did not: a transaction gets
   its id at its first write (an idempotency key), possibly before another transaction appends
   and commits the stream's previous version (tests/integration/shared/test_event_store.py,
   test_a_stream_is_read_in_version_order_whatever_order_its_writers_got_their_ids).
3. Checkpoints saved before commit_order existed stay valid: the migration set commit_order =
   transaction_id for the rows then stored.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, NamedTuple, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import driver_connection
from shared.problems import ConcurrencyConflict

Position = tuple[int, int]
"""(commit_order, global_position): the total order in which committed events are read."""
START: Position = (0, 0)


class ConcurrencyError(ConcurrencyConflict):
    """The stream moved on since the caller read it."""


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# One encoder for every call: json.dumps with arguments builds a new JSONEncoder each time (a
# third of its cost for an event's payload).
_ENCODE = json.JSONEncoder(default=_json_default, separators=(",", ":")).encode


def dumps(value: Any) -> str:
    return _ENCODE(value)


def utc_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


@dataclass(frozen=True)
class NewEvent:
    event_type: str
    schema_version: int
    payload: dict[str, Any]
    occurred_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    # The contract the payload was made from, when the writer has it (not stored): a projection
    # of the same transaction reads it instead of parsing the payload back.
    contract: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class StoredEvent:
    global_position: int
    transaction_id: int
    commit_order: int
    stream_id: str
    stream_type: str
    version: int
    event_id: uuid.UUID
    event_type: str
    schema_version: int
    occurred_at: datetime
    recorded_at: datetime
    payload: dict[str, Any]
    metadata: dict[str, Any]

    @property
    def position(self) -> Position:
        return (self.commit_order, self.global_position)


_COLUMNS = (
    "global_position, transaction_id::text::bigint AS transaction_id, commit_order::text::bigint AS commit_order,"
    " stream_id, stream_type, "
    "version, event_id, event_type, schema_version, occurred_at, recorded_at, payload, metadata"
)


def _row_to_event(row: Any) -> StoredEvent:
    payload = row.payload if isinstance(row.payload, dict) else json.loads(row.payload)
    metadata = row.metadata if isinstance(row.metadata, dict) else json.loads(row.metadata)
    return StoredEvent(
        global_position=row.global_position,
        transaction_id=row.transaction_id,
        commit_order=row.commit_order,
        stream_id=row.stream_id,
        stream_type=row.stream_type,
        version=row.version,
        event_id=row.event_id,
        event_type=row.event_type,
        schema_version=row.schema_version,
        occurred_at=row.occurred_at,
        recorded_at=row.recorded_at,
        payload=payload,
        metadata=metadata,
    )


# One statement per append, one round trip, no savepoint: the stream's head (version and commit
# order) is read, the expected version checked and the rows inserted from arrays in the same
# statement. ON CONFLICT (stream_id, version) DO NOTHING turns a lost race (a concurrent writer
# committed the same version after this statement's snapshot) into fewer rows inserted instead
# of an error, so the caller's transaction stays usable and can answer 409 cleanly; whatever
# this statement did insert of a lost append is deleted again (_UNDO) before ConcurrencyError.
# commit_order = greatest(this transaction's id, the previous version's commit order); greatest
# ignores the NULL of a new stream's missing head (see the module docstring).
_APPEND_SQL = (
    "WITH head AS (SELECT version, commit_order FROM events WHERE stream_id = $1"
    " ORDER BY version DESC LIMIT 1),"
    " cur AS (SELECT coalesce((SELECT version FROM head), 0) AS version, (SELECT commit_order FROM head) AS commit_order),"
    " ins AS (INSERT INTO events (stream_id, stream_type, version, event_id, event_type, schema_version,"
    " occurred_at, payload, metadata, commit_order)"
    " SELECT $1, $2, cur.version + e.n, e.event_id, e.event_type, e.schema_version,"
    " e.occurred_at, CAST(e.payload AS jsonb), CAST(e.metadata AS jsonb),"
    " greatest(pg_current_xact_id(), cur.commit_order)"
    " FROM cur,"
    " unnest(CAST($4 AS uuid[]), CAST($5 AS text[]), CAST($6 AS int[]),"
    " CAST($7 AS timestamptz[]), CAST($8 AS text[]), CAST($9 AS text[]))"
    " WITH ORDINALITY AS e(event_id, event_type, schema_version, occurred_at, payload, metadata, n)"
    " WHERE CAST($3 AS int) IS NULL OR cur.version = CAST($3 AS int)"
    " ON CONFLICT (stream_id, version) DO NOTHING RETURNING global_position)"
    " SELECT (SELECT version FROM cur) AS current, coalesce((SELECT array_agg(global_position) FROM ins), '{}')"
    " AS positions"
)


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under `conn`, inside conn's transaction (shared.db.driver_connection),
    for the statement run per command: SQLAlchemy's execute cost about a fifth of an append
    transaction's CPU. A connection that has not begun begins here, as execute would: the
    caller commits, or nothing of the append stays."""
    if not conn.in_transaction():
        await conn.begin()
    return await driver_connection(conn)


# Many new streams at once: every stream's versions 1..n; commit_order defaults to the
# transaction's own id.
_INSERT_NEW = text(
    "WITH ins AS (INSERT INTO events (stream_id, stream_type, version, event_id, event_type, schema_version,"
    " occurred_at, payload, metadata)"
    " SELECT e.stream_id, e.stream_type, e.version, e.event_id, e.event_type, e.schema_version, e.occurred_at,"
    " CAST(e.payload AS jsonb), CAST(e.metadata AS jsonb)"
    " FROM unnest(CAST(:stream_ids AS text[]), CAST(:stream_types AS text[]), CAST(:versions AS int[]),"
    " CAST(:event_ids AS uuid[]), CAST(:event_types AS text[]), CAST(:schema_versions AS int[]),"
    " CAST(:occurred AS timestamptz[]), CAST(:payloads AS text[]), CAST(:metadatas AS text[]))"
    " AS e(stream_id, stream_type, version, event_id, event_type, schema_version, occurred_at, payload, metadata)"
    " ON CONFLICT (stream_id, version) DO NOTHING RETURNING global_position)"
    " SELECT coalesce(array_agg(global_position), '{}') AS positions FROM ins"
)
_UNDO = text("DELETE FROM events WHERE global_position = ANY(CAST(:positions AS bigint[]))")


async def stream_version(conn: AsyncConnection, stream_id: str) -> int:
    row = (
        await conn.execute(
            text("SELECT version FROM events WHERE stream_id = :s ORDER BY version DESC LIMIT 1"),
            {"s": stream_id},
        )
    ).first()
    return int(row.version) if row else 0


def _event_columns(events: Sequence[NewEvent]) -> dict[str, list[Any]]:
    return {
        "event_ids": [e.event_id for e in events],
        "event_types": [e.event_type for e in events],
        "schema_versions": [e.schema_version for e in events],
        "occurred": [e.occurred_at for e in events],
        "payloads": [_ENCODE(e.payload) for e in events],
        "metadatas": [_ENCODE(e.metadata) if e.metadata else "{}" for e in events],
    }


async def append(
    conn: AsyncConnection,
    stream_id: str,
    stream_type: str,
    expected_version: int | None,
    events: Sequence[NewEvent],
) -> int:
    """Append events to a stream inside the caller's transaction; returns the new version.

    expected_version: the version the caller's decision was based on (0 for a new stream), or
    None to append at the end without a check (used only where the stream is private to one
    writer, e.g. a projection's own log). One statement (see _APPEND_SQL); on a conflict nothing of
    this append stays and the caller's transaction is still usable."""
    if not events:
        return await stream_version(conn, stream_id)
    columns = _event_columns(events)
    driver = await _driver(conn)
    row = await driver.fetchrow(
        _APPEND_SQL, stream_id, stream_type, expected_version, columns["event_ids"], columns["event_types"],
        columns["schema_versions"], columns["occurred"], columns["payloads"], columns["metadatas"])
    current, positions = int(row[0]), list(row[1])
    if len(positions) == len(events):
        return current + len(events)
    if positions:
        await conn.execute(_UNDO, {"positions": positions})
    if expected_version is not None and current != expected_version:
        raise ConcurrencyError(
            f"stream {stream_id} is at version {current}, not the expected {expected_version}",
            extra={"stream_id": stream_id, "current_version": current},
        )
    raise ConcurrencyError(
        f"stream {stream_id} was appended to concurrently",
        extra={"stream_id": stream_id},
    )


async def append_new_streams(
    conn: AsyncConnection,
    streams: Sequence[tuple[str, str, Sequence[NewEvent]]],
) -> None:
    """Start many new streams at once: (stream_id, stream_type, events) each, every stream expected
    at version 0. One statement for them all instead of a version check per stream, for commands
    that create thousands of aggregates (a bank file's receipts, a batch of invoices). If any of
    the streams already exists, nothing is appended (the caller's transaction stays usable) and
    ConcurrencyError is raised."""
    await insert_new_streams(conn, new_stream_rows(streams))


@dataclass(frozen=True)
class NewStreamRows:
    """The statement parameters of new streams' events (new_stream_rows): plain values, so a worker
    process can build them and the process holding the transaction insert them."""
    streams: int
    params: dict[str, list[Any]]


def new_stream_rows(streams: Sequence[tuple[str, str, Sequence[NewEvent]]]) -> NewStreamRows:
    """The rows append_new_streams inserts (pure: no I/O)."""
    flat = [(stream_id, stream_type, i + 1, e) for stream_id, stream_type, events in streams
            for i, e in enumerate(events)]
    params = _event_columns([e for *_, e in flat])
    params["stream_ids"] = [f[0] for f in flat]
    params["stream_types"] = [f[1] for f in flat]
    params["versions"] = [f[2] for f in flat]
    return NewStreamRows(len(streams), params)


async def insert_new_streams(conn: AsyncConnection, rows: NewStreamRows) -> None:
    """append_new_streams with its rows already built."""
    if not rows.params["versions"]:
        return
    positions = list((await conn.execute(_INSERT_NEW, rows.params)).scalar_one())
    if len(positions) != len(rows.params["versions"]):
        if positions:
            await conn.execute(_UNDO, {"positions": positions})
        raise ConcurrencyError(
            f"one of {rows.streams} new streams already exists",
            extra={"streams": rows.streams},
        )


async def read_stream(conn: AsyncConnection, stream_id: str, after_version: int = 0) -> list[StoredEvent]:
    result = await conn.execute(
        text(f"SELECT {_COLUMNS} FROM events WHERE stream_id = :s AND version > :v ORDER BY version"),
        {"s": stream_id, "v": after_version},
    )
    return [_row_to_event(r) for r in result]


async def read_streams(conn: AsyncConnection, stream_ids: Sequence[str]) -> dict[str, list[StoredEvent]]:
    """Many streams in one query: {stream_id: its events in version order} (a stream with no
    events is absent)."""
    result = await conn.execute(
        text(f"SELECT {_COLUMNS} FROM events WHERE stream_id = ANY(CAST(:s AS text[])) ORDER BY stream_id, version"),
        {"s": list(stream_ids)},
    )
    streams: dict[str, list[StoredEvent]] = {}
    for r in result:
        streams.setdefault(r.stream_id, []).append(_row_to_event(r))
    return streams


# The horizon: the oldest transaction still running that could write this database's events, or
# the first id not yet assigned. Transaction ids are the whole cluster's, and so is
# pg_snapshot_xmin: with every context's database on one server (docker compose, a small
# deployment, this repository's own cluster) a bank import's chunk transaction in cash
# application's database held back invoicing's relay until it committed, and every invoice
# issued meanwhile waited for it (seconds of lag in every read model during an import). A
# running transaction is passed over only when pg_stat_activity shows it belongs to a session of
# another database: no session writes another database's tables, and a session's database never
# changes, so a transaction seen there is never one of ours. One not seen (its session's row not
# visible to this role, or the row not read yet) counts as ours, as before.
_HORIZON = (
    "(SELECT coalesce(min(x), pg_snapshot_xmax(pg_current_snapshot()))"
    " FROM pg_snapshot_xip(pg_current_snapshot()) AS x"
    " WHERE x::text::bigint % 4294967296 NOT IN (SELECT a.backend_xid::text::bigint FROM pg_stat_activity a"
    "  WHERE a.backend_xid IS NOT NULL AND a.datname IS NOT NULL AND a.datname <> current_database()))"
)

# The commit-safe window (the module's docstring says why it skips nothing and keeps each stream
# in version order): rows after the reader's position, written by transactions that have ended.
# The ORDER BY names the table's columns (events.commit_order): a bare `commit_order` there means
# the select list's `commit_order::text::bigint` (PostgreSQL resolves an ORDER BY name against the
# output columns first), which no index has, so every read sorted the whole table (a sequential
# scan and a top-N sort: 67 ms for a batch of 2,000 out of 20,000 events, growing with the table)
# instead of walking the (commit_order, global_position) index from the reader's position.
_COMMITTED_AFTER = (
    " WHERE (events.commit_order, events.global_position) > (CAST({tx} AS text)::xid8, {pos})"
    " AND events.commit_order < " + _HORIZON +
    " ORDER BY events.commit_order, events.global_position LIMIT {limit}"
)


async def read_all(conn: AsyncConnection, after: Position = START, limit: int = 1000) -> list[StoredEvent]:
    """Committed events after `after`, in commit-safe order. Never returns an event that is
    ordered before one it returned earlier (given the reader keeps the last position)."""
    result = await conn.execute(
        text(f"SELECT {_COLUMNS} FROM events" + _COMMITTED_AFTER.format(tx=":tx", pos=":pos", limit=":limit")),
        {"tx": str(after[0]), "pos": after[1], "limit": limit},
    )
    return [_row_to_event(r) for r in result]


class OutboxEvent(NamedTuple):
    """A committed event as the outbox relay publishes it: the payload as the JSON text stored
    (never decoded and encoded again on the way to Kafka), and only the metadata that travels in
    the message's headers. A named tuple (immutable, as the frozen dataclass it was, and about a
    fifth of its construction cost: the relay builds one per event)."""

    commit_order: int
    global_position: int
    event_id: str
    event_type: str
    stream_id: str
    stream_type: str
    version: int
    schema_version: int
    occurred_at: datetime
    recorded_at: datetime
    payload_json: str
    metadata: dict[str, str]

    @property
    def position(self) -> Position:
        return (self.commit_order, self.global_position)


# The metadata keys the relay puts in message headers (shared.relay.cloudevent_headers).
OUTBOX_METADATA = ("traceparent", "correlation_id", "causation_id", "actor")

_OUTBOX_SQL = (
    "SELECT commit_order::text::bigint, global_position, event_id::text, event_type, stream_id, stream_type,"
    " version, schema_version, occurred_at, recorded_at, payload::text, "
    + ", ".join(f"metadata->>'{key}'" for key in OUTBOX_METADATA)
    + " FROM events" + _COMMITTED_AFTER.format(tx="$1", pos="$2", limit="$3")
)


async def read_outbox(conn: AsyncConnection, after: Position = START, limit: int = 1000) -> list[OutboxEvent]:
    """read_all's events, in the same commit-safe window and order, shaped for publishing: one
    statement on the driver's connection, no JSON decoding (about a third of the relay's time
    per event went to decoding payload and metadata, building StoredEvents and encoding the
    payload again). Runs in `conn`'s transaction when one is open."""
    raw = await conn.get_raw_connection()
    rows = await raw.driver_connection.fetch(_OUTBOX_SQL, str(after[0]), after[1], limit)
    keys = OUTBOX_METADATA
    return [
        OutboxEvent(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
                    {k: v for k, v in zip(keys, r[11:]) if v} if any(r[11:]) else {})
        for r in rows
    ]


async def load_checkpoint(conn: AsyncConnection, name: str) -> Position:
    """A reader's last position. (The column is still named transaction_id: it holds the
    commit_order, which equals the transaction id for every row stored before migration 0003.)"""
    result = await conn.execute(
        text(
            "SELECT transaction_id::text::bigint AS tx, global_position FROM event_checkpoints"
            " WHERE name = :n"
        ),
        {"n": name},
    )
    row = result.first()
    return (row.tx, row.global_position) if row else START


async def save_checkpoint(conn: AsyncConnection, name: str, position: Position) -> None:
    await conn.execute(
        text(
            "INSERT INTO event_checkpoints (name, transaction_id, global_position)"
            " VALUES (:n, CAST(:tx AS text)::xid8, :pos)"
            " ON CONFLICT (name) DO UPDATE SET transaction_id = excluded.transaction_id,"
            " global_position = excluded.global_position, updated_at = now()"
        ),
        {"n": name, "tx": str(position[0]), "pos": position[1]},
    )


async def oldest_after(conn: AsyncConnection, after: Position) -> float | None:
    """Age in seconds of the first committed event after `after` (a reader's backlog), or None."""
    result = await conn.execute(
        text(
            "SELECT extract(epoch FROM now() - recorded_at)::float8 FROM events"
            " WHERE (commit_order, global_position) > (CAST(:tx AS text)::xid8, :pos)"
            " ORDER BY commit_order, global_position LIMIT 1"
        ),
        {"tx": str(after[0]), "pos": after[1]},
    )
    return result.scalar()
