"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def per_call(fn: Callable[[int], object], number: int, repeats: int) -> tuple[float, float]:
    """Median and 95th percentile, in microseconds, of the mean time of ``number`` calls
    ``fn(i)``, over ``repeats`` batches after one warm-up batch."""
    samples = []
    for batch in range(repeats + 1):
        base = batch * number
        t = time.perf_counter()
        for i in range(base, base + number):
            fn(i)
        samples.append((time.perf_counter() - t) / number * 1e6)
    samples = sorted(samples[1:])
    return statistics.median(samples), samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
