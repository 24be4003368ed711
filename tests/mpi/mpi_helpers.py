"""Helpers of the multi-rank tests (imported by tests/mpi/test_*.py)."""

from __future__ import annotations

import numpy


def same_on_all_ranks(comm, array) -> bool:
    """Whether `array` has the same shape, dtype and bytes on every rank (a collective)."""
    mine = numpy.ascontiguousarray(array)
    rows = comm.allgather_obj((mine.shape, str(mine.dtype), mine.tobytes()))
    return all(row == rows[0] for row in rows)


def shard(array, rank: int, size: int):
    """Rank's contiguous 1/size of `array` along dim 0 (which size divides)."""
    n = array.shape[0]
    assert n % size == 0, (n, size)
    return array[rank * n // size:(rank + 1) * n // size]
