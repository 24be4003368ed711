"""A ring reduce-scatter made of point-to-point exchanges, for the Communicator.

Open MPI 5's shared-memory `MPI_Reduce_scatter` moved 0.3-0.4 GB/s on the machines we measured,
5-8x slower than this ring and slower even than an all-reduce of the same bytes (2 ranks, 16 MB
of float32: 12.8 ms against 2.2 ms for the ring and 2.9 ms for `MPI_Allreduce`;
docs/PERFORMANCE.md). The ring sends each block once per step, size - 1 steps of about
1/size of the bytes, and each rank adds what it receives with numpy: the (p - 1)/p n bytes a
reduce-scatter needs, moved by `MPI_Sendrecv`, which Open MPI does with one copy between the
processes.

No mpi4py import here (comm.py is the only module that imports it): the functions take the
mpi4py communicator and call its methods.
"""

from __future__ import annotations

import numpy


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
