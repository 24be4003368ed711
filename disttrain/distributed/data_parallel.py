"""DataParallel: replicas on every rank, gradients averaged by bucketed in-place all-reduce,
started during backward as soon as each bucket is complete."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
import weakref

import numpy

from disttrain.backend import get_array_module
from disttrain.distributed.buckets import (
    DEFAULT_BUCKET_CAP_MB,
    DEFAULT_FIRST_BUCKET_CAP_MB,
    assign_buckets,
)
from disttrain.distributed.comm import Communicator, init
from disttrain.distributed.watchdog import heartbeat
from disttrain.nn import Module
from disttrain.tensor import Tensor, no_grad, queue_callback


def _order(array) -> str:
    """The memory order of a contiguous array ("F" only for column-major ones)."""
    return "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"


class _Bucket:
    """The parameters whose gradients are all-reduced together, and their flat buffer.

    NOTE: a bucket of one parameter (every large weight) has no buffer: its gradient is
    averaged in place while still in cache and all-reduced where it is. Copying 1.5 MB into a
    buffer cost 3x the in-place scaling, a quarter of a small MLP's step.
    """

    def __init__(self, params: list, names: list[str], dtype, compressed: bool):
        self.params, self.names, self.compressed = params, names, compressed
        self.direct = len(params) == 1 and not compressed
        self.buffer, self.views, self.result = None, [None] * len(params), None
        if not self.direct:
            xp = get_array_module(params[0].array)
            self.buffer = xp.zeros(sum(p.numel() for p in params), dtype)
            self.views = self._views(self.buffer)
        self.nbytes = sum(p.numel() for p in params) * numpy.dtype(dtype).itemsize
        self.reset()

    def _views(self, flat) -> list:
        views, offset = [], 0
        for p in self.params:
            views.append(flat[offset:offset + p.numel()].reshape(p.shape, order=_order(p.array)))
            offset += p.numel()
        return views

    def reset(self) -> None:
        self.pending, self.staged = len(self.params), [False] * len(self.params)


class _CommThread:
    """Runs the collectives of ready buckets, in launch order, beside the backward pass.

    NOTE: Open MPI does not progress non-blocking collectives on its own (its Iallreduce ran at
    3.2 GB/s here, blocking Allreduce at 8.7); a thread calling the blocking, tuned Allreduce
    got 90-99% of it. Only this thread calls MPI between launch and wait.
    """

    def __init__(self, rank: int):
        self.rank, self.jobs, self.error, self.busy_s = rank, queue.Queue(), None, 0.0
        threading.Thread(target=self._run, name="disttrain-allreduce", daemon=True).start()

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                if job is None:
                    return
                if self.error is None:
                    start = time.perf_counter()
                    job()
                    self.busy_s += time.perf_counter() - start
            except Exception as e:  # NOTE: re-raised on the main thread by wait()
                self.error = e
            finally:
                self.jobs.task_done()

    def wait(self) -> None:
        self.jobs.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise RuntimeError(f"rank {self.rank}: gradient all-reduce failed: {error}") \
                from error


def has_spare_core(local_size: int, cores: int | None = None) -> bool:
    """Whether each rank on this node has a core beyond its compute thread's, so a
    communication thread overlaps instead of competing (measured: on 2 cores and 2 ranks,
    overlapping made the deep MLP's step 10% slower)."""
    if cores is None:
        cores = os.cpu_count() or 1
    return cores >= 2 * local_size


class DataParallel(Module):
    """Data parallelism over MPI: after `loss.backward()` every gradient is the mean over ranks.

    Wraps a module (never changes it); the optimizer stays the single-process one. At
    construction every rank checks that all ranks hold the same parameters (names, shapes,
    dtypes), raising on every rank if not, then takes rank 0's parameters and buffers.
    Gradients are grouped in flat buckets in reverse registration order; a bucket's in-place
    all-reduce starts as soon as its last gradient is ready, on a communication thread.

    Args:
        module: the model; identical on every rank.
        comm: the Communicator (default: `dist.init()`, the world).
        bucket_cap_mb: bucket size (default 8 MB, from examples/allreduce_benchmark.py).
        grad_dtype: exchange gradients in this dtype: dt.float16 halves the bytes (allgather
            of float16, summed in float32; for few ranks on slow networks; the error it adds
            is measured by the all-reduce benchmark).
        broadcast_buffers: re-send rank 0's buffers (BatchNorm statistics) at every forward.
        overlap: all-reduce on a communication thread during backward (default: when every
            rank has a spare core); False runs them all at the end of backward.

    Example:
        >>> model = dist.DataParallel(nn.Linear(4, 2))
        >>> loss = model(dt.randn(8, 4)).sum()
        >>> loss.backward()   # .grad of model.module.weight is now the mean over ranks
    """

    def __init__(self, module: Module, comm: Communicator | None = None,
                 bucket_cap_mb: float | None = None, grad_dtype=None,
                 broadcast_buffers: bool = True, overlap: bool | None = None,
                 first_bucket_cap_mb: float = DEFAULT_FIRST_BUCKET_CAP_MB):
        super().__init__()
        self.module = module
        self.comm = comm if comm is not None else init()
        self.broadcast_buffers = broadcast_buffers
        self.grad_dtype = None if grad_dtype is None else numpy.dtype(grad_dtype)
        self.overlap = has_spare_core(self.comm.local_size) if overlap is None else overlap
        self._check_same_model()
        self._broadcast_state(parameters=True)
        self._has_buffers = any(True for _ in self.module.buffers())
        cap_mb = DEFAULT_BUCKET_CAP_MB if bucket_cap_mb is None else bucket_cap_mb
        self._buckets, self._slot = self._make_buckets(cap_mb, first_bucket_cap_mb)
        self._sync_enabled, self._in_backward, self._next_launch = True, False, 0
        self.stats = {"comm_s": 0.0, "wait_s": 0.0, "bytes": 0}
        if self.comm.size > 1:  # NOTE: one rank: gradients are already the mean
            self._comm_thread = _CommThread(self.comm.rank)
            weakref.finalize(self, self._comm_thread.jobs.put, None)  # ends it with us
            for p in self._slot:
                p.register_post_accumulate_grad_hook(self._on_grad_ready)

    # ---------------------------------------------------------------- construction
    def _check_same_model(self) -> None:
        mine = [(n, tuple(t.shape), str(t.dtype)) for n, t in self.module.named_parameters()]
        mine += [(n, tuple(t.shape), str(t.dtype)) for n, t in self.module.named_buffers()]
        everyone = self.comm.allgather_obj(mine)
        problems = []
        for rank, theirs in enumerate(everyone):
            if theirs != everyone[0]:
                problems += _differences(everyone[0], theirs, rank)
        if problems:
            raise ValueError(f"DataParallel (rank {self.comm.rank}): the model differs between "
                             "ranks; build the same model on every rank:\n  "
                             + "\n  ".join(problems))

    def _broadcast_state(self, parameters: bool) -> None:
        tensors = list(self.module.buffers())
        if parameters:
            tensors = list(self.module.parameters()) + tensors
        with no_grad():
            for t in tensors:
                self.comm.bcast_(t.array, root=0)

    def _make_buckets(self, cap_mb: float, first_cap_mb: float):
        named = [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]
        named.reverse()  # NOTE: gradients become ready roughly in reverse registration order
        dtypes = [self.grad_dtype or p.dtype for _, p in named]
        sizes = [p.numel() * numpy.dtype(d).itemsize for (_, p), d in zip(named, dtypes)]
        groups = assign_buckets(sizes, dtypes, int(cap_mb * 2**20), int(first_cap_mb * 2**20))
        buckets, slot = [], {}
        for group in groups:
            bucket = _Bucket([named[i][1] for i in group], [named[i][0] for i in group],
                             dtypes[group[0]], compressed=self.grad_dtype is not None)
            buckets.append(bucket)
            for position, p in enumerate(bucket.params):
                slot[p] = (bucket, position)
        return buckets, slot

    @property
    def buckets(self) -> list[list[str]]:
        """Parameter names of each bucket, in launch order."""
        return [b.names for b in self._buckets]

    # ---------------------------------------------------------------- training
    def forward(self, *args, **kwargs):
        heartbeat("forward")
        if self.broadcast_buffers and self.comm.size > 1 and self._has_buffers:
            self._broadcast_state(parameters=False)
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Gradients accumulate locally inside; the next synchronised backward averages the
        accumulated sums (torch DDP's no_sync)."""
        previous, self._sync_enabled = self._sync_enabled, False
        try:
            yield
        finally:
            self._sync_enabled = previous

    def _on_grad_ready(self, param: Tensor) -> None:
        if not self._sync_enabled:
            return
        if not self._in_backward:
            heartbeat("backward")
            self._start_step()
            queue_callback(self._finish_step)
        self._stage(param)
        self._launch_ready()

    def _start_step(self) -> None:
        self._in_backward, self._next_launch, self._blocked_s = True, 0, 0.0
        self._comm_thread.busy_s = 0.0
        for bucket in self._buckets:
            bucket.reset()

    def _stage(self, param: Tensor) -> None:
        """Puts param's gradient where its bucket's collective reads it, divided by size."""
        bucket, position = self._slot[param]
        if bucket.staged[position]:
            raise RuntimeError(f"rank {self.comm.rank}: the gradient of '{bucket.names[position]}'"
                               " became ready twice in one backward pass; DataParallel supports "
                               "one backward per step (use no_sync() to accumulate)")
        grad, view = param.grad.array, bucket.views[position]
        xp = get_array_module(grad)
        scale = grad.dtype.type(1.0 / self.comm.size)
        if bucket.compressed:
            view[...] = grad  # NOTE: divided after the float32 sum: float16 keeps small grads
        elif bucket.direct:
            if not (grad.flags.c_contiguous or grad.flags.f_contiguous):
                grad = param.grad.array = xp.ascontiguousarray(grad)
            grad *= scale
        elif grad is view:
            view *= scale
        else:  # NOTE: one pass copies and averages; the grad then lives in the bucket
            xp.multiply(grad, scale, out=view)
            param.grad = Tensor(view)
        bucket.staged[position] = True
        bucket.pending -= 1

    def _zero_grad_of_unused(self, bucket: _Bucket, position: int) -> None:
        p = bucket.params[position]
        if bucket.direct:
            p.grad = Tensor(get_array_module(p.array).zeros_like(p.array))
        else:
            bucket.views[position][...] = 0
            if not bucket.compressed:
                p.grad = Tensor(bucket.views[position])
        bucket.staged[position], bucket.pending = True, bucket.pending - 1

    def _reduce(self, bucket: _Bucket) -> None:
        """The collective of one bucket (run on the comm thread or inline)."""
        if not bucket.compressed:
            self.comm.allreduce_(bucket.params[0].grad.array if bucket.direct else bucket.buffer)
            return
        xp = get_array_module(bucket.buffer)
        total = self.comm.allgather(bucket.buffer).sum(axis=0, dtype=xp.float32)
        total *= xp.float32(1.0 / self.comm.size)
        bucket.result = total

    def _launch_ready(self, at_end: bool = False) -> None:
        # NOTE: strictly in bucket order, so every rank issues the same collectives in the
        # same order even when its gradients become ready in another order. With overlap, a
        # ready bucket goes to the comm thread, except the last one, which everything waits
        # for anyway: it runs here at the end (a hand-off costs a wake-up). Without overlap a
        # ready bucket is reduced here at once, while its gradients are still in cache
        # (measured: a 16 MB all-reduce ran at 8.2 GB/s hot and 4.4 GB/s cold).
        last = len(self._buckets) - 1
        while self._next_launch <= last and self._buckets[self._next_launch].pending == 0:
            bucket = self._buckets[self._next_launch]
            if self.overlap and self._next_launch < last and not at_end:
                self._comm_thread.jobs.put(lambda bucket=bucket: self._reduce(bucket))
            elif self.overlap and not at_end:
                return
            else:
                heartbeat("all-reduce")
                start = time.perf_counter()
                self._comm_thread.wait()
                reduce_start = time.perf_counter()
                self._reduce(bucket)
                self._comm_thread.busy_s += time.perf_counter() - reduce_start
                self._blocked_s += time.perf_counter() - start
            self._next_launch += 1

    def _finish_step(self) -> None:
        for bucket in self._buckets[self._next_launch:]:
            for position, p in enumerate(bucket.params):
                if bucket.staged[position]:
                    continue
                if p.grad is not None:
                    # NOTE: unused in this backward but accumulated earlier (under no_sync):
                    # averaged like any gradient, as torch DDP does, not replaced by zeros
                    self._stage(p)
                else:  # unused in this step: contributes zeros, and gets a zero gradient
                    self._zero_grad_of_unused(bucket, position)
        try:
            self._launch_ready(at_end=True)
            start = time.perf_counter()
            self._comm_thread.wait()
        finally:
            self._in_backward = False
        # comm_s: time spent in collectives; wait_s: time backward was blocked by them
        self.stats = {"comm_s": self._comm_thread.busy_s,
                      "wait_s": self._blocked_s + time.perf_counter() - start,
                      "bytes": sum(b.nbytes for b in self._buckets)}
        for bucket in self._buckets:
            if bucket.compressed:
                for p, view in zip(bucket.params, bucket._views(bucket.result)):
                    p.grad = Tensor(view.astype(p.dtype, copy=False))

    def sync_grads(self) -> None:
        """Averages the current .grads over ranks now (blocking; no overlap). For gradients
        computed outside backward, and for benchmarks."""
        if self.comm.size == 1:
            return
        self._start_step()
        for p in self._slot:
            if p.grad is not None:
                self._stage(p)
        self._finish_step()


def _differences(reference: list, theirs: list, rank: int) -> list[str]:
    """Why rank `rank`'s (name, shape, dtype) list differs from rank 0's, in words."""
    ref = {n: (s, d) for n, s, d in reference}
    other = {n: (s, d) for n, s, d in theirs}
    problems = []
    for name in sorted(set(ref) | set(other)):
        if name not in other:
            problems.append(f"'{name}' exists on rank 0 but not on rank {rank}")
        elif name not in ref:
            problems.append(f"'{name}' exists on rank {rank} but not on rank 0")
        elif ref[name] != other[name]:
            problems.append(f"parameter '{name}' has shape {other[name][0]} dtype "
                            f"{other[name][1]} on rank {rank} but shape {ref[name][0]} dtype "
                            f"{ref[name][1]} on rank 0")
    return problems or [f"rank {rank} registers its parameters in a different order than rank 0"]
