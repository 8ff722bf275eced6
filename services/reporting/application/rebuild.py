"""Rebuild the read model from scratch. The topics keep everything (retention.ms=-1), and the
projection is order-independent and idempotent, so the rebuilt result equals the incrementally
built one. Two ways:

- batch (the default of `python -m services.reporting rebuild`): in one transaction, build a
  new read model in a shadow schema (adapters/shadow) from all four topics, read from their
  beginning to their current end and written set-based (adapters/batch_load); forget the
  consumer's inbox and store the end offsets as its positions; then swap the shadow in by
  renames, which wait only for the reports running at that moment. Readers keep reading the
  old model, without waiting, until the commit; the workers then carry on from the end. A tqdm
  bar shows events read.
- clear only (`--clear-only`): empty the facts and forget the consumer's inbox and offsets, so
  the consumer replays every topic from offset 0, event by event, when the workers start.

Run either with the reporting workers stopped: a running consumer keeps its in-memory positions.
Without --force it asks Kafka whether the consumer group has members and refuses if it has (or
if Kafka cannot be asked)."""
from __future__ import annotations

import time
from typing import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine
from tqdm import tqdm

from shared.db import allow_long_idle
from services.reporting.adapters import batch_load, kafka_groups, shadow
from services.reporting.adapters import repository as repo
from services.reporting.projections.facts import facts_of

REFUSED = 2


async def _refused(bootstrap: str, consumer: str, force: bool, say: Callable[[str], None]) -> bool:
    if force:
        return False
    try:
        members = await kafka_groups.active_members(bootstrap, consumer)
    except kafka_groups.GroupStateUnknown as exc:
        say(f"refusing to rebuild: {exc}. Stop the reporting workers, then run again with --force.")
        return True
    if members:
        say(f"refusing to rebuild: consumer group {consumer} is running ({', '.join(sorted(members))}). "
            "Stop the reporting workers first.")
        return True
    return False


async def rebuild_from_topics(engine: AsyncEngine, bootstrap: str, consumer: str, topics: Sequence[str], *,
                              force: bool = False, say: Callable[[str], None] = print,
                              progress: bool = True) -> int:
    """The batch rebuild. Returns a process exit code: 0 done, 2 refused (nothing changed)."""
    if await _refused(bootstrap, consumer, force, say):
        return REFUSED
    started = time.perf_counter()
    with tqdm(total=0, unit="event", unit_scale=True, desc="rebuild", disable=not progress) as bar:
        def advance(read: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
                bar.refresh()
            bar.update(read)

        async with engine.begin() as conn:
            await allow_long_idle(conn)  # the transaction stays open while the topics are read
            live = await shadow.create(conn, repo.FACT_TABLES)
            removed = await repo.forget_consumer(conn, consumer)
            counts = await batch_load.load_topics(conn, bootstrap, consumer, topics, facts_of, advance)
            await repo.rebuild_deltas(conn)
            swap_started = time.perf_counter()
            await shadow.swap(conn, repo.FACT_TABLES, live)
        swapped_in = time.perf_counter() - swap_started
    elapsed = time.perf_counter() - started
    say("rebuild: forgot " + ", ".join(f"{table} {count}" for table, count in removed.items())
        + f"; new read model swapped in ({swapped_in * 1000:.0f} ms)")
    say(f"rebuild: {counts['events']} events ({counts['facts']} facts, {counts['skipped']} undecodable skipped) "
        f"from {', '.join(topics)} in {elapsed:.1f} s ({counts['events'] / elapsed if elapsed else 0:,.0f} events/s); "
        f"consumer {consumer} carries on from the end offsets")
    return 0


async def rebuild(engine: AsyncEngine, bootstrap: str, consumer: str, *, force: bool = False,
                  say: Callable[[str], None] = print) -> int:
    """Clear only. Returns a process exit code: 0 done, 2 refused (nothing was changed)."""
    if await _refused(bootstrap, consumer, force, say):
        return REFUSED
    async with engine.begin() as conn:
        removed = await repo.clear_read_model(conn, consumer)
    say("rebuild: removed " + ", ".join(f"{table} {count}" for table, count in removed.items()))
    say(f"rebuild: consumer {consumer} will replay its topics from offset 0 when the workers start")
    return 0
