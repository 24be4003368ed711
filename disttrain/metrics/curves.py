"""Binary threshold curves with scikit-learn's names, arguments and results: roc_curve,
precision_recall_curve and auc. Vectorised: one sort of the scores, then cumulative sums at
the distinct thresholds. Core module: never imports mpi4py or disttrain.distributed.
"""

from __future__ import annotations

import warnings

import numpy

from disttrain import backend
from disttrain.metrics.inputs import (
    UndefinedMetricWarning,
    check_lengths,
    label_vector,
    sample_weights,
    score_array,
    to_array,
)


def binary_counts(op: str, y_true, y_score, pos_label=None, sample_weight=None):
    """(fps, tps, thresholds): the (weighted) false and true positives when predicting
    positive every score >= threshold, for each distinct score in decreasing order (scikit-
    learn's confusion_matrix_at_thresholds). Zero-weight samples are left out."""
    y_true = label_vector(y_true, "y_true", op)
    y_score = score_array(y_score, "y_score", op)
    if y_score.ndim != 1:
        raise ValueError(f"{op}: y_score must be 1-D scores of the positive class, shape "
                         f"(n_samples,), got shape {tuple(y_score.shape)}")
    check_lengths(op, y_true=y_true, y_score=y_score)
    weights = sample_weights(sample_weight, y_true.shape[0], op, y_score)
    xp = backend.get_array_module(y_score)
    positive = xp.asarray(y_true == _pos_label(op, y_true, pos_label), dtype=xp.float64)
    if weights is not None:
        keep = weights != 0
        positive, y_score, weights = positive[keep], y_score[keep], weights[keep]
    order = xp.argsort(-y_score, kind="stable")
    y_score, positive = y_score[order], positive[order]
    # NOTE: the end of each run of tied scores is a threshold: the order inside a tie does not
    # change the cumulative counts there, so the curve treats tied samples as one step
    ends = xp.concatenate([xp.nonzero(xp.diff(y_score))[0], xp.asarray([y_score.shape[0] - 1])])
    if weights is None:
        tps = xp.cumsum(positive)[ends]
        fps = 1 + ends - tps
    else:
        weights = weights[order].astype(xp.float64)
        tps = xp.cumsum(positive * weights)[ends]
        # NOTE: a cumsum of its own keeps fps non-decreasing despite rounding (sklearn's way)
        fps = xp.cumsum((1 - positive) * weights)[ends]
    return fps, tps, y_score[ends]


def _pos_label(op: str, y_true, pos_label):
    """pos_label, or 1 when y_true's labels are {0, 1} or {-1, 1} (or one of them)."""
    classes = backend.asnumpy(backend.get_array_module(y_true).unique(y_true))
    if pos_label is not None:
        return pos_label
    if classes.shape[0] > 2:
        raise ValueError(f"{op}: y_true must be binary, got {classes.shape[0]} classes "
                         f"{classes.tolist()}: pass pos_label to score one class against the "
                         "rest")
    if classes.dtype.kind in "US" or not (set(classes.tolist()) <= {0, 1}
                                          or set(classes.tolist()) <= {-1, 1}):
        raise ValueError(f"{op}: y_true takes values in {classes.tolist()} and pos_label is "
                         "not specified: either make y_true take values in {0, 1} or "
                         "{-1, 1} or pass pos_label explicitly")
    return 1


def roc_curve(y_true, y_score, *, pos_label=None, sample_weight=None,
              drop_intermediate: bool = True):
    """The receiver operating characteristic: false and true positive rates per threshold.

    Args:
        y_true: binary labels, shape (n_samples,) ({0, 1} or {-1, 1} unless pos_label).
        y_score: scores of the positive class (probabilities or logits), shape (n_samples,).
        pos_label: the positive class (default 1).
        sample_weight: optional weights, shape (n_samples,).
        drop_intermediate: drop thresholds that are collinear with their neighbours.

    Returns:
        (fpr, tpr, thresholds), numpy arrays; thresholds decrease from inf.

    Example:
        >>> fpr, tpr, thresholds = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        >>> tpr.tolist()
        [0.0, 0.5, 0.5, 1.0, 1.0]
    """
    fps, tps, thresholds = binary_counts("roc_curve", y_true, y_score, pos_label,
                                         sample_weight)
    xp = backend.get_array_module(fps)
    if drop_intermediate and fps.shape[0] > 2:
        corner = xp.logical_or(xp.diff(fps, 2), xp.diff(tps, 2))
        keep = xp.nonzero(xp.concatenate([xp.asarray([True]), corner, xp.asarray([True])]))[0]
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fps, tps = (backend.asnumpy(xp.concatenate([xp.zeros(1), a])) for a in (fps, tps))
    thresholds = numpy.concatenate([[numpy.inf], backend.asnumpy(thresholds)])
    return _rate(fps, "No negative samples in y_true, false positive value should be "
                      "meaningless"), \
        _rate(tps, "No positive samples in y_true, true positive value should be "
                   "meaningless"), thresholds


def _rate(counts, message: str):
    if counts[-1] <= 0:
        warnings.warn(message, UndefinedMetricWarning, stacklevel=3)
        return numpy.full(counts.shape, numpy.nan)
    return counts / counts[-1]


def precision_recall_curve(y_true, y_score, *, pos_label=None, sample_weight=None,
                           drop_intermediate: bool = False):
    """Precision and recall when predicting positive every score >= threshold.

    Args:
        y_true, y_score, pos_label, sample_weight: as in roc_curve.
        drop_intermediate: drop thresholds where the true positives do not change.

    Returns:
        (precision, recall, thresholds), numpy arrays; precision ends with 1 and recall with 0
        (one more entry than thresholds, which increase).

    Example:
        >>> precision, recall, _ = precision_recall_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        >>> precision.tolist()
        [0.5, 0.6666666666666666, 0.5, 1.0, 1.0]
    """
    fps, tps, thresholds = binary_counts("precision_recall_curve", y_true, y_score, pos_label,
                                         sample_weight)
    xp = backend.get_array_module(fps)
    if drop_intermediate and fps.shape[0] > 2:
        changes = xp.logical_or(xp.diff(tps[:-1]), xp.diff(tps[1:]))
        keep = xp.nonzero(xp.concatenate([xp.asarray([True]), changes, xp.asarray([True])]))[0]
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fps, tps, thresholds = (backend.asnumpy(a) for a in (fps, tps, thresholds))
    predicted = tps + fps
    precision = numpy.divide(tps, predicted, out=numpy.zeros_like(tps), where=predicted != 0)
    if tps[-1] == 0:
        warnings.warn("No positive class found in y_true, recall is set to one for all "
                      "thresholds.", UserWarning, stacklevel=2)
        recall = numpy.ones_like(tps)
    else:
        recall = tps / tps[-1]
    return (numpy.concatenate([precision[::-1], [1.0]]), numpy.concatenate([recall[::-1], [0.0]]),
            thresholds[::-1].copy())


def auc(x, y) -> float:
    """The area under a curve through the points (x, y) by the trapezoidal rule; x must be
    monotonic (increasing or decreasing).

    Example:
        >>> auc([0.0, 0.5, 1.0], [0.0, 1.0, 1.0])
        0.75
    """
    x = backend.asnumpy(to_array(x, "x", "auc")).astype(numpy.float64).reshape(-1)
    y = backend.asnumpy(to_array(y, "y", "auc")).astype(numpy.float64).reshape(-1)
    check_lengths("auc", x=x, y=y)
    if x.shape[0] < 2:
        raise ValueError(f"auc: at least 2 points are needed to compute the area under a "
                         f"curve, got x of shape {x.shape}")
    steps = numpy.diff(x)
    direction = 1.0
    if (steps < 0).any():
        if not (steps <= 0).all():
            raise ValueError(f"auc: x must be monotonic (increasing or decreasing), got {x}")
        direction = -1.0
    return float(direction * numpy.trapezoid(y, x))
