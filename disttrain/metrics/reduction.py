"""How stateful metrics combine their state over ranks, through a communicator passed in
(duck-typed: anything with disttrain's Communicator `rank`, `size`, `allreduce_(array, op)`
and `allgather(array)`), or by default the world Communicator dist.init() recorded in
disttrain.env. Core module: never imports mpi4py or disttrain.distributed, so the metrics
work, and are tested, in one process.
"""

from __future__ import annotations

import numpy

from disttrain import env

COMM_METHODS = ("allreduce_", "allgather")


def resolve_comm(comm, owner: str):
    """The communicator to reduce over: `comm` when given, None (this process only) for
    comm=False, and for comm=None the world Communicator dist.init() recorded (None when no
    group is initialised: a plain single process computes locally).

    NOTE: read at each call, not at construction, so a metric made before dist.init()
    reduces too once the group exists.
    """
    if comm is False:
        return None
    return check_comm(env.world_comm() if comm is None else comm, owner)


def check_comm(comm, owner: str):
    """`comm` (None: no reduction), checked to have the collectives the metrics call."""
    if comm is None:
        return None
    missing = [m for m in COMM_METHODS if not callable(getattr(comm, m, None))]
    missing += [a for a in ("rank", "size") if not isinstance(getattr(comm, a, None), int)]
    if missing:
        raise TypeError(f"{owner}: comm must be a disttrain Communicator (with rank, size, "
                        f"allreduce_ and allgather), got {type(comm).__name__} lacking "
                        f"{missing}")
    return comm


def same_on_all_ranks(comm, values, what: str, owner: str) -> None:
    """Raises on every rank when the int `values` differ between ranks (a collective), so a
    mismatch never reaches a buffer collective of unequal sizes (a hang or garbage)."""
    if comm is None:
        return
    rows = comm.allgather(numpy.asarray(values, dtype=numpy.int64).reshape(-1))
    if (rows != rows[0]).any():
        per_rank = {r: rows[r].tolist() for r in range(rows.shape[0])}
        raise ValueError(f"{owner}: rank {comm.rank}: {what} differs between ranks: "
                         f"{per_rank}; construct the metric alike on every rank")


def sum_over_ranks(comm, array):
    """A copy of `array` summed over the ranks of `comm` (just a copy when comm is None)."""
    total = numpy.array(array, copy=True, order="C")
    return total if comm is None else comm.allreduce_(total, op="sum")


def gather_rows(comm, array, owner: str):
    """Every rank's `array` (shape (n_rank, *row) with row () or (d,)), concatenated in rank
    order: shards may differ in length, and a rank with no rows (shape (0,)) adopts the
    others' row shape. Two collectives: the shapes, then the rows padded to the longest."""
    array = numpy.ascontiguousarray(array)
    if comm is None:
        return array
    row = array.shape[1] if array.ndim == 2 else 0
    shapes = comm.allgather(numpy.array([array.shape[0], array.ndim, row], numpy.int64))
    filled = shapes[shapes[:, 0] > 0]
    if filled.shape[0] == 0:
        return array
    if (filled[:, 1:] != filled[0, 1:]).any():
        got = {r: _shape(*shapes[r]) for r in range(shapes.shape[0]) if shapes[r, 0] > 0}
        raise ValueError(f"{owner}: rank {comm.rank}: ranks hold rows of different shapes "
                         f"{got}: expected one shape on every rank")
    ndim, width = int(filled[0, 1]), int(filled[0, 2])
    longest = int(shapes[:, 0].max())
    padded = numpy.zeros((longest, width) if ndim == 2 else (longest,), array.dtype)
    if array.shape[0]:
        padded[:array.shape[0]] = array
    gathered = comm.allgather(padded)
    return numpy.concatenate([gathered[r, :n] for r, n in enumerate(shapes[:, 0].tolist())])


def _shape(n, ndim, width) -> tuple:
    return (int(n), int(width)) if ndim == 2 else (int(n),)
