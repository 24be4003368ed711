"""Label metrics with scikit-learn's names, arguments, results and warnings: accuracy_score,
confusion_matrix, precision / recall / F-scores. Core module: never imports mpi4py or
disttrain.distributed.

The per-sample work (encoding labels, counting with bincount) runs on the inputs' device (numpy
or cupy); results are host values as in scikit-learn: Python floats and numpy arrays.
"""

from __future__ import annotations

import warnings

import numpy

from disttrain import backend
from disttrain.metrics.inputs import (
    UndefinedMetricWarning,
    check_option,
    check_targets,
    check_zero_division,
    encode,
    labels_array,
    weighted_total,
)

AVERAGES = (None, "micro", "macro", "weighted", "binary")
PRF_WARN_FOR = ("precision", "recall", "f-score")


def accuracy_score(y_true, y_pred, *, normalize: bool = True, sample_weight=None) -> float:
    """The fraction (or, with normalize=False, the number) of correctly predicted labels.

    Args:
        y_true: true labels, shape (n_samples,): a Tensor, numpy/cupy array or list.
        y_pred: predicted labels, shape (n_samples,).
        normalize: return the fraction if True, else the (weighted) count.
        sample_weight: optional weights, shape (n_samples,).

    Example:
        >>> accuracy_score([0, 1, 2, 3], [0, 2, 1, 3])
        0.5
    """
    _, _, y_true, y_pred, weights = check_targets("accuracy_score", y_true, y_pred,
                                                  sample_weight)
    return weighted_total(y_true == y_pred, weights, normalize, "accuracy_score")


def confusion_matrix(y_true, y_pred, *, labels=None, sample_weight=None, normalize=None):
    """C[i, j] = the number of samples of true class labels[i] predicted as labels[j].

    Args:
        y_true, y_pred: true and predicted labels, shape (n_samples,).
        labels: the classes to index the matrix by, in this order (samples with other labels
            are left out); default: every label in y_true or y_pred, sorted.
        sample_weight: optional weights, shape (n_samples,).
        normalize: None, "true" (rows sum to 1), "pred" (columns) or "all".

    Returns:
        a numpy array (n_classes, n_classes): int64, float64 with float weights or normalize.

    Example:
        >>> confusion_matrix([2, 0, 2, 2, 0, 1], [0, 0, 2, 2, 0, 2]).tolist()
        [[2, 0, 0], [0, 0, 1], [1, 0, 2]]
    """
    op = "confusion_matrix"
    check_option(normalize, (None, "true", "pred", "all"), "normalize", op)
    _, present, y_true, y_pred, weights = check_targets(op, y_true, y_pred, sample_weight)
    xp = backend.get_array_module(y_true)
    if labels is None:
        labels = present
    else:
        labels = labels_array(labels, op, y_true)
        if labels.shape[0] == 0:
            raise ValueError(f"{op}: labels must contain at least one label, got []")
        if not bool(xp.isin(y_true, labels).any()):
            raise ValueError(f"{op}: at least one of labels must be in y_true, got labels "
                             f"{backend.asnumpy(labels).tolist()} and y_true holding "
                             f"{backend.asnumpy(xp.unique(y_true)).tolist()}")
    cm = _count_pairs(encode(y_true, labels), encode(y_pred, labels), labels.shape[0], weights)
    cm = _normalized(backend.asnumpy(cm), normalize)
    if cm.shape == (1, 1):
        warnings.warn("A single label was found in 'y_true' and 'y_pred'. For the confusion "
                      "matrix to have the correct shape, use the 'labels' parameter to pass "
                      "all known labels.", UserWarning, stacklevel=2)
    return cm


def _count_pairs(true_index, pred_index, n_classes: int, weights):
    """The (n_classes, n_classes) counts of (true, pred) index pairs, pairs with an index
    >= n_classes (a label outside `labels`) left out."""
    xp = backend.get_array_module(true_index)
    keep = (true_index < n_classes) & (pred_index < n_classes)
    flat = true_index[keep] * n_classes + pred_index[keep]
    counts = xp.bincount(flat, weights=None if weights is None else weights[keep],
                         minlength=n_classes * n_classes)
    if weights is not None and weights.dtype.kind in "biu":
        counts = counts.astype(xp.int64)  # NOTE: integer weights count exactly, as sklearn's
    return counts.reshape(n_classes, n_classes)


def _normalized(cm, normalize):
    if normalize is None:
        return cm
    axis = {"true": 1, "pred": 0, "all": None}[normalize]
    with numpy.errstate(all="ignore"):
        return numpy.nan_to_num(cm / cm.sum(axis=axis, keepdims=axis is not None))


def precision_recall_fscore_support(y_true, y_pred, *, beta: float = 1.0, labels=None,
                                    pos_label=1, average=None, warn_for=PRF_WARN_FOR,
                                    sample_weight=None, zero_division="warn"):
    """Precision, recall, F-beta and support (the true count) per class or averaged.

    Args:
        y_true, y_pred: true and predicted labels, shape (n_samples,).
        beta: the weight of recall in the F-score (1: F1).
        labels: the classes to score (default: every label present, sorted); with
            average="binary" only pos_label is scored.
        pos_label: the positive class of average="binary".
        average: "binary" (pos_label only; binary targets), "micro" (global counts),
            "macro" (unweighted class mean), "weighted" (mean weighted by support) or None
            (per-class arrays).
        warn_for: which metrics warn (UndefinedMetricWarning) when ill-defined.
        sample_weight: optional weights, shape (n_samples,).
        zero_division: the value of a 0/0 metric: "warn" (0 and a warning), 0, 1 or nan.

    Returns:
        (precision, recall, fbeta, support): floats and support None when averaged, else numpy
        arrays of shape (n_labels,).

    Example:
        >>> precision_recall_fscore_support([0, 1, 1], [0, 1, 0], average="macro")[:3]
        (0.75, 0.75, 0.6666666666666666)
    """
    return _prf("precision_recall_fscore_support", y_true, y_pred, beta, labels, pos_label,
                average, warn_for, sample_weight, zero_division)


def precision_score(y_true, y_pred, *, labels=None, pos_label=1, average="binary",
                    sample_weight=None, zero_division="warn"):
    """tp / (tp + fp): the fraction of predicted positives that are right. Arguments as in
    precision_recall_fscore_support; a float, or a numpy array with average=None.

    Example:
        >>> precision_score([0, 1, 1, 0], [1, 1, 1, 0])
        0.6666666666666666
    """
    return _prf("precision_score", y_true, y_pred, 1.0, labels, pos_label, average,
                ("precision",), sample_weight, zero_division)[0]


def recall_score(y_true, y_pred, *, labels=None, pos_label=1, average="binary",
                 sample_weight=None, zero_division="warn"):
    """tp / (tp + fn): the fraction of true positives found. Arguments as in
    precision_recall_fscore_support; a float, or a numpy array with average=None.

    Example:
        >>> recall_score([0, 1, 1, 0], [1, 1, 0, 0])
        0.5
    """
    return _prf("recall_score", y_true, y_pred, 1.0, labels, pos_label, average,
                ("recall",), sample_weight, zero_division)[1]


def fbeta_score(y_true, y_pred, *, beta: float, labels=None, pos_label=1, average="binary",
                sample_weight=None, zero_division="warn"):
    """(1 + beta^2) tp / ((1 + beta^2) tp + beta^2 fn + fp). Arguments as in
    precision_recall_fscore_support; a float, or a numpy array with average=None.

    Example:
        >>> fbeta_score([0, 1, 1, 0], [1, 1, 0, 0], beta=2.0)
        0.5
    """
    return _prf("fbeta_score", y_true, y_pred, beta, labels, pos_label, average,
                ("f-score",), sample_weight, zero_division)[2]


def f1_score(y_true, y_pred, *, labels=None, pos_label=1, average="binary",
             sample_weight=None, zero_division="warn"):
    """The harmonic mean of precision and recall, 2 tp / (2 tp + fp + fn). Arguments as in
    precision_recall_fscore_support; a float, or a numpy array with average=None.

    Example:
        >>> f1_score([0, 1, 2, 0, 1, 2], [0, 2, 1, 0, 0, 1], average="macro")
        0.26666666666666666
    """
    return _prf("f1_score", y_true, y_pred, 1.0, labels, pos_label, average, ("f-score",),
                sample_weight, zero_division)[2]


def _prf(op, y_true, y_pred, beta, labels, pos_label, average, warn_for, sample_weight,
         zero_division):
    fill = check_zero_division(zero_division, op)
    check_option(average, AVERAGES, "average", op)
    if not beta >= 0:
        raise ValueError(f"{op}: beta must be >= 0, got {beta!r}")
    y_type, present, y_true, y_pred, weights = check_targets(op, y_true, y_pred, sample_weight)
    labels = _scored_labels(op, y_type, present, labels, pos_label, average, y_true)
    tp, pred, true = _class_counts(y_true, y_pred, labels, present, weights)
    if average == "micro":
        tp, pred, true = tp.sum(keepdims=True), pred.sum(keepdims=True), true.sum(keepdims=True)

    def divide(numerator, denominator, metric, modifier):
        return _divide(numerator, denominator, metric, modifier, warn_for, zero_division, fill)

    precision = divide(tp, pred, "precision", "predicted")
    recall = divide(tp, true, "recall", "true")
    if numpy.isposinf(beta):
        fscore = recall
    elif beta == 0:
        fscore = precision
    else:
        beta2 = beta * beta
        fscore = divide((1 + beta2) * tp, beta2 * true + pred, "f-score", "true nor predicted")
    if average is None:
        return precision, recall, fscore, true
    weights = true if average == "weighted" else None
    return (_nan_average(precision, weights), _nan_average(recall, weights),
            _nan_average(fscore, weights), None)


def _scored_labels(op, y_type, present, labels, pos_label, average, like):
    """The labels to score: [pos_label] for average="binary", else `labels` or every present
    label (scikit-learn's _check_set_wise_labels)."""
    present_list = backend.asnumpy(present).tolist()
    if average == "binary":
        if y_type != "binary":
            raise ValueError(f"{op}: average='binary' needs binary targets, got multiclass ones "
                             f"(labels {present_list}): choose average from "
                             "('micro', 'macro', 'weighted', None)")
        if pos_label not in present_list and len(present_list) >= 2:
            raise ValueError(f"{op}: pos_label={pos_label!r} is not a valid label: expected one"
                             f" of {present_list}")
        return labels_array([pos_label], op, like)
    if pos_label not in (None, 1):
        warnings.warn(f"Note that pos_label (set to {pos_label!r}) is ignored when average != "
                      f"'binary' (got {average!r}). You may use labels=[pos_label] to specify "
                      "a single positive class.", UserWarning, stacklevel=4)
    return present if labels is None else labels_array(labels, op, like)


def _class_counts(y_true, y_pred, labels, present, weights):
    """(true positives, predicted, true) counts of each of `labels`, host numpy arrays."""
    xp = backend.get_array_module(y_true)
    classes = xp.unique(xp.concatenate([labels, present]))
    true_index = xp.searchsorted(classes, y_true)
    pred_index = xp.searchsorted(classes, y_pred)
    hit = true_index == pred_index
    n = classes.shape[0]

    def count(index, w):
        return xp.bincount(index, weights=w, minlength=n)

    tp = count(true_index[hit], None if weights is None else weights[hit])
    pred, true = count(pred_index, weights), count(true_index, weights)
    chosen = xp.searchsorted(classes, labels)
    return tuple(backend.asnumpy(c[chosen]) for c in (tp, pred, true))


def _divide(numerator, denominator, metric, modifier, warn_for, zero_division, fill):
    """numerator / denominator with 0/0 set to `fill`, warning as scikit-learn's _prf_divide."""
    zero = denominator == 0
    result = numerator / numpy.where(zero, 1, denominator).astype(numpy.float64)
    if not zero.any():
        return result
    result[zero] = fill
    if zero_division == "warn" and metric in warn_for:
        where = "due to" if result.shape[0] == 1 else "in labels with"
        warnings.warn(f"{metric.capitalize()} is ill-defined and being set to 0.0 {where} no "
                      f"{modifier} samples. Use `zero_division` parameter to control this "
                      "behavior.", UndefinedMetricWarning, stacklevel=4)
    return result


def _nan_average(values, weights) -> float:
    """The (weighted) mean of the non-NaN `values` (NaN if none), as sklearn's _nanaverage."""
    keep = ~numpy.isnan(values)
    if not keep.any():
        return float("nan")
    values = values[keep]
    if weights is None or float(weights[keep].sum()) == 0:
        return float(values.mean())
    weights = weights[keep].astype(numpy.float64)
    return float((values * weights).sum() / weights.sum())
