"""LRScheduler, the base of every learning-rate scheduler: initial_lr, the initial step,
chainable and closed-form updates, state_dict."""

from __future__ import annotations

import copy
from typing import Any

from disttrain.optim.optimizer import Optimizer


class LRScheduler:
    """Base class: sets each group's "initial_lr", then `step()` writes a new "lr" per group.

    Constructing a scheduler performs the initial step (epoch 0), as in torch. Subclasses
    implement `get_lr()` from the current group lrs (chainable form) and, where a closed form
    exists, `_get_closed_form_lr()` (used by SequentialLR at milestones).

    Args:
        optimizer: the wrapped optimizer.
        last_epoch: index of the last epoch when resuming; -1 starts fresh.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        for i, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] when "
                               "resuming a scheduler with last_epoch >= 0; load the optimizer's "
                               "state_dict first, or pass last_epoch=-1 for a fresh run")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        """The lrs for `last_epoch`, computed from the current ones; called by `step()`."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_lr")

    def get_last_lr(self) -> list[float]:
        """The lr of each param group as last set by this scheduler."""
        return self._last_lr

    def step(self) -> None:
        """Advance one epoch (or iteration) and set every group's lr."""
        self._step_count += 1
        self._update_lr()

    def _update_lr(self, epoch: int | None = None) -> None:
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            closed_form = getattr(self, "_get_closed_form_lr", None)
            values = closed_form() if closed_form is not None else self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _group_lrs(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Every attribute except the optimizer, as plain copies."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore attributes saved by `state_dict()`."""
        self.__dict__.update(copy.deepcopy(state_dict))


