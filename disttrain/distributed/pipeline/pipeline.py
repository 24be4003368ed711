"""Pipeline: the public front of pipeline parallelism. Cuts an nn.Sequential into stages
(partition.py), gives this rank its PipelineStage (stage.py) and runs the schedule
(schedule.py's action lists, by executor.py), with data parallelism over replicas of a stage.
"""

from __future__ import annotations

import numpy

from disttrain.distributed.comm import Communicator
from disttrain.distributed.data_parallel import DataParallel
from disttrain.distributed.grid import ProcessGrid
from disttrain.distributed.pipeline.executor import ScheduleExecutor, split_microbatches
from disttrain.distributed.pipeline.partition import partition, profile_layers
from disttrain.distributed.pipeline.schedule import make_schedule
from disttrain.distributed.pipeline.stage import PipelineStage
from disttrain.nn import Sequential
from disttrain.tensor import Tensor


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

    Attributes:
        stage: this rank's PipelineStage (sub-module and messages); `module` is its sub-module.
        partition: the [start, end) layer range of every stage.
        stats: the last step's timings on this stage (step_s, compute_s, wait_s, send_s,
            peak_live, idle_fraction).

    Example:
        >>> pipe = dist.Pipeline(nn.Sequential(*layers), dist.init(), n_microbatches=8)
        >>> opt = optim.SGD(pipe.parameters(), lr=0.1)
        >>> loss = pipe.step(x, y, nn.CrossEntropyLoss())   # the same mean loss on every rank
        >>> opt.step()
    """

    def __init__(self, module: Sequential, grid_or_comm: ProcessGrid | Communicator,
                 n_microbatches: int, schedule: str = "1f1b", balance=None,
                 sample_input: Tensor | None = None):
        if not isinstance(module, Sequential):
            raise TypeError(f"Pipeline: module must be an nn.Sequential, got "
                            f"{type(module).__name__}")
        grid = grid_or_comm
        if isinstance(grid_or_comm, Communicator):
            grid = ProcessGrid(dp=1, pp=grid_or_comm.size, comm=grid_or_comm)
        self.grid, self.comm = grid, grid.pp_comm
        self.stage_index, self.num_stages = grid.stage_index, grid.pp
        self.n_microbatches, self.schedule_name = n_microbatches, schedule
        self._full, self.layer_times = module, None
        self._check_same_setup(balance, len(module))
        self.actions = make_schedule(schedule, self.num_stages, n_microbatches)[self.stage_index]
        self.partition = self._partition(balance, sample_input)
        start, end = self.partition[self.stage_index]
        self.stage = PipelineStage(Sequential(*list(module)[start:end]), self.stage_index,
                                   self.num_stages, self.comm)
        self._dp = None
        if grid.dp > 1:
            # NOTE: overlap=False: gradients are synchronised once, after the last backward
            self._dp = DataParallel(self.stage.submodule, grid.dp_comm, overlap=False)
        self._executor = ScheduleExecutor(self.stage, self.actions, self._dp)

    # ---------------------------------------------------------------- setup
    def _check_same_setup(self, balance, n_layers: int) -> None:
        mine = (self.n_microbatches, self.schedule_name, str(balance), n_layers,
                self.grid.dp, self.grid.pp)
        everyone = self.grid.comm.allgather_obj(mine)
        bad = [r for r, theirs in enumerate(everyone) if theirs != everyone[0]]
        if bad:
            raise ValueError(f"Pipeline (rank {self.grid.rank}): every rank must pass the same "
                             "(n_microbatches, schedule, balance, len(module), dp, pp); rank 0 "
                             f"has {everyone[0]} but rank {bad[0]} has {everyone[bad[0]]}")

    def _partition(self, balance, sample_input: Tensor | None) -> list[tuple[int, int]]:
        if balance != "time":
            return partition(self._full, self.num_stages, balance)
        if sample_input is None:
            raise ValueError("Pipeline: balance='time' needs sample_input= (a batch like "
                             "the ones step() gets) to time each layer on")
        sample = split_microbatches(sample_input, self.n_microbatches, self.stage_index)[0]
        # NOTE: rank 0's timings on every rank, so every rank cuts at the same places
        self.layer_times = self.grid.comm.bcast_obj(profile_layers(self._full, sample), root=0)
        return partition(self._full, self.num_stages, "time", costs=self.layer_times)

    # ---------------------------------------------------------------- the stage's Module API
    @property
    def module(self) -> Sequential:
        """This stage's layers."""
        return self.stage.submodule

    is_first_stage = property(lambda self: self.stage.is_first_stage)
    is_last_stage = property(lambda self: self.stage.is_last_stage)

    @property
    def stats(self) -> dict:
        """The last step's timings on this stage ({} before the first step)."""
        return self._executor.stats

    def parameters(self):
        return self.module.parameters()

    def named_parameters(self):
        return self.module.named_parameters()

    def state_dict(self) -> dict:
        """This stage's parameters and buffers (names as in its stage module)."""
        return self.module.state_dict()

    def load_state_dict(self, state_dict, strict: bool = True):
        return self.module.load_state_dict(state_dict, strict)

    def train(self, mode: bool = True) -> Pipeline:
        self._full.train(mode)
        return self

    def eval(self) -> Pipeline:
        return self.train(False)

    def remove(self) -> None:
        """Unwraps the stage's DataParallel (dp > 1): its hooks come off, so the stage module
        can be used, or pipelined, again; with dp > 1 this Pipeline cannot step anymore."""
        if self._dp is not None:
            self._dp.remove()

    # ---------------------------------------------------------------- one step
    def step(self, x: Tensor, target: Tensor, loss_fn) -> Tensor:
        """Forward and backward of the whole batch, micro-batch by micro-batch; returns the
        batch's mean loss (the same on every rank).

        Args:
            x: this pipeline's batch (read by the first stage; every stage needs its length).
            target: the batch's targets (read by the last stage).
            loss_fn: a loss averaging over its micro-batch, e.g. nn.CrossEntropyLoss().
        """
        xs = split_microbatches(x, self.n_microbatches, self.stage_index)
        targets = split_microbatches(target, self.n_microbatches, self.stage_index)
        loss = self._executor.step(xs, targets, loss_fn)
        return Tensor(numpy.array(loss))
