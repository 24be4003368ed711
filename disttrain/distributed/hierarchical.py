"""Hierarchical (two-level) all-reduce: inside each node, then between nodes.

A flat ring all-reduce over p ranks pays 2(p-1) link latencies, and every one of them crosses
the slowest link the ring uses; across many nodes that latency dominates all but the largest
messages. The hierarchical form pays 2(L-1) intra-node latencies (L ranks per node, shared
memory) and only 2(M-1) inter-node ones (M nodes), moving the same bytes through each node's
link (examples/scaling_model.py models both):

  1. intra-node reduce-scatter: local rank i holds the node's sum of shard i (1/L of the
     array; the Communicator's ring of point-to-point exchanges, not Open MPI's
     Reduce_scatter, which is ~10x slower than its all-reduce on shared memory);
  2. inter-node all-reduce of shard i among the ranks with local rank i
     (one per node), all shards at once, so every local rank drives its share of the link;
  3. intra-node all-gather of the shards.

When the nodes hold different numbers of ranks (no common shard layout) it falls back to
reduce to each node's leader (local rank 0), all-reduce among leaders, broadcast in the node.
"""

from __future__ import annotations

import numpy

from disttrain import env
from disttrain.distributed.comm import Communicator
from disttrain.tensor import Tensor

RANKS_PER_NODE_ENV = env.RANKS_PER_NODE


def node_colors(hosts: list[str], ranks_per_node: int | None = None) -> list[int]:
    """The node index of every rank: consecutive blocks of `ranks_per_node` ranks (a faked
    layout, for tests and for ranks placed by block), or else one node per distinct host, in
    order of first appearance.

    Example:
        >>> node_colors(["a", "b", "a", "b"])
        [0, 1, 0, 1]
        >>> node_colors(["a"] * 4, ranks_per_node=2)
        [0, 0, 1, 1]
    """
    if ranks_per_node is not None:
        if ranks_per_node < 1:
            raise ValueError(f"node_colors: ranks_per_node must be >= 1, got {ranks_per_node}")
        return [r // ranks_per_node for r in range(len(hosts))]
    index: dict[str, int] = {}
    return [index.setdefault(h, len(index)) for h in hosts]


def shard_counts(n: int, parts: int) -> list[int]:
    """Sizes of `parts` contiguous shards of n elements (the first n % parts one bigger)."""
    base, extra = divmod(n, parts)
    return [base + (i < extra) for i in range(parts)]


class HierarchicalAllreduce:
    """Two-level all-reduce over `comm`: the sub-communicators are built once (collectively,
    on every rank of `comm`), then `allreduce_(array)` costs no further setup.

    Args:
        comm: the communicator to reduce over.
        ranks_per_node: group consecutive ranks into nodes of this size instead of by host
            (default: the DISTTRAIN_RANKS_PER_NODE environment variable, else by host); with
            one machine this exercises the inter-node path.

    Example:
        >>> hier = HierarchicalAllreduce(comm, ranks_per_node=2)
        >>> x = numpy.full(5, float(comm.rank))
        >>> hier.allreduce_(x)  # as comm.allreduce_(x): every rank holds 0 + 1 + ... + (size-1)
    """

    def __init__(self, comm: Communicator, ranks_per_node: int | None = None):
        if ranks_per_node is None and env.ranks_per_node() is not None:
            value = env.ranks_per_node()
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"HierarchicalAllreduce (rank {comm.rank}): "
                                 f"{RANKS_PER_NODE_ENV} must be a positive integer, got "
                                 f"{value!r}")
            ranks_per_node = int(value)
        colors = node_colors(comm.allgather_obj(comm.host), ranks_per_node)
        self.comm, self.node_index = comm, colors[comm.rank]
        self.intra = comm.split(self.node_index)
        sizes = {colors.count(c) for c in colors}
        self.nodes = len(set(colors))
        # NOTE: shards need the same local size on every node (shard i meets shard i)
        self.sharded = len(sizes) == 1
        self.inter = comm.split(self.intra.rank if self.sharded else
                                (0 if self.intra.rank == 0 else 1 + self.intra.rank))

    def __repr__(self) -> str:
        return (f"HierarchicalAllreduce(rank={self.comm.rank}, node={self.node_index}, "
                f"nodes={self.nodes}, local_size={self.intra.size}, sharded={self.sharded})")

    def free(self) -> None:
        """Frees the node communicators (collective, on every rank)."""
        for sub in (self.intra, self.inter):
            sub.mpi_comm.Free()

    def allreduce_(self, array, op: str = "sum"):
        """Reduces `array` (an array or a Tensor) over every rank of the communicator, in
        place, as `comm.allreduce_` does; returns it."""
        target = array.array if isinstance(array, Tensor) else array
        flat = _flat_view(target) if isinstance(target, numpy.ndarray) else None
        if self.sharded and op == "sum" and flat is not None and self.intra.size > 1:
            self._sharded_sum(flat)
        elif self.intra.size == 1:
            self.inter.allreduce_(target, op=op)
        else:
            self.intra.reduce_(target, root=0, op=op)
            if self.intra.rank == 0:
                self.inter.allreduce_(target, op=op)
            self.intra.bcast_(target, root=0)
        return array

    def _sharded_sum(self, flat: numpy.ndarray) -> None:
        if self.inter.size == 1:  # NOTE: one node: the all-reduce beats reduce-scatter + gather
            self.intra.allreduce_(flat)
            return
        counts = shard_counts(flat.size, self.intra.size)
        start = sum(counts[:self.intra.rank])
        own = flat[start:start + counts[self.intra.rank]]
        self.intra.reduce_scatter_v_(flat, own, counts)  # NOTE: the ring of ring.py
        self.inter.allreduce_(own)
        self.intra.allgather_v_(flat, counts)


def _flat_view(array: numpy.ndarray) -> numpy.ndarray | None:
    """A 1-D view of a contiguous (C or Fortran order) array's memory, or None."""
    if array.flags.c_contiguous:
        return array.reshape(-1)
    if array.flags.f_contiguous:
        return array.reshape(-1, order="F")
    return None


def hierarchical_allreduce_(comm: Communicator, array, op: str = "sum",
                            ranks_per_node: int | None = None):
    """One hierarchical all-reduce of `array` over `comm`, in place (builds the node
    communicators, a collective call, every time: keep a HierarchicalAllreduce to reuse them).

    Args:
        comm: the communicator.
        array: numpy/cupy array or Tensor, the same shape on every rank.
        op: "sum", "max", "min" or "prod" (non-sum ops go through the node leaders).
        ranks_per_node: see HierarchicalAllreduce.

    Example:
        >>> hierarchical_allreduce_(comm, numpy.ones(3), ranks_per_node=2)  # -> size * ones
    """
    hier = HierarchicalAllreduce(comm, ranks_per_node)
    try:
        return hier.allreduce_(array, op=op)
    finally:
        hier.free()
