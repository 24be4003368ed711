"""Gradient exchange strategies for DataParallel: PyTorch's DDP communication hooks.

DataParallel groups gradients into buckets and, once per bucket per synchronised backward,
calls its comm hook as `hook(state, bucket)`. The contract:

- `bucket.buffer()` is a flat, contiguous 1-D array of the parameters' dtype holding this
  rank's gradients of `bucket.parameters()`, in that order, **already divided by
  `bucket.comm.size`** (DataParallel divides while copying them in, in the same pass; in
  PyTorch every hook divides first itself). The parameters' `.grad`s are views of it.
- The hook must leave in that buffer, in place, the mean over ranks of the gradients, which
  is the sum over ranks of the buffers; that is what `.grad` holds when `backward()` returns.
  It returns None (PyTorch hooks return a Future; here the exchange is blocking).
- It talks to the other ranks through `bucket.comm` (a Communicator) and must make the same
  collectives in the same order on every rank. Buckets come in the same order on every rank
  (`bucket.index()`), one at a time, on DataParallel's communication thread when it overlaps
  communication with backward, so a hook must not call back into autograd.
- `state` is whatever was passed to `register_comm_hook(state, hook)`, given back unchanged
  on every call (e.g. an error-feedback residual); the built-in hooks ignore it.

Example:
    >>> def sum_hook(state, bucket):      # the sum over ranks instead of the mean
    ...     buffer = bucket.buffer()
    ...     buffer *= bucket.comm.size
    ...     bucket.comm.allreduce_(buffer)
    >>> dp = dist.DataParallel(model)
    >>> dp.register_comm_hook(None, sum_hook)
"""

from __future__ import annotations

from disttrain.backend import get_array_module


class GradBucket:
    """One bucket of gradients, as a comm hook sees it (PyTorch's `dist.GradBucket`).

    Args:
        index: the bucket's place in launch order (0 is exchanged first).
        params: the Parameters whose gradients the buffer holds, in buffer order.
        names: their names in the wrapped module.
        comm: the Communicator to exchange over.
        is_last: whether this bucket is exchanged last in a step.

    Attributes:
        comm: the Communicator of the DataParallel.
        names: the parameter names, in buffer order.
    """

    def __init__(self, index: int, params: list, names: list[str], comm, is_last: bool):
        self.params, self.names, self.comm = params, names, comm
        self._index, self._is_last, self._buffer = index, is_last, None

    def buffer(self):
        """The flat gradient array (this rank's gradients / size) to exchange in place."""
        return self._buffer

    def index(self) -> int:
        """The bucket's place in launch order, the same on every rank."""
        return self._index

    def is_last(self) -> bool:
        """Whether this is the last bucket exchanged in a step."""
        return self._is_last

    def parameters(self) -> list:
        """The Parameters whose gradients `buffer()` holds, in buffer order."""
        return list(self.params)


def allreduce_hook(state, bucket: GradBucket) -> None:
    """The default exchange: one in-place MPI all-reduce (sum) of the pre-divided buffer,
    which leaves the mean over ranks (PyTorch's `default_hooks.allreduce_hook`).

    Args:
        state: unused.
        bucket: the GradBucket to exchange.
    """
    bucket.comm.allreduce_(bucket.buffer())


def fp16_compress_hook(state, bucket: GradBucket) -> None:
    """Exchanges the bucket in float16, half the bytes on the wire, and sums in the
    gradients' dtype (PyTorch's `default_hooks.fp16_compress_hook`).

    For few ranks on a slow network; float16 keeps 11 significant bits, and the error it adds
    is measured by examples/allreduce_benchmark.py. MPI has no float16 sum, so every rank's
    float16 copy is all-gathered and summed locally in the buffer's dtype.

    Args:
        state: unused.
        bucket: the GradBucket to exchange.
    """
    buffer, comm = bucket.buffer(), bucket.comm
    xp = get_array_module(buffer)
    half = xp.empty(buffer.shape, xp.float16)
    # NOTE: undoes the 1/size while casting (one pass): gradients near float16's smallest
    # normal (6e-5) keep their bits; the division comes after the sum, in the buffer's dtype
    xp.multiply(buffer, buffer.dtype.type(comm.size), out=half)
    comm.allgather(half).sum(axis=0, dtype=buffer.dtype, out=buffer)
    buffer *= buffer.dtype.type(1.0 / comm.size)


def hierarchical_hook(state, bucket: GradBucket) -> None:
    """Exchanges the bucket by a two-level all-reduce: within each node, then between the
    nodes, then within each node again (`dist.HierarchicalAllreduce`). For many nodes on a
    slow network, where the flat all-reduce pays a network latency per step of its ring; on
    one machine it is only slower (README, "How it scales").

    Args:
        state: a `dist.HierarchicalAllreduce` built over the DataParallel's communicator
            (collectively, on every rank, once: it splits the communicator by node).
        bucket: the GradBucket to exchange.

    Example:
        >>> dp = dist.DataParallel(model)
        >>> hier = dist.HierarchicalAllreduce(dp.comm)  # nodes by host name
        >>> dp.register_comm_hook(hier, comm_hooks.hierarchical_hook)
    """
    if getattr(state, "comm", None) is not bucket.comm or not hasattr(state, "allreduce_"):
        got = type(state).__name__ if getattr(state, "comm", None) is None else \
            f"one over another communicator ({state.comm!r})"
        raise TypeError(f"hierarchical_hook (rank {bucket.comm.rank}): state must be "
                        "dist.HierarchicalAllreduce(dp.comm), over the DataParallel's own "
                        f"communicator; got {got}")
    state.allreduce_(bucket.buffer())
