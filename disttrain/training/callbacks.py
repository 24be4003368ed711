"""Callback: the hooks fit() calls (begin/end of training, epochs and optimizer steps).
Core module: never imports mpi4py or disttrain.distributed."""

from __future__ import annotations


class Callback:
    """A hook object for fit(): override the methods you need (each does nothing here).

    Every rank calls every hook with the same `logs` (fit() reduces them over ranks first),
    except on_train_batch_end, whose `logs` hold this rank's own batch loss. Set
    `trainer.stop_training = True` to end training after the current epoch (fit() stops on
    every rank when any rank asks). A callback with `state_dict()`/`load_state_dict()` is
    saved and restored with fit()'s checkpoint.

    Example:
        >>> class PrintLR(Callback):
        ...     def on_epoch_end(self, trainer, epoch, logs):
        ...         print(epoch, logs["lr"])
    """

    def on_train_begin(self, trainer) -> None:
        """Before the first epoch (after a checkpoint was restored)."""

    def on_epoch_begin(self, trainer, epoch: int) -> None:
        """Before epoch `epoch` (counting from 1) trains."""

    def on_train_batch_end(self, trainer, step: int, logs: dict) -> None:
        """After optimizer step `step` (counting from 1 over the whole run); `logs` has this
        rank's "loss" (mean over the accumulated micro-batches) and "lr"."""

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        """After epoch `epoch` trained and validated; `logs` is its history row."""

    def on_train_end(self, trainer) -> None:
        """After the last epoch (or an early stop); also runs when training raised."""
