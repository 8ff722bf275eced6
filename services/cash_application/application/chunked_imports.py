"""Large bank files, imported in chunks with a resumable import record.

A file with more receipts than `import_chunk_receipts` does not post in one transaction (which
held every invoice's row lock and every new payment in memory for the whole file). Instead:

1. The import record is claimed (bank_imports, by the file's content hash) and its statements
   (by identity) in a first short transaction. A session advisory lock on the import id is held
   on a connection of its own for the whole import, so one process at a time runs it; a process
   that dies (SIGKILL, a lost node) loses its session and with it the lock. The bank accounts
   are locked the same way (session locks, in order), so two files cannot both post a line.
2. The receipts are numbered in file order (payment `<import>.<n>`, the same numbers the
   one-transaction import uses), and put in the order they post in: grouped by payer (the
   customers whose open items they read), file order within a group, so each customer's open
   items are read by one chunk rather than by every chunk one of its receipts falls in. The
   order is kept with the import record (`receipt_order`), so a resumed import cuts the same chunks.
3. Each chunk of receipts commits on its own: the open items it can concern are read (only
   those: imports.scoped_matcher) and matched on that snapshot, each applied result lowering the
   snapshot's balances as posting will, and its payments and rows are built against the
   snapshot's balances; the invoices its matches touch are locked in invoice_id order and
   re-read. If they are the snapshot's (the usual case) those rows are inserted as built, else the
   chunk is posted again against the locked balances (matched again if a balance it read moved:
   chunk_worker.post_chunk). Its payments are
   appended and projected, its statement lines and sources recorded, and the import's progress
   (`receipts_done`, a count of receipts in that order) and the chunk's summary written, all in
   the chunk's transaction, which moves the progress only from where the chunk begins. A chunk
   is therefore posted exactly once: either it committed with its progress, or nothing of it did.
   The next chunk is read, matched and built (in the matching process, on its own connection, no
   locks) while one is written; a balance the written chunk moves is then seen under the locks,
   and that chunk posted again. The matching process that prepared a chunk commits it
   (chunk_worker.chunk_commit_start, in a writer thread of its own), one chunk at a time in order.
4. A last transaction books the returns and other lines, checks that every line read was
   recorded, records BankStatementImported and the result.

The same file sent again (by the API or the CLI) while the record has no result resumes after the
last committed chunk; once it has one, it answers it (`replayed`). Rejections are found while
parsing, before the record exists, so a refused file still posts nothing."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import pickle
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Any, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared import aggregate
from shared.db import allow_long_idle
from shared.eventstore import utc_midnight
from shared.problems import Conflict, ServiceUnavailable
from services.cash_application.adapters import card_payout_store
from services.cash_application.adapters import repository as repo
from services.cash_application.application import chunk_worker
from services.cash_application.application.card_payouts import claim_payout_lines
from services.cash_application.application.imports import (
    COUNTS, FileRejectedProblem, ImportFile, _json, _other_line_rows, _parse_pool, _statement_out,
    EncodedResult, _worker_start, customer_matcher, drop_posted, policy_of, receipt_of, reset_parse_pool, statement_keys,
    shut_down, stop_parse_pool)
from services.cash_application.domain.model import BankImport
from services.cash_application.domain.receipts import BankStatement, ParsedFile
from services.cash_application.settings import CashApplicationSettings

_MATCH_POOL: ProcessPoolExecutor | None = None
log = logging.getLogger("ledgerline.cash_application.imports")


class ChunkWork:
    """Runs chunk_worker's functions in the matching processes (lanes), or in threads of this
    process when `parse_workers` is 0. A chunk is prepared and committed (posted again if need be) in one
    lane (chunk_worker keeps its state there between the calls); the chunks go to the lanes in
    turn. The first lane is the parse worker when `parse_workers` is 1 (one process parses and
    matches), else a matching process kept for the service's life; the others are started for one
    large import (`import_parallel_min_receipts`) and stopped after it."""

    def __init__(self, settings: CashApplicationSettings, receipts: int) -> None:
        global _MATCH_POOL
        self.lanes: list[ProcessPoolExecutor | None] = [None]
        self.extra: list[ProcessPoolExecutor] = []
        if settings.parse_workers == 0:
            return
        if settings.parse_workers == 1:  # one process parses and matches: one process's memory, not two
            self.lanes = [_parse_pool(1, settings.import_worker_nice)]
        else:
            if _MATCH_POOL is None:
                _MATCH_POOL = _match_process(settings)
            self.lanes = [_MATCH_POOL]
        if receipts >= settings.import_parallel_min_receipts:
            self.extra = [_match_process(settings) for _ in range(settings.import_match_processes - 1)]
            self.lanes += self.extra
            for pool in self.extra:  # started now: its interpreter and imports while the receipts are grouped
                pool.submit(chunk_worker.started)

    def lane(self, index: int) -> int:
        """The lane of the index-th chunk this import posts."""
        return index % len(self.lanes)

    async def __call__(self, lane: int, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.submit(lane, fn, *args)

    def submit(self, lane: int, fn: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":
        """fn queued in its lane now (a lane runs its calls in the order they were submitted),
        its outcome awaited later."""
        pool = self.lanes[lane]
        if pool is None:
            return asyncio.ensure_future(asyncio.to_thread(fn, *args))
        return asyncio.ensure_future(self._outcome(
            pool, asyncio.get_running_loop().run_in_executor(pool, functools.partial(fn, *args))))

    @staticmethod
    async def _outcome(pool: ProcessPoolExecutor, running: "asyncio.Future[Any]") -> Any:
        global _MATCH_POOL
        try:
            return await running
        except BrokenProcessPool as exc:
            if _MATCH_POOL is pool:  # the process died (killed, out of memory): a new one next time
                _MATCH_POOL = None
            reset_parse_pool(pool)
            raise ServiceUnavailable(
                "the import's matching process stopped (killed or out of memory); the chunks committed"
                " stay posted: send the same file again and it resumes after them", field="file") from exc

    async def each(self, fn: Callable[..., Any], *args: Any) -> None:
        """fn in every lane, at once (the import's start and end)."""
        await asyncio.gather(*(self(lane, fn, *args) for lane in range(len(self.lanes))))

    async def close(self) -> None:
        """The import's own processes end (their memory goes back); the others stay for the next."""
        for pool in self.extra:
            await shut_down(pool)


async def start_worker_processes(settings: CashApplicationSettings) -> None:
    """A serving process that takes bank files starts the process that parses them (and, with
    `parse_workers` 1, matches their chunks) when it starts, not when the first file arrives: its
    interpreter and modules (about 1.5 s of CPU) are then ready before the first import needs them.
    Not awaited: the process readies itself while the service answers."""
    global _MATCH_POOL
    if settings.parse_workers > 0 and settings.role in ("all", "api"):
        _parse_pool(settings.parse_workers, settings.import_worker_nice).submit(chunk_worker.started)
        if settings.parse_workers > 1:  # the matching process kept for the service's life (ChunkWork)
            if _MATCH_POOL is None:
                _MATCH_POOL = _match_process(settings)
            _MATCH_POOL.submit(chunk_worker.started)


async def stop_worker_processes() -> None:
    """The service stops: the matching process kept between imports and the parse worker end
    with it (main.definition's on_stop)."""
    global _MATCH_POOL
    pool, _MATCH_POOL = _MATCH_POOL, None
    await shut_down(pool)
    await stop_parse_pool()


def _match_process(settings: CashApplicationSettings) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_start, initargs=(os.getpid(), settings.import_worker_nice))


def needs_chunks(parsed: ParsedFile, settings: CashApplicationSettings) -> bool:
    receipts = sum(1 for s in parsed.statements for line in s.lines if line.is_receipt)
    return receipts > settings.import_chunk_receipts


async def import_file_in_chunks(engine: AsyncEngine, cmd: ImportFile, parsed: ParsedFile,
                                settings: CashApplicationSettings, meta: dict[str, Any]) -> dict[str, Any]:
    content_hash = hashlib.sha256(cmd.content).hexdigest()
    import_id = f"imp_{content_hash[:20]}"
    async with engine.connect() as holder:  # holds the session locks for the whole import
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO bank_imports (import_id, content_hash, file_format, file_name) VALUES (:i, :h, :f, :n)"
                     " ON CONFLICT (content_hash) DO NOTHING"),
                {"i": import_id, "h": content_hash, "f": parsed.file_format, "n": cmd.file_name})
        got = (await holder.execute(text("SELECT pg_try_advisory_lock(hashtext(:k))"),
                                    {"k": f"bank-import:{import_id}"})).scalar_one()
        if not got:
            raise Conflict(f"import {import_id} of this file is running in another process; send the file again"
                           " once it is done (it answers the result) or if that process died (it resumes)",
                           field="file")
        await holder.commit()
        try:
            return await _run(engine, holder, import_id, cmd, parsed, settings, meta)
        finally:
            await holder.execute(text("SELECT pg_advisory_unlock_all()"))
            await holder.commit()


async def _run(engine: AsyncEngine, holder: AsyncConnection, import_id: str, cmd: ImportFile, parsed: ParsedFile,
               settings: CashApplicationSettings, meta: dict[str, Any]) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT result, receipts_done FROM bank_imports WHERE import_id = :i"),
                                  {"i": import_id})).one()
    if row.result is not None:
        return {**_json(row.result), "replayed": True}
    resumed_from = row.receipts_done
    started = time.monotonic()

    # Statements: claimed once; on a resume, those this import claimed are its own.
    fresh: list[BankStatement] = []
    duplicates: list[dict[str, str]] = []
    async with engine.begin() as conn:
        for statement, key in zip(parsed.statements, statement_keys(parsed.statements)):
            if key is not None:
                await conn.execute(
                    text("INSERT INTO bank_statements (statement_key, import_id, file_format, account, statement_date,"
                         " currency, opening_balance, closing_balance) VALUES (:k, :i, :f, :a, :d, :c, :o, :cl)"
                         " ON CONFLICT (statement_key) DO NOTHING"),
                    {"k": key, "i": import_id, "f": statement.file_format, "a": statement.account,
                     "d": statement.statement_date, "c": statement.currency, "o": statement.opening_balance,
                     "cl": statement.closing_balance})
                owner = (await conn.execute(text("SELECT import_id FROM bank_statements WHERE statement_key = :k"),
                                            {"k": key})).scalar_one()
                if owner != import_id:
                    duplicates.append({"statement": key, "imported_by": owner})
                    continue
            fresh.append(statement)
    # The bank accounts, locked for the whole import (session locks, in order), then the lines
    # other imports posted are set aside.
    for account in sorted({s.account or "" for s in fresh}):
        await holder.execute(text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": f"bank-account:{account}"})
    await holder.commit()
    async with engine.connect() as conn:
        references = sorted({line.bank_reference for s in fresh for line in s.lines if line.bank_reference})
        posted = await repo.posted_line_keys(conn, references, exclude_import=import_id)
    fresh, already = await asyncio.to_thread(drop_posted, fresh, posted)  # every line: off the event loop
    async with engine.begin() as conn:  # credits that carry a card payout already imported: no receipts
        payout_lines = await claim_payout_lines(conn, fresh)
    set_aside = time.monotonic()
    async with engine.connect() as conn:
        base = await customer_matcher(conn, policy_of(settings))  # the customer side, shared by the chunks
    customer_side_read = time.monotonic()
    receipts = await asyncio.to_thread(lambda: [(statement, line) for statement in fresh for line in statement.lines
                                                if line.is_receipt and id(line) not in payout_lines])
    work = ChunkWork(settings, len(receipts) - resumed_from)
    try:
        order = await _receipt_order(engine, import_id, base, receipts, resumed_from, workers=len(work.lanes))
    except BaseException:  # a resume refused (409), a database error: the processes started for it end
        await work.close()
        raise
    ready = time.monotonic()
    log.info("import %s: %d receipts to post%s, ready after %.2f s (statements claimed and lines posted before"
             " set aside %.2f s, the customer side read %.2f s, receipts grouped by payer %.2f s)", import_id,
             len(receipts), f" (resuming after {resumed_from})" if resumed_from else "", ready - started,
             set_aside - started, customer_side_read - set_aside, ready - customer_side_read)
    chunks_began = time.monotonic()

    size = max(1, settings.import_chunk_receipts)
    chunks = [(chunk, start, min(start + size, len(receipts)))
              for chunk, start in enumerate(range(0, len(receipts), size))
              if min(start + size, len(receipts)) > resumed_from]  # the others committed before a crash
    # The statements go to the matching process without their lines (a chunk's receipts carry
    # their own line), so a chunk does not send the whole file again.
    bare = {id(s): replace(s, lines=()) for s in fresh}
    token = f"{import_id}:{uuid.uuid4().hex}"
    ahead: dict[int, asyncio.Task] = {}
    summaries: list[tuple[int, str]] = []  # (receipt number, its payment's summary as JSON) of this run's chunks
    try:
        customer_side = await asyncio.to_thread(pickle.dumps, base)
        del base  # the matching processes hold the customer side from here on: its memory is free for the chunks
        await work.each(chunk_worker.begin, token, customer_side, import_id, settings.auto_apply_threshold, meta,
                        settings.database_url)
        del customer_side
        log.info("import %s: the customer side in %d matching process(es) after %.2f s", import_id,
                 len(work.lanes), time.monotonic() - ready)

        def prepare(index: int) -> asyncio.Task:
            """The index-th chunk's receipts to its matching process, which reads the open items
            they can concern (a snapshot, no locks), matches them and posts them on it: the
            invoices to lock, as the snapshot had them, and the rows built against them, kept
            there for its commit."""
            chunk, start, end = chunks[index]
            part = [(n + 1, bare[id(receipts[n][0])], receipts[n][1]) for n in order[start:end]]
            return work.submit(work.lane(index), chunk_worker.chunk_prepare, token, chunk, part)

        # Each chunk is read, matched and posted in its matching process while the one before is
        # written (the chunks concern mostly different customers, being grouped by payer); with
        # two processes, each commits the chunk it prepared while the other prepares the next. A
        # snapshot read before an earlier chunk committed may hold balances it then moved: the
        # locks find them, and the chunk is posted again against the locked balances, in the
        # process that prepared it.
        for index in range(min(len(work.lanes), len(chunks))):
            ahead[index] = prepare(index)
        for index, (chunk, start, end) in enumerate(chunks):
            began = time.monotonic()
            await ahead.pop(index)
            matched = time.monotonic()
            following = index + len(work.lanes)  # the next chunk of this chunk's lane
            lane = work.lane(index)
            await work(lane, chunk_worker.chunk_commit_start, token, chunk, start, end)
            if len(work.lanes) == 1 and following < len(chunks):
                # One process: it prepares the next chunk (queued before the wait below) while its
                # writer thread commits this one.
                ahead[following] = prepare(following)
            committed = await work(lane, chunk_worker.chunk_commit_wait, token, chunk)
            if len(work.lanes) > 1 and following < len(chunks):
                # Two or more: the next chunk waits for nothing but its process; preparing it ahead
                # of the wait would hold back the answer the next lane's commit waits for.
                ahead[following] = prepare(following)
            chunk_summaries = committed.summaries
            summaries.extend(zip((n + 1 for n in order[start:end]), chunk_summaries))
            # Where a large import's time goes, chunk by chunk: an operator sees its progress, and
            # which side (the matching process, the locks, the writes) holds it up.
            log.info("import %s chunk %d/%d (receipts %d-%d): matching waited for %.2f s, %d invoices locked in"
                     " %.2f s, %s, written and committed in %.2f s", import_id, chunk + 1,
                     -(-len(receipts) // size), start + 1, end, matched - began, committed.locked, committed.lock_s,
                     "rows built before the locks kept" if committed.reposted_s is None else
                     f"posted again under the locks in {committed.reposted_s:.2f} s", committed.write_s)
    finally:
        for task in ahead.values():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):  # a process may be gone; its state with it
            await work.each(chunk_worker.end, token)
        await work.close()

    chunks_done = time.monotonic()
    # The rest of the file (returns, other lines) and the result, in one last transaction.
    async with engine.begin() as conn:
        await allow_long_idle(conn)
        counts = {"returns": 0, "returns_unmatched": 0, "other_lines": 0, "card_payouts": 0}
        rows = await _other_line_rows(conn, import_id, fresh, payout_lines, counts, meta)
        if rows:
            await repo.insert_statement_lines(conn, rows)
        for row in rows:
            if row["po"]:
                await card_payout_store.tie_line(conn, payout_id=row["po"], import_id=import_id, position=row["pos"],
                                                 value_date=row["d"])
        recorded = (await conn.execute(text("SELECT count(*) FROM statement_lines WHERE import_id = :i"),
                                       {"i": import_id})).scalar_one()
        lines_in_file = sum(len(s.lines) for s in fresh)
        if recorded != lines_in_file:
            raise FileRejectedProblem(f"{lines_in_file} lines were read but {recorded} recorded", extra={
                "errors": [{"field": "file", "reason": "lines read and recorded differ"}]})
        bank_import = BankImport(import_id)
        for statement in fresh:
            bank_import.record_statement(file_format=statement.file_format, account=statement.account,
                                         statement_date=statement.statement_date, currency=statement.currency,
                                         entries=len(statement.lines), total_credits=statement.total_credits,
                                         at=utc_midnight(statement.statement_date))
        await aggregate.save(conn, bank_import, meta)
        # Every chunk's counts; the payments' summaries of the chunks a crashed run committed
        # (this run's are in `summaries` already, as text).
        first_here = chunks[0][0] if chunks else len(receipts)  # no chunk numbered that high
        stored = (await conn.execute(text(
            "SELECT counts::text, CASE WHEN chunk < :f THEN payments::text END FROM bank_import_chunks"
            " WHERE import_id = :i ORDER BY chunk"), {"i": import_id, "f": first_here})).all()
        totals = dict.fromkeys(COUNTS, 0)
        for chunk_counts, earlier in stored:
            for key, value in json.loads(chunk_counts).items():
                totals[key] += value
            if earlier is not None:
                summaries.extend((int(p["payment_id"].rsplit(".", 1)[1]), json.dumps(p, default=str))
                                 for p in json.loads(earlier))
        statements_out = await asyncio.to_thread(lambda: [_statement_out(s) for s in fresh])
        head = {"import_id": import_id, "file_format": parsed.file_format, "file_name": cmd.file_name,
                "statements": statements_out, "duplicate_statements": duplicates,
                "lines_already_imported": already, **totals, **counts, "chunks": len(stored),
                "resumed_after_receipt": resumed_from or None, "replayed": False}
        encoded = await asyncio.to_thread(_encoded_result, head, summaries)
        del summaries
        await repo.record_import_result(conn, import_id, encoded, head)
    log.info("import %s done: chunks in %.2f s, then the other lines and the result in %.2f s", import_id,
             chunks_done - chunks_began, time.monotonic() - chunks_done)
    return EncodedResult(head, encoded)


def _encoded_result(head: dict[str, Any], summaries: list[tuple[int, str]]) -> str:
    """The import's result as JSON text: its head, then the payments' summaries in file order,
    each the text the matching process encoded (decoding and encoding 100,000 of them again cost
    some 3 s at the end of the request). The result the API answers carries every payment; the
    dict returned beside this text has the head only (the CLI prints that)."""
    summaries.sort(key=lambda numbered: numbered[0])
    encoded = json.dumps({**head, "payments": []}, default=str)
    return encoded[:-2] + ",".join(text for _, text in summaries) + "]}"


async def _receipt_order(engine: AsyncEngine, import_id: str, base: Any, receipts: list, resumed_from: int,
                         workers: int = 1) -> list[int]:
    """The order the receipts are posted in (indexes into `receipts`): grouped by payer
    (Matcher.payer_group), in file order within a group, so a customer's open items are read by
    one chunk rather than by every chunk one of its receipts falls in (about a third of the reads
    on the 100,000-receipt bench). Computed when the import starts and kept with its record; a
    resumed import uses the kept order, and file order when it began before orders were kept."""
    async with engine.connect() as conn:
        kept = (await conn.execute(text("SELECT receipt_order FROM bank_imports WHERE import_id = :i"),
                                   {"i": import_id})).scalar_one()
    if kept is not None:
        if len(kept) != len(receipts):  # lines another import posted since the crash left the file
            raise Conflict(f"import {import_id} began with {len(kept)} receipts to post and now finds"
                           f" {len(receipts)}; it cannot resume", field="file")
        return list(kept)
    if resumed_from:
        return list(range(len(receipts)))
    def groups() -> list[str]:
        # file order: each name as first seen; with as many threads as the import has matching processes
        base.identify_payer_names((line.payer_name for _, line in receipts), workers=workers)
        # A receipt's group follows from what identifies its payer (Matcher.identify: the customer
        # hint, the payer's account and name), which a payer's receipts repeat: each once.
        known: dict[tuple[Any, ...], str] = {}
        out = []
        for statement, line in receipts:
            payer = (line.customer_hint, line.payer_account, line.payer_name)
            group = known.get(payer)
            if group is None:
                group = known[payer] = base.payer_group(receipt_of(line, statement.currency))
            out.append(group)
        return out

    group = await asyncio.to_thread(groups)
    order = sorted(range(len(receipts)), key=group.__getitem__)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE bank_imports SET receipts_total = :t, receipt_order = CAST(:o AS integer[])"
                                " WHERE import_id = :i"), {"t": len(receipts), "o": order, "i": import_id})
    return order
