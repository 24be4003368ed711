"""ScheduleExecutor: runs one stage's action list from schedule.py, literally and in order,
against a PipelineStage, keeping each micro-batch's activations and the per-step timings.
"""

from __future__ import annotations

import contextlib
import time

import numpy

from disttrain.backend import get_array_module
from disttrain.distributed.pipeline.schedule import Action
from disttrain.distributed.pipeline.stage import PipelineStage
from disttrain.distributed.watchdog import heartbeat
from disttrain.tensor import Tensor, no_grad

# action kind -> (watchdog phase, the timer its seconds go to)
_KINDS = {"F": ("forward", "compute_s"), "B": ("backward", "compute_s"),
          "SEND_F": ("send", "send_s"), "SEND_B": ("send", "send_s"),
          "RECV_F": ("recv", "wait_s"), "RECV_B": ("recv", "wait_s")}


def split_microbatches(t: Tensor, n_microbatches: int, stage_index: int) -> list[Tensor]:
    """`t` cut along dim 0 into `n_microbatches` near-equal, contiguous micro-batches.

    Example:
        >>> [len(m) for m in split_microbatches(dt.zeros(10, 2), 4, stage_index=0)]
        [2, 3, 2, 3]
    """
    n = t.shape[0]
    if n < n_microbatches:
        raise ValueError(f"Pipeline (stage {stage_index}): a batch of {n} cannot be split into "
                         f"{n_microbatches} micro-batches")
    bounds = numpy.linspace(0, n, n_microbatches + 1).astype(int)
    return [t[int(a):int(b)] for a, b in zip(bounds[:-1], bounds[1:])]


class ScheduleExecutor:
    """Runs a stage's schedule: forwards, backwards, sends and receives in the listed order.

    After `step`, the stage's parameter gradients are the full batch's (each micro-batch's
    loss is scaled by its share of the batch), averaged over data-parallel replicas when
    `data_parallel` is given, and `stats` holds the step's timings on this stage.

    Args:
        stage: the PipelineStage whose sub-module and messages the actions use.
        actions: this stage's list from `make_schedule(...)[stage.stage_index]`.
        data_parallel: a DataParallel wrapping `stage.submodule` across replicas of this stage,
            or None; its gradients are all-reduced once per step, after the last backward.

    Example (under `mpirun -n 2`):
        >>> stage = PipelineStage(layers, comm.rank, comm.size, comm)  # doctest: +SKIP
        >>> executor = ScheduleExecutor(stage, make_schedule("1f1b", 2, 4)[comm.rank])
        >>> loss = executor.step(split_microbatches(x, 4, comm.rank),  # doctest: +SKIP
        ...                      split_microbatches(y, 4, comm.rank), nn.CrossEntropyLoss())
    """

    def __init__(self, stage: PipelineStage, actions: list[Action], data_parallel=None):
        self.stage, self.actions, self.data_parallel = stage, actions, data_parallel
        self.stats: dict = {}

    def step(self, xs: list[Tensor], targets: list[Tensor], loss_fn) -> float:
        """Runs every action on these micro-batches; returns the batch's mean loss (the same
        on every stage). `loss_fn` must average over its micro-batch, as losses do by default.
        """
        run = _StepState(self.stage, xs, targets, loss_fn)
        dp = self.data_parallel
        with dp.no_sync() if dp is not None else contextlib.nullcontext():
            for action in self.actions:
                run.execute(action)
        if dp is not None:
            dp.sync_grads()
        loss = self.stage.broadcast_from_last(run.loss_sum)
        self.stats = run.finish()
        return loss


class _StepState:
    """What one step keeps per micro-batch, and the per-stage timings."""

    def __init__(self, stage: PipelineStage, xs, targets, loss_fn):
        self.stage, self.xs, self.targets, self.loss_fn = stage, xs, targets, loss_fn
        self.total = sum(len(t) for t in targets)
        self.inputs, self.outputs, self.grads = {}, {}, {}
        self.loss_sum, self.live, self.peak_live = 0.0, 0, 0
        self.seconds = {"compute_s": 0.0, "wait_s": 0.0, "send_s": 0.0}
        self.handlers = {"F": self._forward, "B": self._backward, "SEND_F": self._send_f,
                         "SEND_B": self._send_b, "RECV_F": self._recv_f, "RECV_B": self._recv_b}
        self.start = time.perf_counter()

    def execute(self, action: Action) -> None:
        kind, m = action.kind, action.microbatch
        if kind not in _KINDS:
            raise ValueError(f"Pipeline: unknown action kind {kind!r} in {action}")
        phase, timer = _KINDS[kind]
        heartbeat(phase)
        start = time.perf_counter()
        self.handlers[kind](m)
        self.seconds[timer] += time.perf_counter() - start

    def _recv_f(self, m: int) -> None:
        x = self.xs[m]
        array = self.stage.recv_activation(m, len(x), get_array_module(x.array))
        self.inputs[m] = Tensor(array, requires_grad=array.dtype.kind == "f")

    def _recv_b(self, m: int) -> None:
        out = self.outputs[m]
        self.grads[m] = self.stage.recv_grad(m, out.shape, get_array_module(out.array))

    def _send_f(self, m: int) -> None:
        self.stage.send_activation(m, self.outputs[m].array)

    def _send_b(self, m: int) -> None:
        self.stage.send_grad(m, self.inputs.pop(m).grad.array)

    def _forward(self, m: int) -> None:
        stage = self.stage
        out = stage.submodule(self.xs[m] if stage.is_first_stage else self.inputs[m])
        if stage.is_last_stage:
            n = len(self.targets[m])
            loss = self.loss_fn(out, self.targets[m])
            with no_grad():
                self.loss_sum += float(loss.item()) * n / self.total
            out = loss * (n / self.total)  # NOTE: micro-batch share: gradients sum to the batch's
        self.outputs[m] = out
        self.live += 1
        self.peak_live = max(self.peak_live, self.live)

    def _backward(self, m: int) -> None:
        out = self.outputs.pop(m)
        if self.stage.is_last_stage:
            out.backward()
        else:
            out.backward(self.grads.pop(m))
        self.live -= 1

    def finish(self) -> dict:
        total_s = time.perf_counter() - self.start
        compute_s = self.seconds["compute_s"]
        return {"stage": self.stage.stage_index, "step_s": total_s, **self.seconds,
                "peak_live": self.peak_live,
                "idle_fraction": 1 - compute_s / total_s if total_s else 0.0}
