"""torch.distributed's point-to-point calls on Tensors (send, recv, isend, irecv) and its
collectives of Python objects (all_gather_object, broadcast_object_list, gather_object).

NOTE: objects travel through mpi4py's lower-case calls (Communicator.*_obj), which pickle them
in memory, rank to rank inside one MPI job, as torch's own object collectives pickle them.
Nothing is ever written to or read from a file this way (files are safetensors; disttrain
never unpickles a file). JSON was the other choice: it would turn tuples into lists and refuse
numpy values, sets and Tensors, so torch scripts that gather such objects would break.
"""

from __future__ import annotations

from disttrain.distributed.collectives import Work
from disttrain.distributed.comm import Request
from disttrain.distributed.process_group import check_rank, check_tensor, world_comm
from disttrain.tensor import Tensor


def _peer(what: str, name: str, value, comm) -> int:
    check_rank(what, name, value, comm)
    if value == comm.rank:
        raise ValueError(f"{what} (rank {comm.rank}): {name}={value} is this rank itself; "
                         "a rank cannot send to or receive from itself")
    return value


def send(tensor: Tensor, dst: int | None = None, group=None, tag: int = 0) -> None:
    """Sends `tensor` to rank `dst` (blocking until it may be reused).

    Args:
        tensor: the Tensor to send (contiguous).
        dst: the receiving rank.
        group: None (the world), dist.group.WORLD or a Communicator.
        tag: matches the receive's tag.

    Example:
        >>> if dist.get_rank() == 0:
        ...     dist.send(dt.ones(3), dst=1)
        ... elif dist.get_rank() == 1:
        ...     dist.recv(buffer := dt.zeros(3), src=0)
    """
    comm = world_comm("send", group)
    check_tensor("send", "tensor", tensor, comm)
    comm.send(tensor.array, dest=_peer("send", "dst", dst, comm), tag=tag)


def recv(tensor: Tensor, src: int | None = None, group=None, tag: int = 0) -> int:
    """Receives into `tensor` (the sent shape and dtype) from `src`, or any rank when None;
    returns the sender's rank.

    Args:
        tensor: the buffer, overwritten.
        src: the sending rank; None takes the first message from any rank.
        group: None (the world), dist.group.WORLD or a Communicator.
        tag: matches the send's tag.
    """
    return _receive("recv", tensor, src, group, tag).wait()


def isend(tensor: Tensor, dst: int | None = None, group=None, tag: int = 0) -> Work:
    """Starts sending `tensor` to `dst` (nonblocking MPI); do not change it before the
    returned Work's wait().

    Args:
        tensor: the Tensor to send.
        dst: the receiving rank.
        group: None (the world), dist.group.WORLD or a Communicator.
        tag: matches the receive's tag.
    """
    comm = world_comm("isend", group)
    check_tensor("isend", "tensor", tensor, comm)
    return Work(comm.isend(tensor.array, dest=_peer("isend", "dst", dst, comm), tag=tag))


def irecv(tensor: Tensor, src: int | None = None, group=None, tag: int = 0) -> Work:
    """Starts receiving into `tensor` from `src` (None: any rank), nonblocking MPI; its
    values are there after the returned Work's wait().

    Args:
        tensor: the buffer, overwritten.
        src: the sending rank, or None.
        group: None (the world), dist.group.WORLD or a Communicator.
        tag: matches the send's tag.
    """
    return Work(_receive("irecv", tensor, src, group, tag))


def _receive(what: str, tensor: Tensor, src: int | None, group, tag: int) -> Request:
    comm = world_comm(what, group)
    check_tensor(what, "tensor", tensor, comm)
    if src is not None:
        _peer(what, "src", src, comm)
    return comm.irecv_(tensor.array, source=src, tag=tag)


def all_gather_object(object_list: list, obj, group=None) -> None:
    """Fills `object_list[r]` with rank r's `obj`, on every rank (small, picklable objects).

    Args:
        object_list: a list of world-size entries (overwritten).
        obj: this rank's object.
        group: None (the world), dist.group.WORLD or a Communicator.

    Example:
        >>> everyone = [None] * dist.get_world_size()
        >>> dist.all_gather_object(everyone, {"rank": dist.get_rank()})
    """
    comm = world_comm("all_gather_object", group)
    _check_length("all_gather_object", object_list, comm.size, comm)
    object_list[:] = comm.allgather_obj(obj)


def broadcast_object_list(object_list: list, src: int | None = None, group=None,
                          device=None) -> None:
    """Overwrites `object_list` on every rank with `src`'s (the same length on every rank).

    Args:
        object_list: src's objects to send; elsewhere a list of the same length (overwritten).
        src: the sending rank.
        group: None (the world), dist.group.WORLD or a Communicator.
        device: accepted for torch's signature; unused (objects travel through host memory).
    """
    comm = world_comm("broadcast_object_list", group)
    check_rank("broadcast_object_list", "src", src, comm)
    if not isinstance(object_list, list):
        raise TypeError(f"broadcast_object_list (rank {comm.rank}): object_list must be a list, "
                        f"got {type(object_list).__name__}")
    received = comm.bcast_obj(object_list if comm.rank == src else None, root=src)
    _check_length("broadcast_object_list", object_list, len(received), comm)
    object_list[:] = received


def gather_object(obj, object_gather_list: list | None = None, dst: int | None = None,
                  group=None) -> None:
    """Fills `object_gather_list[r]` on `dst` with rank r's `obj`.

    Args:
        obj: this rank's object.
        object_gather_list: on dst, a list of world-size entries (overwritten); None elsewhere.
        dst: the gathering rank.
        group: None (the world), dist.group.WORLD or a Communicator.
    """
    comm = world_comm("gather_object", group)
    check_rank("gather_object", "dst", dst, comm)
    if comm.rank == dst:
        _check_length("gather_object", object_gather_list, comm.size, comm)
    # NOTE: an all-gather of small objects: Communicator has no object gather, and one
    # round-trip costs the same at these sizes
    everyone = comm.allgather_obj(obj)
    if comm.rank == dst:
        object_gather_list[:] = everyone


def _check_length(what: str, values, expected: int, comm) -> None:
    if not isinstance(values, list) or len(values) != expected:
        got = f"length {len(values)}" if isinstance(values, list) else type(values).__name__
        raise ValueError(f"{what} (rank {comm.rank}): the object list must be a list of "
                         f"{expected} entries (one per rank, or src's length), got {got}")
