"""make bench-cash: cash application's matching on a seeded portfolio, beside a raw baseline.

The generator (bench/cash_application/generator.py) makes 50,000 open invoices and a bank file
of 10,000 receipts with realistic noise, the truth kept aside. Figures, on the same receipts:
- the matching engine (services/cash_application/domain/matching.py) in memory: invoice-level
  auto-application rate, envelope (whole-receipt) rate, precision, receipts matched per second
  (no database);
- the same engine with its 50,000 open items loaded from PostgreSQL (the query the import runs);
- the whole import end to end: parse the CSV, load open items, match, lock, append events and
  project them, one transaction (includes the database posting), with the share of it spent
  appending the payment streams (shared.aggregate.save_new: one batch of new streams);
- the raw baseline: a plain dict lookup of each word of the remittance against invoice numbers,
  exactly as printed, applying the invoice's balance when found.
BENCH_CASH_INVOICES / BENCH_CASH_RECEIPTS / BENCH_CASH_SEED change the sizes and the seed.
Then bench/cash_application/scale.py: 100,000 receipts against 500,000 open invoices through the
API, with peak memory and health-check latency (BENCH_CASH_SCALE=0 skips it).
"""
from __future__ import annotations

import asyncio
import os
import time
import types
import uuid

import asyncpg

from bench.cash_application.generator import Portfolio, generate, score
from services.cash_application.adapters.bank_files import parse_file
from services.cash_application.application import imports
from services.cash_application.application.imports import receipt_of
from services.cash_application.domain.matching import Matcher, OpenInvoice
from services.cash_application.main import definition
from services.cash_application.settings import CashApplicationSettings
from shared import aggregate
from shared.service import Runtime
from tests.support.infra import asyncpg_dsn, fresh_database, sqlalchemy_url

INVOICES = int(os.environ.get("BENCH_CASH_INVOICES", "50000"))
RECEIPTS = int(os.environ.get("BENCH_CASH_RECEIPTS", "10000"))
SEED = int(os.environ.get("BENCH_CASH_SEED", "7"))


def engine_run(portfolio: Portfolio, lines) -> tuple[list, float, float]:
    """Match every receipt with the engine in memory; returns (applied per receipt, index s, match s)."""
    started = time.perf_counter()
    matcher = Matcher([OpenInvoice(i.invoice_id, i.invoice_number, i.customer_id, "USD", i.amount, i.due_date)
                       for i in portfolio.invoices], {c.customer_id: c.name for c in portfolio.customers})
    indexed = time.perf_counter()
    applied = []
    threshold = matcher.policy.auto_apply_threshold
    for line in lines:
        result = matcher.match(receipt_of(line, "USD"))
        if result.allocations and result.confidence >= threshold:
            matcher.commit(result)
            applied.append([(a.invoice_id, a.applied) for a in result.allocations])
        else:
            applied.append([])
    return applied, indexed - started, time.perf_counter() - indexed


def baseline_run(portfolio: Portfolio, lines) -> tuple[list, float]:
    """The raw baseline: each word of the remittance looked up as printed in a dict of numbers."""
    started = time.perf_counter()
    by_number = {i.invoice_number: i for i in portfolio.invoices}
    balance = {i.invoice_id: i.amount for i in portfolio.invoices}
    applied = []
    for line in lines:
        made = []
        left = line.amount
        words = line.text.split() + [item.reference for item in line.remittance]
        for word in words:
            invoice = by_number.get(word)
            if invoice is None or balance[invoice.invoice_id] <= 0 or left <= 0:
                continue
            amount = min(left, balance[invoice.invoice_id])
            balance[invoice.invoice_id] -= amount
            left -= amount
            made.append((invoice.invoice_id, amount))
        applied.append(made)
    return applied, time.perf_counter() - started


async def load_portfolio(dsn: str, portfolio: Portfolio) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "customers", columns=["customer_id", "name", "currency"],
            records=[(c.customer_id, c.name, "USD") for c in portfolio.customers])
        await conn.copy_records_to_table(
            "open_items", columns=["invoice_id", "invoice_number", "customer_id", "currency", "total_amount",
                                   "issue_date", "due_date"],
            records=[(i.invoice_id, i.invoice_number, i.customer_id, "USD", i.amount, i.due_date, i.due_date)
                     for i in portfolio.invoices])
        await conn.execute("ANALYZE open_items")
    finally:
        await conn.close()


async def database_runs(portfolio: Portfolio, lines, csv_bytes: bytes) -> dict[str, float]:
    figures: dict[str, float] = {}
    async with fresh_database("benchcash") as name:
        settings = CashApplicationSettings(database_url=sqlalchemy_url(name))
        runtime = Runtime(definition(settings))
        try:
            await runtime.migrate()
            await load_portfolio(asyncpg_dsn(name), portfolio)
            started = time.perf_counter()
            async with runtime.engine.connect() as conn:
                base = await imports.customer_matcher(conn, imports.policy_of(settings))
                matcher = await imports.scoped_matcher(conn, base, [receipt_of(line, "USD") for line in lines])
            loaded = time.perf_counter()
            for line in lines:
                result = matcher.match(receipt_of(line, "USD"))
                if result.allocations and result.confidence >= matcher.policy.auto_apply_threshold:
                    matcher.commit(result)
            figures["load_s"] = loaded - started
            figures["match_s"] = time.perf_counter() - loaded
            cmd = imports.ImportFile(content=csv_bytes, file_format="csv", file_name="bench.csv")
            appending = {"s": 0.0, "calls": 0, "events": 0}

            async def timed_save(conn, aggregate_, metadata):
                began = time.perf_counter()
                appended = await aggregate.save(conn, aggregate_, metadata)
                appending["s"] += time.perf_counter() - began
                appending["calls"] += 1
                appending["events"] += len(appended)
                return appended

            async def timed_save_new(conn, aggregates, metadata):
                began = time.perf_counter()
                batches = await aggregate.save_new(conn, aggregates, metadata)
                appending["s"] += time.perf_counter() - began
                appending["calls"] += 1
                appending["events"] += sum(len(b) for b in batches)
                return batches

            # The import's own reference to shared.aggregate is swapped for a timing one, in this
            # process only: shared code and the import itself run unchanged.
            imports.aggregate = types.SimpleNamespace(  # type: ignore[assignment]
                load=aggregate.load, save=timed_save, save_new=timed_save_new)
            started = time.perf_counter()
            parsed = await imports.parse(cmd, settings)
            try:
                async with runtime.engine.begin() as conn:
                    result = await imports.import_file(conn, cmd, parsed, settings,
                                                       {"correlation_id": str(uuid.uuid4()), "actor": "bench"})
            finally:
                imports.aggregate = aggregate  # type: ignore[assignment]
            figures["import_s"] = time.perf_counter() - started
            figures.update(append_s=appending["s"], append_calls=appending["calls"], append_events=appending["events"])
            figures["import_auto_applied"] = result["auto_applied"]
            figures["import_receipts"] = result["receipts"]
        finally:
            await runtime.dispose()
    return figures


def main() -> None:
    started = time.perf_counter()
    portfolio = generate(seed=SEED, invoices=INVOICES, receipts=RECEIPTS)
    csv_bytes = portfolio.csv().encode()
    lines = parse_file(csv_bytes, "csv").statements[0].lines
    print(f"cash application: seed {SEED}, {len(portfolio.customers):,} customers, {len(portfolio.invoices):,} open"
          f" invoices, {len(lines):,} receipts ({time.perf_counter() - started:.1f} s to generate)")
    applied, index_s, match_s = engine_run(portfolio, lines)
    engine = score(portfolio.receipts, applied)
    base_applied, base_s = baseline_run(portfolio, lines)
    base = score(portfolio.receipts, base_applied)
    db = asyncio.run(database_runs(portfolio, lines, csv_bytes))

    print(f"\n{'measure':48}{'engine':>14}{'raw baseline':>16}")
    print(f"{'invoice-level auto-application rate':48}{engine.invoice_rate:>14.2%}{base.invoice_rate:>16.2%}")
    print(f"{'envelope (whole-receipt) rate':48}{engine.envelope_rate:>14.2%}{base.envelope_rate:>16.2%}")
    print(f"{'precision (correct / applied)':48}{engine.precision:>14.3%}{base.precision:>16.3%}")
    print(f"{'wrong applications':48}{engine.applied_pairs - engine.correct_pairs:>14,}"
          f"{base.applied_pairs - base.correct_pairs:>16,}")
    print(f"{'receipts/s matched, in memory (no database)':48}{len(lines) / match_s:>14,.0f}{len(lines) / base_s:>16,.0f}")
    print(f"\nengine index of {len(portfolio.invoices):,} open invoices built in memory: {index_s:.2f} s")
    print(f"open items loaded from PostgreSQL and indexed: {db['load_s']:.2f} s; matching then "
          f"{len(lines) / db['match_s']:,.0f} receipts/s ({db['match_s']:.2f} s for {len(lines):,}; no posting)")
    print(f"end-to-end import incl. database posting (parse, load, match, lock, append events, project, one"
          f" transaction): {db['import_s']:.1f} s for {int(db['import_receipts']):,} receipts ="
          f" {db['import_receipts'] / db['import_s']:,.0f} receipts/s; {int(db['import_auto_applied']):,} fully"
          f" auto-applied")
    print(f"  of which appending the streams (shared.aggregate.save_new and the import record, {int(db['append_calls']):,} calls,"
          f" {int(db['append_events']):,} events): {db['append_s']:.1f} s ({db['append_s'] / db['import_s']:.0%})")
    print("\nby kind (truth invoice applications: auto-applied correctly / all):")
    for kind, (total, hits) in sorted(engine.by_kind.items()):
        if total:
            print(f"  {kind:24}{hits:>7,} / {total:<7,}{hits / total:>8.1%}")
    if os.environ.get("BENCH_CASH_SCALE", "1") != "0":
        from bench.cash_application import scale

        scale.main()


if __name__ == "__main__":
    main()
