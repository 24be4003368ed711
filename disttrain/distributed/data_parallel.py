"""DataParallel: replicas on every rank, gradients averaged by bucketed in-place all-reduce,
started during backward as soon as each bucket is complete. The averaging engine is
reducer.py; how a bucket is exchanged is a strategy, the comm hook (comm_hooks.py)."""

from __future__ import annotations

import contextlib
import gc
import warnings
import weakref

import numpy

from disttrain.distributed.buckets import DEFAULT_BUCKET_CAP_MB, DEFAULT_FIRST_BUCKET_CAP_MB
from disttrain.distributed.comm import Communicator, init
from disttrain.distributed.comm_hooks import fp16_compress_hook
from disttrain.distributed.reducer import Reducer, has_spare_core
from disttrain.distributed.watchdog import heartbeat
from disttrain.nn import Module
from disttrain.tensor import no_grad

__all__ = ["DataParallel", "has_spare_core"]

# NOTE: id(parameter) -> the Reducer averaging its gradient, until DataParallel.remove(). A
# parameter under two DataParallels would be averaged twice per backward, so a second wrap is
# refused. Weak values: the autograd hooks keep a Reducer alive, so an entry lives exactly as
# long as it could still reduce.
_WRAPPED_BY: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class DataParallel(Module):
    """Data parallelism over MPI: after `loss.backward()` every gradient is the mean over ranks.

    Wraps a module (never changes it); the optimizer stays the single-process one. At
    construction every rank checks that all ranks hold the same parameters (names, shapes,
    dtypes), raising on every rank if not, then takes rank 0's parameters and buffers.
    Gradients are grouped in flat buckets in reverse registration order; a bucket's exchange
    starts as soon as its last gradient is ready, on a communication thread. How a bucket is
    exchanged is the comm hook: by default `comm_hooks.allreduce_hook` (in-place all-reduce);
    `register_comm_hook` replaces it (e.g. with `comm_hooks.fp16_compress_hook`).

    A module (any of its parameters) is under one DataParallel at a time: wrapping it again
    raises on every rank, naming the module, until `remove()` unwraps the first.

    Args:
        module: the model; identical on every rank.
        comm: the Communicator (default: `dist.init()`, the world).
        bucket_cap_mb: bucket size (default 8 MB, from examples/allreduce_benchmark.py).
        grad_dtype: deprecated; `grad_dtype=dt.float16` registers
            `comm_hooks.fp16_compress_hook` (call `register_comm_hook` instead).
        broadcast_buffers: re-send rank 0's buffers (BatchNorm statistics) at every forward.
        overlap: exchange on a communication thread during backward (default: when every
            rank has a spare core); False runs the exchanges in backward's own thread.
        first_bucket_cap_mb: size of the first bucket, small so communication starts early.
        init_sync: take rank 0's parameters and buffers at construction (False: every rank
            keeps its own, e.g. when all ranks loaded the same checkpoint).

    Example:
        >>> from disttrain.distributed import comm_hooks
        >>> model = dist.DataParallel(nn.Linear(4, 2))
        >>> model.register_comm_hook(None, comm_hooks.fp16_compress_hook)  # optional
        >>> loss = model(dt.randn(8, 4)).sum()
        >>> loss.backward()   # .grad of model.module.weight is now the mean over ranks
        >>> model.remove()    # model.module trains alone again (local gradients)
    """

    def __init__(self, module: Module, comm: Communicator | None = None,
                 bucket_cap_mb: float | None = None, grad_dtype=None,
                 broadcast_buffers: bool = True, overlap: bool | None = None,
                 first_bucket_cap_mb: float = DEFAULT_FIRST_BUCKET_CAP_MB,
                 init_sync: bool = True):
        super().__init__()
        self.module = module
        self.comm = comm if comm is not None else init()
        self.broadcast_buffers = broadcast_buffers
        _check_grad_dtype(grad_dtype, self.comm.rank)
        self._check_collectively()
        if init_sync:
            self._broadcast_state(parameters=True)
        self._has_buffers = any(True for _ in self.module.buffers())
        cap_mb = DEFAULT_BUCKET_CAP_MB if bucket_cap_mb is None else bucket_cap_mb
        named = [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]
        self._reducer = Reducer(named, self.comm, int(cap_mb * 2**20),
                                int(first_bucket_cap_mb * 2**20),
                                has_spare_core(self.comm.local_size) if overlap is None
                                else overlap)
        self._removed = False
        for p in self._reducer.parameters:
            _WRAPPED_BY[id(p)] = self._reducer
        if grad_dtype is not None:
            self.register_comm_hook(None, fp16_compress_hook)

    def _check_collectively(self) -> None:
        """Raises on every rank if the ranks' models differ or any rank's is already wrapped."""
        mine = [(n, tuple(t.shape), str(t.dtype)) for n, t in self.module.named_parameters()]
        mine += [(n, tuple(t.shape), str(t.dtype)) for n, t in self.module.named_buffers()]
        if any(id(p) in _WRAPPED_BY for p in self.module.parameters()):
            gc.collect()  # NOTE: a dropped DataParallel may wait in a reference cycle
        wrapped = [n for n, p in self.module.named_parameters() if id(p) in _WRAPPED_BY]
        everyone = self.comm.allgather_obj((mine, wrapped))
        problems = []
        for rank, (theirs, _) in enumerate(everyone):
            if theirs != everyone[0][0]:
                problems += _differences(everyone[0][0], theirs, rank)
        if problems:
            raise ValueError(f"{type(self).__name__} (rank {self.comm.rank}): the model differs "
                             "between ranks; build the same model on every rank:\n  "
                             + "\n  ".join(problems))
        wrapped_on = {rank: names for rank, (_, names) in enumerate(everyone) if names}
        if wrapped_on:
            rank, names = next(iter(wrapped_on.items()))
            raise RuntimeError(
                f"{type(self).__name__} (rank {self.comm.rank}): {type(self.module).__name__} is "
                f"already wrapped by a live DataParallel on rank(s) {sorted(wrapped_on)} "
                f"(parameter '{names[0]}' on rank {rank}); a second wrapper would average its "
                "gradients twice. Call remove() on the first DataParallel before wrapping again")

    def _broadcast_state(self, parameters: bool) -> None:
        tensors = list(self.module.buffers())
        if parameters:
            tensors = list(self.module.parameters()) + tensors
        with no_grad():
            for t in tensors:
                self.comm.bcast_(t.array, root=0)

    @property
    def overlap(self) -> bool:
        """Whether buckets are exchanged on a communication thread during backward."""
        return self._reducer.overlap

    @property
    def buckets(self) -> list[list[str]]:
        """Parameter names of each bucket, in launch order."""
        return [b.names for b in self._reducer.buckets]

    @property
    def stats(self) -> dict:
        """The last synchronised step's exchange: {"comm_s": time in the comm hook,
        "wait_s": time backward was blocked by it, "bytes": gradient bytes exchanged}."""
        return self._reducer.stats.last

    def register_comm_hook(self, state, hook) -> None:
        """Sets how each bucket of gradients is exchanged (torch DDP's register_comm_hook).

        `hook(state, bucket)` is called once per bucket per synchronised backward, with a
        `comm_hooks.GradBucket` whose `buffer()` holds this rank's gradients divided by the
        number of ranks; it must leave the mean over ranks (the sum of the buffers) in that
        buffer, in place, and return None. The full contract is in `comm_hooks`. Call it
        once, on every rank, before the first backward: it raises when called again or after
        gradients were exchanged. (On one rank the default hook is skipped, the gradients
        already being the mean; a registered hook runs there too.)

        Args:
            state: handed to every call of the hook unchanged (the built-in hooks ignore it).
            hook: e.g. `comm_hooks.fp16_compress_hook`, or your own callable(state, bucket).

        Example:
            >>> dp = dist.DataParallel(model)
            >>> dp.register_comm_hook(None, comm_hooks.fp16_compress_hook)
        """
        self._check_not_removed("register_comm_hook")
        self._reducer.register_comm_hook(state, hook)

    def remove(self) -> None:
        """Unwraps: detaches the autograd hooks from the parameters and stops the
        communication thread. `dp.module` then trains alone (local gradients) and can be
        wrapped again; `dp` itself cannot be used anymore. Call it on every rank, between
        steps.

        Example:
            >>> dp.remove()
            >>> dp = dist.DataParallel(dp.module)   # wrapping again works
        """
        self._reducer.detach()
        self._removed = True
        for p in self._reducer.parameters:
            if _WRAPPED_BY.get(id(p)) is self._reducer:
                del _WRAPPED_BY[id(p)]

    def _check_not_removed(self, what: str) -> None:
        if self._removed:
            raise RuntimeError(f"DataParallel.{what} (rank {self.comm.rank}): this DataParallel "
                               "was removed by remove(); call dp.module directly, or wrap it "
                               "again")

    def forward(self, *args, **kwargs):
        self._check_not_removed("forward")
        heartbeat("forward")
        if self.broadcast_buffers and self.comm.size > 1 and self._has_buffers:
            self._broadcast_state(parameters=False)
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Gradients accumulate locally inside; the next synchronised backward averages the
        accumulated sums (torch DDP's no_sync)."""
        previous, self._reducer.sync_enabled = self._reducer.sync_enabled, False
        try:
            yield
        finally:
            self._reducer.sync_enabled = previous

    def sync_grads(self) -> None:
        """Averages the current .grads over ranks now (blocking; no overlap). For gradients
        computed outside backward, and for benchmarks."""
        self._check_not_removed("sync_grads")
        self._reducer.sync_grads()


def _check_grad_dtype(grad_dtype, rank: int) -> None:
    """The deprecated grad_dtype argument: only float16, now a comm hook."""
    if grad_dtype is None:
        return
    if numpy.dtype(grad_dtype) != numpy.float16:
        raise ValueError(f"DataParallel (rank {rank}): grad_dtype must be None or float16, got "
                         f"{numpy.dtype(grad_dtype)}; for other exchanges register a comm hook")
    warnings.warn("DataParallel(grad_dtype=float16) is deprecated: call "
                  "dp.register_comm_hook(None, comm_hooks.fp16_compress_hook) "
                  "(disttrain.distributed.comm_hooks)", FutureWarning, stacklevel=3)


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
