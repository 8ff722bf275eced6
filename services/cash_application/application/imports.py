"""Importing a bank or remittance file: parse it whole, then match and post every receipt and
return in the caller's transaction, so a file posts all of it or nothing.

Idempotent twice over: the same bytes (content hash) and the same statement (account +
statement id/sequence + date, whatever file brings it) answer the first import's result and
post nothing again. A concurrent twin blocks on the unique index until the first commits.

Concurrency: receipts are matched on a snapshot of the open items, then the invoices the
matches touch are locked FOR UPDATE in invoice_id order (the order every command locks in), the
balances re-read under the lock and the file matched again against them; an allocation that no
longer fits a locked balance is not applied. Two imports touching one invoice queue up."""
from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import multiprocessing
import operator
import os
import pickle
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from typing import Any, Awaitable, Callable, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared import aggregate, heap
from shared.db import allow_long_idle
from shared.eventstore import utc_midnight
from shared.money import money_str, to_str
from shared.problems import Problem, ValidationFailed
from services.cash_application.adapters import repository as repo
from services.cash_application.adapters.bank_files import FORMATS, parse_file
from services.cash_application.application import posting
from services.cash_application.application.posting import project_saved
from services.cash_application.domain.matching import (
    Matcher, MatchingPolicy, MatchResult, OpenInvoice, Receipt, reference_variants)
from services.cash_application.domain.model import UNIDENTIFIED_CUSTOMER, BankImport, CashApplicationRuleViolation, Payment
from services.cash_application.domain.receipts import BankLine, BankStatement, FileRejected, ParsedFile
from services.cash_application.projections import payments as payments_projection
from services.cash_application.settings import CashApplicationSettings


class FileRejectedProblem(Problem):
    status = 422
    type_name = "file-rejected"
    title = "The file is malformed or inconsistent; nothing from it was posted"


@dataclass(frozen=True)
class ImportFile:
    content: bytes
    file_format: str
    file_name: str | None = None
    csv_profile: str | None = None


def policy_of(settings: CashApplicationSettings) -> MatchingPolicy:
    return MatchingPolicy(auto_apply_threshold=settings.auto_apply_threshold,
                          tolerance_absolute=settings.tolerance_absolute,
                          tolerance_percent=settings.tolerance_percent)


_POOL: ProcessPoolExecutor | None = None


def _worker_start(service_pid: int, nice: int = 0) -> None:
    """A parse worker ends with the service process however that ends (a SIGKILL, the OOM killer),
    instead of living on as an orphan holding its memory: Linux's parent-death signal. The pool is
    only ever grown from the event loop's thread, the process's main thread, so the signal cannot
    come from a helper thread ending. It runs at a lower priority (`import_worker_nice`), so an
    import's CPU yields to requests."""
    if nice > 0:
        os.nice(nice)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != service_pid:  # the service died before the signal was armed
        os._exit(0)


def _parse_pool(workers: int, nice: int = 0) -> ProcessPoolExecutor:
    global _POOL
    if _POOL is None:
        # spawn, not fork: the service process runs an event loop and driver threads.
        _POOL = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_worker_start, initargs=(os.getpid(), nice))
    return _POOL


async def stop_parse_pool() -> None:
    """The parse worker ends (the service stops): its process exits and its queues' semaphores
    are released, instead of the process dying with the service and the semaphores left to
    multiprocessing's resource tracker ("leaked semaphore objects" at shutdown)."""
    global _POOL
    pool, _POOL = _POOL, None
    await shut_down(pool)


async def shut_down(pool: ProcessPoolExecutor | None) -> None:
    """A worker pool's processes end (queued work cancelled), waited for in a thread, not on the event loop."""
    if pool is not None:
        await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


def reset_parse_pool(pool: ProcessPoolExecutor) -> None:
    """Forget a pool whose process died (BrokenProcessPool), so the next file gets a new one."""
    global _POOL
    if _POOL is pool:
        _POOL = None


_PIECE = 2_000  # lines per pickle the parse worker sends back


_LINE_FIELDS = tuple(f.name for f in fields(BankLine))
_line_values = operator.attrgetter(*_LINE_FIELDS)


def _line_of(values: tuple[Any, ...]) -> BankLine:
    """A line back from its values (as unpickling a BankLine does: no __init__ to run, the
    fields set as they were)."""
    line = object.__new__(BankLine)
    line.__dict__.update(zip(_LINE_FIELDS, values))
    return line


def _in_pieces(work: Any) -> tuple[bytes, list[list[bytes]]]:
    """Run in the parse worker: the parsed file pickled in pieces (the file and its statements
    without their lines, then each statement's lines a piece at a time). Unpickling one object of
    100,000 lines held the service's GIL for about a second (its health answers waited for it);
    the pieces are unpickled one at a time, answering in between. Parsing allocates an object or
    more per field of every line, nearly all kept in what it returns: no collection while it runs
    (shared.heap; 1.9 s -> 1.4 s for 100,000 CSV lines against young collections made rarer).
    Each line goes as the tuple of its values: pickling a dataclass instance goes through its
    reduce and its attribute dict (100,000 lines: 1.0-1.4 s, as tuples 0.25-0.3 s)."""
    with heap.collections_paused():
        parsed: ParsedFile = work()
    skeleton = replace(parsed, statements=tuple(replace(s, lines=()) for s in parsed.statements))
    return pickle.dumps(skeleton), [[pickle.dumps([_line_values(line) for line in s.lines[i:i + _PIECE]])
                                     for i in range(0, len(s.lines), _PIECE)] for s in parsed.statements]


async def _from_pieces(skeleton: bytes, pieces: list[list[bytes]]) -> ParsedFile:
    parsed: ParsedFile = pickle.loads(skeleton)
    statements = []
    for statement, statement_pieces in zip(parsed.statements, pieces):
        lines: list[BankLine] = []
        for piece in statement_pieces:
            with heap.collections_paused():  # a piece's objects all live on: nothing to collect
                lines.extend(map(_line_of, pickle.loads(piece)))
            await asyncio.sleep(0)
        statements.append(replace(statement, lines=tuple(lines)))
    return replace(parsed, statements=tuple(statements))


async def parse(cmd: ImportFile, settings: CashApplicationSettings) -> ParsedFile:
    """Parse and check the whole file before anything is posted; a rejection names where and why.
    The parsing runs in a worker process, so the service keeps answering while it reads."""
    if cmd.file_format not in FORMATS and cmd.file_format != "camt":
        raise ValidationFailed(f"format must be one of {', '.join(FORMATS)}", extra={
            "errors": [{"field": "format", "reason": f"one of {', '.join(FORMATS)}"}]})
    if not cmd.content:
        raise FileRejectedProblem("the file is empty", field="file")
    if len(cmd.content) > settings.max_file_bytes:
        raise FileRejectedProblem(f"the file is larger than {settings.max_file_bytes} bytes", field="file")
    profile = None
    if cmd.file_format == "csv" and cmd.csv_profile and cmd.csv_profile != "default":
        profile = settings.csv_profiles.get(cmd.csv_profile)
        if profile is None:
            raise ValidationFailed(f"no CSV import profile {cmd.csv_profile!r}", extra={
                "errors": [{"field": "profile", "reason": f"known: default, {', '.join(settings.csv_profiles)}"}]})
    work = functools.partial(parse_file, cmd.content, cmd.file_format, csv_profile=profile,
                             default_currency=settings.default_currency)
    try:
        if settings.parse_workers > 0:
            pieces = await asyncio.get_running_loop().run_in_executor(
                _parse_pool(settings.parse_workers, settings.import_worker_nice), functools.partial(_in_pieces, work))
            return await _from_pieces(*pieces)
        return work()
    except FileRejected as exc:
        raise FileRejectedProblem(str(exc), extra={"errors": [{"field": exc.where, "reason": exc.reason}]}) from exc


def open_invoice_of(r: Any) -> OpenInvoice:
    """An open item row (a mapping with due_date and open_balance) as the matching engine indexes it."""
    return OpenInvoice(invoice_id=r["invoice_id"], invoice_number=r["invoice_number"] or "",
                       customer_id=r["customer_id"], currency=r["currency"].strip(),
                       open_balance=Decimal(r["open_balance"]), due_date=r["due_date"])


async def customer_matcher(conn: AsyncConnection, policy: MatchingPolicy) -> Matcher:
    """The matching engine's customer side (customer master, learned aliases, account hierarchy)
    without any open item: what identifies payers, and from which scoped_matcher builds the
    engine for a set of receipts."""
    names, accounts = await repo.payer_aliases(conn)
    customers = await repo.customer_names(conn)
    parents = await repo.customer_parents(conn)
    return await asyncio.to_thread(
        lambda: Matcher((), customers, name_aliases=names, account_aliases=accounts, policy=policy,
                        parents=parents))


def _open_invoices(rows: Any) -> list[OpenInvoice]:
    currencies: dict[str, str] = {}  # one string per currency code, not one per row
    return [OpenInvoice(invoice_id=r[0], invoice_number=r[1] or "", customer_id=r[2],
                        currency=currencies.setdefault(r[3], r[3].strip()), open_balance=Decimal(r[5]),
                        due_date=r[4], key=r[6] or "") for r in rows]


async def scoped_matcher(conn: AsyncConnection, base: Matcher, receipts: Sequence[Receipt],
                         run: Callable[..., Awaitable[Any]] = asyncio.to_thread) -> Matcher:
    """The matching engine over only the open items these receipts can concern (issue 10), read
    through indexes: the open invoices of the customers they identify (and the runners-up, and
    their families), those their references name, and, for a reference with an amount that no
    such invoice agrees with, the invoices one edit from it whose balance that amount can pay (the
    typo rules search those across customers). Matching them against it gives what matching against every open item gives
    (tests/unit/cash_application/test_scoped_matching.py). `run` runs the CPU work: in a worker
    thread (the one-transaction import), or in place (a chunked import's matching process)."""
    customers, keys = await run(concerned, base, receipts)
    await repo.without_jit(conn)
    matcher = base.with_invoices(())
    async for rows in repo.open_invoices_concerned(conn, customers, keys):
        await run(lambda rows=rows: matcher.add_invoices(_open_invoices(rows)))
    wanted, amounts = await run(neighbours_wanted, matcher, receipts)
    if wanted:
        rows = await repo.open_invoices_near(conn, wanted)
        await run(add_neighbours, matcher, rows, amounts)
    return matcher


def concerned(base: Matcher, receipts: Sequence[Receipt]) -> tuple[list[str], list[str]]:
    """The customers and invoice keys whose open items these receipts can concern (sorted)."""
    base.identify_payer_names(receipt.payer_name for receipt in receipts)  # in batches, not one by one
    customers: set[str] = set()
    keys: set[str] = set()
    for receipt in receipts:
        more_customers, more_keys = base.concerns(receipt)
        customers |= more_customers
        keys |= more_keys
    return sorted(customers), sorted(keys)


def neighbours_wanted(matcher: Matcher, receipts: Sequence[Receipt]
                      ) -> tuple[list[tuple[str, Decimal, Decimal]], dict[str, list[Decimal]]]:
    """For the references whose amount no open item held agrees with: the (key variant, lowest,
    highest balance) to read open items one edit away by (repo.open_invoices_near), and the
    amounts by variant that add_neighbours keeps them for."""
    needed = {pair for receipt in receipts for pair in matcher.neighbours_needed(receipt)}
    amounts: dict[str, list[Decimal]] = {}
    for key, amount in needed:
        for variant in reference_variants(key):
            amounts.setdefault(variant, []).append(amount)
    ceiling = matcher.policy.tolerance_absolute
    return sorted({(variant, amount, amount + ceiling) for variant, values in amounts.items()
                   for amount in values}), amounts


def add_neighbours(matcher: Matcher, rows: Any, amounts: dict[str, list[Decimal]]) -> None:
    matcher.add_invoices(invoice for invoice in _open_invoices(rows) if matcher.could_be_neighbour(invoice, amounts))


_ENCODE_PIECE = 2_000  # payments per piece of an import's encoded result


class EncodedResult(dict):
    """An import's result with its JSON text, encoded once: a chunked import encodes it for its
    import record, and the answer is the same text (encoding a 100,000-payment result again cost
    about 2 s at the end of the request)."""

    def __init__(self, result: dict[str, Any], encoded: str) -> None:
        super().__init__(result)
        self.encoded = encoded


async def encode_result(result: dict[str, Any]) -> str:
    """An import's result as JSON text, its payments encoded a piece at a time in worker threads.
    json.dumps holds the GIL for a whole call (its encoder is C): one call over a 100,000-payment
    result held the event loop for about a second, so health checks waited. The payments come
    last in the text."""
    if isinstance(result, EncodedResult):
        return result.encoded
    head = {key: value for key, value in result.items() if key != "payments"}
    payments = result.get("payments") or []
    pieces = [await asyncio.to_thread(lambda part=payments[lo:lo + _ENCODE_PIECE]: ",".join(
        json.dumps(p, default=str) for p in part)) for lo in range(0, len(payments), _ENCODE_PIECE)]
    encoded = json.dumps(head, default=str)
    return encoded[:-1] + (", " if head else "") + '"payments": [' + ",".join(pieces) + "]}"


def receipt_of(line: BankLine, currency: str) -> Receipt:
    return Receipt(amount=line.amount, currency=currency, payer_name=line.payer_name,
                   payer_account=line.payer_account, customer_hint=line.customer_hint, text=line.text,
                   remittance=line.remittance)


async def import_file(conn: AsyncConnection, cmd: ImportFile, parsed: ParsedFile, settings: CashApplicationSettings,
                      meta: dict[str, Any]) -> dict[str, Any]:
    content_hash = hashlib.sha256(cmd.content).hexdigest()
    import_id = f"imp_{content_hash[:20]}"
    inserted = (await conn.execute(
        text("INSERT INTO bank_imports (import_id, content_hash, file_format, file_name) VALUES (:i, :h, :f, :n)"
             " ON CONFLICT (content_hash) DO NOTHING RETURNING 1"),
        {"i": import_id, "h": content_hash, "f": parsed.file_format, "n": cmd.file_name})).first()
    if inserted is None:
        first = (await conn.execute(text("SELECT result FROM bank_imports WHERE content_hash = :h"),
                                    {"h": content_hash})).scalar_one()
        return {**_json(first), "replayed": True}
    fresh: list[BankStatement] = []
    duplicates: list[dict[str, str]] = []
    for statement, key in zip(parsed.statements, statement_keys(parsed.statements)):
        if key is not None:
            claimed = (await conn.execute(
                text("INSERT INTO bank_statements (statement_key, import_id, file_format, account, statement_date,"
                     " currency, opening_balance, closing_balance) VALUES (:k, :i, :f, :a, :d, :c, :o, :cl)"
                     " ON CONFLICT (statement_key) DO NOTHING RETURNING 1"),
                {"k": key, "i": import_id, "f": statement.file_format, "a": statement.account,
                 "d": statement.statement_date, "c": statement.currency, "o": statement.opening_balance,
                 "cl": statement.closing_balance})).first()
            if claimed is None:
                first_import = (await conn.execute(
                    text("SELECT import_id FROM bank_statements WHERE statement_key = :k"), {"k": key})).scalar_one()
                duplicates.append({"statement": key, "imported_by": first_import})
                continue
        fresh.append(statement)
    if not fresh and duplicates:
        # Every statement of this file came before (in another file): answer that import.
        first = (await conn.execute(text("SELECT result FROM bank_imports WHERE import_id = :i"),
                                    {"i": duplicates[0]["imported_by"]})).scalar_one()
        result = {**_json(first), "replayed": True}
        await repo.record_import_result(conn, import_id, json.dumps(result, default=str), result)
        return result

    fresh, already = await _without_posted_lines(conn, fresh)
    from services.cash_application.application.card_payouts import claim_payout_lines

    payout_lines = await claim_payout_lines(conn, fresh)  # credits that carry a card payout already imported
    await allow_long_idle(conn)  # matching a large file under its locks is CPU work between statements
    receipts = [(statement, line) for statement in fresh for line in statement.lines
                if line.is_receipt and id(line) not in payout_lines]
    matcher = await scoped_matcher(conn, await customer_matcher(conn, policy_of(settings)),
                                   [receipt_of(line, statement.currency) for statement, line in receipts])
    # Pass 1, on the snapshot: which invoices to lock (CPU work, in a worker thread).
    touched: set[str] = await asyncio.to_thread(lambda: {
        a.invoice_id for statement, line in receipts
        for a in matcher.match(receipt_of(line, statement.currency)).allocations})
    for statement in fresh:  # and the invoices of earlier receipts this file returns: one sorted lock
        for line in statement.lines:
            if line.is_return:
                earlier = await repo.find_returnable_payment(
                    conn, reference=line.returned_reference or line.bank_reference, amount=line.amount,
                    currency=statement.currency)
                if earlier:
                    touched.update(await repo.applied_invoice_ids(conn, earlier))
    locked = await repo.lock_open_items_by_id(conn, sorted(touched))
    matcher.set_balances({invoice_id: item.open_balance for invoice_id, item in locked.items()})
    # pass 2, under the locks: CPU work, in a worker thread
    new_payments, sources, statement_rows, payments_out, counts = await asyncio.to_thread(
        post_receipts, import_id, [(n, statement, line) for n, (statement, line) in enumerate(receipts, start=1)],
        matcher, locked, settings.auto_apply_threshold)
    counts.update({"returns": 0, "returns_unmatched": 0, "other_lines": 0, "card_payouts": 0})
    # Every receipt is a new payment stream: appended in one batch, then projected in bulk before
    # the returns, so a return in the same file finds its receipt.
    new_streams = await aggregate.save_new(conn, new_payments, meta)
    await payments_projection.project_new_payments(conn, new_streams)
    if sources:
        await posting.record_sources(conn, sources)
    statement_rows += await _other_line_rows(conn, import_id, fresh, payout_lines, counts, meta)
    lines_in_file = sum(len(s.lines) for s in fresh)
    if len(statement_rows) != lines_in_file:
        # Never fewer lines posted than read: a mismatch is a defect here, and nothing is kept.
        raise FileRejectedProblem(f"{lines_in_file} lines were read but {len(statement_rows)} recorded; nothing"
                                  " was posted", extra={"errors": [{"field": "file", "reason": "lines read and"
                                                                    " recorded differ"}]})
    if statement_rows:
        await repo.insert_statement_lines(conn, statement_rows)
    if payout_lines:
        from services.cash_application.adapters import card_payout_store

        for row in statement_rows:
            if row["po"]:
                await card_payout_store.tie_line(conn, payout_id=row["po"], import_id=import_id, position=row["pos"],
                                                 value_date=row["d"])
    bank_import = BankImport(import_id)
    for statement in fresh:
        bank_import.record_statement(file_format=statement.file_format, account=statement.account,
                                     statement_date=statement.statement_date, currency=statement.currency,
                                     entries=len(statement.lines), total_credits=statement.total_credits,
                                     at=utc_midnight(statement.statement_date))
    await aggregate.save(conn, bank_import, meta)
    result = {
        "import_id": import_id, "file_format": parsed.file_format, "file_name": cmd.file_name,
        "statements": [_statement_out(s) for s in fresh], "duplicate_statements": duplicates,
        "lines_already_imported": already,
        **counts, "payments": payments_out, "replayed": False,
    }
    await repo.record_import_result(conn, import_id, json.dumps(result, default=str), result)
    return result


COUNTS = ("receipts", "auto_applied", "partially_applied", "unapplied")


def post_receipts(import_id: str, part: Sequence[tuple[int, BankStatement, BankLine]], matcher: Matcher,
                  locked: dict[str, Any], threshold: Decimal, results: Sequence[MatchResult] | None = None
                  ) -> tuple | None:
    """The receipts' payments (`<import>.<n>`), sources, statement lines, summaries and counts,
    against the locked open items (`locked` is updated as they apply). With `results` (a first
    pass's, which applied each auto-applied one to the matcher as it went) those are posted, or
    None is answered if one of them is not posted as the pass applied it, so the caller matches
    again; without, each receipt is matched now and applied to the matcher as it posts. No I/O."""
    payments, sources, lines, summaries = [], [], [], []
    counts = dict.fromkeys(COUNTS, 0)
    for index, (n, statement, line) in enumerate(part):
        result = results[index] if results is not None else matcher.match(receipt_of(line, statement.currency))
        auto_apply = bool(result.allocations) and result.confidence >= threshold
        payment = Payment(f"{import_id}.{n}")
        try:
            payment.receive_matched(
                customer_id=result.customer_id or UNIDENTIFIED_CUSTOMER, amount=line.amount,
                currency=statement.currency, value_date=line.value_date, method=line.method,
                reference=line.bank_reference, result=result, auto_apply=auto_apply,
                at=utc_midnight(line.value_date), locked=locked)
        except CashApplicationRuleViolation as exc:
            raise FileRejectedProblem(f"{line.position}: {exc}", extra={
                "errors": [{"field": line.position, "reason": str(exc)}]}) from exc
        if results is not None:
            if bool(payment.applications) != auto_apply:
                return None  # the first pass applied what posting does not (or the reverse)
        elif payment.applications:
            matcher.commit(result)
        payments.append(payment)
        sources.append(_source_row(payment.id, import_id, line, result, payment))
        lines.append(_line_row(import_id, statement, line, payment.id, "receipt"))
        counts["receipts"] += 1
        counts["auto_applied" if payment.unapplied_amount == 0 else
               "partially_applied" if payment.applications else "unapplied"] += 1
        summaries.append(_summary(payment, line, result))
    return payments, sources, lines, summaries, counts


def statement_keys(statements: tuple[BankStatement, ...]) -> list[str | None]:
    """Each statement's identity, numbered when one file repeats it: two sections of one account
    in one BAI2 group, or two MT940 statements with the same number and date, are two statements
    of this file, not a duplicate. The same file sent again repeats them in the same order, so
    its statements are still recognised."""
    seen: dict[str, int] = {}
    keys: list[str | None] = []
    for statement in statements:
        key = statement.identity
        if key is not None:
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > 1:
                key = f"{key}#{seen[key]}"
        keys.append(key)
    return keys


async def _without_posted_lines(conn: AsyncConnection, statements: list[BankStatement]
                                ) -> tuple[list[BankStatement], int]:
    """Drop lines an earlier import already posted: same account, bank reference, amount,
    direction and value date. Cumulative intraday reports and overlapping statements repeat
    lines; the accounts are locked (advisory, in order) so two such imports cannot both post one."""
    for account in sorted({s.account or "" for s in statements}):
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"bank-account:{account}"})
    references = sorted({line.bank_reference for s in statements for line in s.lines if line.bank_reference})
    posted = await repo.posted_line_keys(conn, references)
    return drop_posted(statements, posted)


def drop_posted(statements: Sequence[BankStatement], posted: set) -> tuple[list[BankStatement], int]:
    """The statements without the lines in `posted` (account, bank reference, amount, direction,
    value date), and how many were dropped."""
    kept: list[BankStatement] = []
    skipped = 0
    for statement in statements:
        lines = tuple(line for line in statement.lines
                      if (statement.account or "", line.bank_reference, line.amount, line.direction,
                          line.value_date) not in posted)
        skipped += len(statement.lines) - len(lines)
        kept.append(replace(statement, lines=lines))
    return kept, skipped


async def _other_line_rows(conn: AsyncConnection, import_id: str, fresh: list, payout_lines: dict[int, str],
                           counts: dict[str, int], meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The statement rows of every line that is not a posted receipt, in file order: a card
    payout's bank line (its charges are posted gross from the payout's report), a return (the
    receipt it returns reopened), anything else kept as it is; `counts` counts each kind."""
    rows: list[dict[str, Any]] = []
    for statement in fresh:
        for line in statement.lines:
            if line.is_receipt:
                if id(line) in payout_lines:
                    counts["card_payouts"] += 1
                    rows.append({**_line_row(import_id, statement, line, None, "card_payout"),
                                 "po": payout_lines[id(line)]})
                continue
            if line.is_return:
                returned = await _return_from_file(conn, line, statement.currency, meta)
                counts["returns" if returned else "returns_unmatched"] += 1
                rows.append(_line_row(import_id, statement, line, returned, "return"))
            else:
                counts["other_lines"] += 1
                rows.append(_line_row(import_id, statement, line, None, "other"))
    return rows


async def _return_from_file(conn: AsyncConnection, line: BankLine, currency: str, meta: dict[str, Any]) -> str | None:
    """A returned item on a statement: find the receipt it takes back (by the bank's reference and
    amount) and return it. Unknown returns stay on the reconciliation as lines without a receipt."""
    payment_id = await repo.find_returnable_payment(conn, reference=line.returned_reference or line.bank_reference,
                                                    amount=line.amount, currency=currency)
    if payment_id is None:
        return None
    payment = await aggregate.load(conn, Payment, payment_id)
    # Already locked with the file's other invoices (a receipt of this file: matched under them).
    await repo.lock_open_items_by_id(conn, sorted({a.invoice_id for a in payment.applications.values()}))
    try:
        payment.return_payment(line.return_code or "RETURN", f"returned on the bank statement ({line.position})",
                               line.value_date, utc_midnight(line.value_date))
    except CashApplicationRuleViolation:
        return None
    await project_saved(conn, payment, meta)
    return payment_id


def _source_row(payment_id: str, import_id: str, line: BankLine, result: MatchResult,
                payment: Payment) -> dict[str, Any]:
    row = posting.source_row(payment, result, import_id=import_id, position=line.position,
                             bank_reference=line.bank_reference, payer_name=line.payer_name,
                             payer_account=line.payer_account, remittance_text=_remittance_text(line))
    if line.value_date_source:
        row["explanation"] = "; ".join(filter(None, [row["explanation"], _date_note(line)]))
    return row


def _date_note(line: BankLine) -> str:
    return (f"value date {line.value_date.isoformat()} taken from {line.value_date_source}:"
            " the entry has neither ValDt nor BookgDt")


def _remittance_text(line: BankLine) -> str | None:
    parts = [line.text] + [f"{i.reference}{'=' + to_str(i.paid_amount) if i.paid_amount is not None else ''}"
                           f"{' ' + i.reason_code if i.reason_code else ''}" for i in line.remittance]
    joined = " | ".join(p for p in parts if p)
    return joined[:2000] or None


def _line_row(import_id: str, statement: BankStatement, line: BankLine, payment_id: str | None,
              kind: str) -> dict[str, Any]:
    return {"i": import_id, "pos": line.position, "a": statement.account, "d": line.value_date,
            "c": statement.currency, "amt": line.amount, "dir": line.direction, "ref": line.bank_reference,
            "name": line.payer_name, "p": payment_id, "k": kind, "po": None}


def _summary(payment: Payment, line: BankLine, result: MatchResult) -> dict[str, Any]:
    currency = payment.currency
    return {
        "payment_id": payment.id, "position": line.position, "amount": money_str(payment.amount, currency),
        "value_date": line.value_date.isoformat(),
        "value_date_source": _date_note(line) if line.value_date_source else None,
        "customer_id": result.customer_id, "customer_rule": result.customer_rule,
        "status": "applied" if payment.unapplied_amount == 0 else (
            "partially_applied" if payment.applications else "unapplied"),
        "applications": [{"invoice_id": a.invoice_id, "amount": money_str(a.amount, currency), "rule": a.rule}
                         for a in payment.applications.values()],
        "unapplied_amount": money_str(payment.unapplied_amount, currency),
        "reason": payment.unapplied_reasons[-1] if payment.unapplied_reasons else None,
    }


def _statement_out(statement: BankStatement) -> dict[str, Any]:
    currency = statement.currency
    credits = [line for line in statement.lines if line.direction == "credit"]
    return {"account": statement.account, "statement_id": statement.statement_id,
            "statement_date": statement.statement_date.isoformat(), "currency": currency,
            "entries": len(statement.lines), "entry_records": statement.entry_records,
            "entries_not_booked": statement.entries_not_booked,
            "credits": len(credits), "debits": len(statement.lines) - len(credits),
            "total_credits": money_str(statement.total_credits, currency),
            "total_debits": money_str(statement.total_debits, currency),
            "opening_balance": money_str(statement.opening_balance, currency),
            "closing_balance": money_str(statement.closing_balance, currency)}


def _json(value: Any) -> dict[str, Any]:
    return json.loads(value) if isinstance(value, str) else dict(value or {})

