"""Arrays in shared memory for Tensor.share_memory_ / Module.share_memory: host arrays backed
by an anonymous shared mapping (mmap MAP_SHARED | MAP_ANONYMOUS), which processes forked
afterwards see and update in place (Hogwild-style training). Imports numpy only."""

from __future__ import annotations

import mmap

import numpy


def share_array(array: numpy.ndarray) -> numpy.ndarray:
    """A copy of the host array `array` in anonymous shared memory (same shape and dtype)."""
    # NOTE: mmap(-1, n) is MAP_SHARED | MAP_ANONYMOUS: a fork maps the same pages
    buffer = mmap.mmap(-1, max(array.nbytes, 1))
    shared = numpy.frombuffer(buffer, dtype=array.dtype, count=array.size).reshape(array.shape)
    shared[...] = array
    return shared


def is_shared_array(array) -> bool:
    """True when `array` (or the array it views) lives in a shared memory mapping."""
    base = array
    while isinstance(base, numpy.ndarray):
        base = base.base
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)
