"""Score metrics with scikit-learn's names, arguments, results and warnings: roc_auc_score
(binary, and multiclass one-vs-rest), average_precision_score and top_k_accuracy_score. Core
module: never imports mpi4py or disttrain.distributed.
"""

from __future__ import annotations

import warnings

import numpy

from disttrain import backend
from disttrain.metrics.curves import auc, precision_recall_curve, roc_curve
from disttrain.metrics.inputs import (
    UndefinedMetricWarning,
    check_lengths,
    check_option,
    label_vector,
    labels_array,
    sample_weights,
    score_array,
    weighted_total,
)

BINARY_AVERAGES = (None, "micro", "macro", "weighted")


def roc_auc_score(y_true, y_score, *, average="macro", sample_weight=None, max_fpr=None,
                  multi_class="raise", labels=None) -> float:
    """The area under the ROC curve, for binary scores or multiclass probabilities.

    Args:
        y_true: true labels, shape (n_samples,).
        y_score: binary: scores of the greater label, shape (n_samples,); multiclass:
            probabilities, shape (n_samples, n_classes), rows summing to 1.
        average: multiclass: "macro", "weighted" (by prevalence), "micro" or None (per class).
        sample_weight: optional weights, shape (n_samples,).
        max_fpr: binary only: the standardised partial AUC over [0, max_fpr] (McClish).
        multi_class: "raise" (multiclass input is an error) or "ovr" (one-vs-rest).
        labels: multiclass: the classes of y_score's columns, in order (default: y_true's).

    Example:
        >>> roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
    """
    op = "roc_auc_score"
    y_true = label_vector(y_true, "y_true", op)
    y_score = score_array(y_score, "y_score", op)
    check_lengths(op, y_true=y_true, y_score=y_score)
    weights = sample_weights(sample_weight, y_true.shape[0], op, y_score)
    classes = backend.get_array_module(y_true).unique(y_true)
    if classes.shape[0] > 2 or (y_score.ndim == 2 and y_score.shape[1] > 2):
        if max_fpr is not None and max_fpr != 1:
            raise ValueError(f"{op}: max_fpr is for binary targets only: expected None with "
                             f"multiclass y_true, got max_fpr={max_fpr!r}")
        if multi_class == "raise":
            raise ValueError(f"{op}: y_true has {classes.shape[0]} classes and y_score shape "
                             f"{tuple(y_score.shape)} (multiclass), but multi_class='raise': "
                             "pass multi_class='ovr' (one-vs-rest on class probabilities)")
        return _multiclass_roc_auc(op, y_true, y_score, labels, multi_class, average, weights)
    check_option(average, BINARY_AVERAGES, "average", op)
    _check_binary_scores(op, y_score)
    positive = (y_true == classes[-1]).astype(numpy.int64)
    return _binary_roc_auc(positive, y_score, weights, max_fpr)


def _check_binary_scores(op: str, y_score) -> None:
    if y_score.ndim != 1:
        raise ValueError(f"{op}: y_true is binary, so y_score must be the scores of the "
                         f"positive class, shape (n_samples,), got shape "
                         f"{tuple(y_score.shape)} (pass y_score[:, 1])")


def _binary_roc_auc(positive, y_score, weights, max_fpr=None) -> float:
    if backend.get_array_module(positive).unique(positive).shape[0] != 2:
        warnings.warn("Only one class is present in y_true. ROC AUC score is not defined in "
                      "that case.", UndefinedMetricWarning, stacklevel=4)
        return float("nan")
    fpr, tpr, _ = roc_curve(positive, y_score, sample_weight=weights)
    if max_fpr is None or max_fpr == 1:
        return auc(fpr, tpr)
    if not 0 < max_fpr <= 1:
        raise ValueError(f"roc_auc_score: max_fpr must be in (0, 1], got {max_fpr!r}")
    stop = numpy.searchsorted(fpr, max_fpr, "right")
    tpr = numpy.append(tpr[:stop], numpy.interp(max_fpr, fpr[stop - 1:stop + 1],
                                                tpr[stop - 1:stop + 1]))
    partial = auc(numpy.append(fpr[:stop], max_fpr), tpr)
    # NOTE: McClish correction: 0.5 for a non-discriminant score, 1 for a perfect one
    min_area, max_area = 0.5 * max_fpr**2, max_fpr
    return 0.5 * (1 + (partial - min_area) / (max_area - min_area))


def _multiclass_roc_auc(op, y_true, y_score, labels, multi_class, average, weights):
    if y_score.ndim != 2:
        raise ValueError(f"{op}: y_true is multiclass, so y_score must be probabilities of "
                         f"shape (n_samples, n_classes), got shape {tuple(y_score.shape)}")
    check_option(multi_class, ("ovr",), "multi_class", op)
    sums = backend.asnumpy(y_score.sum(axis=1))
    if not numpy.allclose(1, sums):
        raise ValueError(f"{op}: multiclass y_score must be probabilities summing to 1 over "
                         f"classes, got row sums from {sums.min():.6g} to {sums.max():.6g} "
                         "(apply softmax to logits first)")
    check_option(average, BINARY_AVERAGES, "average", op)
    classes = _score_classes(op, y_true, y_score.shape[1], labels)
    onehot = (y_true[:, None] == classes[None, :]).astype(numpy.int64)
    return _average_binary_score(_binary_roc_auc, onehot, y_score, average, weights)


def _score_classes(op, y_true, n_columns: int, labels):
    """The classes of y_score's columns: `labels` (checked unique, sorted and covering
    y_true) or y_true's sorted classes; their number must be `n_columns`."""
    xp = backend.get_array_module(y_true)
    if labels is None:
        classes = xp.unique(y_true)
        if classes.shape[0] != n_columns:
            raise ValueError(f"{op}: y_true holds {classes.shape[0]} classes but y_score "
                             f"scores {n_columns}: expected equal (pass labels= listing every "
                             "class when some are absent from y_true)")
        return classes
    classes = labels_array(labels, op, y_true)
    as_list = backend.asnumpy(classes).tolist()
    if len(set(as_list)) != len(as_list) or as_list != sorted(as_list):
        raise ValueError(f"{op}: labels must be unique and sorted, got {as_list}")
    if len(as_list) != n_columns:
        raise ValueError(f"{op}: got {len(as_list)} labels but y_score scores {n_columns} "
                         "classes: expected equal")
    missing = xp.unique(y_true[~xp.isin(y_true, classes)])
    if missing.shape[0]:
        raise ValueError(f"{op}: y_true contains labels {backend.asnumpy(missing).tolist()} "
                         f"that are not in labels {as_list}")
    return classes


def _average_binary_score(metric, onehot, y_score, average, weights):
    """`metric` per column of one-hot targets and scores, averaged (scikit-learn's
    _average_binary_score): micro pools every (sample, class) pair."""
    if average == "micro":
        n_classes = onehot.shape[1]
        pooled = None if weights is None else weights.repeat(n_classes)
        return float(metric(onehot.reshape(-1), y_score.reshape(-1), pooled))
    class_weight = None
    if average == "weighted":
        class_weight = onehot.sum(axis=0) if weights is None else \
            (onehot * weights[:, None]).sum(axis=0)
        class_weight = backend.asnumpy(class_weight).astype(numpy.float64)
        if numpy.isclose(class_weight.sum(), 0):
            return 0
    scores = numpy.array([metric(onehot[:, c], y_score[:, c], weights)
                          for c in range(onehot.shape[1])])
    if average is None:
        return scores
    if class_weight is not None:
        scores[class_weight == 0] = 0  # NOTE: an absent class's NaN must not poison the mean
    return float(numpy.average(scores, weights=class_weight))


def average_precision_score(y_true, y_score, *, average="macro", pos_label=1,
                            sample_weight=None) -> float:
    """The area under the precision-recall curve as a step sum: sum_n (R_n - R_{n-1}) P_n.

    Args:
        y_true: true labels, shape (n_samples,).
        y_score: binary: scores of pos_label, shape (n_samples,); multiclass: scores of each
            class (columns in sorted label order), shape (n_samples, n_classes).
        average: multiclass: "macro", "weighted", "micro" or None (per class).
        pos_label: binary only: the positive class (must be 1 with multiclass y_true).
        sample_weight: optional weights, shape (n_samples,).

    Example:
        >>> average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.8333333333333333
    """
    op = "average_precision_score"
    y_true = label_vector(y_true, "y_true", op)
    y_score = score_array(y_score, "y_score", op)
    check_lengths(op, y_true=y_true, y_score=y_score)
    weights = sample_weights(sample_weight, y_true.shape[0], op, y_score)
    check_option(average, BINARY_AVERAGES, "average", op)
    classes = backend.get_array_module(y_true).unique(y_true)
    present = backend.asnumpy(classes).tolist()
    if len(present) <= 2:
        if len(present) == 2 and pos_label not in present:
            raise ValueError(f"{op}: pos_label={pos_label!r} is not a valid label: expected "
                             f"one of {present}")
        _check_binary_scores(op, y_score)
        return _binary_average_precision(y_true, y_score, weights, pos_label)
    if pos_label != 1:
        raise ValueError(f"{op}: pos_label is fixed to 1 for multiclass y_true: do not set "
                         f"it, got pos_label={pos_label!r}")
    if tuple(y_score.shape) != (y_true.shape[0], len(present)):
        raise ValueError(f"{op}: y_true holds {len(present)} classes, so y_score must have "
                         f"shape (n_samples, n_classes) = {(y_true.shape[0], len(present))}, "
                         f"got {tuple(y_score.shape)}")
    onehot = (y_true[:, None] == classes[None, :]).astype(numpy.int64)
    return _average_binary_score(_binary_average_precision, onehot, y_score, average, weights)


def _binary_average_precision(y_true, y_score, weights, pos_label=1) -> float:
    precision, recall, _ = precision_recall_curve(y_true, y_score, pos_label=pos_label,
                                                  sample_weight=weights)
    # NOTE: precision ends with 1 (precision_recall_curve's last point); clip rounding's -0.0
    return float(max(0.0, -numpy.sum(numpy.diff(recall) * precision[:-1])))


def top_k_accuracy_score(y_true, y_score, *, k: int = 2, normalize: bool = True,
                         sample_weight=None, labels=None) -> float:
    """The fraction of samples whose true label is among the k highest-scored classes (ties
    go to the class with the higher index, as scikit-learn's).

    Args:
        y_true: true labels, shape (n_samples,).
        y_score: scores, shape (n_samples, n_classes) (or (n_samples,) for binary targets).
        k: how many of the top classes count as a hit.
        normalize: the fraction if True, else the (weighted) number of hits.
        sample_weight: optional weights, shape (n_samples,).
        labels: the classes of y_score's columns, sorted (default: y_true's).

    Example:
        >>> top_k_accuracy_score([0, 1, 2], [[0.5, 0.2, 0.3], [0.3, 0.4, 0.3], [0.6, 0.3, 0.1]])
        0.6666666666666666
    """
    op = "top_k_accuracy_score"
    y_true = label_vector(y_true, "y_true", op)
    y_score = score_array(y_score, "y_score", op)
    xp = backend.get_array_module(y_true)
    is_binary = xp.unique(y_true).shape[0] <= 2 and (labels is None or len(labels) <= 2)
    if is_binary and y_score.ndim == 2:
        raise ValueError(f"{op}: y_true is binary but y_score has shape "
                         f"{tuple(y_score.shape)}: pass 1-D scores, or labels= listing every "
                         "class when y_true does not contain all of them")
    if not is_binary and y_score.ndim != 2:
        raise ValueError(f"{op}: y_true is multiclass, so y_score must have shape (n_samples, "
                         f"n_classes), got {tuple(y_score.shape)}")
    check_lengths(op, y_true=y_true, y_score=y_score)
    weights = sample_weights(sample_weight, y_true.shape[0], op, y_score)
    n_score_classes = y_score.shape[1] if y_score.ndim == 2 else 2
    classes = _score_classes(op, y_true, n_score_classes, labels)
    if k >= classes.shape[0]:
        warnings.warn(f"'k' ({k}) greater than or equal to 'n_classes' ({classes.shape[0]}) "
                      "will result in a perfect score and is therefore meaningless.",
                      UndefinedMetricWarning, stacklevel=2)
    true_index = backend.get_array_module(y_score).asarray(xp.searchsorted(classes, y_true))
    return weighted_total(_top_k_hits(y_score, true_index, k, is_binary), weights, normalize,
                          op)


def _top_k_hits(y_score, true_index, k: int, is_binary: bool):
    """Whether each sample's true class is among its k best-scored ones."""
    xp = backend.get_array_module(y_score)
    if is_binary:
        if k > 1:
            return xp.ones(y_score.shape[0], dtype=bool)
        # NOTE: scikit-learn's rule: probabilities split at 0.5, other scores at 0
        threshold = 0.5 if float(y_score.min()) >= 0 and float(y_score.max()) <= 1 else 0.0
        return (y_score > threshold).astype(xp.int64) == true_index
    # NOTE: a stable ascending sort reversed: among tied scores the higher class index ranks
    # first, exactly as scikit-learn's mergesort[:, ::-1]
    top = xp.argsort(y_score, axis=1, kind="stable")[:, ::-1][:, :k]
    return (top == true_index[:, None]).any(axis=1)
