"""Helpers shared by the benchmark scripts in examples/."""

from __future__ import annotations

import time


def cpu_busy(seconds: float = 0.3) -> float | None:
    """Share of this machine's CPU time that was busy over `seconds` (Linux /proc/stat):
    other jobs running beside a benchmark make its figures worthless."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)
