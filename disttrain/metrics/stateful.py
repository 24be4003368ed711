"""Stateful metrics for evaluation loops: update(preds, target) per batch, compute() at the
end, reset() between epochs. Core module: never imports mpi4py or disttrain.distributed.

Distributed: compute() reduces the state over the ranks of `comm` (a disttrain Communicator,
or anything with its `rank`, `size`, `allreduce_` and `allgather`), so every rank gets the
metric of the whole data set: confusion-matrix counts are summed, AUROC's scores and targets
are gathered (shards of any length). With comm=None (the default) it is the world
Communicator once dist.init() ran (as under DataParallel), and this process alone otherwise
(a plain single process); comm=False computes on this process's updates only, always.

Predictions given to update() (Accuracy, Precision, Recall, F1Score, ConfusionMatrix):
- (N, C) scores (logits or probabilities): the predicted class is the argmax over C (the first
  of tied maxima), C must equal num_classes;
- (N,) integer or bool labels in [0, num_classes);
- (N,) or (N, 1) floating scores of class 1, for num_classes=2 only: class 1 where
  score >= threshold (0.5 by default: probabilities; pass threshold=0.0 for logits).
"""

from __future__ import annotations

import numpy

from disttrain import backend
from disttrain.metrics.classification import (
    AVERAGES,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)
from disttrain.metrics.inputs import (
    check_lengths,
    check_option,
    check_zero_division,
    label_vector,
    score_array,
    to_array,
)
from disttrain.metrics.ranking import roc_auc_score
from disttrain.metrics.reduction import (
    check_comm,
    gather_rows,
    resolve_comm,
    same_on_all_ranks,
    sum_over_ranks,
)


class Metric:
    """The base of the stateful metrics: update() accumulates, compute() reduces over `comm`'s
    ranks (by default the world's after dist.init()) and evaluates, reset() clears. compute()
    leaves the state as it is."""

    def __init__(self, comm=None):
        owner = type(self).__name__
        self._comm = comm if comm is None or comm is False else check_comm(comm, owner)
        self.reset()

    @property
    def comm(self):
        """The communicator compute() reduces over (None: this process only); see the
        module docstring for the default."""
        return resolve_comm(self._comm, type(self).__name__)

    def reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define reset()")

    def _empty(self, what: str) -> RuntimeError:
        ranks = "" if self.comm is None else f" on any of the {self.comm.size} ranks"
        return RuntimeError(f"{type(self).__name__}.compute(): no {what}{ranks}: call "
                            "update() before compute()")


class _ConfusionMetric(Metric):
    """A metric of the (num_classes, num_classes) confusion matrix (rows: true class,
    columns: predicted class), its one state; summed over ranks."""

    def __init__(self, num_classes: int, *, threshold: float = 0.5, comm=None):
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"{type(self).__name__}: num_classes must be an int >= 2, got "
                             f"{num_classes!r}")
        self.num_classes, self.threshold = num_classes, threshold
        super().__init__(comm)

    def reset(self) -> None:
        self.confmat = numpy.zeros((self.num_classes, self.num_classes), numpy.int64)

    def update(self, preds, target) -> None:
        """Adds a batch: `preds` (N, C) scores, (N,) labels or (N,) binary scores (see the
        module docstring), `target` (N,) integer labels in [0, num_classes)."""
        op = f"{type(self).__name__}.update"
        predicted = predicted_labels(op, preds, self.num_classes, self.threshold)
        target = class_indices(op, target, "target", self.num_classes)
        check_lengths(op, preds=predicted, target=target)
        xp = backend.get_array_module(predicted, target)
        flat = xp.asarray(target) * self.num_classes + xp.asarray(predicted)
        counts = xp.bincount(flat, minlength=self.num_classes**2)
        self.confmat += backend.asnumpy(counts).reshape(self.num_classes, self.num_classes)

    def _reduced(self):
        """The confusion matrix summed over ranks, as (true, pred, count) of its nonzero
        cells: scikit-learn's functions on these weighted cells give its result on the
        samples themselves (the labels present are the same ones)."""
        same_on_all_ranks(self.comm, [self.num_classes], "num_classes", type(self).__name__)
        cm = sum_over_ranks(self.comm, self.confmat)
        if cm.sum() == 0:
            raise self._empty("samples")
        true, pred = numpy.nonzero(cm)
        return cm, true, pred, cm[true, pred]


class Accuracy(_ConfusionMetric):
    """The fraction of correct predictions (accuracy_score) over every update (and rank).

    Args:
        num_classes: the number of classes C (labels 0 .. C - 1).
        threshold: for (N,) floating binary scores: class 1 where score >= threshold.
        comm: a Communicator to reduce over in compute() (None: the world one after
            dist.init(), else this process; False: this process only).

    Example:
        >>> metric = Accuracy(num_classes=3)
        >>> metric.update(numpy.array([[0.1, 0.8, 0.1], [0.7, 0.2, 0.1]]), numpy.array([1, 2]))
        >>> metric.compute()
        0.5
    """

    def compute(self) -> float:
        cm = self._reduced()[0]
        return float(numpy.trace(cm) / cm.sum())


class ConfusionMatrix(_ConfusionMetric):
    """The (num_classes, num_classes) confusion matrix: confusion_matrix(y_true, y_pred,
    labels=range(num_classes), normalize=normalize) over every update (and rank).

    Args:
        num_classes: the number of classes C.
        normalize: None, "true", "pred" or "all" (as confusion_matrix).
        threshold, comm: as in Accuracy.

    Example:
        >>> metric = ConfusionMatrix(num_classes=2)
        >>> metric.update(numpy.array([1, 0, 1]), numpy.array([1, 1, 0]))
        >>> metric.compute().tolist()
        [[0, 1], [1, 1]]
    """

    def __init__(self, num_classes: int, *, normalize=None, threshold: float = 0.5, comm=None):
        check_option(normalize, (None, "true", "pred", "all"), "normalize", "ConfusionMatrix")
        self.normalize = normalize
        super().__init__(num_classes, threshold=threshold, comm=comm)

    def compute(self) -> numpy.ndarray:
        _, true, pred, counts = self._reduced()
        return confusion_matrix(true, pred, labels=numpy.arange(self.num_classes),
                                sample_weight=counts, normalize=self.normalize)


class _ScoreMetric(_ConfusionMetric):
    """Precision, Recall, F1Score: a scikit-learn function evaluated on the reduced counts."""

    _function = None

    def __init__(self, num_classes: int, *, average="binary", labels=None, pos_label=1,
                 zero_division="warn", threshold: float = 0.5, comm=None):
        name = type(self).__name__
        check_option(average, AVERAGES, "average", name)
        check_zero_division(zero_division, name)
        if average == "binary" and num_classes != 2:
            raise ValueError(f"{name}: average='binary' needs num_classes=2, got num_classes="
                             f"{num_classes}: pass average='macro', 'micro', 'weighted' or "
                             "None")
        self.average, self.labels, self.pos_label = average, labels, pos_label
        self.zero_division = zero_division
        super().__init__(num_classes, threshold=threshold, comm=comm)

    def compute(self):
        """A float, or a numpy array per label with average=None."""
        _, true, pred, counts = self._reduced()
        return type(self)._function(true, pred, labels=self.labels, pos_label=self.pos_label,
                                    average=self.average, sample_weight=counts,
                                    zero_division=self.zero_division)


class Precision(_ScoreMetric):
    """precision_score over every update (and rank).

    Args:
        num_classes: the number of classes C (labels 0 .. C - 1).
        average: "binary" (num_classes=2: class pos_label), "micro", "macro", "weighted" or
            None (per class), as precision_score.
        labels: the classes to score (default: those present in targets or predictions).
        pos_label: the positive class of average="binary".
        zero_division: "warn", 0, 1 or nan: the value of 0/0.
        threshold, comm: as in Accuracy.

    Example:
        >>> metric = Precision(num_classes=3, average="macro")
        >>> metric.update(numpy.array([0, 1, 2, 2]), numpy.array([0, 1, 1, 2]))
        >>> metric.compute()
        0.8333333333333334
    """

    _function = staticmethod(precision_score)


class Recall(_ScoreMetric):
    """recall_score over every update (and rank); arguments as Precision.

    Example:
        >>> metric = Recall(num_classes=2)
        >>> metric.update(numpy.array([0.9, 0.2, 0.6]), numpy.array([1, 1, 0]))
        >>> metric.compute()
        0.5
    """

    _function = staticmethod(recall_score)


class F1Score(_ScoreMetric):
    """f1_score over every update (and rank); arguments as Precision.

    Example:
        >>> metric = F1Score(num_classes=3, average="micro")
        >>> metric.update(numpy.array([0, 1, 2, 2]), numpy.array([0, 1, 1, 2]))
        >>> metric.compute()
        0.75
    """

    _function = staticmethod(f1_score)


class AUROC(Metric):
    """roc_auc_score over every update (and rank): scores and targets are kept, and
    gathered from every rank in compute().

    Args:
        average, max_fpr, multi_class, labels: as roc_auc_score (multiclass needs
            multi_class="ovr" and probabilities: apply softmax to logits).
        comm: a Communicator to gather over in compute() (None: the world one after
            dist.init(), else this process; False: this process only).

    Example:
        >>> metric = AUROC()
        >>> metric.update(numpy.array([0.1, 0.4]), numpy.array([0, 0]))
        >>> metric.update(numpy.array([0.35, 0.8]), numpy.array([1, 1]))
        >>> metric.compute()
        0.75
    """

    def __init__(self, *, average="macro", max_fpr=None, multi_class="raise", labels=None,
                 comm=None):
        check_option(multi_class, ("raise", "ovr"), "multi_class", "AUROC")
        self.average, self.max_fpr, self.multi_class = average, max_fpr, multi_class
        self.labels = labels
        super().__init__(comm)

    def reset(self) -> None:
        self.scores, self.targets = [], []

    def update(self, preds, target) -> None:
        """Adds a batch: `preds` (N,) scores of the positive class (binary) or (N, C)
        probabilities; `target` (N,) integer labels."""
        op = "AUROC.update"
        scores = backend.asnumpy(score_array(preds, "preds", op))
        target = backend.asnumpy(class_indices(op, target, "target", None))
        check_lengths(op, preds=scores, target=target)
        if self.scores and self.scores[0].shape[1:] != scores.shape[1:]:
            raise ValueError(f"{op}: preds has shape {scores.shape}, but earlier batches had "
                             f"rows of shape {self.scores[0].shape[1:]}: expected the same")
        self.scores.append(scores)
        self.targets.append(target)

    def compute(self) -> float:
        owner = "AUROC.compute"
        scores = gather_rows(self.comm, _concatenated(self.scores, numpy.float64), owner)
        targets = gather_rows(self.comm, _concatenated(self.targets, numpy.int64), owner)
        if targets.shape[0] == 0:
            raise self._empty("samples")
        return roc_auc_score(targets, scores, average=self.average, max_fpr=self.max_fpr,
                             multi_class=self.multi_class, labels=self.labels)


def _concatenated(arrays: list, dtype):
    return numpy.concatenate(arrays) if arrays else numpy.zeros(0, dtype)


class MeanMetric(Metric):
    """The (weighted) mean of every value given to update(), e.g. a validation loss.

    Args:
        comm: a Communicator to reduce over in compute() (None: the world one after
            dist.init(), else this process; False: this process only).

    Example:
        >>> metric = MeanMetric()
        >>> metric.update(2.0)
        >>> metric.update(numpy.array([4.0, 6.0]), weight=2.0)
        >>> metric.compute()
        4.4
    """

    def reset(self) -> None:
        self.state = numpy.zeros(2)  # NOTE: (weighted sum, total weight): one allreduce

    def update(self, value, weight=1.0) -> None:
        """Adds `value` (a number, Tensor or array: each element counts) with `weight`
        (a number, or an array broadcastable to value's shape)."""
        value = backend.asnumpy(to_array(value, "value", "MeanMetric.update"))
        weight = backend.asnumpy(to_array(weight, "weight", "MeanMetric.update"))
        try:
            value, weight = numpy.broadcast_arrays(value.astype(numpy.float64), weight)
        except ValueError:
            raise ValueError(f"MeanMetric.update: weight of shape {weight.shape} does not "
                             f"broadcast to value's shape {value.shape}") from None
        self.state += (float((value * weight).sum()), float(weight.sum()))

    def compute(self) -> float:
        total, weight = sum_over_ranks(self.comm, self.state)
        if weight == 0:
            raise self._empty("values with a nonzero weight")
        return float(total / weight)


def predicted_labels(op: str, preds, num_classes: int, threshold: float):
    """Class indices (N,) from (N, C) scores (argmax), (N,) labels or (N,) binary scores."""
    array = to_array(preds, "preds", op)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array.reshape(-1)
    xp = backend.get_array_module(array)
    if array.ndim == 2:
        if array.shape[1] != num_classes:
            raise ValueError(f"{op}: preds of shape {tuple(array.shape)} must have num_classes"
                             f"={num_classes} columns (scores per class)")
        return xp.argmax(array, axis=1)
    if array.ndim == 1 and array.dtype.kind == "f":
        if num_classes != 2:
            raise ValueError(f"{op}: 1-D floating preds are scores of class 1, for "
                             f"num_classes=2 only, got num_classes={num_classes}: pass "
                             "(N, C) scores or integer labels")
        return (array >= threshold).astype(xp.int64)
    return class_indices(op, array, "preds", num_classes)


def class_indices(op: str, values, name: str, num_classes: int | None):
    """`values` as int64 class indices (N,), checked in [0, num_classes) when given."""
    array = label_vector(values, name, op)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{op}: {name} must be integer class indices, got dtype {array.dtype}")
    array = array.astype(backend.get_array_module(array).int64)
    if num_classes is not None:
        bad = array[(array < 0) | (array >= num_classes)]
        if bad.shape[0]:
            raise ValueError(f"{op}: {name} must be in [0, num_classes={num_classes}), got "
                             f"{int(bad[0])}")
    return array
