"""The world group of this process: dist.init() / is_initialized() / destroy(), and what the
first init() changes in the process (abort-on-exception hooks, BLAS threads per rank).

No mpi4py here (comm.py is the only module importing it): init() makes the world
Communicator, which starts MPI. comm.py re-exports these names (`comm.init` etc.).
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from typing import TYPE_CHECKING

from disttrain import env
from disttrain.distributed.watchdog import heartbeat, write_now

if TYPE_CHECKING:
    from disttrain.distributed.comm import Communicator


class _World:
    comm: Communicator | None = None  # NOTE: MPI's world, kept once made (MPI starts once)
    active = False  # between init() and destroy(): what is_initialized() answers


def init(*, abort_on_exception: bool = True, set_blas_threads: bool = True) -> Communicator:
    """Starts MPI (once) and returns the world Communicator. Importing disttrain never starts
    MPI, nor loads or configures mpi4py; this call imports mpi4py.MPI, which starts MPI with
    MPI_THREAD_MULTIPLE and finalizes it at exit (unless it already runs, e.g. under
    `python -m mpi4py` or after the script's own `from mpi4py import MPI`).

    It also records the world group for core code (disttrain.env: DistributedSampler's default
    rank and size) and exports torchrun's RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE
    from MPI's answer, so ported scripts that read them work under mpirun.

    The flags choose what else the first call changes in this process (later calls return the
    same Communicator and change nothing):

    Args:
        abort_on_exception: replace sys.excepthook and threading.excepthook so that one rank's
            uncaught exception ends the whole job: the rank, host and traceback are printed,
            then MPI_Abort (as `python -m mpi4py` does), so no rank hangs waiting for it.
        set_blas_threads: set OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS (and
            the loaded BLAS, through threadpoolctl) to cores-per-node / ranks-per-node, unless
            the user set any of them.

    Example:
        >>> import disttrain.distributed as dist
        >>> comm = dist.init()
        >>> comm.rank, comm.size
        (0, 1)
    """
    if _World.comm is None:
        # NOTE: the first heartbeats end disttrain-launch's start-up deadline for this rank:
        # "init" before Communicator() (a collective: it can wait for a peer that never comes,
        # and the launcher then blames the peer), "init-done" once MPI answered
        heartbeat("init")
        write_now()
        # NOTE: imported here: comm.py imports this module at its top to re-export init
        from disttrain.distributed.comm import Communicator

        _World.comm = Communicator()
        if abort_on_exception:
            _install_abort_hooks(_World.comm)
        if set_blas_threads:
            _set_blas_threads(_World.comm)
        heartbeat("init-done")
        write_now()
    if not _World.active:
        comm = _World.comm
        env.record_process_group(env.ProcessGroup(comm.rank, comm.size, comm.local_rank,
                                                  comm.local_size), comm=comm)
        _World.active = True
    return _World.comm


def is_initialized() -> bool:
    """Whether init() (or init_process_group()) ran and destroy() did not run since."""
    return _World.active


def destroy() -> None:
    """Ends the world group (destroy_process_group): is_initialized() is False until the next
    init(). MPI itself keeps running (it cannot start twice) and finalizes at exit."""
    _World.active = False
    env.forget_process_group()


def _install_abort_hooks(comm: Communicator) -> None:
    def report_and_abort(exc_type, exc, tb, where=""):
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        sys.stderr.write(f"[disttrain] rank {comm.rank} (host {comm.host}, pid {os.getpid()})"
                         f" failed{where}; aborting all {comm.size} ranks:\n{text}")
        sys.stderr.flush()
        comm.abort(_exit_code(exc))

    previous = sys.excepthook

    def excepthook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt) or (comm.size == 1 and _exit_code(exc) == 1):
            return previous(exc_type, exc, tb)
        report_and_abort(exc_type, exc, tb)

    sys.excepthook = excepthook
    threading.excepthook = lambda args: report_and_abort(
        args.exc_type, args.exc_value, args.exc_traceback, f" in thread {args.thread.name}")


def _exit_code(exc) -> int:
    """1, or env.NO_RESTART_EXIT for an error that says a restart would fail the same way."""
    return env.NO_RESTART_EXIT if getattr(exc, "restartable", True) is False else 1


def _set_blas_threads(comm: Communicator) -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # NOTE: affinity can be one core when mpirun binds; the node's count is what ranks share
    threads = env.blas_threads_per_rank(max(cores, os.cpu_count() or 1), comm.local_size,
                                        os.environ)
    if threads is None:
        return
    for var in env.BLAS_THREAD_VARS:
        os.environ[var] = str(threads)  # for libraries loaded later
    from disttrain.threads import set_num_threads  # NOTE: lazy, as threadpoolctl was

    set_num_threads(threads)  # the BLAS already loaded, through threadpoolctl
