"""A ring reduce-scatter made of point-to-point exchanges, for the Communicator.

Open MPI 5's shared-memory `MPI_Reduce_scatter` was slower here than an all-reduce of the same
bytes, which moves twice as much (2 ranks, 4 MB of float32: 0.85-1.04 ms against 0.39-0.46 ms;
examples/reduce_scatter_benchmark.py, docs/PERFORMANCE.md). The ring sends each block once per
step, size - 1 steps of 1/size of the bytes, and each rank adds what it receives with numpy:
the (p - 1)/p n bytes a reduce-scatter needs, moved by `MPI_Sendrecv`, which Open MPI does
with one copy between the processes (4 MB: 0.36-0.40 ms).

No mpi4py import here (comm.py is the only module that imports it): the functions take the
mpi4py communicator and call its methods.
"""

from __future__ import annotations

import numpy

# NOTE: below this average block MPI's own is about as fast (2 ranks, 64 KB in all: 12-16 us
# against the ring's 10-18; 256 KB: 57-70 against 22-37 us)
RING_MIN_BLOCK_BYTES = 64 << 10
# NOTE: with more ranks than cores each ring step waits for a descheduled neighbour (4 ranks on
# 2 cores, 1 MB in all: 470 against 403 us; 4 MB: 2.1 against 3.2 ms)
RING_MIN_BLOCK_BYTES_OVERSUBSCRIBED = 512 << 10


def ring_pays(counts: list[int], itemsize: int, oversubscribed: bool = False) -> bool:
    """Whether the ring beats MPI_Reduce_scatter for these block sizes. Each of its size - 1
    steps takes as long as the largest block, so very uneven blocks (a bucket that falls in one
    rank's shard is a reduce to that rank) go to MPI's own, whose tree does log2(size) steps:
    the ring is used with 2 ranks (one exchange, optimal whatever the counts) or when
    (size - 1) * max(counts) <= 2 * sum(counts) (at most twice an even ring's time), and only
    from RING_MIN_BLOCK_BYTES per rank (RING_MIN_BLOCK_BYTES_OVERSUBSCRIBED when the node has
    more ranks than cores).

    Example:
        >>> ring_pays([1 << 20] * 4, 4), ring_pays([0, 0, 0, 1 << 22], 4)
        (True, False)
    """
    p, total = len(counts), sum(counts)
    least = RING_MIN_BLOCK_BYTES_OVERSUBSCRIBED if oversubscribed else RING_MIN_BLOCK_BYTES
    if p < 2 or total * itemsize < least * p:
        return False
    return p == 2 or (p - 1) * max(counts) <= 2 * total


def block_offsets(counts: list[int]) -> list[int]:
    """Where each rank's block starts in the flat array: [0, c0, c0 + c1, ...].

    Example:
        >>> block_offsets([3, 0, 2])
        [0, 3, 3]
    """
    offsets, total = [], 0
    for c in counts:
        offsets.append(total)
        total += c
    return offsets


def ring_reduce_scatter_sum(mpi_comm, flat: numpy.ndarray, out: numpy.ndarray,
                            counts: list[int], scratch: numpy.ndarray) -> None:
    """Sums 1-D `flat` over the ranks of `mpi_comm`; rank r gets block r (counts[r] elements
    from sum(counts[:r])) in `out`. `flat` is only read, and `out` may be `flat`'s own block
    (an in-place reduce-scatter). `scratch` holds at least 2 * max(counts) elements of
    `flat`'s dtype. Collective over `mpi_comm`, whose point-to-point traffic must be this
    ring's alone (tag 0): the Communicator passes a duplicate of its communicator.

    In step s rank r sends block (r - s - 1) mod p to its right neighbour, receives block
    (r - s - 2) mod p from its left one and adds its own copy of that block: the partial sum
    it sends on in the next step, and at the last step, block r complete. Each block is summed
    on one rank, so every rank's result is the one sum (no rank disagrees by a rounding).
    """
    p, r = mpi_comm.Get_size(), mpi_comm.Get_rank()
    offsets = block_offsets(counts)

    def block(i: int) -> numpy.ndarray:
        return flat[offsets[i]:offsets[i] + counts[i]]

    if p == 1:
        numpy.copyto(out, block(0))
        return
    width = max(counts)
    received, partial = scratch[:width], scratch[width:2 * width]
    right, left = (r + 1) % p, (r - 1) % p
    send = block((r - 1) % p)
    for s in range(p - 1):
        i = (r - s - 2) % p
        got = received[:counts[i]]
        mpi_comm.Sendrecv(send, right, 0, got, left, 0)
        send = out if s == p - 2 else partial[:counts[i]]
        numpy.add(block(i), got, out=send)


class Ring:
    """The Communicator's reduce-scatter ring: its settings, agreed by every rank on first use
    (one rank told not to use it, or a node with more ranks than cores, decides for all: ranks
    choosing differently would wait in different calls for ever), its own duplicate
    communicator, and scratch buffers kept between calls (a new one each call would page-fault
    megabytes every step).

    Args:
        mpi_comm: the Communicator's mpi4py communicator.
        allowed: False makes every call MPI's own (env DISTTRAIN_RING_REDUCE_SCATTER=0).
        oversubscribed: this node has more ranks than cores.
    """

    def __init__(self, mpi_comm, allowed: bool, oversubscribed: bool):
        self.mpi_comm, self.allowed, self.oversubscribed = mpi_comm, allowed, oversubscribed
        self.comm, self.scratch, self.agreed = None, {}, False

    def reduce_scatter_sum(self, flat, out, counts: list[int]) -> bool:
        """Runs ring_reduce_scatter_sum and returns True, or returns False where MPI's own
        reduce-scatter should run (every rank returns the same). Collective."""
        if not self.agreed:
            mine = numpy.array([not self.allowed, self.oversubscribed], numpy.int64)
            total = numpy.empty_like(mine)
            self.mpi_comm.Allreduce(mine, total)  # NOTE: mpi4py's default op is SUM
            self.allowed, self.oversubscribed = total[0] == 0, total[1] > 0
            self.comm = self.mpi_comm.Dup() if self.allowed else None
            self.agreed = True
        if not (self.allowed and isinstance(flat, numpy.ndarray)
                and isinstance(out, numpy.ndarray)
                and ring_pays(counts, flat.itemsize, self.oversubscribed)):
            return False
        scratch, need = self.scratch.get(flat.dtype), 2 * max(counts)
        if scratch is None or scratch.size < need:
            scratch = self.scratch[flat.dtype] = numpy.empty(need, flat.dtype)
        ring_reduce_scatter_sum(self.comm, flat, out, counts, scratch)
        return True
