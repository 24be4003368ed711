"""Draws the training curves of a fit() run from its CSV log (fit(log_dir=...) writes
log_dir/metrics.csv; examples/mnist_cnn.py --log-dir DIR too): the losses on the left, the other
metrics (accuracy, F1, ...) on the right, against the epoch, into a PNG. Needs matplotlib
(pip install 'disttrain[plot]').

    python examples/mnist_cnn.py --log-dir runs/cnn
    python examples/plot_training.py runs/cnn/metrics.csv -o docs/training_curves.png
"""

from __future__ import annotations

import argparse
import csv
import math

SKIP = ("epoch", "lr", "samples_per_s", "time_s")


def read_log(path) -> dict[str, list[float]]:
    """The CSV's columns as {name: values} (an empty cell reads as NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"plot_training: {path} has no epoch rows yet")
    return {name: [float(row[name]) if row[name] != "" else math.nan for row in rows]
            for name in rows[0]}


def plot(columns: dict[str, list[float]], out: str, title: str | None = None) -> list[str]:
    """Writes the PNG; returns the curves drawn (their column names)."""
    import matplotlib

    matplotlib.use("Agg")  # NOTE: no display needed (a cluster node, CI)
    import matplotlib.pyplot as plt

    epochs = columns["epoch"]
    losses = [k for k in columns if k.endswith("loss")]
    metrics = [k for k in columns if k not in SKIP and k not in losses]
    panels = [("loss", losses)] + ([("metric", metrics)] if metrics else [])
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (label, names) in zip(axes[0], panels):
        for name in names:
            shown = "train loss" if name == "loss" else name.replace("_", " ")
            ax.plot(epochs, columns[name], marker="o", markersize=3, label=shown)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return losses + metrics


def main(argv=None) -> list[str]:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", help="the CSV log (e.g. runs/cnn/metrics.csv)")
    ap.add_argument("-o", "--out", default="training_curves.png", help="the PNG to write")
    ap.add_argument("--title", help="a title above the plots")
    args = ap.parse_args(argv)
    drawn = plot(read_log(args.csv), args.out, args.title)
    print(f"wrote {args.out}: {', '.join(drawn)}")
    return drawn


if __name__ == "__main__":
    main()
