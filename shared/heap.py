"""The cyclic garbage collector, kept out of the way of long-lived state and bulk work.

CPython's collector runs a young collection every 700 container allocations (more than are freed)
and, further apart, full ones that walk every tracked object. A process holding a large long-lived heap
(a service's startup state, a bank import's customer side and its receipts) pays for that heap
again in every full collection, and bulk work (a chunk of 5,000 payments, a batch of events)
allocates millions of short-lived objects, so those collections come often: about a fifth of a
bank import's matching process's time, a quarter of a projection's CPU (bench/projections.py,
collections), and a full collection in a service's process holds its event loop. Objects freed
by reference counting (nearly all of them: rows, events, payments) never needed the collector."""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator

YOUNG_THRESHOLD_BULK = 50_000  # container allocations between young collections during bulk work


def freeze_long_lived() -> None:
    """Move every object alive now out of the collector's scans (gc.freeze). Garbage cycles are
    collected first; frozen objects are still freed by reference counting when they die (only a
    cycle among them would wait for thaw_and_refreeze)."""
    gc.collect()
    gc.freeze()


def thaw_and_refreeze() -> None:
    """Give what was frozen back to the collector, collect the cycles among it, and freeze what is
    still alive: after long-lived state frozen for a while (an import's) is gone."""
    gc.unfreeze()
    freeze_long_lived()


@contextlib.contextmanager
def fewer_collections(young: int = YOUNG_THRESHOLD_BULK) -> Iterator[None]:
    """Bulk work: young collections every `young` container allocations instead of 700 (and
    full ones a hundred times rarer). The threshold is the process's: the previous one comes
    back when the work ends."""
    before = gc.get_threshold()
    gc.set_threshold(max(young, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


@contextlib.contextmanager
def collections_paused() -> Iterator[None]:
    """Bounded work that builds what it returns (a file parsed into its lines): no collection at
    all while it runs, since nearly everything it allocates survives it and a collection would only
    walk it again. Cycles it leaves are collected by the next collection after it (the previous
    state comes back when the work ends)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
