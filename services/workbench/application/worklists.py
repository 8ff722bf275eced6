"""A collector's worklist as collections ranks, sorts and pages it. Each page asked for is kept
for a short while per (collector, day, order, page), so going back and forth between pages does
not rank the book again on every key press; the whole worklist (for an export) likewise. An
action by the collector drops what is kept for it (the ranking may have changed)."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from services.workbench.adapters.backends import Backends

TTL_SECONDS = 60.0
MAX_KEPT = 2000  # pages kept across all collectors; the oldest go first


class WorklistCache:
    def __init__(self, ttl: float = TTL_SECONDS) -> None:
        self.ttl = ttl
        self._entries: dict[tuple, tuple[float, Any]] = {}
        self._locks: dict[tuple, asyncio.Lock] = {}

    async def _kept(self, key: tuple, fetch) -> Any:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one call at a time per page: a burst of the same page waits for it
            hit = self._entries.get(key)
            if hit and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
            value = await fetch()
            if len(self._entries) >= MAX_KEPT:
                for old in sorted(self._entries, key=lambda k: self._entries[k][0])[:MAX_KEPT // 4]:
                    self._entries.pop(old, None)
                    self._locks.pop(old, None)
            self._entries[key] = (time.monotonic(), value)
            return value

    async def page(self, backends: Backends, collector_id: str, as_of: str, actor: str, *, sort: str,
                   descending: bool, offset: int, limit: int) -> dict[str, Any]:
        """One page as collections sorts it: {total, data}."""
        order = "desc" if descending else "asc"

        async def fetch() -> dict[str, Any]:
            body = await backends.get("collections", f"/v1/worklists/{collector_id}", actor, as_of=as_of, sort=sort,
                                      order=order, offset=offset, limit=limit)
            return {"total": int(body.get("total", 0)), "data": body.get("data", [])}
        return await self._kept((collector_id, as_of, "page", sort, order, offset, limit), fetch)

    async def entries(self, backends: Backends, collector_id: str, as_of: str, actor: str) -> list[dict[str, Any]]:
        """The whole worklist, by priority (an export)."""
        async def fetch() -> list[dict[str, Any]]:
            body = await backends.get("collections", f"/v1/worklists/{collector_id}", actor, as_of=as_of)
            return body.get("data", [])
        return await self._kept((collector_id, as_of, "all"), fetch)

    async def next_after(self, backends: Backends, collector_id: str, as_of: str, actor: str,
                         current: str) -> str | None:
        """The account after `current` by priority (the first when `current` is not on the
        worklist; None after the last), as collections answers it (`after`, one entry)."""
        body = await backends.get("collections", f"/v1/worklists/{collector_id}", actor, as_of=as_of,
                                  after=current, limit=1)
        rows = body.get("data", [])
        return rows[0]["customer_id"] if rows else None

    def drop(self, collector_id: str | None = None) -> None:
        if collector_id is None:
            self._entries.clear()
        else:
            for key in [k for k in self._entries if k[0] == collector_id]:
                self._entries.pop(key, None)
