"""EarlyStopping: stop training when a monitored value stops improving. Core module: never
imports mpi4py or disttrain.distributed."""

from __future__ import annotations

import math

import numpy

from disttrain.training.callbacks import Callback


class EarlyStopping(Callback):
    """Stops training after `patience` epochs without improvement of `monitor` (Keras's and
    Lightning's EarlyStopping). A callback for fit(), and usable alone through `step(value)`.

    Under fit() the monitored value is the epoch's history row, reduced over ranks before any
    callback sees it, so every rank takes the same decision (no rank stops alone).

    Args:
        monitor: the key of fit()'s history row to watch ("val_loss", "val_accuracy", ...).
        patience: epochs without improvement tolerated; the next one stops (0: stop at the
            first epoch that does not improve).
        min_delta: the smallest change that counts as an improvement.
        mode: "min" (lower is better) or "max".
        restore_best_weights: when stopping (or when training ends), load the weights of the
            best epoch back into the model. They are kept in memory and in `state_dict()`, so a
            resumed run restores them too.

    Example:
        >>> stopper = EarlyStopping(patience=1)
        >>> [stopper.step(loss) for loss in (0.5, 0.4, 0.45, 0.41)]
        [False, False, False, True]
        >>> stopper.best, stopper.best_epoch
        (0.4, 2)
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 3, min_delta: float = 0.0,
                 mode: str = "min", restore_best_weights: bool = False):
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        if not isinstance(min_delta, (int, float)) or not min_delta >= 0:
            raise ValueError(f"EarlyStopping: min_delta must be a number >= 0, got "
                             f"{min_delta!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.patience, self.min_delta = monitor, patience, float(min_delta)
        self.mode, self.restore_best_weights = mode, restore_best_weights
        self.reset()

    def reset(self) -> None:
        """Forgets every value seen (a fresh start)."""
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.epochs_seen, self.wait = 0, 0
        self.stopped_epoch: int | None = None
        self.best_weights: dict | None = None

    def is_improvement(self, value: float) -> bool:
        """Whether `value` beats the best so far by more than min_delta (NaN never does)."""
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def step(self, value, model=None) -> bool:
        """Records the next epoch's `value`; returns True when training should stop.

        Args:
            value: the monitored number of this epoch (a float, 0-d array or Tensor).
            model: with restore_best_weights, the model whose weights to remember at the
                best epoch.
        """
        value = float(value.item() if hasattr(value, "item") else value)
        self.epochs_seen += 1
        if self.is_improvement(value):
            self.best, self.best_epoch, self.wait = value, self.epochs_seen, 0
            if self.restore_best_weights and model is not None:
                self.best_weights = {k: numpy.array(v, copy=True)
                                     for k, v in model.state_dict().items()}
            return False
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = self.epochs_seen
            return True
        return False

    def restore(self, model) -> bool:
        """Loads the best epoch's weights into `model`; False when none were kept."""
        if self.best_weights is None:
            return False
        model.load_state_dict(self.best_weights)
        return True

    # ---------------------------------------------------------------- as a fit() callback
    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        if self.monitor not in logs:
            raise ValueError(f"EarlyStopping: monitor={self.monitor!r} is not in the epoch's "
                             f"logs (keys: {sorted(logs)}); pass one of them (a val_ key needs "
                             "val_loader)")
        if self.step(logs[self.monitor], trainer.model):
            trainer.stop_training = True
            self.stopped_epoch = epoch

    def on_train_end(self, trainer) -> None:
        if self.restore_best_weights and self.restore(trainer.model) and trainer.rank == 0:
            trainer.say(f"restored the weights of the best epoch ({self.monitor} "
                        f"{self.best:.4f})")

    def state_dict(self) -> dict:
        """The progress so far (and the best weights, with restore_best_weights)."""
        state = {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                 "epochs_seen": self.epochs_seen, "stopped_epoch": self.stopped_epoch}
        if self.best_weights is not None:
            state["best_weights"] = self.best_weights
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Continues from a `state_dict()`."""
        self.reset()
        for key in ("best", "best_epoch", "wait", "epochs_seen", "stopped_epoch"):
            setattr(self, key, state_dict[key])
        weights = state_dict.get("best_weights")
        self.best_weights = None if weights is None else dict(weights)

