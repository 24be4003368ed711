"""disttrain.training in one process: EarlyStopping alone and as a callback, fit()'s history,
scheduler, clipping, accumulation, progress, CSV and TensorBoard logs, and its errors."""

from __future__ import annotations

import csv
import sys

import numpy
import pytest

import disttrain as dt
import disttrain.nn as nn
import disttrain.optim as optim
from disttrain.data import DataLoader, TensorDataset
from disttrain.metrics import Accuracy, F1Score
from disttrain.training import Callback, CSVLogger, EarlyStopping, Trainer, fit, format_epoch


# ---------------------------------------------------------------- EarlyStopping alone
@pytest.mark.parametrize("mode, min_delta, patience, values, stops_at", [
    ("min", 0.0, 1, [1.0, 0.9, 0.95, 0.91], 4),
    ("min", 0.0, 0, [1.0, 0.9, 0.9], 3),  # equal is no improvement
    ("min", 0.1, 1, [1.0, 0.95, 0.92, 0.5], 3),  # improvements below min_delta count as none
    ("max", 0.0, 2, [0.5, 0.6, 0.55, 0.59, 0.58], 5),
    ("max", 0.0, 1, [0.5, 0.6, 0.7, 0.8], None),
    ("min", 0.0, 1, [1.0, float("nan"), float("nan")], 3),  # NaN never improves
])
def test_step_stops_after_patience_epochs_without_improvement(mode, min_delta, patience, values,
                                                              stops_at):
    stopper = EarlyStopping(mode=mode, min_delta=min_delta, patience=patience)
    decisions = [stopper.step(v) for v in values]
    expected = [False] * len(values)
    if stops_at is not None:
        expected[stops_at - 1] = True
    assert decisions[:len(expected)] == expected
    assert stopper.stopped_epoch == stops_at


def test_step_takes_tensors_and_tracks_the_best():
    stopper = EarlyStopping(mode="max", patience=3)
    for value in (dt.tensor(0.5), numpy.float64(0.75), 0.7):
        stopper.step(value)
    assert (stopper.best, stopper.best_epoch, stopper.wait) == (0.75, 2, 1)


def test_state_dict_resumes_the_same_decisions():
    values = [1.0, 0.8, 0.85, 0.9, 0.7, 0.75, 0.76, 0.77]
    uninterrupted = EarlyStopping(patience=2)
    first = [uninterrupted.step(v) for v in values]
    part = EarlyStopping(patience=2)
    head = [part.step(v) for v in values[:3]]
    resumed = EarlyStopping(patience=2)
    resumed.load_state_dict(part.state_dict())
    assert head + [resumed.step(v) for v in values[3:]] == first
    assert resumed.state_dict() == uninterrupted.state_dict()


def test_restore_best_weights_round_trips_through_state_dict(tmp_path):
    model = nn.Linear(2, 1)
    stopper = EarlyStopping(patience=0, restore_best_weights=True)
    stopper.step(0.5, model)
    best = {k: v.copy() for k, v in model.state_dict().items()}
    model.weight.data.array[...] = 7.0
    assert stopper.step(0.6, model) is True
    dt.save({"es": stopper.state_dict()}, tmp_path / "es.safetensors")
    loaded = EarlyStopping(patience=0, restore_best_weights=True)
    loaded.load_state_dict(dt.load(tmp_path / "es.safetensors")["es"])
    assert loaded.restore(model) is True
    for key, value in model.state_dict().items():
        numpy.testing.assert_array_equal(value, best[key])
    assert EarlyStopping().restore(model) is False


@pytest.mark.parametrize("kwargs, match", [
    ({"patience": -1}, r"EarlyStopping: patience must be an int >= 0, got -1"),
    ({"patience": 1.5}, r"EarlyStopping: patience must be an int >= 0, got 1\.5"),
    ({"min_delta": -0.1}, r"EarlyStopping: min_delta must be a number >= 0, got -0\.1"),
    ({"mode": "up"}, r"EarlyStopping: mode must be 'min' or 'max', got 'up'"),
])
def test_early_stopping_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EarlyStopping(**kwargs)


# ---------------------------------------------------------------- fit
def blobs(n=96, seed=0):
    """Three separable 2-D classes (float32 x, int64 y)."""
    rng = numpy.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 2)) * 0.5 + numpy.eye(3)[y][:, :2] * 3).astype(numpy.float32)
    return TensorDataset(x, y)


def mlp(seed=0):
    dt.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))


def run(epochs=3, model=None, lr=0.05, batch_size=16, **options):
    model = model if model is not None else mlp()
    optimizer = options.pop("optimizer", None) or optim.SGD(model.parameters(), lr=lr)
    train = DataLoader(blobs(), batch_size=batch_size, shuffle=True, seed=0)
    val = DataLoader(blobs(48, seed=1), batch_size=20)
    options.setdefault("progress", False)
    options.setdefault("verbose", False)
    return model, fit(model, optimizer, train, val, epochs=epochs,
                      loss_fn=nn.CrossEntropyLoss(), **options)


def test_history_has_one_row_per_epoch_with_validation_metrics():
    _, history = run(metrics={"accuracy": Accuracy(3), "f1": F1Score(3, average="macro")},
                     train_metrics=True)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert list(history[0]) == ["epoch", "loss", "train_accuracy", "train_f1", "val_loss",
                                "val_accuracy", "val_f1", "lr", "samples_per_s", "time_s"]
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["val_accuracy"] > 0.9
    assert all(h["samples_per_s"] > 0 and h["time_s"] > 0 for h in history)


def test_val_loss_and_accuracy_equal_a_separate_evaluation():
    model, history = run(epochs=1, metrics={"accuracy": Accuracy(3)})
    x, y = blobs(48, seed=1).arrays()
    with dt.no_grad():
        logits = model(dt.tensor(x))
        loss = nn.CrossEntropyLoss()(logits, dt.tensor(y)).item()
    assert history[0]["val_loss"] == pytest.approx(loss, rel=1e-5)
    assert history[0]["val_accuracy"] == float((logits.numpy().argmax(1) == y).mean())


def test_reduce_lr_on_plateau_follows_the_monitored_value():
    model = mlp()
    optimizer = optim.SGD(model.parameters(), lr=0.05)
    plateau = optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", patience=0,
                                                   factor=0.5)
    # NOTE: "val_constant" never improves after epoch 1, so the lr halves after every later one
    constant = {"constant": _Constant()}
    _, history = run(epochs=4, model=model, optimizer=optimizer, scheduler=plateau,
                     metrics=constant, monitor="val_constant")
    assert [h["lr"] for h in history] == [0.05, 0.05, 0.025, 0.0125]


class _Constant:
    """A metric whose value is always 1."""

    def reset(self):
        pass

    def update(self, preds, target):
        pass

    def compute(self):
        return 1.0


def test_an_epoch_scheduler_steps_once_per_epoch():
    model = mlp()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    step = optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1)
    _, history = run(epochs=3, model=model, optimizer=optimizer, scheduler=step)
    assert [h["lr"] for h in history] == pytest.approx([0.1, 0.01, 0.001])


def test_gradient_clipping_bounds_every_update():
    model, lr, clip = mlp(), 1.0, 1e-3
    before = [p.detach().numpy().copy() for p in model.parameters()]
    run(epochs=1, model=model, lr=lr, grad_clip=clip, batch_size=96)  # one step
    moved = numpy.sqrt(sum(((p.detach().numpy() - b) ** 2).sum()
                           for p, b in zip(model.parameters(), before)))
    assert 0 < moved <= lr * clip * (1 + 1e-5)


def test_accumulation_equals_the_larger_batch():
    """Two micro-batches of 8 per step (and a short last group of 1 batch) equal batches of
    16 (and a last one of 8): the same SGD steps."""
    small, _ = run(epochs=2, model=mlp(), batch_size=8, accumulation_steps=2)
    large, _ = run(epochs=2, model=mlp(), batch_size=16)
    for a, b in zip(small.parameters(), large.parameters()):
        numpy.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_accumulation_runs_no_sync_on_all_but_the_last_micro_batch():
    model = _NoSyncRecorder(mlp())
    run(epochs=1, model=model, batch_size=16, accumulation_steps=4)  # 6 batches: 4 + 2
    assert model.synced == [False, False, False, True, False, True]


class _NoSyncRecorder(nn.Module):
    """A model with DataParallel's no_sync(): records whether each forward synchronised."""

    def __init__(self, module):
        super().__init__()
        self.module, self.synced, self._sync = module, [], True

    def no_sync(self):
        recorder = self

        class _Context:
            def __enter__(self):
                recorder._sync = False

            def __exit__(self, *exc):
                recorder._sync = True

        return _Context()

    def forward(self, x):
        if self.training:  # NOTE: validation's forwards are not micro-steps
            self.synced.append(self._sync)
        return self.module(x)


def test_early_stopping_callback_ends_training_and_restores_the_best():
    stopper = EarlyStopping(monitor="val_constant", mode="max", patience=1,
                            restore_best_weights=True)
    model, history = run(epochs=10, metrics={"constant": _Constant()}, callbacks=[stopper])
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert stopper.best_epoch == 1 and stopper.stopped_epoch == 3
    for key, value in model.state_dict().items():
        numpy.testing.assert_array_equal(value, stopper.best_weights[key])


def test_callbacks_see_every_hook_in_order():
    class Recorder(Callback):
        def __init__(self):
            self.calls = []

        def on_train_begin(self, trainer):
            self.calls.append("begin")

        def on_epoch_begin(self, trainer, epoch):
            self.calls.append(f"epoch{epoch}")

        def on_train_batch_end(self, trainer, step, logs):
            self.calls.append(step)

        def on_epoch_end(self, trainer, epoch, logs):
            self.calls.append(f"end{epoch}:{sorted(logs)[0]}")

        def on_train_end(self, trainer):
            self.calls.append("done")

    recorder = Recorder()
    run(epochs=2, batch_size=48, callbacks=[recorder])
    assert recorder.calls == ["begin", "epoch1", 1, 2, "end1:epoch", "epoch2", 3, 4,
                              "end2:epoch", "done"]


def test_summary_line_per_epoch_without_a_terminal(capsys):
    run(epochs=2, verbose=True, progress=None)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch   1  loss ")
    assert "val_loss" in lines[0] and "samples/s)" in lines[0] and "\r" not in lines[0]


def test_progress_true_draws_a_bar_per_epoch(capsys):
    run(epochs=2, verbose=False, progress=True)
    out = capsys.readouterr().out
    assert "epoch 1:" in out and "epoch 2:" in out and "loss=" in out


def test_format_epoch_leaves_out_per_class_lists():
    line = format_epoch({"epoch": 12, "loss": 1.5, "val_f1": [0.1, 0.2], "lr": 0.1,
                         "samples_per_s": 10.0, "time_s": 2.0})
    assert line == "epoch  12  loss 1.5000  lr 0.1000  (2.0 s, 10 samples/s)"


def test_csv_log_has_a_row_per_epoch(tmp_path):
    _, history = run(epochs=3, metrics={"accuracy": Accuracy(3)},
                     callbacks=[CSVLogger(tmp_path / "sub" / "log.csv")])
    with open(tmp_path / "sub" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for row, h in zip(rows, history):
        assert float(row["val_accuracy"]) == h["val_accuracy"]
        assert float(row["loss"]) == h["loss"] and float(row["lr"]) == h["lr"]


def test_csv_logger_on_resume_keeps_earlier_rows_and_drops_later_ones(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss\n1,0.5\n2,0.4\n3,0.3\n")
    logger = CSVLogger(path)
    trainer = type("T", (), {"start_epoch": 3})()
    logger.on_train_begin(trainer)
    logger.on_epoch_end(trainer, 3, {"epoch": 3, "loss": 0.25, "extra": 1.0})
    assert path.read_text().splitlines() == ["epoch,loss", "1,0.5", "2,0.4", "3,0.25"]


def test_tensorboard_scalars_read_back_per_step_and_per_epoch(tmp_path):
    pytest.importorskip("tensorboardX")
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    _, history = run(epochs=2, batch_size=16, log_dir=tmp_path, log_every_n_steps=2,
                     metrics={"accuracy": Accuracy(3)})
    events = accumulator.EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"step/loss", "step/lr", "step/samples_per_s", "epoch/loss", "epoch/val_loss",
            "epoch/val_accuracy", "epoch/lr", "epoch/samples_per_s", "epoch/time_s"} <= tags
    for key in ("loss", "val_loss", "val_accuracy", "lr", "samples_per_s"):
        scalars = events.Scalars(f"epoch/{key}")
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx([h[key] for h in history], rel=1e-6)
    assert [s.step for s in events.Scalars("step/loss")] == [2, 4, 6, 8, 10, 12]
    assert [s.value for s in events.Scalars("step/lr")] == pytest.approx([0.05] * 6)
    assert (tmp_path / "metrics.csv").is_file()


def test_log_dir_without_tensorboardx_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match=r"needs tensorboardX.*pip install 'disttrain\[log\]'"):
        run(epochs=1, log_dir=tmp_path)
    _, history = run(epochs=1, log_dir=tmp_path, tensorboard=False)  # the CSV alone needs none
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 2


@pytest.mark.parametrize("options, error, match", [
    ({"epochs": 0}, ValueError, r"fit: epochs must be an int >= 1, got 0"),
    ({"grad_clip": 0}, ValueError, r"fit: grad_clip must be a max norm > 0 or None, got 0"),
    ({"accumulation_steps": 0}, ValueError,
     r"fit: accumulation_steps must be an int >= 1, got 0"),
    ({"metrics": [Accuracy(3)]}, TypeError, r"fit: metrics must be a dict of name -> metric"),
    ({"comm": object()}, TypeError, r"fit: comm must be a disttrain Communicator"),
    ({"callbacks": [EarlyStopping(monitor="val_auc")]}, ValueError,
     r"EarlyStopping: monitor='val_auc' is not in the epoch's logs \(keys: \['epoch', 'loss', "),
])
def test_fit_errors_name_the_argument(options, error, match):
    with pytest.raises(error, match=match):
        run(**options)


def test_reduce_lr_on_plateau_without_the_monitored_key_names_the_keys():
    model = mlp()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    plateau = optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    with pytest.raises(ValueError, match=r"fit: monitor='val_f1' \(the value ReduceLROnPlateau "
                                         r"steps with\) is not in the epoch's logs"):
        run(model=model, optimizer=optimizer, scheduler=plateau, monitor="val_f1")


def test_accumulation_needs_a_sized_loader():
    model = mlp()
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      accumulation_steps=2, verbose=False)
    with pytest.raises(TypeError, match=r"accumulation_steps > 1 needs a train_loader with "
                                        r"len\(\).*got generator"):
        trainer.fit((b for b in DataLoader(blobs(), batch_size=8)), epochs=1)


def test_default_comm_is_none_in_a_plain_process(monkeypatch):
    from disttrain import env
    monkeypatch.setattr(env, "_world_comm", [None])
    model = mlp()
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss())
    assert (trainer.comm, trainer.rank, trainer.world_size) == (None, 0, 1)


def test_a_duck_typed_callback_needs_only_the_hooks_it_uses():
    class EpochCounter:  # NOTE: not a Callback subclass
        epochs = 0

        def on_epoch_end(self, trainer, epoch, logs):
            self.epochs += 1

    counter = EpochCounter()
    run(epochs=2, callbacks=[counter])
    assert counter.epochs == 2
