"""Timing shared by the speed scripts (no flags: each script defines its own)."""
from __future__ import annotations

import time


def median_seconds(function, repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    function()  # warm-up (allocation, graph specialisation for this size)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
