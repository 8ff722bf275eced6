"""A collector's worklist as collections ranks it, kept for a short while per collector so that
paging, sorting and 'next account' do not rank the whole book again on every key press. An
action by the collector drops it (the ranking may have changed)."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from services.workbench.adapters.backends import Backends

TTL_SECONDS = 60.0


class WorklistCache:
    def __init__(self, ttl: float = TTL_SECONDS) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[str, str], tuple[float, list[dict[str, Any]]]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def entries(self, backends: Backends, collector_id: str, as_of: str, actor: str) -> list[dict[str, Any]]:
        key = (collector_id, as_of)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one ranking at a time per collector: a burst of pages waits for it
            hit = self._entries.get(key)
            if hit and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
            body = await backends.get("collections", f"/v1/worklists/{collector_id}", actor, as_of=as_of)
            rows = body.get("data", [])
            self._entries[key] = (time.monotonic(), rows)
            return rows

    def drop(self, collector_id: str | None = None) -> None:
        if collector_id is None:
            self._entries.clear()
        else:
            for key in [k for k in self._entries if k[0] == collector_id]:
                self._entries.pop(key, None)


