"""torch.distributed's collectives on Tensors, in place as in torch, over a Communicator:
all_reduce, broadcast, reduce, all_gather(_into_tensor), reduce_scatter(_tensor), gather,
scatter, barrier; ReduceOp and Work.

`group` is None (the world), dist.group.WORLD, or any Communicator (e.g. from `comm.split`);
src/dst are ranks in that group (torch: global ranks; the same for the world).
Every call checks its arguments on the calling rank (TypeError / ValueError naming the call,
the argument, expected and actual values, and the rank) before its collective.
NOTE: the checks are local, not collective (that would double every call's latency): when one
rank's arguments are wrong, that rank raises and dist.init()'s abort hook ends the whole job
(no rank is left waiting), as torch's rank errors do.
"""

from __future__ import annotations

import enum

from disttrain.backend import get_array_module
from disttrain.distributed.comm import Communicator, Request
from disttrain.distributed.process_group import (
    check_rank,
    check_tensor,
    check_tensor_list,
    world_comm,
)
from disttrain.tensor import Tensor


class ReduceOp(enum.Enum):
    """How all_reduce, reduce and reduce_scatter combine the ranks' values (torch's names).

    AVG is the sum divided by the number of ranks (floating-point tensors only); BAND, BOR and
    BXOR are bitwise (integer or bool tensors).
    """

    SUM = "sum"
    PRODUCT = "prod"
    MIN = "min"
    MAX = "max"
    AVG = "avg"
    BAND = "band"
    BOR = "bor"
    BXOR = "bxor"


_BITWISE = (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR)


class Work:
    """What a call with `async_op=True` returns (torch's `dist.Work`).

    isend/irecv are nonblocking MPI requests: `wait()` blocks until the transfer is done.
    NOTE: the collectives complete before they return (blocking MPI calls), so their Work is
    already completed; `wait()` returns at once. The results are the same as torch's either way.

    Example:
        >>> work = dist.all_reduce(t, async_op=True)
        >>> work.wait()
        True
    """

    def __init__(self, request: Request | None = None):
        self._request = request

    def wait(self, timeout=None) -> bool:
        """Blocks until the operation is complete; returns True."""
        if self._request is not None:
            self._request.wait()
        return True

    def is_completed(self) -> bool:
        """Whether the operation is complete; never blocks."""
        return self._request is None or self._request.test()

    def is_success(self) -> bool:
        return self.is_completed()


def _done(async_op: bool) -> Work | None:
    return Work() if async_op else None


def _mpi_op(what: str, op, tensor: Tensor, comm: Communicator) -> str:
    """The Communicator's name for `op` (AVG: "sum", divided afterwards by _average)."""
    if not isinstance(op, ReduceOp):
        raise TypeError(f"{what} (rank {comm.rank}): op must be a dist.ReduceOp (e.g. "
                        f"dist.ReduceOp.SUM), got {op!r}")
    kind = tensor.dtype.kind
    if op in _BITWISE and kind not in "biu":
        raise TypeError(f"{what} (rank {comm.rank}): {op} needs an integer or bool tensor, "
                        f"got dtype {tensor.dtype}")
    if op is ReduceOp.AVG:
        if kind not in "fc":
            raise TypeError(f"{what} (rank {comm.rank}): ReduceOp.AVG needs a floating-point "
                            f"tensor, got dtype {tensor.dtype} (use ReduceOp.SUM)")
        return "sum"
    return op.value


def _average(tensor: Tensor, op, comm: Communicator) -> None:
    if op is ReduceOp.AVG:
        tensor.array /= tensor.array.dtype.type(comm.size)


def all_reduce(tensor: Tensor, op: ReduceOp = ReduceOp.SUM, group=None, async_op: bool = False):
    """Reduces `tensor` over all ranks, in place: every rank ends with the result.

    Args:
        tensor: the Tensor to reduce (contiguous; the same shape and dtype on every rank).
        op: a dist.ReduceOp.
        group: None (the world), dist.group.WORLD or a Communicator.
        async_op: return a (completed) Work instead of None.

    Example:
        >>> t = dt.tensor([float(dist.get_rank())])
        >>> dist.all_reduce(t, op=dist.ReduceOp.SUM)   # t = 0 + 1 + ... + (size - 1)
    """
    comm = world_comm("all_reduce", group)
    check_tensor("all_reduce", "tensor", tensor, comm)
    comm.allreduce_(tensor.array, op=_mpi_op("all_reduce", op, tensor, comm))
    _average(tensor, op, comm)
    return _done(async_op)


def reduce(tensor: Tensor, dst: int | None = None, op: ReduceOp = ReduceOp.SUM, group=None,
           async_op: bool = False):
    """Reduces `tensor` over all ranks into `dst`'s `tensor`, in place; the other ranks'
    tensors are only read (left unchanged).

    Args:
        tensor: the Tensor to reduce.
        dst: the rank that receives the result.
        op: a dist.ReduceOp.
        group: None (the world), dist.group.WORLD or a Communicator.
        async_op: return a (completed) Work instead of None.
    """
    comm = world_comm("reduce", group)
    check_tensor("reduce", "tensor", tensor, comm)
    check_rank("reduce", "dst", dst, comm)
    comm.reduce_(tensor.array, root=dst, op=_mpi_op("reduce", op, tensor, comm))
    if comm.rank == dst:
        _average(tensor, op, comm)
    return _done(async_op)


def broadcast(tensor: Tensor, src: int | None = None, group=None, async_op: bool = False):
    """Overwrites `tensor` on every rank with `src`'s, in place.

    Args:
        tensor: the Tensor to send (on src) or overwrite (elsewhere).
        src: the rank whose tensor every rank gets.
        group: None (the world), dist.group.WORLD or a Communicator.
        async_op: return a (completed) Work instead of None.

    Example:
        >>> w = dt.randn(3)
        >>> dist.broadcast(w, src=0)   # rank 0's values everywhere
    """
    comm = world_comm("broadcast", group)
    check_tensor("broadcast", "tensor", tensor, comm)
    check_rank("broadcast", "src", src, comm)
    comm.bcast_(tensor.array, root=src)
    return _done(async_op)


def all_gather(tensor_list: list[Tensor], tensor: Tensor, group=None, async_op: bool = False):
    """Fills `tensor_list[r]` with rank r's `tensor`, on every rank.

    Args:
        tensor_list: one Tensor per rank, each of `tensor`'s shape and dtype (overwritten).
        tensor: this rank's contribution.
        group: None (the world), dist.group.WORLD or a Communicator.
        async_op: return a (completed) Work instead of None.

    Example:
        >>> out = [dt.zeros(2) for _ in range(dist.get_world_size())]
        >>> dist.all_gather(out, dt.full((2,), float(dist.get_rank())))
    """
    comm = world_comm("all_gather", group)
    check_tensor("all_gather", "tensor", tensor, comm)
    outputs = check_tensor_list("all_gather", "tensor_list", tensor_list, tensor, comm)
    gathered = comm.allgather(tensor.array)
    for r, out in enumerate(outputs):
        out.array[...] = gathered[r]
    return _done(async_op)


def all_gather_into_tensor(output_tensor: Tensor, input_tensor: Tensor, group=None,
                           async_op: bool = False):
    """Every rank's `input_tensor`, concatenated along dim 0 (output shape
    (size * n, ...)) or stacked (output shape (size, n, ...)), into `output_tensor`.

    Args:
        output_tensor: size times input_tensor's elements, of its dtype (overwritten).
        input_tensor: this rank's contribution.
        group: None (the world), dist.group.WORLD or a Communicator.
        async_op: return a (completed) Work instead of None.
    """
    what = "all_gather_into_tensor"
    comm = world_comm(what, group)
    check_tensor(what, "input_tensor", input_tensor, comm)
    check_tensor(what, "output_tensor", output_tensor, comm)
    _check_sizes(what, ("output_tensor", output_tensor), ("input_tensor", input_tensor), comm)
    gathered = comm.allgather(input_tensor.array)
    output_tensor.array[...] = gathered.reshape(output_tensor.shape)
    return _done(async_op)


def _check_sizes(what: str, large, small, comm: Communicator) -> None:
    """`large` = (name, Tensor) must hold size times `small`'s elements, of its dtype."""
    (big_name, big), (small_name, little) = large, small
    if big.dtype != little.dtype or big.numel() != comm.size * little.numel():
        raise ValueError(f"{what} (rank {comm.rank}): {big_name} must have {comm.size} x "
                         f"{little.numel()} elements of dtype {little.dtype} ({comm.size} "
                         f"ranks x {small_name} {little.shape}), got shape {big.shape} dtype "
                         f"{big.dtype}")


def reduce_scatter(output: Tensor, input_list: list[Tensor], op: ReduceOp = ReduceOp.SUM,
                   group=None, async_op: bool = False):
    """Reduces `input_list[r]` over all ranks into rank r's `output`.

    Args:
        output: this rank's result (overwritten).
        input_list: one Tensor per rank, each of output's shape and dtype.
        op: a dist.ReduceOp.
        group: None (the world), dist.group.WORLD or a Communicator.
        async_op: return a (completed) Work instead of None.
    """
    comm = world_comm("reduce_scatter", group)
    check_tensor("reduce_scatter", "output", output, comm)
    inputs = check_tensor_list("reduce_scatter", "input_list", input_list, output, comm)
    mpi_op = _mpi_op("reduce_scatter", op, output, comm)
    xp = get_array_module(output.array)
    stacked = xp.stack([t.array.reshape(-1) for t in inputs])
    output.array[...] = comm.reduce_scatter(stacked, op=mpi_op).reshape(output.shape)
    _average(output, op, comm)
    return _done(async_op)


def reduce_scatter_tensor(output: Tensor, input: Tensor, op: ReduceOp = ReduceOp.SUM,
                          group=None, async_op: bool = False):
    """Reduces `input` (size blocks along dim 0, or (size, *output.shape)) over all ranks;
    rank r's `output` gets block r.

    Args:
        output: this rank's result (overwritten).
        input: size times output's elements, of its dtype.
        op: a dist.ReduceOp.
        group: None (the world), dist.group.WORLD or a Communicator.
        async_op: return a (completed) Work instead of None.
    """
    what = "reduce_scatter_tensor"
    comm = world_comm(what, group)
    check_tensor(what, "output", output, comm)
    check_tensor(what, "input", input, comm)
    _check_sizes(what, ("input", input), ("output", output), comm)
    mpi_op = _mpi_op(what, op, output, comm)
    blocks = comm.reduce_scatter(input.array.reshape(comm.size, -1), op=mpi_op)
    output.array[...] = blocks.reshape(output.shape)
    _average(output, op, comm)
    return _done(async_op)


def gather(tensor: Tensor, gather_list: list[Tensor] | None = None, dst: int | None = None,
           group=None, async_op: bool = False):
    """Fills `gather_list[r]` on `dst` with rank r's `tensor`.

    Args:
        tensor: this rank's contribution.
        gather_list: on dst, one Tensor per rank of tensor's shape and dtype (overwritten);
            None elsewhere.
        dst: the rank that gathers.
        group: None (the world), dist.group.WORLD or a Communicator.
        async_op: return a (completed) Work instead of None.
    """
    comm = world_comm("gather", group)
    check_tensor("gather", "tensor", tensor, comm)
    outputs = _root_list("gather", "gather_list", gather_list, tensor, dst, "dst", comm)
    gathered = comm.gather(tensor.array, root=dst)
    for r, out in enumerate(outputs or ()):
        out.array[...] = gathered[r]
    return _done(async_op)


def scatter(tensor: Tensor, scatter_list: list[Tensor] | None = None, src: int | None = None,
            group=None, async_op: bool = False):
    """Overwrites rank r's `tensor` with `scatter_list[r]` of `src`.

    Args:
        tensor: this rank's result (overwritten).
        scatter_list: on src, one Tensor per rank of tensor's shape and dtype; None elsewhere.
        src: the rank that scatters.
        group: None (the world), dist.group.WORLD or a Communicator.
        async_op: return a (completed) Work instead of None.
    """
    comm = world_comm("scatter", group)
    check_tensor("scatter", "tensor", tensor, comm)
    inputs = _root_list("scatter", "scatter_list", scatter_list, tensor, src, "src", comm)
    chunks = None
    if inputs is not None:
        chunks = get_array_module(tensor.array).stack([t.array for t in inputs])
    comm.scatter_(tensor.array, chunks, root=src)
    return _done(async_op)


def _root_list(what: str, name: str, values, like: Tensor, root, root_name: str,
               comm: Communicator) -> list[Tensor] | None:
    """The root's checked list; None on the other ranks, which must not pass one (torch)."""
    check_rank(what, root_name, root, comm)
    if comm.rank == root:
        return check_tensor_list(what, name, values, like, comm)
    if values:
        raise ValueError(f"{what} (rank {comm.rank}): {name} must be None (or empty) on ranks "
                         f"other than {root_name}={root}, got {len(values)} item(s)")
    return None


def barrier(group=None, async_op: bool = False, device_ids=None):
    """Waits until every rank of `group` has called barrier().

    Args:
        group: None (the world), dist.group.WORLD or a Communicator.
        async_op: return a (completed) Work instead of None.
        device_ids: accepted for torch's signature; unused.
    """
    world_comm("barrier", group).barrier()
    return _done(async_op)
