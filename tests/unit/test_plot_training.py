"""examples/plot_training.py: reads fit()'s CSV log and draws the curves into a PNG."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "plot_training.py"


@pytest.fixture(scope="module")
def plot_training():
    spec = importlib.util.spec_from_file_location("plot_training", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CSV = """epoch,loss,val_loss,val_accuracy,val_f1,lr,samples_per_s,time_s
1,1.40,0.61,0.916,0.918,0.001,4350.0,0.4
2,0.43,0.36,0.880,,0.001,4688.0,0.3
"""


def test_draws_losses_and_metrics_into_a_png(plot_training, tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "metrics.csv").write_text(CSV)
    out = tmp_path / "curves.png"
    drawn = plot_training.main([str(tmp_path / "metrics.csv"), "-o", str(out), "--title", "t"])
    assert drawn == ["loss", "val_loss", "val_accuracy", "val_f1"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_read_log_gives_columns_and_nan_for_empty_cells(plot_training, tmp_path):
    (tmp_path / "metrics.csv").write_text(CSV)
    columns = plot_training.read_log(tmp_path / "metrics.csv")
    assert columns["epoch"] == [1.0, 2.0] and columns["val_accuracy"] == [0.916, 0.88]
    assert columns["val_f1"][0] == 0.918 and columns["val_f1"][1] != columns["val_f1"][1]


def test_an_empty_log_is_an_error_naming_the_file(plot_training, tmp_path):
    (tmp_path / "metrics.csv").write_text("epoch,loss\n")
    with pytest.raises(ValueError, match=r"plot_training: .*metrics\.csv has no epoch rows"):
        plot_training.read_log(tmp_path / "metrics.csv")
