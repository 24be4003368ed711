"""Stateful metrics reduced over the world communicator: on every rank, compute() equals
scikit-learn on the concatenation of all ranks' shards, which differ in length (and one is empty
from 3 ranks on)."""

from __future__ import annotations

import numpy
import pytest

import disttrain as dt
import disttrain.metrics as M

sk = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the oracle of these tests: "
                         "pip install -e '.[dev]'")

C = 4


def dataset(size: int):
    """The same data on every rank: (logits, probabilities, binary scores, targets, binary
    targets), and where each rank's shard starts and ends."""
    lengths = [0 if (size >= 3 and r == 1) else 11 + 7 * r for r in range(size)]
    cuts = numpy.concatenate([[0], numpy.cumsum(lengths)])
    n = int(cuts[-1])
    rng = numpy.random.default_rng(2024)
    logits = rng.normal(size=(n, C))
    probs = numpy.round(numpy.exp(logits) / numpy.exp(logits).sum(1, keepdims=True), 1) + 0.01
    probs /= probs.sum(axis=1, keepdims=True)
    target = rng.integers(0, C, n)
    target[:C] = numpy.arange(C)  # NOTE: every class occurs (ovr AUROC needs it)
    scores = numpy.round(rng.random(n), 1)  # NOTE: rounded: ties across ranks
    return (logits, probs, scores, target, rng.integers(0, 2, n)), cuts


def update_with_shard(metrics: dict, comm):
    data, cuts = dataset(comm.size)
    logits, probs, scores, target, bin_target = (a[cuts[comm.rank]:cuts[comm.rank + 1]]
                                                 for a in data)
    for batch in range(0, target.shape[0], 8):  # NOTE: several updates per rank
        part = slice(batch, batch + 8)
        for name, metric in metrics.items():
            preds, y = {"auroc": (probs, target), "bin_auroc": (scores, bin_target),
                        "bin_f1": (scores, bin_target),
                        "mean": (target.astype(float), None)}.get(name, (logits, target))
            if y is None:
                metric.update(dt.tensor(preds[part]))
            else:
                metric.update(dt.tensor(preds[part]), dt.tensor(y[part]))
    return data


def make_metrics(comm) -> dict:
    return {
        "accuracy": M.Accuracy(C, comm=comm),
        "precision": M.Precision(C, average="macro", zero_division=0, comm=comm),
        "recall": M.Recall(C, average=None, comm=comm),
        "f1": M.F1Score(C, average="weighted", comm=comm),
        "bin_f1": M.F1Score(2, comm=comm),
        "confusion": M.ConfusionMatrix(C, comm=comm),
        "auroc": M.AUROC(multi_class="ovr", average="macro", comm=comm),
        "bin_auroc": M.AUROC(comm=comm),
        "mean": M.MeanMetric(comm=comm),
    }


def expected_results(data) -> dict:
    logits, probs, scores, target, bin_target = data
    pred = logits.argmax(axis=1)
    return {
        "accuracy": sk.accuracy_score(target, pred),
        "precision": sk.precision_score(target, pred, average="macro", zero_division=0),
        "recall": sk.recall_score(target, pred, average=None),
        "f1": sk.f1_score(target, pred, average="weighted"),
        "bin_f1": sk.f1_score(bin_target, scores >= 0.5),
        "confusion": sk.confusion_matrix(target, pred, labels=range(C)),
        "auroc": sk.roc_auc_score(target, probs, multi_class="ovr", average="macro"),
        "bin_auroc": sk.roc_auc_score(bin_target, scores),
        "mean": target.mean(),
    }


def test_compute_on_every_rank_equals_sklearn_on_the_concatenation(comm):
    metrics = make_metrics(comm)
    data = update_with_shard(metrics, comm)
    results = {name: metric.compute() for name, metric in metrics.items()}
    expected = expected_results(data)
    for name in metrics:
        numpy.testing.assert_allclose(results[name], expected[name], rtol=1e-12,
                                      err_msg=f"{name} on rank {comm.rank} of {comm.size}")


@pytest.mark.mpi(min_size=2)
def test_comm_false_computes_on_this_rank_only(comm):
    local, reduced = M.ConfusionMatrix(C, comm=False), M.ConfusionMatrix(C, comm=comm)
    data = update_with_shard({"local": local, "reduced": reduced}, comm)
    counts = local.compute().sum() if local.confmat.sum() else 0
    total = reduced.compute().sum()
    lengths = numpy.diff(dataset(comm.size)[1])
    assert total == data[3].shape[0]
    assert counts == lengths[comm.rank]


def test_default_comm_is_the_world_recorded_by_dist_init(comm):
    """comm=None reduces over the world Communicator dist.init() recorded (the comm fixture
    ran it), equal to an explicit comm=comm."""
    default, explicit = M.ConfusionMatrix(C), M.ConfusionMatrix(C, comm=comm)
    data = update_with_shard({"default": default, "explicit": explicit}, comm)
    assert default.comm is comm
    numpy.testing.assert_array_equal(default.compute(), explicit.compute())
    assert default.compute().sum() == data[3].shape[0]


def test_compute_leaves_the_state_and_reset_clears_it(comm):
    metric = M.AUROC(comm=comm)
    data = update_with_shard({"bin_auroc": metric}, comm)
    first, second = metric.compute(), metric.compute()
    metric.reset()
    with pytest.raises(RuntimeError, match=rf"AUROC.compute\(\): no samples on any of the "
                                           rf"{comm.size} ranks"):
        metric.compute()
    assert first == second == pytest.approx(sk.roc_auc_score(data[4], data[2]), abs=1e-15)


@pytest.mark.mpi(min_size=2)
def test_num_classes_differing_between_ranks_raises_on_every_rank(comm):
    metric = M.F1Score(3 + comm.rank % 2, average="macro", comm=comm)
    with pytest.raises(ValueError, match=rf"F1Score: rank {comm.rank}: num_classes differs "
                                         r"between ranks: \{0: \[3\], 1: \[4\]"):
        metric.compute()
