"""End to end: the main job (examples/mnist_cnn.py) trains and its accuracy climbs."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from disttrain.data import DataLoader, datasets

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist_cnn.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("mnist_cnn", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_embedded_digits_accuracy_climbs(tmp_path):
    example = _load_example()
    import disttrain as dt

    dt.manual_seed(0)
    untrained = example.evaluate(example.SimpleCNN(), DataLoader(datasets.Digits("val"), 512))
    history = example.main(["--epochs", "3", "--no-progress", "--save",
                            str(tmp_path / "cnn.safetensors")])
    accuracies = [h["val_accuracy"] for h in history]
    assert untrained < 0.3
    assert accuracies[-1] > 0.9, accuracies
    assert history[-1]["loss"] < history[0]["loss"]
    weights = dt.load(tmp_path / "cnn.safetensors")
    assert set(weights) == {"conv.weight", "conv.bias", "fc1.weight", "fc1.bias", "fc2.weight",
                            "fc2.bias"}


def test_data_dir_reads_mnist_idx_files(tmp_path):
    """--data-dir on a tiny MNIST-format set (digits upscaled, written as IDX by the test)."""
    example = _load_example()
    digits = datasets.Digits("all")
    images, labels = digits.arrays()
    raw = (images[:, 0] * 255).round().astype(np.uint8)
    for prefix, part in (("train", slice(0, 400)), ("t10k", slice(400, 500))):
        datasets.write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", raw[part])
        datasets.write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", labels[part].astype(np.uint8))
    history = example.main(["--data-dir", str(tmp_path), "--epochs", "2", "--no-progress"])
    assert len(history) == 2 and history[-1]["val_accuracy"] > 0.5


def test_resume_from_checkpoint_matches_uninterrupted(tmp_path):
    """The main job saved every epoch and restarted resumes bit for bit (epoch 3's loss)."""
    pytest.importorskip("mpi4py")
    example = _load_example()
    full = example.main(["--epochs", "3", "--no-progress"])
    folder = str(tmp_path / "ckpt")
    example.main(["--epochs", "2", "--no-progress", "--checkpoint-dir", folder])
    resumed = example.main(["--epochs", "3", "--no-progress", "--checkpoint-dir", folder])
    assert [h["epoch"] for h in resumed] == [1, 2, 3]  # NOTE: epochs 1-2 from the checkpoint
    for key in ("loss", "val_loss", "val_accuracy", "val_f1"):
        assert [h[key] for h in resumed] == [h[key] for h in full], key


def test_log_dir_writes_csv_and_tensorboard_and_the_table(tmp_path, capsys):
    """--log-dir: one CSV row per epoch (the history's numbers) and TensorBoard scalars; the
    per-class table ends the output."""
    pytest.importorskip("tensorboardX")
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    example = _load_example()
    history = example.main(["--epochs", "2", "--no-progress", "--log-dir", str(tmp_path)])
    out = capsys.readouterr().out
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",")[:4] == ["epoch", "loss", "val_loss", "val_accuracy"]
    assert [float(r.split(",")[3]) for r in rows[1:]] == [h["val_accuracy"] for h in history]
    events = accumulator.EventAccumulator(str(tmp_path))
    events.Reload()
    f1 = events.Scalars("epoch/val_f1")
    assert [e.step for e in f1] == [h["epoch"] for h in history]
    assert [e.value for e in f1] == pytest.approx([h["val_f1"] for h in history], rel=1e-6)
    assert "class precision    recall        f1  support" in out
    assert len([line for line in out.splitlines() if line.startswith("    9 ")]) == 1


def test_early_stopping_ends_the_run(tmp_path):
    """--patience 0 stops at the first epoch whose validation loss does not improve."""
    example = _load_example()
    history = example.main(["--epochs", "30", "--no-progress", "--patience", "0"])
    losses = [h["val_loss"] for h in history]
    assert len(history) < 30
    assert losses[-1] >= min(losses[:-1]) and losses[:-1] == sorted(losses[:-1], reverse=True)


def test_augmented_run_resumes_bit_for_bit(tmp_path):
    """--augment: BatchAugment's per-(seed, rank, epoch, batch) randomness and position are
    checkpointed, so a run resumed after epoch 1 equals the uninterrupted one."""
    pytest.importorskip("mpi4py")
    example = _load_example()
    plain = example.main(["--epochs", "1", "--no-progress"])
    full = example.main(["--epochs", "2", "--no-progress", "--augment"])
    folder = str(tmp_path / "ckpt")
    example.main(["--epochs", "1", "--no-progress", "--augment", "--checkpoint-dir", folder])
    resumed = example.main(["--epochs", "2", "--no-progress", "--augment",
                            "--checkpoint-dir", folder])
    assert full[0]["loss"] != plain[0]["loss"]  # NOTE: the augmentation is applied
    assert [h["loss"] for h in resumed] == [h["loss"] for h in full]
    assert [h["val_loss"] for h in resumed] == [h["val_loss"] for h in full]
