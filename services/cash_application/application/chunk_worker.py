"""The CPU work of a chunked bank import, run in a matching process of its own (issue 10).

The service's process keeps the import record and the order of the chunks; this process holds
the import's customer side (the matching engine without open items) and, per chunk, the engine over the open
items the chunk can concern, and does everything between two reads or writes: which customers
and keys a chunk concerns, indexing the open items read for it, the first matching on that
snapshot, and, under the locks, the payments with their events' rows, the read model's rows,
the sources, the statement lines and the summaries, ready to insert. Before, all of this ran in
threads of the service's process: one core's worth of GIL for matching, posting and answering
requests, the health checks waiting behind it (up to a second per chunk) while PostgreSQL had
the other core.

Every function here is called with plain values (pickled to the process) and keeps its state in
this module, by import token and chunk number: ChunkWork calls them in the order the import
needs, in one process (max_workers=1), or in threads of the service when `parse_workers` is 0.
The open items a chunk concerns are read here, on a connection of this process (sending them
from the service cost more than reading them: pickling some 70,000 rows per chunk). The process
also commits the chunks it prepared, in a writer thread with a connection of its own
(chunk_commit_start / chunk_commit_wait), one chunk at a time in the chunks' order as the service
calls them: with one process the next chunk is prepared while the writer commits, with two the
other process prepares meanwhile; the rows never cross between processes. With `parse_workers` 0
the same functions run in threads of the service."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared import aggregate, eventstore, heap
from shared.db import allow_long_idle, make_engine
from shared.problems import Conflict
from services.cash_application.adapters import repository as repo
from services.cash_application.application import posting
from services.cash_application.application.imports import post_receipts, receipt_of, scoped_matcher
from services.cash_application.domain.matching import Matcher
from services.cash_application.domain.model import OpenItem
from services.cash_application.projections import payments as payments_projection

POSTING_SLICE = 500  # payments per round of statements in the service's transaction


class FirstPass:
    """A chunk matched on its snapshot, each auto-applied result applied to the snapshot's
    balances before the next receipt is matched (as posting does): the invoices to lock, and the
    balances read, to tell under the locks whether anything moved."""

    def __init__(self) -> None:
        self.results: list[Any] = []
        self.touched: set[str] = set()
        self.read: dict[str, Any] = {}  # invoice_id -> its snapshot balance, before this pass applied to it

    def unchanged(self, locked: dict[str, Any]) -> bool:
        return all(invoice_id in locked and locked[invoice_id].open_balance == balance
                   for invoice_id, balance in self.read.items())

    def reset(self, matcher: Any) -> None:
        matcher.set_balances(self.read)


def first_pass(matcher: Any, part: list, threshold: Any) -> FirstPass:
    first = FirstPass()
    for _, statement, line in part:
        result = matcher.match(receipt_of(line, statement.currency))
        first.results.append(result)
        for a in result.allocations:  # suggested or applied: what posting will check against the locked balances
            first.touched.add(a.invoice_id)
            if a.invoice_id in matcher.invoices:
                first.read.setdefault(a.invoice_id, matcher.invoices[a.invoice_id].open_balance)
        if result.allocations and result.confidence >= threshold:
            matcher.commit(result)
    return first


def match_locked(import_id: str, part: list, matcher: Any, first: FirstPass, locked: dict[str, Any],
                 threshold: Any) -> tuple:
    """A chunk's payments under the locks: when no balance the first pass read has moved since
    (the usual case), its results are what matching again would give, and are kept; otherwise
    (another request applied cash meanwhile, an invoice was cancelled) the balances are reset and
    the chunk is matched again against the locked ones. No I/O."""
    if first.unchanged(locked):
        posted = post_receipts(import_id, part, matcher, dict(locked), threshold, first.results)
        if posted is not None:
            return posted
    first.reset(matcher)
    matcher.set_balances({invoice_id: item.open_balance for invoice_id, item in locked.items()})
    return post_receipts(import_id, part, matcher, dict(locked), threshold)


@dataclass
class MatchedChunk:
    part: list  # (number in the file, statement without its lines, line)
    matcher: Matcher
    first: FirstPass
    prepared: "Prepared"  # what the service gets: the invoices to lock, as the snapshot had them, and the rows


class _Import:
    """An import's state in this process: its customer side, its chunks matched and not yet
    posted, and a database engine of its own (one connection) on an event loop of its own, to
    read the open items a chunk concerns on a snapshot (no locks: the service's transaction locks
    and re-reads what the matching touched)."""

    def __init__(self, base: Matcher, import_id: str, threshold: Decimal, meta: dict[str, Any],
                 database_url: str) -> None:
        self.base, self.import_id, self.threshold, self.meta = base, import_id, threshold, meta
        self.database_url = database_url
        self.chunks: dict[int, MatchedChunk] = {}
        self.loop = asyncio.new_event_loop()
        self.engine = make_engine(database_url, pool_size=1, max_overflow=0,
                                  application_name="ledgerline-cash_application-import")
        # The chunks' transactions, when this process commits them: a thread of their own with
        # its own event loop and connection, so one chunk commits while the next is prepared here.
        self.writer: ThreadPoolExecutor | None = None
        self.writer_loop: asyncio.AbstractEventLoop | None = None
        self.writer_engine: Any = None
        self.committing: dict[int, Future] = {}

    def write(self, work: Callable[[], Awaitable[Any]]) -> Future:
        if self.writer is None:
            self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk-writer")
            self.writer_loop = asyncio.new_event_loop()
            self.writer_engine = make_engine(self.database_url, pool_size=1, max_overflow=0,
                                             application_name="ledgerline-cash_application-import")
        return self.writer.submit(lambda: self.writer_loop.run_until_complete(work()))

    def close(self) -> None:
        try:
            if self.writer is not None:
                for pending in self.committing.values():  # a commit under way ends first (cancelled import)
                    with contextlib.suppress(BaseException):
                        pending.result()
                self.write(self.writer_engine.dispose).result()
                self.writer.shutdown(wait=True)
                self.writer_loop.close()
        finally:
            try:
                self.loop.run_until_complete(self.engine.dispose())
            finally:
                self.loop.close()


_IMPORTS: dict[str, _Import] = {}


@dataclass(frozen=True)
class PostingSlice:
    events: eventstore.NewStreamRows
    read_model: Any  # payments_projection.NewPaymentRows
    sources: list[dict[str, Any]]
    lines: list[dict[str, Any]]


@dataclass(frozen=True)
class PostedChunk:
    slices: list[PostingSlice]
    summaries: list[str]  # each payment's summary as JSON, in the chunk's order
    counts: dict[str, int]


def started() -> int:
    """Nothing but this module imported: a matching process started ahead of its first chunk."""
    return os.getpid()


def begin(token: str, base: bytes, import_id: str, threshold: Decimal, meta: dict[str, Any],
          database_url: str) -> None:
    """The import's customer side lives as long as the import: frozen out of the collector's
    scans (shared.heap), which otherwise walked it again in every full collection of every chunk."""
    _IMPORTS[token] = _Import(pickle.loads(base), import_id, threshold, meta, database_url)
    heap.freeze_long_lived()


def end(token: str) -> None:
    imp = _IMPORTS.pop(token, None)
    if imp is not None:
        imp.close()
    if not _IMPORTS:
        heap.thaw_and_refreeze()


async def _in_place(fn: Any, *args: Any) -> Any:
    return fn(*args)


@dataclass(frozen=True)
class Prepared:
    """What a chunk's transaction needs before its locks: the invoices to lock, as the snapshot
    had them, and the rows posted against them. When the locks find exactly these (the usual case)
    the rows are inserted as they are; else post_chunk posts the chunk again against the locked
    balances."""
    touched: list[str]
    snapshot: dict[str, OpenItem]
    built: "PostedChunk | None"

    def rows_for(self, locked: dict[str, OpenItem]) -> "PostedChunk | None":
        return self.built if self.built is not None and locked == self.snapshot else None


def chunk_prepare(token: str, chunk: int, part: list) -> None:
    """A chunk's receipts arrive: the open items they can concern are read (imports.scoped_matcher)
    and the chunk matched and posted on that snapshot, kept here for its commit (chunk_commit_start).
    Earlier chunks are done with by then (their commits took them)."""
    imp = _IMPORTS[token]
    imp.chunks.clear()
    with heap.fewer_collections():
        _prepare(imp, chunk, part)


def _prepare(imp: _Import, chunk: int, part: list) -> None:
    async def read() -> Matcher:
        async with imp.engine.begin() as conn:
            await allow_long_idle(conn)
            return await scoped_matcher(conn, imp.base, [receipt_of(line, statement.currency)
                                                         for _, statement, line in part], run=_in_place)

    matcher = imp.loop.run_until_complete(read())
    imp.chunks[chunk] = match_chunk(imp.import_id, imp.threshold, imp.meta, part, matcher)


def match_chunk(import_id: str, threshold: Decimal, meta: dict[str, Any], part: list, matcher: Matcher) -> MatchedChunk:
    """The chunk matched on its snapshot (first_pass), and posted against the invoices to lock as
    the snapshot has them. Posting now, before the locks, takes the building of the chunk's
    payments and rows out of its transaction, which waited for it holding its locks with the
    database idle: under the locks, when the locked invoices are these, the payments are what
    posting would build then (post_receipts is a function of the results and these balances)."""
    first = first_pass(matcher, part, threshold)
    snapshot = {invoice_id: OpenItem(invoice_id=invoice_id, invoice_number=item.invoice_number,
                                     customer_id=item.customer_id, currency=item.currency,
                                     open_balance=first.read[invoice_id])
                for invoice_id in first.touched if (item := matcher.invoices.get(invoice_id)) is not None}
    posted = post_receipts(import_id, part, matcher, dict(snapshot), threshold, first.results)
    return MatchedChunk(part, matcher, first, Prepared(sorted(first.touched), snapshot,
                                                       None if posted is None else _rows(meta, *posted)))


@dataclass(frozen=True)
class Committed:
    """A chunk this process committed: its payments' summaries (JSON, in the chunk's order) and
    where its transaction's time went, for the service's log."""
    summaries: list[str]
    locked: int
    lock_s: float
    reposted_s: float | None  # None: the rows built before the locks were kept
    write_s: float


def chunk_commit_start(token: str, chunk: int, start: int, end: int) -> None:
    """The chunk's transaction begins in this process's writer thread, on a connection of its own:
    its invoices locked, its rows (built before the locks, or posted again against the locked
    balances) inserted with its progress, and committed (chunk_commit_wait answers how it went).
    The rows never cross to the service's process (pickling and unpickling a chunk's 2 MB of rows
    cost about a tenth of a second of CPU per 1,000 receipts), and the next chunk can be prepared
    here meanwhile. The service commits the chunks in order: one chunk's transaction at a time."""
    imp = _IMPORTS[token]
    c = imp.chunks.pop(chunk)  # taken now: preparing the next chunk forgets the earlier ones

    async def run() -> Committed:
        began = time.monotonic()
        async with imp.writer_engine.begin() as conn:
            await allow_long_idle(conn)
            locked = await repo.lock_open_items_by_id(conn, c.prepared.touched)
            locked_at = time.monotonic()
            posted = post_chunk(imp.import_id, imp.threshold, imp.meta, c, locked)
            built_at = time.monotonic()
            await write_chunk(conn, imp.import_id, chunk, start, end, posted)
        return Committed(posted.summaries, len(c.prepared.touched), locked_at - began,
                         None if posted is c.prepared.built else built_at - locked_at, time.monotonic() - built_at)

    imp.committing[chunk] = imp.write(run)


def chunk_commit_wait(token: str, chunk: int) -> Committed:
    """How the chunk's transaction went, once it has: its summaries, or what failed it."""
    imp = _IMPORTS[token]
    pending = imp.committing[chunk]
    try:
        return pending.result()
    finally:
        del imp.committing[chunk]


async def write_chunk(conn: AsyncConnection, import_id: str, chunk: int, start: int, end: int,
                      posted: PostedChunk) -> None:
    """Insert a chunk's rows with its summary and the import's progress, in its transaction (under
    its locks). In slices: what runs on the event loop between two statements (the statements'
    parameters) stays short, so it keeps answering. The progress moves only from where this chunk
    begins: a transaction that finds it elsewhere (a second run of the import, say a process
    that outlived its service, posting the same receipts) fails and rolls back instead of posting
    them twice."""
    for part in posted.slices:
        await eventstore.insert_new_streams(conn, part.events)
        await payments_projection.write_new_payment_rows(conn, part.read_model)
        await posting.record_sources(conn, part.sources)
        await repo.insert_statement_lines(conn, part.lines)
    moved = await conn.execute(
        text("UPDATE bank_imports SET receipts_done = :d WHERE import_id = :i AND receipts_done = :s"),
        {"d": end, "i": import_id, "s": start})
    if moved.rowcount != 1:
        raise Conflict(f"import {import_id} moved past receipt {start} while its chunk {chunk + 1} was posted"
                       " (another run of it); nothing of the chunk was kept", field="file")
    await conn.execute(
        text("INSERT INTO bank_import_chunks (import_id, chunk, first_receipt, last_receipt, counts, payments)"
             " VALUES (:i, :c, :f, :l, CAST(:counts AS jsonb), CAST(:p AS json))"),
        {"i": import_id, "c": chunk, "f": start + 1, "l": end, "counts": json.dumps(posted.counts),
         "p": "[" + ",".join(posted.summaries) + "]"})


def post_chunk(import_id: str, threshold: Decimal, meta: dict[str, Any], c: MatchedChunk,
               locked: dict[str, OpenItem]) -> PostedChunk:
    """The chunk's rows under its locks: those built on the snapshot when the locked invoices are
    the snapshot's (the usual case), else posted again against the locked balances (match_locked)."""
    kept = c.prepared.rows_for(locked)
    if kept is not None:
        return kept
    return _rows(meta, *match_locked(import_id, c.part, c.matcher, c.first, locked, threshold))


def _rows(meta: dict[str, Any], payments: list, sources: list, lines: list, summaries: list,
          counts: dict[str, int]) -> PostedChunk:
    slices = []
    for lo in range(0, len(payments), POSTING_SLICE):
        hi = lo + POSTING_SLICE
        streams = aggregate.new_streams(payments[lo:hi], meta)
        events = eventstore.new_stream_rows(streams)
        read_model = payments_projection.new_payment_rows([events for *_, events in streams])
        _ids_as_text(events, read_model)
        slices.append(PostingSlice(events, read_model, sources[lo:hi], lines[lo:hi]))
    return PostedChunk(slices, [json.dumps(summary, default=str) for summary in summaries], counts)


def _ids_as_text(events: eventstore.NewStreamRows, read_model: Any) -> None:
    """Event ids cross to the service's process as text, which asyncpg takes for a uuid column as
    it takes a UUID: a UUID object pickles through its reduce (about 1.6 us) and unpickles through
    its constructor (1.1 us), text in a twentieth of that. Unpickling a chunk's 10,000-odd ids
    held the service's GIL for about a tenth of a second (bench generator, 5,000 receipts)."""
    events.params["event_ids"] = [str(u) for u in events.params["event_ids"]]
    for row in (*read_model.applications, *read_model.short_pays):
        row["e"] = str(row["e"])
