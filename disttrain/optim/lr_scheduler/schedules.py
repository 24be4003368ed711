"""Schedules that are a function of the epoch: LambdaLR, StepLR, MultiStepLR, ExponentialLR,
CosineAnnealingLR, LinearLR (torch's chainable formulas; closed forms for SequentialLR)."""

from __future__ import annotations

import copy
import math
import types
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from disttrain.optim.lr_scheduler.base import LRScheduler
from disttrain.optim.optimizer import Optimizer


class LambdaLR(LRScheduler):
    """Sets each group's lr to initial_lr * lr_lambda(epoch).

    Args:
        optimizer: the wrapped optimizer.
        lr_lambda: a function of the epoch, or a list of them (one per param group).
        last_epoch: index of the last epoch when resuming.

    `state_dict()` stores None for plain functions (they cannot be saved; pass the same
    function again when resuming) and the `__dict__` of callable objects, as torch does.

    Example:
        >>> sched = optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.95**epoch)
    """

    def __init__(self, optimizer: Optimizer,
                 lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]],
                 last_epoch: int = -1):
        n_groups = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != n_groups:
                raise ValueError(f"Expected {n_groups} lr_lambdas, but got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * n_groups
        super().__init__(optimizer, last_epoch)

    def state_dict(self) -> dict[str, Any]:
        state = {k: copy.deepcopy(v) for k, v in self.__dict__.items()
                 if k not in ("optimizer", "lr_lambdas")}
        state["lr_lambdas"] = [None if isinstance(fn, types.FunctionType)
                               else copy.deepcopy(fn.__dict__) for fn in self.lr_lambdas]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = {k: copy.deepcopy(v) for k, v in state_dict.items() if k != "lr_lambdas"}
        self.__dict__.update(state)
        saved_fns = state_dict.get("lr_lambdas") or [None] * len(self.lr_lambdas)
        for fn, saved in zip(self.lr_lambdas, saved_fns, strict=True):
            if saved is not None:
                fn.__dict__.update(copy.deepcopy(saved))

    def get_lr(self) -> list[float]:
        return [base_lr * fn(self.last_epoch)
                for fn, base_lr in zip(self.lr_lambdas, self.base_lrs, strict=True)]


class StepLR(LRScheduler):
    """Multiplies each group's lr by `gamma` every `step_size` epochs.

    Args:
        optimizer: the wrapped optimizer.
        step_size: period of the decay, in epochs.
        gamma: multiplicative factor of the decay.
        last_epoch: index of the last epoch when resuming.

    Example:
        >>> sched = optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)
        >>> for epoch in range(100):
        ...     train(...); sched.step()
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1):
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._group_lrs()
        return [lr * self.gamma for lr in self._group_lrs()]

    def _get_closed_form_lr(self) -> list[float]:
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size)
                for base_lr in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Multiplies each group's lr by `gamma` at every epoch listed in `milestones`.

    Args:
        optimizer: the wrapped optimizer.
        milestones: epoch indices (a repeated index decays once per repetition).
        gamma: multiplicative factor of the decay.
        last_epoch: index of the last epoch when resuming.

    Example:
        >>> sched = optim.lr_scheduler.MultiStepLR(opt, milestones=[30, 80], gamma=0.1)
    """

    def __init__(self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1,
                 last_epoch: int = -1):
        self.milestones = sorted(int(m) for m in milestones)  # NOTE: torch keeps a Counter
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        count = self.milestones.count(self.last_epoch)
        if count == 0:
            return self._group_lrs()
        return [lr * self.gamma**count for lr in self._group_lrs()]

    def _get_closed_form_lr(self) -> list[float]:
        decays = bisect_right(self.milestones, self.last_epoch)
        return [base_lr * self.gamma**decays for base_lr in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Multiplies each group's lr by `gamma` every epoch.

    Args:
        optimizer: the wrapped optimizer.
        gamma: multiplicative factor of the decay.
        last_epoch: index of the last epoch when resuming.

    Example:
        >>> sched = optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
    """

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return self._group_lrs()
        return [lr * self.gamma for lr in self._group_lrs()]

    def _get_closed_form_lr(self) -> list[float]:
        return [base_lr * self.gamma**self.last_epoch for base_lr in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Anneals each group's lr from initial_lr to `eta_min` along a half cosine of `T_max` epochs.

    lr_t = eta_min + (initial_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2, computed with
    torch's recursive form (so the lr keeps oscillating past T_max, as torch's does).

    Args:
        optimizer: the wrapped optimizer.
        T_max: number of epochs of the half period.
        eta_min: minimum learning rate.
        last_epoch: index of the last epoch when resuming.

    Example:
        >>> sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100, eta_min=1e-5)

    - Paper: https://arxiv.org/abs/1608.03983 (SGDR)
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1):
        if T_max <= 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be positive, got {T_max}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        t, T_max, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._group_lrs()
        if self._step_count == 1 and t > 0:  # resumed with last_epoch >= 0: closed form
            return self._get_closed_form_lr()
        if (t - 1 - T_max) % (2 * T_max) == 0:
            return [lr + (base_lr - eta_min) * (1 - math.cos(math.pi / T_max)) / 2
                    for base_lr, lr in zip(self.base_lrs, self._group_lrs(), strict=True)]
        ratio = (1 + math.cos(math.pi * t / T_max)) / (1 + math.cos(math.pi * (t - 1) / T_max))
        return [ratio * (lr - eta_min) + eta_min for lr in self._group_lrs()]

    def _get_closed_form_lr(self) -> list[float]:
        cosine = 1 + math.cos(math.pi * self.last_epoch / self.T_max)
        return [self.eta_min + (base_lr - self.eta_min) * cosine / 2 for base_lr in self.base_lrs]


class LinearLR(LRScheduler):
    """Scales each group's lr by a factor going linearly from `start_factor` to `end_factor`.

    The factor reaches `end_factor` after `total_iters` steps and stays there (a warm-up).

    Args:
        optimizer: the wrapped optimizer.
        start_factor: factor at epoch 0, in (0, 1].
        end_factor: factor from epoch `total_iters` on, in [0, 1].
        total_iters: number of steps of the ramp.
        last_epoch: index of the last epoch when resuming.

    Example:
        >>> sched = optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=10)
    """

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3,
                 end_factor: float = 1.0, total_iters: int = 5, last_epoch: int = -1):
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError("Starting multiplicative factor expected to be greater than 0 and "
                             f"less or equal to 1, got start_factor={start_factor}")
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1, got "
                             f"end_factor={end_factor}")
        self.start_factor, self.end_factor = start_factor, end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        start, end, t = self.start_factor, self.end_factor, self.last_epoch
        if t == 0:
            return [lr * start for lr in self._group_lrs()]
        if self._is_initial or t > self.total_iters:
            return self._group_lrs()
        ratio = 1.0 + (end - start) / (self.total_iters * start + (t - 1) * (end - start))
        return [lr * ratio for lr in self._group_lrs()]

    def _get_closed_form_lr(self) -> list[float]:
        progress = min(self.total_iters, self.last_epoch) / self.total_iters
        factor = self.start_factor + (self.end_factor - self.start_factor) * progress
        return [base_lr * factor for base_lr in self.base_lrs]


