"""Every setting disttrain reads from the environment, and the launchers' rank variables.

Stdlib only (the launcher imports it without numpy). It is the ONLY module that reads a
`DISTTRAIN_*` variable (tests/unit/test_env.py enforces it): each setting has a name constant,
which writers use (the launcher exporting them to ranks, tests setting them), and one function
that reads it at call time, so a test can set os.environ first.

Example:
    >>> checkpoint_dir("ckpt", environ={CHECKPOINT_DIR: "/scratch/run1"})  # os.environ by default
    '/scratch/run1'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

# ---------------------------------------------------------------- disttrain's own settings
HEARTBEAT_DIR = "DISTTRAIN_HEARTBEAT_DIR"  # set by disttrain-launch: where ranks write beats
CHECKPOINT_DIR = "DISTTRAIN_CHECKPOINT_DIR"  # set by disttrain-launch --checkpoint-dir
RESTART_COUNT = "DISTTRAIN_RESTART_COUNT"  # set by disttrain-launch: 0 on the first attempt
LOG_DIR = "DISTTRAIN_LOG_DIR"  # set by disttrain-launch: this attempt's per-rank logs
START_FRESH = "DISTTRAIN_START_FRESH"  # "1": disttrain-launch --start-fresh, first attempt only
LAUNCHER_PID = "DISTTRAIN_LAUNCHER_PID"  # set by disttrain-launch: its pid (ranks watch it)
LAUNCHER_HOST = "DISTTRAIN_LAUNCHER_HOST"  # set by disttrain-launch: the host it runs on
LAUNCHER_LEASE = "DISTTRAIN_LAUNCHER_LEASE"  # set by disttrain-launch: a file it touches each 1 s
CUDA_AWARE = "DISTTRAIN_CUDA_AWARE"  # "0"/"1": overrides MPI's own CUDA-awareness answer
TUNE_MALLOC = "DISTTRAIN_TUNE_MALLOC"  # "1": disttrain.backend.tune_malloc() when it loads
HOSTS = "DISTTRAIN_HOSTS"  # docker/make_hostfile.py: host names, by spaces or commas
SLOTS = "DISTTRAIN_SLOTS"  # docker/make_hostfile.py: ranks per host
RANKS_PER_NODE = "DISTTRAIN_RANKS_PER_NODE"  # HierarchicalAllreduce: fake nodes of N ranks
HUGE_PAGES = "DISTTRAIN_HUGE_PAGES"  # "0": the launchers leave glibc's allocator settings alone
RING_REDUCE_SCATTER = "DISTTRAIN_RING_REDUCE_SCATTER"  # "0": MPI_Reduce_scatter, never the ring
GLIBC_TUNABLES = "GLIBC_TUNABLES"  # glibc's own; the launchers add HUGETLB_TUNABLE to it
HUGETLB_TUNABLE = "glibc.malloc.hugetlb"


def _get(name: str, environ: Mapping[str, str] | None) -> str | None:
    return (os.environ if environ is None else environ).get(name)


def heartbeat_dir(environ: Mapping[str, str] | None = None) -> str | None:
    """The directory heartbeat files go to, None when no launcher watches this rank."""
    return _get(HEARTBEAT_DIR, environ) or None


def checkpoint_dir(default: str | None = None, environ: Mapping[str, str] | None = None
                   ) -> str | None:
    """The checkpoint directory disttrain-launch --checkpoint-dir chose, else `default`."""
    return _get(CHECKPOINT_DIR, environ) or default


def restart_count(environ: Mapping[str, str] | None = None) -> int:
    """How many times disttrain-launch restarted this job (0: first attempt or no launcher)."""
    return int(_get(RESTART_COUNT, environ) or 0)


def log_dir(environ: Mapping[str, str] | None = None) -> str | None:
    """This attempt's per-rank log directory under disttrain-launch, else None."""
    return _get(LOG_DIR, environ) or None


class LauncherLease(NamedTuple):
    """How a rank tells that the disttrain-launch that started it is still alive."""

    pid: int
    host: str
    path: str  # touched by the launcher about every second


def launcher_lease(environ: Mapping[str, str] | None = None) -> LauncherLease | None:
    """The launcher's pid, host and lease file, None when no disttrain-launch started this
    process (or an older one that exports none)."""
    pid, host, path = (_get(n, environ) for n in (LAUNCHER_PID, LAUNCHER_HOST, LAUNCHER_LEASE))
    if not (pid and host and path):
        return None
    try:
        return LauncherLease(int(pid), host, path)
    except ValueError:
        raise ValueError(f"{LAUNCHER_PID}: expected an integer, got {pid!r}") from None


def start_fresh(environ: Mapping[str, str] | None = None) -> bool:
    """Whether CheckpointManager should move existing checkpoints aside and start at step 0
    ("1", set by disttrain-launch --start-fresh on its first attempt only); False when unset."""
    value = _get(START_FRESH, environ) or "0"
    if value not in ("0", "1"):
        raise ValueError(f"{START_FRESH}: expected '0' or '1', got {value!r}")
    return value == "1"


def cuda_aware(environ: Mapping[str, str] | None = None) -> bool | None:
    """True/False when the user forced MPI's CUDA-awareness ("1"/"0"), None to ask MPI."""
    value = _get(CUDA_AWARE, environ)
    if value is None:
        return None
    if value not in ("0", "1"):
        raise ValueError(f"{CUDA_AWARE}: expected '0' or '1', got {value!r}")
    return value == "1"


def ring_reduce_scatter(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the Communicator may reduce-scatter with its own ring (default yes; "0": always
    MPI's, e.g. on an MPI whose reduce-scatter is good)."""
    value = _get(RING_REDUCE_SCATTER, environ)
    if value not in (None, "0", "1"):
        raise ValueError(f"{RING_REDUCE_SCATTER}: expected '0' or '1', got {value!r}")
    return value != "0"


def tune_malloc(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the user asked for glibc's allocator tuning without changing the script."""
    return _get(TUNE_MALLOC, environ) == "1"


def rank_allocator_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the launchers export to ranks for the allocator: GLIBC_TUNABLES with
    glibc.malloc.hugetlb=1 (transparent huge pages for malloc'd memory, glibc >= 2.35; older
    glibc ignores it) and DISTTRAIN_TUNE_MALLOC=1, each unless the user set it; {} when
    DISTTRAIN_HUGE_PAGES=0.

    NOTE: both are needed: glibc can only back memory that stays in its heap (tune_malloc keeps
    gradients there instead of one mmap each) with 2 MB pages. With them, Open MPI's
    shared-memory all-reduce (one copy between processes, page by page) of 1-4 MB took 0.6x
    the time (examples/sync_breakdown.py).

    Example:
        >>> rank_allocator_env({GLIBC_TUNABLES: "glibc.malloc.arena_max=2"})[GLIBC_TUNABLES]
        'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1'
    """
    if _get(HUGE_PAGES, environ) == "0":
        return {}
    tunables = _get(GLIBC_TUNABLES, environ) or ""
    if HUGETLB_TUNABLE not in tunables:
        tunables = f"{tunables}:{HUGETLB_TUNABLE}=1" if tunables else f"{HUGETLB_TUNABLE}=1"
    return {GLIBC_TUNABLES: tunables, TUNE_MALLOC: _get(TUNE_MALLOC, environ) or "1"}


def hosts(environ: Mapping[str, str] | None = None) -> list[str]:
    """Host names from DISTTRAIN_HOSTS (separated by spaces or commas); [] when unset."""
    return (_get(HOSTS, environ) or "").replace(",", " ").split()


def slots(default: int = 1, environ: Mapping[str, str] | None = None) -> int:
    """Ranks per host from DISTTRAIN_SLOTS, else `default`."""
    value = _get(SLOTS, environ)
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"{SLOTS}: expected an integer, got {value!r}") from None


def ranks_per_node(environ: Mapping[str, str] | None = None) -> str | None:
    """DISTTRAIN_RANKS_PER_NODE as set (a faked node size for the hierarchical all-reduce),
    None when unset or empty; the caller validates it, naming its rank."""
    return _get(RANKS_PER_NODE, environ) or None


# NOTE: the exit code of a job that must not be restarted: a rank's error with
# `restartable = False` (e.g. a checkpoint directory another job holds) makes dist.init()'s
# abort hook end the job with it, and disttrain-launch then reports instead of restarting.
# 78 is sysexits' EX_CONFIG: the same command, in the same state, would fail the same way.
NO_RESTART_EXIT = 78


# ---------------------------------------------------------------- the launchers' rank variables
class LauncherVars(NamedTuple):
    """The variables one launcher sets in every rank's environment."""

    launcher: str
    rank: str
    size: str
    local_rank: str
    local_size: str


# NOTE: in order of preference: Open MPI also exports PMIX_*, and an mpirun inside a Slurm
# allocation leaves the allocation's SLURM_* in place, so the MPI launcher's own variables win.
RANK_VARIABLES = (
    LauncherVars("Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                 "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
    LauncherVars("PMIx", "PMIX_RANK", "PMIX_SIZE", "PMIX_LOCAL_RANK", "PMIX_LOCAL_SIZE"),
    LauncherVars("MPICH/Hydra", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    LauncherVars("Slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
                 "SLURM_NTASKS_PER_NODE"),
)


def rank_env(environ: Mapping[str, str] | None = None) -> tuple[int, int, int, int]:
    """(rank, size, local_rank, local_size) as the launcher exported them, readable before MPI
    starts; (0, 1, 0, 1) when no MPI launcher or Slurm started this process.

    Example:
        >>> rank_env({"PMI_RANK": "3", "PMI_SIZE": "4"})
        (3, 4, 3, 4)
    """
    environ = os.environ if environ is None else environ
    for row in RANK_VARIABLES:
        if row.rank in environ and row.size in environ:
            rank, size = int(environ[row.rank]), int(environ[row.size])
            local_rank = int(environ.get(row.local_rank, rank))
            # NOTE: SLURM_NTASKS_PER_NODE may read "2(x3)"; the count is before the "("
            local_size = int(str(environ.get(row.local_size, size)).split("(")[0].split(",")[0])
            if not 0 <= rank < size:
                raise ValueError(f"{row.rank}={rank} is outside [0, {row.size}={size})")
            return rank, size, local_rank, local_size
    return 0, 1, 0, 1


def launched_with_mpi(environ: Mapping[str, str] | None = None) -> bool:
    """True when an MPI launcher (or srun) started more than one rank."""
    return rank_env(environ)[1] > 1


def under_mpi_launcher(environ: Mapping[str, str] | None = None) -> bool:
    """True when an MPI launcher (mpirun, mpiexec, srun --mpi) started this process, even as
    a single rank. Plain Slurm variables do not count: an sbatch script has them too."""
    environ = os.environ if environ is None else environ
    return any(row.size in environ for row in RANK_VARIABLES if row.launcher != "Slurm")


# ---------------------------------------------------------------- threads per rank
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def threads_per_rank(cores: int, ranks: int) -> int:
    """The compute threads each of `ranks` ranks sharing `cores` cores gets: never 0.

    Example:
        >>> threads_per_rank(16, 3), threads_per_rank(2, 4)
        (5, 1)
    """
    return max(1, cores // max(1, ranks))


def blas_threads_per_rank(cores: int, local_size: int, environ: Mapping[str, str]
                          ) -> int | None:
    """The default BLAS threads of one rank (None when the user set any of BLAS_THREAD_VARS):
    the node's cores divided among the ranks on it."""
    if any(v in environ for v in BLAS_THREAD_VARS):
        return None
    return threads_per_rank(cores, local_size)


# ---------------------------------------------------------------- the initialised process group
# NOTE: torchrun's variables: ported scripts read them (`int(os.environ["LOCAL_RANK"])`), so
# dist.init() / init_process_group() export them under mpirun, from MPI's own answer.
TORCHRUN_RANK_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


class ProcessGroup(NamedTuple):
    """The world group dist.init() started: (rank, size, local_rank, local_size)."""

    rank: int
    size: int
    local_rank: int
    local_size: int


# NOTE: the process-wide record lives here, in a stdlib-only core module, so that core code
# (DistributedSampler's default rank and size) can ask for it without importing
# disttrain.distributed; only dist.init() and destroy_process_group() write it.
_group: list[ProcessGroup | None] = [None]
# NOTE: the world Communicator itself, held as an opaque object (never called here): core code
# that reduces over ranks (stateful metrics, disttrain.training) defaults to it, duck-typed
_world_comm: list[object | None] = [None]


def record_process_group(group: ProcessGroup, environ: dict | None = None,
                         comm: object | None = None) -> None:
    """Records the initialised world group (and its Communicator, `comm`) and exports
    torchrun's RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE for it (into os.environ by
    default), overwriting stale ones."""
    _group[0], _world_comm[0] = group, comm
    environ = os.environ if environ is None else environ
    for name, value in zip(TORCHRUN_RANK_VARS, group):
        environ[name] = str(value)


def forget_process_group() -> None:
    """destroy_process_group(): no group is initialised any more (the exported variables
    stay, as torchrun's stay after torch's destroy_process_group)."""
    _group[0], _world_comm[0] = None, None


def process_group() -> ProcessGroup | None:
    """The initialised world group, None before dist.init() / init_process_group()."""
    return _group[0]


def world_comm() -> object | None:
    """The world Communicator dist.init() recorded, None when no group is initialised."""
    return _world_comm[0]


def torchrun_world(environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """(RANK, WORLD_SIZE) as torchrun (or an earlier init) exported them, None when unset."""
    rank, size = _get("RANK", environ), _get("WORLD_SIZE", environ)
    if rank is None or size is None:
        return None
    try:
        return int(rank), int(size)
    except ValueError:
        raise ValueError(f"RANK={rank!r}, WORLD_SIZE={size!r}: expected integers") from None
