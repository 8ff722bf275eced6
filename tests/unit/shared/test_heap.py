"""shared.heap: the collector kept out of long-lived state's way, and given back its due."""
import gc
import weakref

import pytest

from shared import heap


class _Node:
    def __init__(self) -> None:
        self.other: "_Node | None" = None


def _cycle() -> weakref.ref:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_fewer_collections_raises_the_young_threshold_and_gives_the_old_one_back() -> None:
    before = gc.get_threshold()
    with heap.fewer_collections(young=123_456):
        assert gc.get_threshold() == (123_456, *before[1:])
    assert gc.get_threshold() == before


def test_fewer_collections_gives_the_threshold_back_when_the_work_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError):
        with heap.fewer_collections(young=99_999):
            raise RuntimeError("chunk failed")
    assert gc.get_threshold() == before


def test_fewer_collections_never_lowers_a_higher_threshold() -> None:
    before = gc.get_threshold()
    gc.set_threshold(200_000, *before[1:])
    try:
        with heap.fewer_collections(young=50_000):
            assert gc.get_threshold()[0] == 200_000
    finally:
        gc.set_threshold(*before)


def test_a_frozen_cycle_waits_for_thaw_and_refreeze_then_is_collected() -> None:
    ref = _cycle()
    held = [ref()]  # alive while frozen, as an import's state is
    heap.freeze_long_lived()
    try:
        held.clear()  # now garbage, but a cycle: reference counting cannot free it
        gc.collect()
        assert ref() is not None, "a frozen object is out of the collector's reach"
        heap.thaw_and_refreeze()
        assert ref() is None
        assert gc.get_freeze_count() > 0, "what is still alive is frozen again"
    finally:
        gc.unfreeze()
        gc.freeze()


def test_freeze_long_lived_collects_garbage_cycles_before_freezing() -> None:
    ref = _cycle()
    heap.freeze_long_lived()
    assert ref() is None


def test_collections_paused_stops_the_collector_and_gives_it_back_even_when_the_work_fails() -> None:
    assert gc.isenabled()
    with pytest.raises(ValueError):
        with heap.collections_paused():
            assert not gc.isenabled()
            raise ValueError("line 7: not a date")
    assert gc.isenabled()


def test_collections_paused_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        with heap.collections_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_cycle_made_while_paused_is_collected_after() -> None:
    with heap.collections_paused():
        ref = _cycle()
        assert ref() is not None
    gc.collect()
    assert ref() is None
