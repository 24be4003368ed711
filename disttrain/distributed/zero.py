"""ZeroRedundancyOptimizer: ZeRO stages 1 and 2 (optimizer state, and gradients, sharded).

The parameters become views of one flat buffer, laid out in DataParallel's bucket order; rank r
owns one contiguous range of it (zero_layout.py) and runs the wrapped optimizer on that range
only, so it keeps 1/size of the optimizer state. Gradients are reduce-scattered into the
owner's shard (during backward, bucket by bucket, when the parameters are under a
DataParallel), each rank steps its shard, and one in-place all-gather of the flat buffer
gives every rank the updated parameters. Consolidated state_dicts: zero_state.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy

from disttrain.backend import is_cupy_array
from disttrain.distributed import zero_state
from disttrain.distributed.comm import Communicator, init
from disttrain.distributed.data_parallel import _WRAPPED_BY
from disttrain.distributed.zero_layout import overlap_counts, pieces, shard_ranges
from disttrain.nn import Parameter
from disttrain.optim import LBFGS, Optimizer
from disttrain.tensor import Tensor, enable_grad

__all__ = ["ZeroRedundancyOptimizer"]


def _order(array) -> str:
    return "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"


class ZeroRedundancyOptimizer(Optimizer):
    """Shards the optimizer state over ranks (ZeRO-1; ZeRO-2 also the gradients), as torch's
    `ZeroRedundancyOptimizer`.

    Every rank keeps `optimizer_class`'s state only for its contiguous 1/size of the flattened
    parameters. After backward the gradients are reduce-scattered (never all-reduced): each
    rank receives the mean over ranks of its shard; `step()` updates the shard and all-gathers
    the parameters. Build it after `DataParallel` (so parameters are identical): DataParallel's
    buckets are then reduce-scattered during backward instead of all-reduced, and `.grad` keeps
    this rank's local gradient (stage 1) or is freed, None (stage 2); the averaged gradients
    live in the shards, so clip with `opt.clip_grad_norm_`, not `nn.utils.clip_grad_norm_`.
    Without DataParallel, `step()` reduce-scatters the local `.grad`s itself.

    Any element-wise optimizer works (SGD, Adam, AdamW, RMSprop, Adadelta, Adagrad, NAdam,
    RAdam); LBFGS (global dot products) is refused. `param_groups` are the full groups, as
    the plain optimizer's (LR schedulers change them; each step copies them to the shard
    optimizer). A parameter without a gradient is stepped with a zero one (as DataParallel
    gives unused parameters). Host (numpy) parameters of one dtype.

    Args:
        params: Parameters or param groups (dicts), as for any optimizer.
        optimizer_class: the optimizer to shard, e.g. `optim.Adam`.
        comm: the Communicator (default: `dist.init()`, the world).
        stage: 1 (optimizer state sharded) or 2 (gradients too: each bucket's full gradients
            are freed right after its reduce-scatter; only the shard's gradient is kept).
        parameters_as_bucket_view: torch's flag; parameters always are views of the flat
            buffer here (the all-gather then needs no copy), so either value does that.
        overlap_with_ddp: torch's flag; under DataParallel the reduce-scatter always overlaps
            backward as DataParallel's all-reduce did, so either value does that.
        defaults: `optimizer_class`'s hyper-parameters (lr=..., betas=...).

    Example:
        >>> model = dist.DataParallel(net)
        >>> opt = dist.ZeroRedundancyOptimizer(model.parameters(), optim.Adam, lr=1e-3)
        >>> loss_fn(model(x), y).backward()   # buckets reduce-scattered during backward
        >>> opt.clip_grad_norm_(1.0)           # optional: global norm over the shards
        >>> opt.step(); opt.zero_grad()
        >>> opt.optimizer_state_bytes()        # ~1/size of optim.Adam's
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict],
                 optimizer_class: type[Optimizer], comm: Communicator | None = None,
                 stage: int = 1, parameters_as_bucket_view: bool = False,
                 overlap_with_ddp: bool = False, **defaults: Any):
        self.comm = comm if comm is not None else init()
        self._built = False
        super().__init__(params, defaults)
        self._check_args(optimizer_class, stage)
        self.optimizer_class, self.stage = optimizer_class, stage
        self._reducer = _reducer_of(self._user_params(), self.comm.rank)
        self._build_flat()
        self._build_shard()
        self._reduced, self._consolidated, self._built = False, None, True
        if self._reducer is not None:
            self._bucket_start = _bucket_starts(self._reducer.buckets)
            self._reducer.set_sharded_exchange(self._reduce_bucket)

    def _check_args(self, optimizer_class, stage: int) -> None:
        where = f"ZeroRedundancyOptimizer (rank {self.comm.rank})"
        if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
            raise TypeError(f"{where}: optimizer_class must be an Optimizer class such as "
                            f"optim.Adam, got {optimizer_class!r}")
        if issubclass(optimizer_class, LBFGS):
            raise ValueError(f"{where}: optimizer_class {optimizer_class.__name__} is not "
                             "element-wise (it takes dot products over all parameters) and "
                             "cannot be sharded; use it unsharded")
        if stage not in (1, 2):
            raise ValueError(f"{where}: stage must be 1 or 2, got {stage!r}")
        dtypes = {numpy.dtype(p.dtype) for p in self._user_params()}
        if len(dtypes) != 1 or any(is_cupy_array(p.array) for p in self._user_params()):
            raise TypeError(f"{where}: needs host (numpy) parameters of one dtype, got dtypes "
                            f"{sorted(str(d) for d in dtypes)}; use one optimizer per dtype")

    def _user_params(self) -> list:
        return [p for group in self.param_groups for p in group["params"]]

    def _build_flat(self) -> None:
        """The flat parameter buffer (rank 0's values), the parameters rebound as its views."""
        params = self._user_params()
        if self._reducer is not None:
            order = [p for bucket in self._reducer.buckets for p in bucket.params]
        else:
            order = params
        self._order, self._sizes = order, [p.numel() for p in order]
        self._offsets = [sum(self._sizes[:i]) for i in range(len(order))]
        self._flat = numpy.empty(sum(self._sizes), numpy.dtype(params[0].dtype))
        self._views = [None] * len(order)
        self._rebind_views(check_only=False)
        self.comm.bcast_(self._flat, root=0)

    def _rebind_views(self, check_only: bool = True) -> None:
        """Makes each parameter's array a view of the flat buffer again where something (a
        Module.to, a `.data =`) replaced it, copying its values in."""
        for i, (p, offset, n) in enumerate(zip(self._order, self._offsets, self._sizes)):
            if check_only and p.array is self._views[i]:
                continue
            order = _order(p.array)
            self._flat[offset:offset + n] = p.array.reshape(-1, order=order)
            p.array = self._views[i] = self._flat[offset:offset + n].reshape(p.shape,
                                                                              order=order)

    def _build_shard(self) -> None:
        """This rank's range, its gradient buffer, and the shard optimizer over its pieces."""
        self._ranges = shard_ranges(len(self._flat), self.comm.size)
        self._counts = [hi - lo for lo, hi in self._ranges]
        lo, hi = self._ranges[self.comm.rank]
        self._grad_shard = numpy.zeros(hi - lo, self._flat.dtype)
        group_of = {id(p): g for g, group in enumerate(self.param_groups) for p in group["params"]}
        inner = [{k: v for k, v in group.items() if k != "params"} | {"params": []}
                 for group in self.param_groups]
        self._pieces = []  # (piece, layout index, first, last element of the parameter)
        for index, first, last in pieces(self._sizes, (lo, hi)):
            start = self._offsets[index]
            piece = _piece(self._flat[start + first:start + last],
                           self._grad_shard[start + first - lo:start + last - lo])
            self._pieces.append((piece, index, first, last))
            inner[group_of[id(self._order[index])]]["params"].append(piece)
        for group in inner:  # NOTE: a group with nothing here keeps its place (schedulers)
            if not group["params"]:
                group["params"].append(_piece(self._flat[:0], self._grad_shard[:0]))
        self.optim = self.optimizer_class(inner, **self.defaults)
        for group, shard_group in zip(self.param_groups, self.optim.param_groups):
            group.update({k: v for k, v in shard_group.items() if k != "params"})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if getattr(self, "_built", False):
            raise RuntimeError(f"ZeroRedundancyOptimizer.add_param_group (rank "
                               f"{self.comm.rank}): the shards are laid out at construction; "
                               "pass every param group to the constructor")
        super().add_param_group(param_group)

    # ---------------------------------------------------------------- gradients
    def _reduce_bucket(self, state, bucket) -> None:
        """DataParallel's exchange of one bucket: the reduce-scatter into the shards."""
        start = self._bucket_start[bucket.index()]
        buffer = bucket.buffer()
        self._reduce_into_shard(buffer, start, start + buffer.size)
        if self.stage == 2:
            for p in bucket.params:
                p.grad = None
            bucket.release()
        if bucket.is_last():
            self._reduced = True

    def _reduce_into_shard(self, flat_grads, start: int, end: int) -> None:
        counts = overlap_counts(start, end, self._ranges)
        lo = self._ranges[self.comm.rank][0]
        first = max(start, lo) - lo
        out = self._grad_shard[first:first + counts[self.comm.rank]]
        self.comm.reduce_scatter_v_(flat_grads, out, counts)
        if self.comm.size > 1:  # NOTE: the mean's division, on this rank's 1/size only
            out *= out.dtype.type(1.0 / self.comm.size)

    def _reduce_all(self) -> None:
        """Without DataParallel (or after no_sync backwards): reduce-scatters the `.grad`s."""
        flat = numpy.zeros_like(self._flat)
        for p, offset, n in zip(self._order, self._offsets, self._sizes):
            if p.grad is not None:
                flat[offset:offset + n] = p.grad.array.reshape(-1, order=_order(p.array))
                if self.stage == 2:
                    p.grad = None
        self._reduce_into_shard(flat, 0, len(flat))
        self._reduced = True

    def clip_grad_norm_(self, max_norm: float, norm_type: float = 2.0) -> Tensor:
        """Clips the (averaged, sharded) gradients to a global norm of at most `max_norm`, as
        `nn.utils.clip_grad_norm_` on the unsharded ones; returns the norm before clipping.
        Collective: call it on every rank, between backward and step.

        Example:
            >>> loss.backward(); opt.clip_grad_norm_(1.0); opt.step()
        """
        if not self._reduced:
            self._reduce_all()
        norm_type, g = float(norm_type), self._grad_shard
        if math.isinf(norm_type):
            local = numpy.array([numpy.abs(g).max() if g.size else 0.0], numpy.float64)
            total = float(self.comm.allreduce_(local, op="max")[0])
        else:
            local = numpy.array([numpy.sum(numpy.abs(g.astype(numpy.float64)) ** norm_type)])
            total = float(self.comm.allreduce_(local)[0]) ** (1.0 / norm_type)
        coef = min(float(max_norm) / (total + 1e-6), 1.0)
        if coef < 1.0:
            g *= g.dtype.type(coef)
        return Tensor(numpy.asarray(total, g.dtype))

    # ---------------------------------------------------------------- step
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Steps this rank's shard with the averaged gradients, then all-gathers the
        parameters. Collective: call it on every rank."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        if not self._reduced:
            self._reduce_all()
        for group, shard_group in zip(self.param_groups, self.optim.param_groups):
            shard_group.update({k: v for k, v in group.items() if k != "params"})
        self._rebind_views()
        self.optim.step()
        self.comm.allgather_v_(self._flat, self._counts)
        self._reduced, self._consolidated = False, None
        return loss

    def optimizer_state_bytes(self) -> int:
        """Bytes of optimizer state this rank holds (its shard's); the unsharded optimizer's
        divided by about `comm.size`."""
        return sum(value.nbytes for state in self.optim.state.values()
                   for value in state.values() if hasattr(value, "nbytes"))

    # ---------------------------------------------------------------- state
    def consolidate_state_dict(self, to: int = 0) -> None:
        """Gathers the full optimizer state on rank `to` (collective), for `state_dict()`
        there, as torch's. The result is the plain optimizer's state_dict."""
        self._consolidated = (to, zero_state.consolidate(self, root=to))

    def state_dict(self) -> dict[str, Any]:
        """The full state, in `optimizer_class`'s state_dict format (it loads into the plain
        optimizer, or into a ZeroRedundancyOptimizer at any world size). After
        `consolidate_state_dict(to)`, returns it on rank `to` (raises elsewhere), as torch;
        otherwise it is collective and every rank gets it (how CheckpointManager calls it)."""
        if self._consolidated is None:
            return zero_state.consolidate(self, root=None)
        to, full = self._consolidated
        if self.comm.rank != to:
            raise RuntimeError(f"ZeroRedundancyOptimizer.state_dict (rank {self.comm.rank}): "
                               f"the state was consolidated on rank {to}; call state_dict() "
                               "there, or on every rank without consolidate_state_dict()")
        return full

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Loads a full state (this class's or the plain optimizer's state_dict(), from any
        world size); every rank takes its shard of it. Call it on every rank."""
        zero_state.load(self, state_dict)

    def sharded_state_dict(self) -> dict[str, Any]:
        """This rank's own part of the state, without a collective (what CheckpointManager
        writes per rank, as torch's DCP or DeepSpeed do): a checkpoint holds 1/size of the
        state per rank instead of moving all of it through one.

        Returns `{"layout": {"world_size", "rank", "range": [start, end], "flat_size",
        "offsets", "sizes", "shapes", "orders"}, "state": {name: 1-d array over [start, end)
        of the flat buffer}, "params": {position: {"names": [...], "scalars": {"step": ...}}},
        "param_groups": [...]}`; per-parameter lists and keys are positions in param_groups,
        as in `state_dict()`. Arrays are host copies; everything else is JSON-serialisable.

        Example:
            >>> shard = opt.sharded_state_dict()
            >>> shard["layout"]["range"], shard["state"]["exp_avg"].shape   # Adam
            ([0, 37], (37,))
        """
        return zero_state.sharded(self)

    def load_sharded_state_dict(self, shards: Sequence[dict[str, Any]]) -> None:
        """Loads the state from the `sharded_state_dict()`s of every rank of a saved run, at
        any world size (resharding): this rank takes exactly the elements of its own range
        from the saved shards overlapping it, and never indexes the others (so `shards` may be
        a lazy sequence; array values need only support `[start:stop]`, e.g. safetensors
        `get_slice`). Not a collective. Refuses, naming the rank, shards whose layout
        (parameter count, shapes, flat size, param groups) differs from this optimizer's.

        Args:
            shards: shards[r] is rank r's sharded_state_dict() of the saved run.

        Example:
            >>> shards = comm.allgather_obj(opt.sharded_state_dict())  # small models only
            >>> other_opt.load_sharded_state_dict(shards)   # at this or any world size
        """
        zero_state.load_sharded(self, shards)


def _piece(array, grad) -> Parameter:
    piece = Parameter(array)
    piece.array, piece.grad = array, Tensor(grad)
    return piece


def _reducer_of(params: list, rank: int):
    """The Reducer of the DataParallel the parameters are under, or None; all or none."""
    reducers = {id(_WRAPPED_BY.get(id(p))): _WRAPPED_BY.get(id(p)) for p in params}
    if len(reducers) == 1:
        reducer = next(iter(reducers.values()))
        if reducer is None or {id(p) for p in reducer.parameters} == {id(p) for p in params}:
            return reducer
    raise ValueError(f"ZeroRedundancyOptimizer (rank {rank}): the parameters must be all the "
                     "trainable parameters of one DataParallel, or of none; got "
                     f"{len(params)} parameters spread over {len(reducers)} owner(s). Pass "
                     "dp.parameters()")


def _bucket_starts(buckets: list) -> list[int]:
    starts, offset = [], 0
    for bucket in buckets:
        starts.append(offset)
        offset += bucket.numel
    return starts
