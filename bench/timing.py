"""The one rate measurement of the benchmarks: best of several batches, so that a load burst on the shared
2-core machine hits one batch and not the figure; the same for the measured side and its floor or peer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def rate(fn: Callable[[], Any], seconds: float, batches: int = 5, *, cpu: bool = False) -> float:
    """Calls per second of ``fn``: the best of ``batches`` batches of about ``seconds / batches`` each,
    after one warm-up call. ``cpu``: per CPU-second of this process (``time.process_time``) instead of
    wall time, for figures that other processes on the machine must not move."""
    clock = time.process_time if cpu else time.perf_counter
    fn()
    best = 0.0
    for _ in range(batches):
        runs = 0
        start = clock()
        while True:
            fn()
            runs += 1
            elapsed = clock() - start
            if elapsed >= seconds / batches:
                break
        best = max(best, runs / elapsed)
    return best
