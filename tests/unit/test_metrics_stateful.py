"""disttrain.metrics' stateful metrics in one process: batches of any size accumulate to
scikit-learn's result on the concatenated data; compute() over several simulated ranks (threads
sharing a communicator) equals it too, with shards of unequal size and an empty one."""

from __future__ import annotations

import threading
import warnings

import numpy
import pytest

import disttrain as dt
import disttrain.metrics as M

sk = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the oracle of these tests: "
                         "pip install -e '.[dev]'")

RNG = numpy.random.default_rng(99)
N, C = 83, 5
TARGET = RNG.choice([0, 1, 2, 3], N)  # NOTE: class 4 never true
LOGITS = RNG.normal(size=(N, C))
LOGITS[:, 3] -= 10  # NOTE: class 3 (true) is never predicted
PRED = LOGITS.argmax(axis=1)
PROBS = numpy.round(numpy.exp(LOGITS) / numpy.exp(LOGITS).sum(1, keepdims=True), 1) + 0.01
PROBS /= PROBS.sum(axis=1, keepdims=True)  # NOTE: rounded: tied scores
PROBS4 = PROBS[:, :4] / PROBS[:, :4].sum(axis=1, keepdims=True)  # classes 0-3, all in TARGET
BIN_TARGET = RNG.integers(0, 2, N)
BIN_SCORES = numpy.round(RNG.random(N), 1)
CUTS = [0, 7, 8, 40, N]  # NOTE: batches of 7, 1, 32 and 43 samples


def batches(*arrays):
    for start, stop in zip(CUTS[:-1], CUTS[1:]):
        yield tuple(a[start:stop] for a in arrays)


def accumulate(metric, preds, target):
    for p, t in batches(preds, target):
        metric.update(p, t)
    return metric


SCORE_CLASSES = {"Precision": sk.precision_score, "Recall": sk.recall_score,
                 "F1Score": sk.f1_score}


@pytest.mark.parametrize("name", SCORE_CLASSES)
@pytest.mark.parametrize("average", ["micro", "macro", "weighted", None])
@pytest.mark.parametrize("zero_division", [0, 1, numpy.nan])
@pytest.mark.parametrize("labels", [None, [0, 1, 2, 3, 4]])
def test_scores_equal_sklearn_on_the_concatenation(name, average, zero_division, labels):
    metric = getattr(M, name)(C, average=average, zero_division=zero_division, labels=labels)
    result = accumulate(metric, dt.tensor(LOGITS), dt.tensor(TARGET)).compute()
    expected = SCORE_CLASSES[name](TARGET, PRED, average=average, labels=labels,
                                   zero_division=zero_division)
    numpy.testing.assert_allclose(result, expected, rtol=1e-12)


@pytest.mark.parametrize("name", SCORE_CLASSES)
@pytest.mark.parametrize("pos_label", [0, 1])
def test_binary_scores_threshold_probabilities(name, pos_label):
    metric = accumulate(getattr(M, name)(2, pos_label=pos_label), BIN_SCORES, BIN_TARGET)
    expected = SCORE_CLASSES[name](BIN_TARGET, BIN_SCORES >= 0.5, pos_label=pos_label)
    assert metric.compute() == pytest.approx(expected, abs=1e-15)
    logits = accumulate(getattr(M, name)(2, pos_label=pos_label, threshold=0.0),
                        BIN_SCORES - 0.5, BIN_TARGET)
    assert logits.compute() == pytest.approx(expected, abs=1e-15)


def test_ill_defined_scores_warn_as_sklearn():
    metric = accumulate(M.Precision(C, average="macro", labels=[0, 1, 2, 3, 4]), PRED, TARGET)
    with pytest.warns(M.UndefinedMetricWarning, match="Precision is ill-defined and being set "
                                                      "to 0.0 in labels with no predicted"):
        result = metric.compute()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert result == sk.precision_score(TARGET, PRED, average="macro",
                                            labels=[0, 1, 2, 3, 4])


@pytest.mark.parametrize("preds", ["logits", "labels", "column"])
def test_accuracy_and_confusion_matrix(preds):
    preds = {"logits": LOGITS, "labels": PRED, "column": PRED.reshape(-1, 1)}[preds]
    assert accumulate(M.Accuracy(C), preds, TARGET).compute() == pytest.approx(
        sk.accuracy_score(TARGET, PRED), abs=1e-15)
    for normalize in (None, "true", "pred", "all"):
        result = accumulate(M.ConfusionMatrix(C, normalize=normalize), preds, TARGET).compute()
        expected = sk.confusion_matrix(TARGET, PRED, labels=range(C), normalize=normalize)
        assert result.dtype == expected.dtype
        numpy.testing.assert_allclose(result, expected, rtol=1e-12)


@pytest.mark.parametrize("case", ["binary", "ovr-macro", "ovr-weighted", "ovr-micro"])
def test_auroc_equals_roc_auc_score(case):
    if case == "binary":
        metric, target, scores, options = M.AUROC(), BIN_TARGET, BIN_SCORES, {}
    else:
        options = {"multi_class": "ovr", "average": case.split("-")[1]}
        metric, target, scores = M.AUROC(**options), TARGET, PROBS4
    result = accumulate(metric, dt.tensor(scores), dt.tensor(target)).compute()
    assert result == pytest.approx(sk.roc_auc_score(target, scores, **options), abs=1e-15)


def test_auroc_with_labels_for_a_class_absent_from_target():
    metric = accumulate(M.AUROC(multi_class="ovr", labels=list(range(C)), average="weighted"),
                        PROBS, TARGET)
    with pytest.warns(M.UndefinedMetricWarning, match="Only one class is present in y_true"):
        result = metric.compute()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = sk.roc_auc_score(TARGET, PROBS, multi_class="ovr", labels=list(range(C)),
                                    average="weighted")
    assert result == pytest.approx(expected, abs=1e-15)


def test_mean_metric_weighted_values_and_tensors():
    metric = M.MeanMetric()
    metric.update(dt.tensor([1.0, 2.0, 3.0]))
    metric.update(4.0, weight=3.0)
    metric.update(numpy.array([[10.0], [20.0]]), weight=numpy.array([1.0, 0.0]).reshape(2, 1))
    assert metric.compute() == pytest.approx((1 + 2 + 3 + 12 + 10) / (3 + 3 + 1))


def test_reset_compute_twice_and_update_after_compute():
    metric = accumulate(M.F1Score(C, average="macro"), PRED, TARGET)
    first = metric.compute()
    assert metric.compute() == first
    metric.update(PRED, TARGET)
    assert metric.compute() == pytest.approx(first)  # the same data twice: the same F1
    metric.reset()
    with pytest.raises(RuntimeError, match=r"F1Score.compute\(\): no samples: call update\(\) "
                                           r"before compute\(\)"):
        metric.compute()
    with pytest.raises(RuntimeError, match=r"AUROC.compute\(\): no samples"):
        M.AUROC().compute()
    with pytest.raises(RuntimeError, match=r"MeanMetric.compute\(\): no values with a nonzero"):
        M.MeanMetric().compute()


@pytest.mark.parametrize("make, preds, target, error, message", [
    (lambda: M.Accuracy(1), None, None, ValueError,
     r"Accuracy: num_classes must be an int >= 2, got 1"),
    (lambda: M.F1Score(3), None, None, ValueError,
     r"F1Score: average='binary' needs num_classes=2, got num_classes=3: pass average="),
    (lambda: M.Recall(3, average="mean"), None, None, ValueError,
     r"Recall: average must be one of \(None, 'micro', 'macro', 'weighted', 'binary'\), "
     r"got 'mean'"),
    (lambda: M.ConfusionMatrix(3, normalize="rows"), None, None, ValueError,
     r"ConfusionMatrix: normalize must be one of"),
    (lambda: M.AUROC(multi_class="ovo"), None, None, ValueError,
     r"AUROC: multi_class must be one of \('raise', 'ovr'\), got 'ovo'"),
    (lambda: M.Accuracy(3, comm=object()), None, None, TypeError,
     r"Accuracy: comm must be a disttrain Communicator \(with rank, size, allreduce_ and "
     r"allgather\), got object lacking \['allreduce_', 'allgather', 'rank', 'size'\]"),
    (lambda: M.Accuracy(3), numpy.zeros((4, 5)), numpy.zeros(4, int), ValueError,
     r"Accuracy.update: preds of shape \(4, 5\) must have num_classes=3 columns"),
    (lambda: M.Accuracy(3), numpy.array([0.2, 0.9]), numpy.array([0, 1]), ValueError,
     r"Accuracy.update: 1-D floating preds are scores of class 1, for num_classes=2 only, got "
     r"num_classes=3"),
    (lambda: M.Precision(3, average="macro"), numpy.array([0, 1]), numpy.array([0, 3]),
     ValueError, r"Precision.update: target must be in \[0, num_classes=3\), got 3"),
    (lambda: M.ConfusionMatrix(3), numpy.array([0, -1]), numpy.array([0, 1]), ValueError,
     r"ConfusionMatrix.update: preds must be in \[0, num_classes=3\), got -1"),
    (lambda: M.Accuracy(3), numpy.array([0, 1, 2]), numpy.array([0, 1]), ValueError,
     r"Accuracy.update: inconsistent numbers of samples: expected equal lengths, got preds 3, "
     r"target 2"),
    (lambda: M.MeanMetric(), numpy.ones(3), numpy.ones(2), ValueError,
     r"MeanMetric.update: weight of shape \(2,\) does not broadcast to value's shape \(3,\)"),
])  # fmt: skip
def test_errors_name_the_metric_argument_and_values(make, preds, target, error, message):
    with pytest.raises(error, match=message):
        metric = make()
        metric.update(preds, target)


def test_auroc_rows_must_keep_their_shape():
    metric = M.AUROC(multi_class="ovr")
    metric.update(PROBS[:4], TARGET[:4])
    with pytest.raises(ValueError, match=r"AUROC.update: preds has shape \(4,\), but earlier "
                                         r"batches had rows of shape \(5,\)"):
        metric.update(BIN_SCORES[:4], TARGET[:4])


# ---------------------------------------------------------------- simulated ranks
class ThreadComm:
    """A communicator for `size` threads of one process: allgather / allreduce_ through a
    shared board, with the Communicator's signatures (what disttrain.metrics duck-types)."""

    def __init__(self, rank: int, size: int, board: dict, barrier: threading.Barrier):
        self.rank, self.size, self._board, self._barrier = rank, size, board, barrier

    def allgather(self, array):
        self._board[self.rank] = numpy.array(array, copy=True)
        self._barrier.wait()
        rows = numpy.stack([self._board[r] for r in range(self.size)])
        self._barrier.wait()
        return rows

    def allreduce_(self, array, op: str = "sum"):
        assert op == "sum", op
        array[...] = self.allgather(array).sum(axis=0)
        return array


def on_ranks(size: int, body) -> list:
    """body(comm) on `size` threads; the per-rank results (or raised exceptions)."""
    board, barrier, results = {}, threading.Barrier(size, timeout=30), [None] * size

    def run(rank):
        try:
            results[rank] = body(ThreadComm(rank, size, board, barrier))
        except Exception as e:  # NOTE: kept, so a test can check every rank raised
            results[rank] = e

    threads = [threading.Thread(target=run, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


SHARDS = {2: [0, 30, N], 3: [0, 50, 50, N], 4: [0, 1, 2, 40, N]}  # NOTE: rank 1 of 3: empty


def shard(array, comm):
    cuts = SHARDS[comm.size]
    return array[cuts[comm.rank]:cuts[comm.rank + 1]]


@pytest.mark.parametrize("size", [2, 3, 4])
def test_compute_over_ranks_equals_sklearn_on_everything(size):
    def body(comm):
        f1 = M.F1Score(C, average="macro", zero_division=0, comm=comm)
        acc, auroc = M.Accuracy(C, comm=comm), M.AUROC(multi_class="ovr", comm=comm)
        mean = M.MeanMetric(comm=comm)
        preds, target, probs = shard(LOGITS, comm), shard(TARGET, comm), shard(PROBS4, comm)
        if target.shape[0]:
            for m, p in ((f1, preds), (acc, preds), (auroc, probs)):
                m.update(p, target)
            mean.update(target.astype(float))
        return f1.compute(), acc.compute(), auroc.compute(), mean.compute()

    expected = (sk.f1_score(TARGET, PRED, average="macro", zero_division=0),
                sk.accuracy_score(TARGET, PRED),
                sk.roc_auc_score(TARGET, PROBS4, multi_class="ovr"), TARGET.mean())
    for result in on_ranks(size, body):
        numpy.testing.assert_allclose(result, expected, rtol=1e-12)


def test_mismatched_construction_raises_on_every_rank():
    results = on_ranks(2, lambda comm: M.Accuracy(3 + comm.rank, comm=comm).compute())
    for rank, error in enumerate(results):
        assert isinstance(error, ValueError)
        assert f"Accuracy: rank {rank}: num_classes differs between ranks: {{0: [3], 1: [4]}}" \
            in str(error)


def test_auroc_shapes_differing_between_ranks_raise_on_every_rank():
    def body(comm):
        metric = M.AUROC(comm=comm)
        metric.update(PROBS[:3] if comm.rank else BIN_SCORES[:3], TARGET[:3])
        return metric.compute()

    for rank, error in enumerate(on_ranks(2, body)):
        assert isinstance(error, ValueError)
        assert f"AUROC.compute: rank {rank}: ranks hold rows of different shapes " \
               "{0: (3,), 1: (3, 5)}" in str(error)


# ---------------------------------------------------------------- the default communicator
class _TwinComm:
    """Rank 0 of 2 whose peer holds exactly the same state."""

    rank, size = 0, 2

    def allgather(self, array):
        return numpy.stack([array, array])

    def allreduce_(self, array, op: str = "sum"):
        array *= 2
        return array


def test_default_comm_is_the_world_dist_init_recorded(monkeypatch):
    """comm=None reduces over the Communicator dist.init() recorded in disttrain.env (read at
    compute(), so a metric made before init() reduces too); comm=False stays local; with no
    group initialised the metric is local."""
    from disttrain import env

    default, local = M.Accuracy(C), M.Accuracy(C, comm=False)
    for metric in (default, local):
        metric.update(LOGITS, TARGET)
    monkeypatch.setattr(env, "_world_comm", [None])
    assert default.comm is None and default.compute() == local.compute()
    twin = _TwinComm()
    monkeypatch.setattr(env, "_world_comm", [twin])
    assert default.comm is twin and local.comm is None
    assert default.compute() == local.compute()  # NOTE: twice the counts, the same accuracy
    mean = M.MeanMetric()
    mean.update(3.0)
    matrix = M.ConfusionMatrix(C)
    matrix.update(LOGITS, TARGET)
    assert mean.compute() == 3.0 and matrix.compute().sum() == 2 * N
