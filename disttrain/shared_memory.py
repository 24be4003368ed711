"""Arrays in shared memory for Tensor.share_memory_ / Module.share_memory: host arrays backed
by an anonymous shared mapping (mmap MAP_SHARED | MAP_ANONYMOUS), which processes forked
afterwards see and update in place (Hogwild-style training); multiprocessing's pickler
refuses to copy them elsewhere. Imports numpy and the standard library only."""

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


def refuse_pickling_shared(cls: type) -> None:
    """Makes multiprocessing's pickler (the arguments of a "spawn"/"forkserver" Process, every
    Queue) raise for instances of `cls` whose array is in shared memory: the receiver would
    get a private copy where the sender expects shared storage."""
    from multiprocessing.reduction import ForkingPickler  # NOTE: only share_memory_ pays

    ForkingPickler.register(cls, _reduce_unless_shared)


def _reduce_unless_shared(tensor):
    if is_shared_array(tensor.array):
        raise RuntimeError(
            f"{type(tensor).__name__} in shared memory (share_memory_) pickled for another "
            "process: it is shared only with processes forked after share_memory(), and a "
            "'spawn'/'forkserver' process or a Queue would receive a private copy; start the "
            "processes with the 'fork' start method (multiprocessing.get_context('fork'))")
    # NOTE: protocol 2's reduction (copyreg.__newobj__ + slots and __dict__ state) is what
    # the pickler does for a Tensor it has no reducer for; disttrain itself never pickles
    return tensor.__reduce_ex__(2)
