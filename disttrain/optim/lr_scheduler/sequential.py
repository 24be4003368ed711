"""SequentialLR: schedulers run one after another, switching at milestones."""

from __future__ import annotations

import copy
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

from disttrain.optim.lr_scheduler.base import LRScheduler
from disttrain.optim.lr_scheduler.plateau import ReduceLROnPlateau
from disttrain.optim.optimizer import Optimizer


class SequentialLR(LRScheduler):
    """Runs `schedulers` one after another, switching at the epochs in `milestones`.

    At each milestone the next scheduler restarts from epoch 0 with its closed form, so
    warm-up + cosine gives the textbook sequence. Sub-schedulers' states are saved with it.

    Args:
        optimizer: the wrapped optimizer (the one every sub-scheduler wraps).
        schedulers: the schedulers, in order (constructed before this one).
        milestones: the epochs where the next scheduler takes over (len(schedulers) - 1).
        last_epoch: index of the last epoch when resuming.

    Example:
        >>> warmup = optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=5)
        >>> cosine = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=95)
        >>> sched = optim.lr_scheduler.SequentialLR(opt, [warmup, cosine], milestones=[5])
    """

    def __init__(self, optimizer: Optimizer, schedulers: Sequence[LRScheduler],
                 milestones: Sequence[int], last_epoch: int = -1):
        if len(schedulers) < 1:
            raise ValueError("SequentialLR expects at least one scheduler, but got none")
        for i, scheduler in enumerate(schedulers):
            if isinstance(scheduler, ReduceLROnPlateau):
                raise ValueError("SequentialLR does not support ReduceLROnPlateau (its step "
                                 f"needs a metric), but got one at index {i}")
            if getattr(scheduler, "optimizer", None) is not optimizer:
                raise ValueError(f"SequentialLR expects all schedulers to belong to the same "
                                 f"optimizer, but scheduler {i} ({type(scheduler).__name__}) "
                                 "wraps another one")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError("SequentialLR expects one milestone fewer than schedulers, got "
                             f"{len(schedulers)} schedulers and {len(milestones)} milestones")
        self._schedulers, self._milestones = list(schedulers), list(milestones)
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        for group in optimizer.param_groups:  # NOTE: undo the sub-schedulers' initial steps
            group["lr"] = group["initial_lr"]
        for scheduler in self._schedulers:
            scheduler.last_epoch -= 1
        first = self._schedulers[bisect_right(self._milestones, 0)]
        first._initial_step()
        self._last_lr = first.get_last_lr()

    def step(self) -> None:
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        state = {k: copy.deepcopy(v) for k, v in self.__dict__.items()
                 if k not in ("optimizer", "_schedulers")}
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = {k: copy.deepcopy(v) for k, v in state_dict.items() if k != "_schedulers"}
        self.__dict__.update(state)
        for scheduler, saved in zip(self._schedulers, state_dict["_schedulers"], strict=True):
            scheduler.load_state_dict(saved)


