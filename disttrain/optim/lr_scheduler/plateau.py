"""ReduceLROnPlateau: the lr follows a validation metric instead of the epoch."""

from __future__ import annotations

import math
from collections.abc import Sequence

from disttrain.optim.lr_scheduler.base import LRScheduler
from disttrain.optim.optimizer import Optimizer


class ReduceLROnPlateau(LRScheduler):
    """Multiplies the lr by `factor` when a metric has stopped improving for `patience` epochs.

    Call `step(metric)` once per epoch with the validation metric.

    Args:
        optimizer: the wrapped optimizer.
        mode: "min" (the metric should decrease) or "max".
        factor: multiplicative factor of the reduction (< 1).
        patience: number of epochs without improvement tolerated before reducing.
        threshold: minimum change that counts as an improvement.
        threshold_mode: "rel" (best * (1 -/+ threshold)) or "abs" (best -/+ threshold).
        cooldown: epochs to wait after a reduction before counting bad epochs again.
        min_lr: lower bound on the lr, one number or one per param group.
        eps: reductions smaller than this are skipped.

    Example:
        >>> sched = optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", patience=5)
        >>> for epoch in range(100):
        ...     train(...); sched.step(validate(...))
    """

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr: float | Sequence[float] = 0, eps: float = 1e-8):
        if factor >= 1.0:
            raise ValueError(f"Factor should be < 1.0, got factor={factor}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        if mode not in ("min", "max"):
            raise ValueError(f"mode {mode!r} is unknown! Expected 'min' or 'max'")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold mode {threshold_mode!r} is unknown! Expected 'rel' "
                             "or 'abs'")
        n_groups = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n_groups:
                raise ValueError(f"expected {n_groups} min_lrs, got {len(min_lr)}")
            self.default_min_lr, self.min_lrs = None, list(min_lr)
        else:
            self.default_min_lr, self.min_lrs = min_lr, [min_lr] * n_groups
        self.optimizer = optimizer
        self.mode, self.factor, self.patience = mode, factor, patience
        self.threshold, self.threshold_mode = threshold, threshold_mode
        self.cooldown, self.eps = cooldown, eps
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.last_epoch = 0
        self._last_lr = self._group_lrs()
        self.best, self.cooldown_counter, self.num_bad_epochs = self.mode_worse, 0, 0

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def step(self, metrics: float) -> None:  # type: ignore[override]
        """Record one epoch's metric and reduce the lr if it has plateaued."""
        current = float(metrics)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # NOTE: bad epochs during cooldown are ignored
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = self._group_lrs()

    def _reduce_lr(self) -> None:
        n_groups = len(self.optimizer.param_groups)
        if len(self.min_lrs) != n_groups:
            if self.default_min_lr is None:
                raise RuntimeError(f"ReduceLROnPlateau: the optimizer has {n_groups} param "
                                   f"groups but min_lr has {len(self.min_lrs)} entries; set "
                                   "`min_lrs` to one value per group")
            self.min_lrs = [self.default_min_lr] * n_groups
        for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs, strict=True):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, min_lr)
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold
