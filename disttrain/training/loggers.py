"""Training logs written by rank 0: a CSV file (always available) and TensorBoard event files
(tensorboardX, the optional `log` extra). Core module: never imports mpi4py or
disttrain.distributed."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

from disttrain.training.callbacks import Callback

EXTRA_HINT = "pip install 'disttrain[log]' (or: pip install tensorboardX)"


def _numbers(logs: dict) -> dict:
    """The entries of a history row that are plain numbers (per-class lists are left out)."""
    return {k: v for k, v in logs.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


class CSVLogger(Callback):
    """Writes one CSV row per epoch: the numeric entries of fit()'s history row (epoch, loss,
    val_loss, metrics, lr, samples_per_s, time_s). fit() adds one on rank 0 when given
    `log_dir` (`log_dir/metrics.csv`). A resumed run keeps the rows of the epochs before it
    and drops any later ones (written after the checkpoint it resumed from).

    Args:
        path: the CSV file (its folder is created).

    Example:
        >>> history = fit(model, opt, train, val, epochs=5, loss_fn=loss_fn,
        ...               callbacks=[CSVLogger("runs/exp1.csv")])
    """

    def __init__(self, path):
        self.path = Path(path)
        self.fields: list[str] | None = None

    def on_train_begin(self, trainer) -> None:
        kept = []
        if trainer.start_epoch > 1 and self.path.is_file():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                self.fields = reader.fieldnames
                kept = [row for row in reader if int(row["epoch"]) < trainer.start_epoch]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as f:
            if self.fields:
                writer = csv.DictWriter(f, self.fields)
                writer.writeheader()
                writer.writerows(kept)

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        row = _numbers(logs)
        new_file = self.fields is None
        if new_file:
            self.fields = list(row)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, self.fields, restval="", extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())


def summary_writer_class():
    """tensorboardX's SummaryWriter, or an ImportError naming the extra to install."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError as e:
        raise ImportError(f"TensorBoard logging (fit(log_dir=...), TensorBoardLogger) needs "
                          f"tensorboardX, which failed to import ({e}): {EXTRA_HINT}") from None
    return SummaryWriter


class TensorBoardLogger(Callback):
    """Writes TensorBoard event files through tensorboardX's SummaryWriter: per optimizer step
    `step/loss` (rank 0's batch loss), `step/lr` and `step/samples_per_s` (rank 0's, times the
    rank count), and per epoch `epoch/<key>` for every number in fit()'s history row (loss,
    val_loss, val metrics, lr, samples_per_s, time_s), at the epoch number.

    Args:
        log_dir: the folder of the event files (`tensorboard --logdir` it).
        log_every_n_steps: write the step scalars every n optimizer steps.

    Example:
        >>> fit(model, opt, train, val, epochs=5, loss_fn=loss_fn,
        ...     callbacks=[TensorBoardLogger("runs/exp1")])
    """

    def __init__(self, log_dir, log_every_n_steps: int = 10):
        if not isinstance(log_every_n_steps, int) or log_every_n_steps < 1:
            raise ValueError(f"TensorBoardLogger: log_every_n_steps must be an int >= 1, got "
                             f"{log_every_n_steps!r}")
        self.writer = summary_writer_class()(logdir=str(log_dir))
        self.log_dir, self.log_every_n_steps = Path(log_dir), log_every_n_steps
        self._last = None  # NOTE: (time, samples) at the previous step scalars

    def on_epoch_begin(self, trainer, epoch: int) -> None:
        self._last = (time.perf_counter(), 0)

    def on_train_batch_end(self, trainer, step: int, logs: dict) -> None:
        if step % self.log_every_n_steps:
            return
        self.writer.add_scalar("step/loss", logs["loss"], step)
        self.writer.add_scalar("step/lr", logs["lr"], step)
        now, samples = time.perf_counter(), logs["epoch_samples"] * trainer.world_size
        if self._last is not None and now > self._last[0] and samples > self._last[1]:
            rate = (samples - self._last[1]) / (now - self._last[0])
            self.writer.add_scalar("step/samples_per_s", rate, step)
        self._last = (now, samples)

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        for key, value in _numbers(logs).items():
            if key != "epoch":
                self.writer.add_scalar(f"epoch/{key}", value, epoch)
        self.writer.flush()

    def on_train_end(self, trainer) -> None:
        self.writer.close()
