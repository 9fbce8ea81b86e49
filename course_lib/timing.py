"""How the course times a piece of work: the median of several runs after a warm-up run (the first call pays for
allocation and caches; one slow run from a busy machine moves a median far less than a mean)."""
from __future__ import annotations

import statistics
import time

from ._checks import check_positive_int

__all__ = ["median_wall_time"]


def median_wall_time(fn, repeats: int = 5, warmup: int = 1, clock=time.perf_counter) -> float:
    """Seconds ``fn()`` takes: call it ``warmup`` times untimed, then ``repeats`` times, each timed by ``clock``
    (a function returning seconds) immediately around the call; return the median of those ``repeats`` times."""
    if not callable(fn):
        raise TypeError(f"fn: expected a function of no arguments to time, got {type(fn).__name__}")
    check_positive_int(repeats, "repeats")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise ValueError(f"warmup: expected a number of untimed calls >= 0, got {warmup!r}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)
