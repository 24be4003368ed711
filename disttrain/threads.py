"""dt.set_num_threads / dt.get_num_threads: the threads of the BLAS and OpenMP pools that
numpy's GEMMs (matmul, linear, convolution) run on, set through threadpoolctl. dist.init()
sets the same pools per rank through set_num_threads."""

from __future__ import annotations

import os

import numpy  # noqa: F401  NOTE: loads numpy's BLAS, so its pool is there to query and limit
import threadpoolctl


def set_num_threads(n: int) -> None:
    """Limits the BLAS/OpenMP thread pools of this process to `n` threads (torch's intra-op
    threads), from now on.

    Args:
        n: a positive number of threads.

    Example:
        >>> dt.set_num_threads(1)
        >>> dt.get_num_threads()
        1
    """
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"set_num_threads: expected an int, got {n.__class__.__name__} ({n!r})")
    if n <= 0:
        raise RuntimeError(f"set_num_threads expects a positive integer, got {n}")
    # NOTE: looked up on the module at each call (tests replace threadpool_limits)
    threadpoolctl.threadpool_limits(n)


def get_num_threads() -> int:
    """The threads numpy's BLAS runs on (the largest pool; the usable cores when threadpoolctl
    finds no BLAS)."""
    pools = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    if pools:
        return max(pools)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        os.cpu_count() or 1
