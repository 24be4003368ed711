"""Input checks shared by the metric functions: arrays from Tensors / arrays / lists, label
vectors, sample weights, lengths, and the warning for ill-defined metrics. Core module: never
imports mpi4py or disttrain.distributed.
"""

from __future__ import annotations

import numpy

from disttrain import backend
from disttrain.tensor import Tensor

ZERO_DIVISION_OPTIONS = ("warn", 0, 1, "nan (float)")


class UndefinedMetricWarning(UserWarning):
    """A metric is ill-defined for the data (scikit-learn's UndefinedMetricWarning): e.g.
    precision with no predicted samples of a class, or ROC AUC with one class in y_true."""


def to_array(values, name: str, op: str):
    """`values` (a Tensor, a numpy/cupy array, a list or a scalar) as a numpy or cupy array."""
    if isinstance(values, Tensor):
        return values.array
    if isinstance(values, numpy.ndarray) or backend.is_cupy_array(values):
        return values
    array = numpy.asarray(values)
    if array.dtype == object:
        raise TypeError(f"{op}: {name} must hold numbers or strings of one kind, got an "
                        f"object array (mixed types or ragged rows?): {values!r:.80}")
    return array


def label_vector(values, name: str, op: str):
    """`values` as a 1-D array of class labels (ints, bools, strings or integral floats); a
    column vector (n, 1) is flattened, as scikit-learn does."""
    array = to_array(values, name, op)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise ValueError(f"{op}: {name} must be 1-D class labels of shape (n_samples,), got "
                         f"shape {tuple(array.shape)} (multilabel / multioutput targets are "
                         "not supported; take argmax of (n, n_classes) scores first)")
    if array.shape[0] == 0:
        raise ValueError(f"{op}: {name} is empty: expected at least 1 sample, got 0")
    if array.dtype.kind == "f":
        xp = backend.get_array_module(array)
        if not bool(xp.isfinite(array).all()) or bool((array != xp.round(array)).any()):
            raise ValueError(f"{op}: {name} must be class labels (integers, bools or "
                             f"strings), got continuous values, e.g. {_first_fraction(array)}"
                             " (scores belong in roc_auc_score / roc_curve)")
    return array


def _first_fraction(array) -> float:
    host = backend.asnumpy(array)
    bad = ~numpy.isfinite(host) | (host != numpy.round(host))
    return float(host[bad][0])


def score_array(values, name: str, op: str):
    """`values` as a float64 array of scores (1-D or 2-D), checked finite."""
    array = to_array(values, name, op)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{op}: {name} must be numeric scores, got dtype {array.dtype}")
    array = array.astype(numpy.float64)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array.reshape(-1)
    if array.ndim not in (1, 2):
        raise ValueError(f"{op}: {name} must have shape (n_samples,) or (n_samples, "
                         f"n_classes), got {tuple(array.shape)}")
    if not bool(backend.get_array_module(array).isfinite(array).all()):
        raise ValueError(f"{op}: {name} must be finite, got NaN or infinity")
    return array


def check_lengths(op: str, **arrays) -> None:
    """Raises when the named arrays (None ones skipped) differ in their number of samples."""
    lengths = {name: int(a.shape[0]) for name, a in arrays.items() if a is not None}
    if len(set(lengths.values())) > 1:
        got = ", ".join(f"{name} {n}" for name, n in lengths.items())
        raise ValueError(f"{op}: inconsistent numbers of samples: expected equal lengths, "
                         f"got {got}")


def sample_weights(weights, n_samples: int, op: str, like):
    """`weights` as a 1-D float or int array of n_samples on `like`'s device, or None."""
    if weights is None:
        return None
    array = to_array(weights, "sample_weight", op)
    if array.ndim != 1:
        raise ValueError(f"{op}: sample_weight must be 1-D of shape (n_samples,), got shape "
                         f"{tuple(array.shape)}")
    check_lengths(op, y_true=like, sample_weight=array)
    return backend.get_array_module(like).asarray(array)


def check_targets(op: str, y_true, y_pred, sample_weight=None):
    """(y_type, present labels, y_true, y_pred, sample_weight) with y_type "binary" (at most
    two distinct labels in both) or "multiclass", as scikit-learn's _check_targets."""
    y_true = label_vector(y_true, "y_true", op)
    y_pred = label_vector(y_pred, "y_pred", op)
    check_lengths(op, y_true=y_true, y_pred=y_pred)
    if (y_true.dtype.kind in "US") != (y_pred.dtype.kind in "US"):
        raise ValueError(f"{op}: mix of label input types (string and number): y_true has "
                         f"dtype {y_true.dtype}, y_pred has dtype {y_pred.dtype}")
    xp = backend.get_array_module(y_true, y_pred)
    y_true, y_pred = xp.asarray(y_true), xp.asarray(y_pred)
    present = xp.unique(xp.concatenate([y_true, y_pred]))
    weights = sample_weights(sample_weight, y_true.shape[0], op, y_true)
    return ("binary" if present.shape[0] <= 2 else "multiclass"), present, y_true, y_pred, \
        weights


def encode(values, classes):
    """Index of each of `values` in `classes` (any order), len(classes) where it is absent."""
    xp = backend.get_array_module(values)
    classes = xp.asarray(classes)
    order = xp.argsort(classes, kind="stable")
    sorted_classes = classes[order]
    position = xp.clip(xp.searchsorted(sorted_classes, values), 0, classes.shape[0] - 1)
    found = sorted_classes[position] == values
    return xp.where(found, order[position], classes.shape[0])


def check_zero_division(zero_division, op: str) -> float:
    """The value a 0/0 metric takes (0.0 for "warn"); raises for anything else."""
    if isinstance(zero_division, str):
        if zero_division == "warn":
            return 0.0
    elif isinstance(zero_division, (int, float)):
        if zero_division in (0, 1) or numpy.isnan(zero_division):
            return float(zero_division)
    raise ValueError(f"{op}: zero_division must be one of {ZERO_DIVISION_OPTIONS}, got "
                     f"{zero_division!r}")


def check_option(value, options: tuple, name: str, op: str) -> None:
    if value not in options:
        raise ValueError(f"{op}: {name} must be one of {options}, got {value!r}")


def labels_array(labels, op: str, like):
    """User-given `labels` as a 1-D array on `like`'s device (string labels stay on host)."""
    array = to_array(labels, "labels", op)
    if array.ndim != 1:
        raise ValueError(f"{op}: labels must be 1-D, got shape {tuple(array.shape)}")
    if (array.dtype.kind in "US") != (like.dtype.kind in "US") and array.shape[0]:
        raise ValueError(f"{op}: labels have dtype {array.dtype} but the targets have dtype "
                         f"{like.dtype}: expected labels of the targets' kind")
    return backend.get_array_module(like).asarray(array)


def weighted_total(hits, weights, normalize: bool, op: str) -> float:
    """The (weighted) mean of `hits` when `normalize`, else their (weighted) sum."""
    if weights is None:
        return float(hits.mean() if normalize else hits.sum())
    total = (hits * weights).sum()
    if not normalize:
        return float(total)
    if float(weights.sum()) == 0:
        raise ValueError(f"{op}: sample_weight sums to 0: the weighted mean is undefined")
    return float(total / weights.sum())
