"""fit() with a CheckpointManager: a run stopped after epoch k and restarted equals the
uninterrupted run bit for bit (history, lr of ReduceLROnPlateau, EarlyStopping's state and best
weights, the CSV log); a run that had stopped early does not train again."""

from __future__ import annotations

import csv

import numpy
import pytest

import disttrain as dt
import disttrain.nn as nn
import disttrain.optim as optim
from disttrain.data import DataLoader, TensorDataset
from disttrain.metrics import Accuracy
from disttrain.training import EarlyStopping, fit

pytest.importorskip("mpi4py")
dist = pytest.importorskip("disttrain.distributed")


def blobs(n, seed):
    rng = numpy.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 2)) * 0.9 + numpy.eye(3)[y][:, :2] * 2).astype(numpy.float32)
    return TensorDataset(x, y)


def run(epochs: int, folder, log_dir, patience: int = 2):
    """A fresh process's worth of objects, trained up to `epochs` with a checkpoint in
    `folder` (None: no checkpoint)."""
    dt.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))
    optimizer = optim.Adam(model.parameters(), lr=0.05)
    plateau = optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0, factor=0.5,
                                                   threshold=0.02)
    stopper = EarlyStopping("val_loss", patience=patience, restore_best_weights=True)
    ckpt = dist.CheckpointManager(folder, dist.init()) if folder is not None else None
    history = fit(model, optimizer, DataLoader(blobs(64, 0), batch_size=16, shuffle=True),
                  DataLoader(blobs(40, 1), batch_size=16), epochs=epochs,
                  loss_fn=nn.CrossEntropyLoss(), metrics={"accuracy": Accuracy(3)},
                  scheduler=plateau, callbacks=[stopper], checkpoint=ckpt, log_dir=log_dir,
                  tensorboard=False, progress=False, verbose=False)
    if ckpt is not None:
        ckpt.close()
    return model, history, stopper


def without_timing(history):
    return [{k: v for k, v in h.items() if k not in ("time_s", "samples_per_s")}
            for h in history]


def csv_rows(log_dir):
    with open(log_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in ("time_s", "samples_per_s")}
                for row in csv.DictReader(f)]


def test_resumed_run_equals_the_uninterrupted_one(tmp_path):
    model, full, stopper = run(12, None, tmp_path / "full")
    _, first, _ = run(3, tmp_path / "ckpt", tmp_path / "part")
    resumed_model, resumed, resumed_stopper = run(12, tmp_path / "ckpt", tmp_path / "part")
    assert len(first) == 3 and 3 < len(full) < 12  # NOTE: early stopping ended it
    assert without_timing(resumed) == without_timing(full)
    assert [h["lr"] for h in full][-1] < 0.05  # NOTE: the plateau cut the lr on the way
    assert resumed_stopper.state_dict().keys() == stopper.state_dict().keys()
    assert (resumed_stopper.best, resumed_stopper.best_epoch, resumed_stopper.stopped_epoch) \
        == (stopper.best, stopper.best_epoch, stopper.stopped_epoch)
    for (name, a), b in zip(model.state_dict().items(), resumed_model.state_dict().values()):
        numpy.testing.assert_array_equal(a, b, err_msg=name)  # NOTE: the best epoch's weights
    assert csv_rows(tmp_path / "part") == csv_rows(tmp_path / "full")


def test_a_run_that_stopped_early_does_not_train_again(tmp_path):
    """...and still ends with the best epoch's weights (EarlyStopping's on_train_end)."""
    best, stopped, _ = run(30, tmp_path / "ckpt", None, patience=0)
    model, again, _ = run(30, tmp_path / "ckpt", None, patience=0)
    assert len(stopped) < 30
    assert without_timing(again) == without_timing(stopped)
    for (name, a), b in zip(best.state_dict().items(), model.state_dict().values()):
        numpy.testing.assert_array_equal(a, b, err_msg=name)
