"""torch.distributed's process-group calls over MPI's world Communicator: init_process_group,
destroy_process_group, is_initialized, get_rank, get_world_size, get_backend; and the checks
every torch-style call (collectives.py, p2p.py) makes on its group, tensors and ranks.

Every backend is MPI here: "mpi", "gloo" and None all mean the world Communicator that
`dist.init()` makes; mpirun (not torchrun) starts the ranks and does the rendezvous.
"""

from __future__ import annotations

import datetime
import importlib.util

from disttrain import env
from disttrain.distributed.comm import Communicator, destroy, init, is_initialized
from disttrain.tensor import Tensor


class Backend:
    """torch's backend names (`dist.Backend.GLOO`); each of MPI and GLOO means MPI here."""

    MPI, GLOO, NCCL = "mpi", "gloo", "nccl"


class group:  # noqa: N801  (torch's name: `dist.group.WORLD`)
    """`dist.group.WORLD`: the world Communicator while a group is initialised, else None
    (None, the default `group=` of every call, also means the world)."""

    WORLD: Communicator | None = None


GroupMember = group  # torch's other name for it

_MPI_BACKENDS = (None, Backend.MPI, Backend.GLOO)


class _Default:
    backend: str | None = None  # what init_process_group() was given, while initialised


def is_available() -> bool:
    """Whether distributed calls can run: mpi4py is installed (nothing is imported or started).

    Example:
        >>> dist.is_available()
        True
    """
    return importlib.util.find_spec("mpi4py") is not None


is_mpi_available = is_available


def is_nccl_available() -> bool:
    """False: disttrain has no NCCL backend (GPU tensors go through MPI)."""
    return False


def init_process_group(backend: str | None = None, init_method: str | None = None,
                       timeout: datetime.timedelta | None = None, world_size: int = -1,
                       rank: int = -1, store=None, group_name: str = "", pg_options=None,
                       device_id=None) -> None:
    """Initialises the default (world) group: torch's call, over MPI (`dist.init()`).

    Launch the script with `mpirun -n N python script.py` (not torchrun): MPI's launcher
    starts the ranks and does the rendezvous, so `init_method`, `group_name`, `pg_options` and
    `device_id` are accepted and not needed, and `timeout` is not enforced (MPI collectives
    have none; `disttrain-launch --timeout` ends a hung job). Every backend is MPI: "mpi",
    "gloo" and None run the same collectives over MPI (numpy tensors, and cupy tensors
    through CUDA-aware MPI or host staging); "nccl" is refused (there is no NCCL path).
    Afterwards torchrun's RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE are set in
    os.environ from MPI's answer, for scripts that read them.

    Args:
        backend: None, "mpi" or "gloo" (all MPI).
        init_method: ignored (e.g. "env://", "tcp://..."): mpirun did the rendezvous.
        timeout: a datetime.timedelta or None; not enforced.
        world_size: -1, or the number of ranks mpirun started (checked).
        rank: -1, or this process's MPI rank (checked).
        store: must be None (no rendezvous store over MPI).

    Raises:
        ValueError: an unknown backend, a second call without destroy_process_group(), or
            `world_size`/`rank` (or torchrun's WORLD_SIZE/RANK) that differ from MPI's,
            raised on every rank.
        RuntimeError: backend "nccl".

    Example:
        >>> dist.init_process_group(backend="gloo")     # under mpirun -n 2
        >>> dist.get_rank(), dist.get_world_size()
        (0, 2)
    """
    name = _check_backend(backend)
    if timeout is not None and not isinstance(timeout, datetime.timedelta):
        raise TypeError(f"init_process_group: timeout must be a datetime.timedelta or None, "
                        f"got {type(timeout).__name__}")
    if store is not None:
        raise ValueError("init_process_group: store must be None: MPI's launcher (mpirun) "
                         "does the rendezvous, there is no store")
    if _Default.backend is not None and is_initialized():
        raise ValueError("init_process_group: trying to initialize the default process group "
                         "twice! (call destroy_process_group() first)")
    _check_not_torchrun()
    comm = init()
    _check_world(comm, world_size, rank)
    _Default.backend, group.WORLD = name, comm


def _check_backend(backend) -> str:
    name = backend.lower() if isinstance(backend, str) else backend
    if name == Backend.NCCL:
        raise RuntimeError("init_process_group: backend 'nccl' is not available: disttrain has "
                           "no NCCL path; its collectives go through MPI, which also moves cupy "
                           "(GPU) tensors. Pass backend='mpi' (or 'gloo', or None)")
    if name not in _MPI_BACKENDS:
        raise ValueError(f"init_process_group: backend must be None, 'mpi' or 'gloo' (all mean "
                         f"MPI here), got {backend!r}")
    return Backend.MPI


def _check_not_torchrun() -> None:
    """Raises (before MPI starts) in a process that torchrun or mp.spawn started as one of
    several: RANK/WORLD_SIZE say so, but no MPI launcher did. NOTE: under mpirun, MPI's answer
    wins: RANK/WORLD_SIZE inherited from a parent process or a shell are overwritten by init()."""
    launcher = env.torchrun_world()
    if launcher is None or env.under_mpi_launcher() or launcher == (0, 1):
        return
    raise ValueError(f"init_process_group: RANK={launcher[0]}, WORLD_SIZE={launcher[1]} in the "
                     "environment (torchrun's?) but no MPI launcher started this process. Start "
                     "N ranks with `mpirun -n N python script.py` (not torchrun or mp.spawn)")


def _check_world(comm: Communicator, world_size: int, rank: int) -> None:
    """Raises on every rank (after one collective) when any rank's requested world_size/rank
    differ from MPI's."""
    problems = []
    if world_size not in (-1, None) and world_size != comm.size:
        problems.append(f"world_size={world_size} but mpirun started {comm.size} rank(s)")
    if rank not in (-1, None) and rank != comm.rank:
        problems.append(f"rank={rank} but its MPI rank is {comm.rank}")
    everyone = comm.allgather_obj(problems)
    found = [f"rank {r}: {p}" for r, mine in enumerate(everyone) for p in mine]
    if found:
        destroy()
        raise ValueError(f"init_process_group (rank {comm.rank}): " + "; ".join(found)
                         + ". Start N ranks with `mpirun -n N python script.py` (not torchrun "
                         "or mp.spawn), and pass world_size/rank as -1 or MPI's values")


def destroy_process_group(group=None) -> None:
    """Ends the default group: is_initialized() is False until init_process_group() is called
    again. MPI keeps running (it cannot start twice in a process) and finalizes at exit.

    Args:
        group: None or dist.group.WORLD (sub-groups are not destroyed one by one).

    Example:
        >>> dist.destroy_process_group()
        >>> dist.is_initialized()
        False
    """
    world_comm("destroy_process_group", group)
    destroy()
    _Default.backend = GroupMember.WORLD = None  # NOTE: GroupMember: `group` is the argument


def get_backend(group=None) -> str:
    """"mpi": the backend of every group here, whatever name init_process_group() was given.

    Args:
        group: None, dist.group.WORLD or a Communicator.
    """
    world_comm("get_backend", group)
    return Backend.MPI


def get_rank(group=None) -> int:
    """This process's rank in `group` (default: the world).

    NOTE: unlike torch (which raises), with no group initialised this starts the world
    (`dist.init()`), as disttrain's `get_rank()` always did.

    Args:
        group: None, dist.group.WORLD or a Communicator (e.g. from `comm.split`).
    """
    return _group_or_world("get_rank", group).rank


def get_world_size(group=None) -> int:
    """The number of ranks in `group` (default: the world); starts the world like get_rank().

    Args:
        group: None, dist.group.WORLD or a Communicator.
    """
    return _group_or_world("get_world_size", group).size


def _group_or_world(what: str, group) -> Communicator:
    if group is None:
        return init()
    return world_comm(what, group)


# ---------------------------------------------------------------- checks of the calls
def world_comm(what: str, group=None) -> Communicator:
    """The Communicator the call `what` runs on: `group` when it is one, else the world,
    which must be initialised (torch's ValueError otherwise)."""
    if isinstance(group, Communicator):
        return group
    if group is not None:
        raise TypeError(f"{what}: group must be None, dist.group.WORLD or a Communicator, got "
                        f"{type(group).__name__}")
    if not is_initialized():
        raise ValueError(f"{what}: Default process group has not been initialized, please make "
                         "sure to call init_process_group. (disttrain: "
                         "dist.init_process_group() or dist.init(), under mpirun)")
    return init()


def check_tensor(what: str, name: str, value, comm: Communicator) -> Tensor:
    """`value` when it is a Tensor, else a TypeError naming the call, argument and rank."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{what} (rank {comm.rank}): {name} must be a disttrain Tensor, got "
                        f"{type(value).__name__}; wrap numbers and arrays with dt.tensor(...)")
    return value


def check_tensor_list(what: str, name: str, values, like: Tensor, comm: Communicator,
                      numel: bool = False) -> list[Tensor]:
    """`values`: a list of comm.size Tensors of `like`'s dtype and shape (numel with
    `numel=True`), else an error naming each difference."""
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{what} (rank {comm.rank}): {name} must be a list of {comm.size} "
                        f"Tensors, got {type(values).__name__}")
    if len(values) != comm.size:
        raise ValueError(f"{what} (rank {comm.rank}): {name} must hold one Tensor per rank "
                         f"({comm.size}), got {len(values)}")
    for i, value in enumerate(values):
        check_tensor(what, f"{name}[{i}]", value, comm)
        same = value.numel() == like.numel() if numel else value.shape == like.shape
        if value.dtype != like.dtype or not same:
            raise ValueError(f"{what} (rank {comm.rank}): {name}[{i}] has shape {value.shape} "
                             f"dtype {value.dtype}, expected shape {like.shape} dtype "
                             f"{like.dtype} (those of the tensor argument)")
    return list(values)


def check_rank(what: str, name: str, value, comm: Communicator) -> int:
    """`value` when it is a rank of `comm`, else an error naming the call, argument and rank."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} (rank {comm.rank}): {name} must be an int rank, got "
                        f"{value!r}")
    if not 0 <= value < comm.size:
        raise ValueError(f"{what} (rank {comm.rank}): {name}={value} is out of range for a "
                         f"group of {comm.size} rank(s) (expected 0 <= {name} < {comm.size})")
    return value
