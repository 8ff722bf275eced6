"""Statistics of the platform benchmark: percentiles (nearest rank, no interpolation: a p99 of
200 samples is a latency some request really had) and the open-loop arrival schedule."""
from __future__ import annotations

import math
from typing import Sequence


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least p % of the samples at or below
    it. NaN for no samples."""
    if not 0 < p <= 100:
        raise ValueError(f"p must be in (0, 100], not {p}")
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max of durations given in seconds, in milliseconds."""
    return {"n": len(seconds), "p50": percentile(seconds, 50) * 1000, "p99": percentile(seconds, 99) * 1000,
            "max": (max(seconds) * 1000) if seconds else math.nan}


def arrival_times(rate: float, duration: float, start: float = 0.0) -> list[float]:
    """The open-loop schedule: request i is due at start + i / rate, for every i with
    i / rate < duration (a constant rate, independent of how fast answers come back, so slow
    answers cannot slow the arrivals down: no coordinated omission)."""
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    count = math.ceil(rate * duration - 1e-9)
    return [start + i / rate for i in range(count)]


def sustained_rate(completions: Sequence[float], start: float, end: float, warmup: float = 0.0) -> float:
    """Completions per second within [start + warmup, end] (completion times in seconds)."""
    begin = start + warmup
    if end <= begin:
        raise ValueError("the measuring window is empty")
    return sum(1 for t in completions if begin <= t <= end) / (end - begin)
