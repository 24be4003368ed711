"""The Reducer: DataParallel's engine (torch DDP's Reducer). It averages gradients over ranks
during backward: flat buckets, each rank's gradients staged into them divided by size, and each
complete bucket handed, in launch order, to the comm hook (comm_hooks.py) on a communication
thread. Bookkeeping (heartbeats, timings) lives in step_stats.StepStats."""

from __future__ import annotations

import os
import queue
import threading
import weakref

import numpy

from disttrain import env
from disttrain.backend import get_array_module
from disttrain.distributed.buckets import DEFAULT_DIRECT_MB, assign_buckets
from disttrain.distributed.comm_hooks import GradBucket, allreduce_hook
from disttrain.distributed.step_stats import StepStats
from disttrain.tensor import Tensor, queue_callback


def _order(array) -> str:
    """The memory order of a contiguous array ("F" only for column-major ones)."""
    return "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"


class _Bucket(GradBucket):
    """A GradBucket plus DataParallel's staging state (which gradients are in).

    NOTE: a bucket of one parameter (every large weight) has no buffer of its own: its
    gradient is averaged in place while still in cache and exchanged where it is (the buffer
    is a flat view of it). Copying 1.5 MB into a buffer cost 3x the in-place scaling, a
    quarter of a small MLP's step.
    """

    def __init__(self, index: int, params: list, names: list[str], comm, is_last: bool):
        super().__init__(index, params, names, comm, is_last)
        self.direct = len(params) == 1
        # NOTE: ((dtype, size), Communicator.mean_plan) of a direct bucket's last buffer
        self.plan = None
        self.views = [None] * len(params)
        self.numel = sum(p.numel() for p in params)
        self.allocate()
        self.nbytes = self.numel * numpy.dtype(self.params[0].dtype).itemsize
        self.reset()

    def allocate(self) -> None:
        """The flat buffer of a bucket of several gradients (again after release())."""
        if not self.direct:
            array = self.params[0].array
            self._buffer = get_array_module(array).zeros(self.numel, array.dtype)
            self.views = self._views(self._buffer)

    def release(self) -> None:
        """Drops the buffer (ZeRO stage 2 after the reduce-scatter); the next step allocates
        it again."""
        self._buffer, self.views = None, [None] * len(self.params)

    def _views(self, flat) -> list:
        views, offset = [], 0
        for p in self.params:
            views.append(flat[offset:offset + p.numel()].reshape(p.shape, order=_order(p.array)))
            offset += p.numel()
        return views

    def hold(self, grad) -> None:
        """A direct bucket's buffer: a flat view of its one (contiguous) gradient."""
        self._buffer = grad if grad.ndim == 1 else grad.reshape(-1, order=_order(grad))

    def reset(self) -> None:
        self.pending, self.staged = len(self.params), [False] * len(self.params)


class _CommThread:
    """Runs the exchanges of ready buckets, in launch order, beside the backward pass.

    NOTE: Open MPI does not progress non-blocking collectives on its own (its Iallreduce ran at
    3.2 GB/s here, blocking Allreduce at 8.7); a thread calling the blocking, tuned Allreduce
    got 90-99% of it. Only this thread calls MPI between launch and wait.
    """

    def __init__(self, rank: int):
        self.rank, self.jobs, self.error = rank, queue.Queue(), None
        self.thread = threading.Thread(target=self._run, name="disttrain-allreduce", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                if job is None:
                    return
                if self.error is None:
                    job()
            except Exception as e:  # NOTE: re-raised on the main thread by wait()
                self.error = e
            finally:
                self.jobs.task_done()

    def wait(self) -> None:
        self.jobs.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise RuntimeError(f"rank {self.rank}: gradient exchange (comm hook) failed: "
                               f"{error}") from error


def has_spare_core(local_size: int, cores: int | None = None) -> bool:
    """Whether each rank on this node has a core beyond its compute thread's, so a
    communication thread overlaps instead of competing (measured: on 2 cores and 2 ranks,
    overlapping made the deep MLP's step 10% slower)."""
    if cores is None:
        cores = os.cpu_count() or 1
    return env.threads_per_rank(cores, local_size) >= 2  # NOTE: the launcher's rule too


def _weak_hook(method):
    """A parameter hook calling `method` while its object lives, and doing nothing after."""
    ref = weakref.WeakMethod(method)

    def hook(param) -> None:
        bound = ref()
        if bound is not None:
            bound(param)

    return hook


def _remove_handles(handles: list) -> None:
    for handle in handles:
        handle.remove()


def _hook_name(hook) -> str:
    return getattr(hook, "__qualname__", None) or type(hook).__name__


class Reducer:
    """Averages the gradients of `named_params` over `comm`'s ranks during backward.

    DataParallel's engine; it registers the autograd hooks (when there is more than one rank,
    or a comm hook to run), stages every gradient into its bucket divided by size, and runs
    the comm hook on each complete bucket, in bucket order on every rank.

    Args:
        named_params: (name, Parameter) pairs, in registration order, requiring grad.
        comm: the Communicator.
        cap_bytes, first_cap_bytes: bucket sizes (see `assign_buckets`).
        overlap: exchange on a communication thread during backward.
    """

    def __init__(self, named_params: list, comm, cap_bytes: int, first_cap_bytes: int,
                 overlap: bool):
        self.comm, self.overlap = comm, overlap
        self.buckets, self._slot = _make_buckets(named_params, comm, cap_bytes, first_cap_bytes)
        self.sync_enabled, self._in_backward, self._next_launch = True, False, 0
        self._hook, self._hook_state, self._hook_registered = allreduce_hook, None, False
        self._synced_once, self.prescale = False, True
        self.stats = StepStats(sum(b.nbytes for b in self.buckets))
        self._exchange = self.stats.timed(self._run_hook)
        self._handles, self._comm_thread = [], None
        if comm.size > 1:  # NOTE: one rank: the gradients already are the mean
            self._attach()

    @property
    def parameters(self) -> list:
        return list(self._slot)

    def _attach(self) -> None:
        """Puts the autograd hooks on the parameters; starts the comm thread if overlapping."""
        if self.overlap:
            self._comm_thread = _CommThread(self.comm.rank)
            # NOTE: ends the thread if we are collected without detach(); never joins (the
            # collection may happen on the thread itself)
            self._stop_thread = weakref.finalize(self, self._comm_thread.jobs.put, None)
        # NOTE: the parameters hold the hooks, and the hooks only a weak reference to us: a
        # DataParallel dropped without remove() is collected, and its hooks come off with it
        # (the module can then be wrapped again) instead of averaging forever
        on_ready = _weak_hook(self._on_grad_ready)
        self._handles = [p.register_post_accumulate_grad_hook(on_ready) for p in self._slot]
        self._unhook = weakref.finalize(self, _remove_handles, list(self._handles))

    def detach(self) -> None:
        """Removes the autograd hooks and stops the comm thread; gradients stay local."""
        if self._handles:
            self._unhook()
        self._handles = []
        if self._comm_thread is not None:
            self._stop_thread()
            self._comm_thread.thread.join()
            self._comm_thread = None

    def register_comm_hook(self, state, hook) -> None:
        """See DataParallel.register_comm_hook."""
        where = f"DataParallel.register_comm_hook (rank {self.comm.rank})"
        if not callable(hook):
            raise TypeError(f"{where}: hook must be callable(state, bucket), got "
                            f"{type(hook).__name__}")
        if self._hook_registered:
            raise RuntimeError(f"{where}: a comm hook ({_hook_name(self._hook)}) is already "
                               "registered; register_comm_hook can be called only once")
        if self._synced_once:
            raise RuntimeError(f"{where}: must be called before the first backward; gradients "
                               f"were already exchanged with {_hook_name(self._hook)}. Register "
                               "the hook right after constructing DataParallel")
        self._hook, self._hook_state, self._hook_registered = hook, state, True
        if not self._handles:  # NOTE: one rank: the default needs no hooks, this one runs
            self._attach()

    def set_sharded_exchange(self, hook) -> None:
        """ZeroRedundancyOptimizer's exchange: `hook(None, bucket)` gets each bucket holding
        this rank's gradients as they are (not divided by size) and reduce-scatters them."""
        where = f"ZeroRedundancyOptimizer (rank {self.comm.rank})"
        if self._hook_registered:
            raise RuntimeError(f"{where}: the DataParallel already has a comm hook "
                               f"({_hook_name(self._hook)}); ZeRO replaces the all-reduce with "
                               "its reduce-scatter and cannot run a comm hook as well")
        if self._synced_once:
            raise RuntimeError(f"{where}: the DataParallel already exchanged gradients; build "
                               "the optimizer before the first backward")
        self.register_comm_hook(None, hook)
        self.prescale = False

    def _on_grad_ready(self, param: Tensor) -> None:
        if not self.sync_enabled:
            return
        if not self._in_backward:
            self._start_step()
            queue_callback(self._finish_step)
        self._stage(param)
        self._launch_ready()

    def _start_step(self) -> None:
        self._in_backward, self._next_launch, self._synced_once = True, 0, True
        self.stats.start()
        for bucket in self.buckets:
            bucket.reset()

    def _stage(self, param: Tensor) -> None:
        """Puts param's gradient where its bucket's hook reads it, divided by size."""
        bucket, position = self._slot[param]
        if bucket.staged[position]:
            raise RuntimeError(f"rank {self.comm.rank}: the gradient of '{bucket.names[position]}'"
                               " became ready twice in one backward pass; DataParallel supports "
                               "one backward per step (use no_sync() to accumulate)")
        if bucket._buffer is None and not bucket.direct:
            bucket.allocate()
        grad, view = param.grad.array, bucket.views[position]
        # NOTE: a one-gradient bucket under the default hook is averaged by the all-reduce
        # itself (Communicator.allreduce_mean_, _run_hook), not by a pass here
        scale = None if not self.prescale or (bucket.direct and self._hook is allreduce_hook) \
            else grad.dtype.type(1.0 / self.comm.size)
        if bucket.direct:
            # NOTE: the same strides as the parameter (the common case, one check) imply its
            # memory order; otherwise the grad is laid out as the parameter is, so the flat
            # buffer is (ZeroRedundancyOptimizer's shards rely on it)
            if grad.strides != param.array.strides or not (grad.flags.c_contiguous
                                                           or grad.flags.f_contiguous):
                grad = param.grad.array = get_array_module(grad).asarray(
                    grad, order=_order(param.array))  # a copy if the order differs
            if scale is not None:
                grad *= scale
            bucket.hold(grad)
        elif grad is view:
            if scale is not None:
                view *= scale
        else:  # NOTE: one pass copies (and averages); the grad then lives in the bucket
            get_array_module(grad).multiply(grad, scale if scale is not None else 1, out=view)
            param.grad = Tensor(view)
        bucket.staged[position] = True
        bucket.pending -= 1

    def _zero_grad_of_unused(self, bucket: _Bucket, position: int) -> None:
        p = bucket.params[position]
        if bucket.direct:
            p.grad = Tensor(get_array_module(p.array).zeros_like(p.array))
            bucket.hold(p.grad.array)
        else:
            if bucket._buffer is None:
                bucket.allocate()
            bucket.views[position][...] = 0
            p.grad = Tensor(bucket.views[position])
        bucket.staged[position], bucket.pending = True, bucket.pending - 1

    def _run_hook(self, bucket: _Bucket) -> None:
        """The exchange of one bucket (on the comm thread or inline)."""
        if bucket.direct and self._hook is allreduce_hook:
            flat = bucket._buffer
            if type(flat) is numpy.ndarray:  # NOTE: host memory, ready for MPI as it is
                key = (flat.dtype, flat.size)  # NOTE: a model cast after wrapping changes it
                if bucket.plan is None or bucket.plan[0] != key:
                    bucket.plan = key, self.comm.mean_plan(flat)
                self.comm.mean_flat_(flat, bucket.plan[1])
            else:
                self.comm.allreduce_mean_(flat)
        elif self._hook(self._hook_state, bucket) is not None:
            raise TypeError(f"rank {self.comm.rank}: comm hook {_hook_name(self._hook)} "
                            "returned a value; a hook leaves the mean in bucket.buffer(), in "
                            "place, and returns None")

    def _launch_ready(self, at_end: bool = False) -> None:
        # NOTE: strictly in bucket order, so every rank issues the same collectives in the
        # same order even when its gradients become ready in another order. With overlap, a
        # ready bucket goes to the comm thread, except the last one, which everything waits
        # for anyway: it runs here at the end (a hand-off costs a wake-up). Without overlap a
        # ready bucket is exchanged here at once, while its gradients are still in cache
        # (measured: a 16 MB all-reduce ran at 8.2 GB/s hot and 4.4 GB/s cold).
        last = len(self.buckets) - 1
        while self._next_launch <= last and self.buckets[self._next_launch].pending == 0:
            bucket = self.buckets[self._next_launch]
            if self.overlap and not at_end:
                if self._next_launch == last:
                    return
                self._comm_thread.jobs.put(lambda bucket=bucket: self._exchange(bucket))
            else:
                if self._comm_thread is not None:  # NOTE: the buckets before it go first
                    self.stats.blocking(self._comm_thread.wait)
                self.stats.inline(self._run_hook, bucket)
            self._next_launch += 1

    def _finish_step(self) -> None:
        for bucket in self.buckets[self._next_launch:]:
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
            if self._comm_thread is not None:
                self.stats.blocking(self._comm_thread.wait)
        finally:
            self._in_backward = False
        self.stats.finish()

    def sync_grads(self) -> None:
        """Averages the current .grads over ranks now (blocking; see DataParallel)."""
        if not self._handles:  # NOTE: one rank, default hook: already the mean
            return
        self._start_step()
        # NOTE: bucket by bucket, each launched right after it is staged, while its gradients
        # are still in cache (staging them all first left the first buckets cold)
        for bucket in self.buckets:
            for p in bucket.params:
                if p.grad is not None:
                    self._stage(p)
            self._launch_ready()
        self._finish_step()


def _make_buckets(named_params: list, comm, cap_bytes: int, first_cap_bytes: int):
    """Buckets of the parameters in reverse registration order, and param -> (bucket, slot)."""
    named = list(reversed(named_params))  # NOTE: gradients become ready roughly in this order
    dtypes = [p.dtype for _, p in named]
    sizes = [p.numel() * numpy.dtype(d).itemsize for (_, p), d in zip(named, dtypes)]
    groups = assign_buckets(sizes, dtypes, cap_bytes, first_cap_bytes,
                            min(cap_bytes, int(DEFAULT_DIRECT_MB * 2**20)))
    buckets, slot = [], {}
    for index, group in enumerate(groups):
        bucket = _Bucket(index, [named[i][1] for i in group], [named[i][0] for i in group],
                         comm, is_last=index == len(groups) - 1)
        buckets.append(bucket)
        for position, p in enumerate(bucket.params):
            slot[p] = (bucket, position)
    return buckets, slot
