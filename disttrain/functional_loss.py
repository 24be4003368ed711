"""Loss functions with torch.nn.functional's names and semantics (re-exported there)."""

from __future__ import annotations

import numpy

from disttrain import ops
from disttrain.functional import logsigmoid
from disttrain.tensor import Tensor

_REDUCTIONS = ("mean", "sum", "none")


def check_reduction(op: str, reduction: str) -> None:
    """Raises ValueError naming `op` unless `reduction` is "mean", "sum" or "none"."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def _class_last(op: str, input: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(N, C, d1, ...) and (N, d1, ...) -> (M, C) and (M,); (C,) and () -> (1, C) and (1,)."""
    if target.dtype.kind not in "iu":
        raise TypeError(f"{op}: expected target dtype int64 (class indices), got "
                        f"{target.dtype}; convert with target.long()")
    if input.ndim == 1:
        input, target = input.unsqueeze(0), target.reshape(1)
    expected = input.shape[:1] + input.shape[2:]
    if input.ndim < 1 or target.shape != expected:
        raise ValueError(f"{op}: expected target shape {expected} for input shape {input.shape},"
                         f" got target shape {target.shape}")
    if input.ndim > 2:
        input = input.permute(0, *range(2, input.ndim), 1).reshape(-1, input.shape[1])
        target = target.reshape(-1)
    return input, target


def _check_targets(op: str, labels, classes: int, ignore_index: int) -> None:
    if int(labels.min(initial=0)) >= 0 and int(labels.max(initial=0)) < classes:
        return  # NOTE: two reductions on the hot path; the exact search only on failure
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= classes))
    if bad.any():
        raise IndexError(f"{op}: target {int(labels[bad][0])} is out of bounds for "
                         f"{classes} classes (valid: 0..{classes - 1} or ignore_index="
                         f"{ignore_index})")


def _class_index_loss(op: str, primitive, input, target, weight, ignore_index, reduction):
    check_reduction(op, reduction)
    shape = target.shape
    input, target = _class_last(op, input, target)
    classes = input.shape[1]
    _check_targets(op, target.array, classes, ignore_index)
    if weight is not None and weight.shape != (classes,):
        raise ValueError(f"{op}: weight should have shape ({classes},), got {weight.shape}")
    loss = primitive.apply(input, target=target.array, weight=None if weight is None else
                           weight.array, ignore_index=ignore_index, reduction=reduction)
    return loss.reshape(shape) if reduction == "none" else loss


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,
             ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class indices, given log-probabilities (N, C, ...)."""
    return _class_index_loss("nll_loss", ops.NLLLoss, input, target, weight, ignore_index,
                             reduction)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                  ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy on logits (N, C, ...) with class-index or probability targets."""
    check_reduction("cross_entropy", reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got "
                         f"{label_smoothing}")
    class_dim = 0 if input.ndim == 1 else 1
    logp = input.log_softmax(class_dim)
    if target.dtype.kind == "f":  # class probabilities
        if target.shape != input.shape:
            raise ValueError(f"cross_entropy: probability targets must match input shape "
                             f"{input.shape}, got {target.shape}")
        classes = input.shape[class_dim]
        if label_smoothing:
            target = target * (1 - label_smoothing) + label_smoothing / classes
        w = 1.0 if weight is None else weight.reshape((-1,) + (1,) * (input.ndim - 2))
        return _reduce(-(logp * target * w).sum(class_dim), reduction)
    if not label_smoothing:
        return _class_index_loss("cross_entropy", ops.CrossEntropy, input, target, weight,
                                 ignore_index, reduction)
    loss = nll_loss(logp, target, weight, ignore_index, reduction)
    return (1 - label_smoothing) * loss + label_smoothing * _smooth_loss(
        logp, target, weight, ignore_index, reduction, class_dim)


def _smooth_loss(logp, target, weight, ignore_index, reduction, class_dim):
    classes = logp.shape[class_dim]
    w = 1.0 if weight is None else weight.reshape((-1,) + (1,) * (logp.ndim - 2))
    keep = Tensor((target.array != ignore_index).astype(logp.dtype))
    per_sample = -(logp * w).sum(class_dim) * keep * (1.0 / classes)
    if reduction != "mean":
        return _reduce(per_sample, reduction)
    labels = numpy.where(target.array == ignore_index, 0, target.array)
    total = keep.sum() if weight is None else (Tensor(weight.array[labels]) * keep).sum()
    return per_sample.sum() / total


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    check_reduction("mse_loss", reduction)
    if input.shape != target.shape:
        raise ValueError(f"mse_loss: input shape {input.shape} and target shape "
                         f"{target.shape} differ; reshape one so they match")
    diff = input - target
    return _reduce(diff * diff, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor,
                                     weight: Tensor | None = None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """Sigmoid + binary cross-entropy in one numerically stable expression."""
    check_reduction("binary_cross_entropy_with_logits", reduction)
    if input.shape != target.shape:
        raise ValueError(f"binary_cross_entropy_with_logits: target shape {target.shape} must "
                         f"match input shape {input.shape}")
    if target.dtype.kind != "f":
        raise TypeError(f"binary_cross_entropy_with_logits: expected a floating point target "
                        f"(0/1 or probabilities), got {target.dtype}; use target.float()")
    log_p, log_not_p = logsigmoid(input), logsigmoid(-input)
    positive = target * log_p if pos_weight is None else target * pos_weight * log_p
    loss = -(positive + (1 - target) * log_not_p)
    return _reduce(loss if weight is None else loss * weight, reduction)
