"""Rebuild the read model from scratch: drop every fact, forget what the consumer handled (its
inbox rows and stored offsets), so its next start replays all four topics from offset 0. The
topics keep everything (retention.ms=-1), and the projection is order-independent and
idempotent, so the replayed result equals the incrementally built one.

Run it with the reporting workers stopped: a running consumer keeps its in-memory positions and
would skip the replay. Without --force it asks Kafka whether the consumer group has members
and refuses if it has (or if Kafka cannot be asked)."""
from __future__ import annotations

from typing import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from services.reporting.adapters import kafka_groups
from services.reporting.adapters import repository as repo

REFUSED = 2


async def rebuild(engine: AsyncEngine, bootstrap: str, consumer: str, *, force: bool = False,
                  say: Callable[[str], None] = print) -> int:
    """Returns a process exit code: 0 done, 2 refused (nothing was changed)."""
    if not force:
        try:
            members = await kafka_groups.active_members(bootstrap, consumer)
        except kafka_groups.GroupStateUnknown as exc:
            say(f"refusing to rebuild: {exc}. Stop the reporting workers, then run again with --force.")
            return REFUSED
        if members:
            say(f"refusing to rebuild: consumer group {consumer} is running ({', '.join(sorted(members))}). "
                "Stop the reporting workers first.")
            return REFUSED
    async with engine.begin() as conn:
        removed = await repo.clear_read_model(conn, consumer)
    say("rebuild: removed " + ", ".join(f"{table} {count}" for table, count in removed.items()))
    say(f"rebuild: consumer {consumer} will replay its topics from offset 0 when the workers start")
    return 0
