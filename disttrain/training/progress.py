"""Console progress of fit(): a tqdm bar per epoch on rank 0 when stdout is a terminal, one
summary line per epoch otherwise. Core module: never imports mpi4py or disttrain.distributed."""

from __future__ import annotations

import math
import sys

from tqdm import tqdm


def shows_progress_bar(rank: int, stream=None, disabled: bool = False) -> bool:
    """Whether to draw the tqdm bar: on rank 0 only, and only when `stream` (default: stdout,
    where the bar is drawn) is a terminal.

    NOTE: under disttrain-launch or a pipe every tqdm refresh becomes a line of its own (~30 an
    epoch in the launcher's console and the rank logs); there the epoch summary is the progress.

    Example:
        >>> import io
        >>> shows_progress_bar(0, io.StringIO())
        False
    """
    stream = sys.stdout if stream is None else stream
    return rank == 0 and not disabled and stream.isatty()


def format_number(value) -> str:
    """A log value for the console: 4 decimals, or 3 significant digits for small or large
    magnitudes (learning rates, throughput)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (math.isfinite(value) and abs(value) >= 1000):
        return f"{value:.0f}"
    if value != 0 and math.isfinite(value) and abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:.4f}"


def format_epoch(logs: dict) -> str:
    """The one-line summary of an epoch's history row.

    Example:
        >>> format_epoch({"epoch": 2, "loss": 0.25, "val_loss": 0.3, "lr": 1e-4,
        ...               "samples_per_s": 1520.3, "time_s": 1.25})
        'epoch   2  loss 0.2500  val_loss 0.3000  lr 0.0001  (1.2 s, 1520 samples/s)'
    """
    skip = ("epoch", "time_s", "samples_per_s")
    fields = [f"{key} {format_number(value)}" for key, value in logs.items()
              if key not in skip and isinstance(value, (int, float))]
    timing = f"({logs.get('time_s', 0.0):.1f} s, {logs.get('samples_per_s', 0.0):.0f} samples/s)"
    return "  ".join([f"epoch {logs['epoch']:3d}", *fields, timing])


class EpochProgress:
    """The tqdm bar of one epoch's optimizer micro-steps (leave=False: the epoch's summary
    line replaces it), or nothing when `enabled` is False."""

    def __init__(self, epoch: int, total: int | None, enabled: bool):
        self.bar = (tqdm(total=total, desc=f"epoch {epoch}", leave=False, file=sys.stdout)
                    if enabled else None)

    def update(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def close(self, logs: dict | None = None) -> None:
        """Shows the epoch's metrics in the postfix one last time, then removes the bar."""
        if self.bar is None:
            return
        if logs:
            self.bar.set_postfix({k: format_number(v) for k, v in logs.items()
                                  if k != "epoch" and isinstance(v, (int, float))})
        self.bar.close()
