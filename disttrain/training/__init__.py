"""The training toolbox: fit() / Trainer (train and validate loops with metrics, schedulers,
checkpoint/resume, clipping, accumulation), EarlyStopping, callbacks, progress and logs (CSV,
TensorBoard). Core package: never imports mpi4py or disttrain.distributed."""

from __future__ import annotations

from disttrain.training.callbacks import Callback
from disttrain.training.early_stopping import EarlyStopping
from disttrain.training.fit import Trainer, fit
from disttrain.training.loggers import CSVLogger, TensorBoardLogger
from disttrain.training.progress import format_epoch, shows_progress_bar

__all__ = ["Callback", "CSVLogger", "EarlyStopping", "TensorBoardLogger", "Trainer", "fit",
           "format_epoch", "shows_progress_bar"]
