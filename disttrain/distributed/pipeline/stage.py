"""Pipeline: one stage of an nn.Sequential per rank, micro-batches streamed through a schedule
(GPipe or 1F1B) over blocking MPI point-to-point. Executes schedule.py's action lists literally.
"""

from __future__ import annotations

import contextlib
import time

import numpy

from disttrain.backend import get_array_module
from disttrain.distributed.comm import Communicator
from disttrain.distributed.grid import ProcessGrid
from disttrain.distributed.pipeline.partition import partition
from disttrain.distributed.pipeline.schedule import make_schedule
from disttrain.distributed.watchdog import heartbeat
from disttrain.nn import Sequential
from disttrain.tensor import Tensor, no_grad

_DTYPES = ["float32", "float64", "float16", "int64", "int32", "uint8", "bool"]
_HEADER_LEN = 12  # magic, microbatch, direction, dtype code, ndim, up to 7 dims
_MAGIC = 0x5049_5045  # "PIPE"
_FORWARD, _BACKWARD = 0, 1
_PHASES = {"F": "forward", "B": "backward", "SEND_F": "send", "SEND_B": "send",
           "RECV_F": "recv", "RECV_B": "recv"}


def _tag(microbatch: int, direction: int, payload: bool) -> int:
    """Message tags encode micro-batch and direction, so a mixed-up message is detected."""
    return (microbatch * 2 + direction) * 2 + int(payload)


class Pipeline:
    """Pipeline parallelism: this rank holds one stage of `module` and trains on micro-batches.

    `step(x, target, loss_fn)` splits the batch into `n_microbatches`, runs the schedule, and
    leaves each stage's parameter gradients equal to the sequential model's full-batch
    gradients (loss_fn must average over its micro-batch, as every loss does by default).
    With dp > 1 in the grid, each stage's gradients are then averaged over its data-parallel
    group by DataParallel's bucketed all-reduce.

    Args:
        module: an nn.Sequential, built identically on every rank.
        grid_or_comm: a ProcessGrid, or a Communicator (then dp=1, pp=comm.size).
        n_microbatches: micro-batches per step (fewer than stages works).
        schedule: "1f1b" (PipeDream-Flush: at most num_stages - stage_index live activations)
            or "gpipe" (all forwards, then all backwards).
        balance: None (equal layer counts), a list of layer counts per stage, "params" (balance
            parameter counts) or "time" (time each layer's forward + backward on a micro-batch
            of `sample_input`, then minimise the slowest stage; `layer_times` keeps them).
        sample_input: a batch like the ones `step` will get; needed by balance="time".

    Example:
        >>> pipe = dist.Pipeline(nn.Sequential(*layers), dist.init(), n_microbatches=8)
        >>> opt = optim.SGD(pipe.parameters(), lr=0.1)
        >>> loss = pipe.step(x, y, nn.CrossEntropyLoss())   # the same mean loss on every rank
        >>> opt.step()
    """

    def __init__(self, module: Sequential, grid_or_comm, n_microbatches: int,
                 schedule: str = "1f1b", balance=None, sample_input: Tensor | None = None):
        if not isinstance(module, Sequential):
            raise TypeError(f"Pipeline: module must be an nn.Sequential, got "
                            f"{type(module).__name__}")
        grid = grid_or_comm
        if isinstance(grid_or_comm, Communicator):
            grid = ProcessGrid(dp=1, pp=grid_or_comm.size, comm=grid_or_comm)
        self.grid, self.comm = grid, grid.pp_comm
        self.stage_index, self.num_stages = grid.stage_index, grid.pp
        self.n_microbatches, self.schedule_name = n_microbatches, schedule
        self._full, self._balance = module, balance
        self._check_same_setup(len(module))
        self.actions = make_schedule(schedule, self.num_stages, n_microbatches)[self.stage_index]
        self.module, self.partition, self._dp, self.layer_times = None, None, None, None
        if balance == "time":
            if sample_input is None:
                raise ValueError("Pipeline: balance='time' needs sample_input= (a batch like "
                                 "the ones step() gets) to time each layer on")
            self._build(self._profile_partition(sample_input))
        else:
            self._build(partition(module, self.num_stages, balance))
        self.stats: dict = {}

    # ---------------------------------------------------------------- setup
    def _check_same_setup(self, n_layers: int) -> None:
        mine = (self.n_microbatches, self.schedule_name, str(self._balance), n_layers,
                self.grid.dp, self.grid.pp)
        everyone = self.grid.comm.allgather_obj(mine)
        bad = [r for r, theirs in enumerate(everyone) if theirs != everyone[0]]
        if bad:
            raise ValueError(f"Pipeline (rank {self.grid.rank}): every rank must pass the same "
                             "(n_microbatches, schedule, balance, len(module), dp, pp); rank 0 "
                             f"has {everyone[0]} but rank {bad[0]} has {everyone[bad[0]]}")

    def _build(self, bounds: list[tuple[int, int]]) -> None:
        self.partition = bounds
        start, end = bounds[self.stage_index]
        self.module = Sequential(*list(self._full)[start:end])
        if self.grid.dp > 1:
            from disttrain.distributed.data_parallel import DataParallel
            self._dp = DataParallel(self.module, self.grid.dp_comm, overlap=False)

    def parameters(self):
        return self.module.parameters()

    def state_dict(self) -> dict:
        """This stage's parameters and buffers (names as in its stage module)."""
        return self.module.state_dict()

    def load_state_dict(self, state_dict, strict: bool = True):
        return self.module.load_state_dict(state_dict, strict)

    def named_parameters(self):
        return self.module.named_parameters()

    is_first_stage = property(lambda self: self.grid.is_first_stage)
    is_last_stage = property(lambda self: self.grid.is_last_stage)

    def train(self, mode: bool = True) -> Pipeline:
        self._full.train(mode)
        return self

    def eval(self) -> Pipeline:
        return self.train(False)

    # ---------------------------------------------------------------- one step
    def step(self, x: Tensor, target: Tensor, loss_fn) -> Tensor:
        """Forward and backward of the whole batch, micro-batch by micro-batch; returns the
        batch's mean loss (the same on every rank)."""
        xs, targets = self._split(x), self._split(target)
        total = sum(len(t) for t in targets)
        run = _StepState(self, xs, targets, total, loss_fn)
        context = self._dp.no_sync() if self._dp is not None else contextlib.nullcontext()
        with context:
            for action in self.actions:
                run.execute(action)
        if self._dp is not None:
            self._dp.sync_grads()
        loss = numpy.array([run.loss_sum if self.is_last_stage else 0.0])
        self.comm.bcast_(loss, root=self.num_stages - 1)
        self.stats = run.finish()
        return Tensor(loss.reshape(()))

    def _split(self, t: Tensor) -> list[Tensor]:
        n = t.shape[0]
        if n < self.n_microbatches:
            raise ValueError(f"Pipeline (stage {self.stage_index}): a batch of {n} cannot be "
                             f"split into {self.n_microbatches} micro-batches")
        bounds = numpy.linspace(0, n, self.n_microbatches + 1).astype(int)
        return [t[int(a):int(b)] for a, b in zip(bounds[:-1], bounds[1:])]

    def _profile_partition(self, x: Tensor) -> list[tuple[int, int]]:
        """Times each layer's forward + backward on one micro-batch (rank 0's timings, so
        every rank cuts at the same places), then partitions by time."""
        costs = []
        h = self._split(x)[0].detach()
        if h.dtype.kind == "f":
            h.requires_grad_()
        for layer in self._full:
            start = time.perf_counter()
            for _ in range(3):
                out = layer(h)
                if out.requires_grad:
                    out.backward(get_array_module(out.array).ones_like(out.array))
            costs.append((time.perf_counter() - start) / 3)
            h = out.detach().requires_grad_() if out.dtype.kind == "f" else out.detach()
        for p in self._full.parameters():
            p.grad = None
        costs = self.grid.comm.bcast_obj(costs, root=0)
        self.layer_times = costs
        return partition(self._full, self.num_stages, "time", costs=costs)

    # ---------------------------------------------------------------- messages
    def send(self, array, dest_stage: int, microbatch: int, direction: int) -> None:
        header = numpy.zeros(_HEADER_LEN, numpy.int64)
        header[:5] = (_MAGIC, microbatch, direction, _DTYPES.index(str(array.dtype)),
                      array.ndim)
        header[5:5 + array.ndim] = array.shape
        self.comm.send(header, dest_stage, _tag(microbatch, direction, payload=False))
        if array.size:
            buf = array if array.flags.c_contiguous else get_array_module(array).ascontiguousarray(
                array)
            self.comm.send(buf, dest_stage, _tag(microbatch, direction, payload=True))

    def recv(self, source_stage: int, microbatch: int, direction: int, like=None,
             expected_shape=None):
        header = numpy.zeros(_HEADER_LEN, numpy.int64)
        self.comm.recv_(header, source_stage, _tag(microbatch, direction, payload=False))
        shape = tuple(int(d) for d in header[5:5 + int(header[4])])
        dtype = _DTYPES[int(header[3])]
        xp = get_array_module(like.array) if like is not None else numpy
        array = xp.empty(shape, dtype)
        if array.size:
            self.comm.recv_(array, source_stage, _tag(microbatch, direction, payload=True))
        what = "activation" if direction == _FORWARD else "gradient"
        if header[0] != _MAGIC or header[1] != microbatch or header[2] != direction:
            raise RuntimeError(f"Pipeline stage {self.stage_index}: expected the {what} of "
                               f"micro-batch {microbatch} from stage {source_stage}, got header "
                               f"{header[:5].tolist()}")
        if expected_shape is not None and tuple(expected_shape) != shape:
            raise ValueError(f"Pipeline stage {self.stage_index}, micro-batch {microbatch}: "
                             f"expected a {what} of shape {tuple(expected_shape)} from stage "
                             f"{source_stage}, received shape {shape} ({dtype})")
        return array


class _StepState:
    """What one step keeps per micro-batch, and the per-stage timings."""

    def __init__(self, pipe: Pipeline, xs, targets, total: int, loss_fn):
        self.pipe, self.xs, self.targets, self.total, self.loss_fn = pipe, xs, targets, total, \
            loss_fn
        self.inputs, self.outputs, self.grads = {}, {}, {}
        self.loss_sum, self.live, self.peak_live = 0.0, 0, 0
        self.compute_s = self.wait_s = self.send_s = 0.0
        self.start = time.perf_counter()

    def execute(self, action) -> None:
        pipe, m, kind = self.pipe, action.microbatch, action.kind
        heartbeat(_PHASES[kind])
        start = time.perf_counter()
        if kind == "RECV_F":
            array = pipe.recv(pipe.stage_index - 1, m, _FORWARD, like=self.xs[m])
            expected = (len(self.xs[m]),) + array.shape[1:]
            if array.shape[:1] != expected[:1]:
                raise ValueError(f"Pipeline stage {pipe.stage_index}, micro-batch {m}: expected "
                                 f"an activation with batch size {len(self.xs[m])} from stage "
                                 f"{pipe.stage_index - 1}, received shape {array.shape}")
            self.inputs[m] = Tensor(array, requires_grad=array.dtype.kind == "f")
            self.wait_s += time.perf_counter() - start
        elif kind == "RECV_B":
            self.grads[m] = pipe.recv(pipe.stage_index + 1, m, _BACKWARD,
                                      expected_shape=self.outputs[m].shape)
            self.wait_s += time.perf_counter() - start
        elif kind == "SEND_F":
            pipe.send(self.outputs[m].array, pipe.stage_index + 1, m, _FORWARD)
            self.send_s += time.perf_counter() - start
        elif kind == "SEND_B":
            pipe.send(self.inputs.pop(m).grad.array, pipe.stage_index - 1, m, _BACKWARD)
            self.send_s += time.perf_counter() - start
        elif kind == "F":
            self._forward(m)
            self.compute_s += time.perf_counter() - start
        elif kind == "B":
            self._backward(m)
            self.compute_s += time.perf_counter() - start
        else:
            raise ValueError(f"Pipeline: unknown action kind {kind!r} in {action}")

    def _forward(self, m: int) -> None:
        pipe = self.pipe
        x = self.xs[m] if pipe.is_first_stage else self.inputs[m]
        out = pipe.module(x)
        if pipe.is_last_stage:
            loss = self.loss_fn(out, self.targets[m])
            with no_grad():
                self.loss_sum += float(loss.item()) * len(self.targets[m]) / self.total
            out = loss * (len(self.targets[m]) / self.total)  # NOTE: micro-batch share
        self.outputs[m] = out
        self.live += 1
        self.peak_live = max(self.peak_live, self.live)

    def _backward(self, m: int) -> None:
        out = self.outputs.pop(m)
        if self.pipe.is_last_stage:
            out.backward()
        else:
            out.backward(self.grads.pop(m))
        self.live -= 1

    def finish(self) -> dict:
        total_s = time.perf_counter() - self.start
        return {"stage": self.pipe.stage_index, "step_s": total_s, "compute_s": self.compute_s,
                "wait_s": self.wait_s, "send_s": self.send_s, "peak_live": self.peak_live,
                "idle_fraction": 1 - self.compute_s / total_s if total_s else 0.0}
