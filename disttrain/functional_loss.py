"""Loss functions with torch.nn.functional's names, argument order and semantics (re-exported
there), including the legacy `size_average`/`reduce` arguments."""

from __future__ import annotations

import warnings

import numpy

from disttrain import ops
from disttrain.backend import get_array_module
from disttrain.dtypes import check_same_dtype
from disttrain.functional import logsigmoid
from disttrain.tensor import Tensor, where

_REDUCTIONS = ("mean", "sum", "none")
_LEGACY_WARNING = ("size_average and reduce args will be deprecated, please use "
                   "reduction='{}' instead.")


def check_reduction(op: str, reduction: str, allowed: tuple = _REDUCTIONS) -> None:
    """Raises ValueError naming `op` unless `reduction` is one of `allowed`."""
    if reduction not in allowed:
        raise ValueError(f"{op}: reduction must be one of {allowed}, got {reduction!r}")


def legacy_reduction(size_average: bool | None, reduce: bool | None,
                     stacklevel: int = 2) -> str:
    """torch.nn._reduction.legacy_get_string: the `reduction` that the deprecated
    `size_average`/`reduce` pair means (None counts as True), with torch's UserWarning.

    Example:
        >>> legacy_reduction(False, None)  # warns: use reduction='sum'
        'sum'
    """
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    reduction = "mean" if size_average and reduce else "sum" if reduce else "none"
    warnings.warn(_LEGACY_WARNING.format(reduction), UserWarning, stacklevel=stacklevel + 1)
    return reduction


def _reduction(op, size_average, reduce, reduction, allowed=_REDUCTIONS) -> str:
    """The effective reduction of a functional loss called by the user (warnings point there)."""
    if size_average is not None or reduce is not None:
        reduction = legacy_reduction(size_average, reduce, stacklevel=3)
    check_reduction(op, reduction, allowed)
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def _broadcast_pair(op: str, input: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """torch's element-wise losses: a target of another shape warns, then broadcasts."""
    if input.shape == target.shape:
        return input, target
    try:
        shape = numpy.broadcast_shapes(input.shape, target.shape)
    except ValueError:
        raise ValueError(f"{op}: input shape {input.shape} and target shape {target.shape} "
                         f"do not broadcast; reshape one so they match") from None
    warnings.warn(f"Using a target size ({_torch_size(target)}) that is different to the input "
                  f"size ({_torch_size(input)}). This will likely lead to incorrect results due "
                  "to broadcasting. Please ensure they have the same size.", UserWarning,
                  stacklevel=3)
    return input.expand(*shape), target.expand(*shape)


def _torch_size(x: Tensor) -> str:
    return f"torch.Size({list(x.shape)})"  # NOTE: torch's wording, so warning filters port


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
             size_average: bool | None = None, ignore_index: int = -100,
             reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class indices, given log-probabilities (N, C, ...).

    Args:
        weight: (C,) rescaling of each class; ignore_index: targets that add nothing;
        size_average, reduce: deprecated, mapped to `reduction` as torch does (with a warning).

    Example:
        >>> loss = F.nll_loss(dt.randn(4, 10).log_softmax(1), dt.tensor([1, 0, 9, 3]))
    """
    reduction = _reduction("nll_loss", size_average, reduce, reduction)
    return _class_index_loss("nll_loss", ops.NLLLoss, input, target, weight, ignore_index,
                             reduction)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                  size_average: bool | None = None, ignore_index: int = -100,
                  reduce: bool | None = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy on logits (N, C, ...) with class-index or probability targets.

    Args: as torch.nn.functional.cross_entropy (size_average/reduce deprecated, with a warning).

    Example:
        >>> loss = F.cross_entropy(dt.randn(4, 10), dt.tensor([1, 0, 9, 3]), label_smoothing=0.1)
    """
    reduction = _reduction("cross_entropy", size_average, reduce, reduction)
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
    loss = nll_loss(logp, target, weight, ignore_index=ignore_index, reduction=reduction)
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


def _weighted(op: str, loss: Tensor, weight: Tensor | None, reduction: str,
              mean_by_weight: bool = True) -> Tensor:
    """torch's optional element weight of mse/l1/huber: same shape as the input; "mean" is
    sum(w * loss) / sum(w) for mse and l1 but mean(w * loss) for huber (torch's own choice)."""
    if weight is None:
        return _reduce(loss, reduction)
    if weight.shape != loss.shape:
        raise ValueError(f"{op}: weight shape {weight.shape} must equal the input shape "
                         f"{loss.shape} (torch: Weights and input must have the same size.)")
    loss = loss * weight
    if reduction == "mean" and mean_by_weight:
        return loss.sum() / weight.sum()
    return _reduce(loss, reduction)


def mse_loss(input: Tensor, target: Tensor, size_average: bool | None = None,
             reduce: bool | None = None, reduction: str = "mean",
             weight: Tensor | None = None) -> Tensor:
    """Mean squared error; a target of another shape warns and broadcasts, as torch.

    Example:
        >>> F.mse_loss(dt.zeros(3), dt.tensor([1.0, 2.0, 2.0])).item()
        3.0
    """
    reduction = _reduction("mse_loss", size_average, reduce, reduction)
    input, target = _broadcast_pair("mse_loss", input, target)
    diff = input - target
    return _weighted("mse_loss", diff * diff, weight, reduction)


def l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None,
            reduce: bool | None = None, reduction: str = "mean",
            weight: Tensor | None = None) -> Tensor:
    """Mean absolute error |input - target| (gradient 0 where they are equal, as torch).

    Example:
        >>> F.l1_loss(dt.zeros(2), dt.tensor([1.0, -3.0])).item()
        2.0
    """
    reduction = _reduction("l1_loss", size_average, reduce, reduction)
    input, target = _broadcast_pair("l1_loss", input, target)
    return _weighted("l1_loss", (input - target).abs(), weight, reduction)


def smooth_l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None,
                   reduce: bool | None = None, reduction: str = "mean",
                   beta: float = 1.0) -> Tensor:
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (d = input - target).

    Args:
        beta: where the loss turns from quadratic to linear; 0 gives l1_loss, < 0 is an error.

    Example:
        >>> F.smooth_l1_loss(dt.zeros(2), dt.tensor([0.5, 3.0])).item()
        1.3125
    """
    reduction = _reduction("smooth_l1_loss", size_average, reduce, reduction)
    if beta < 0:
        raise RuntimeError(f"smooth_l1_loss does not support negative values for beta, got "
                           f"beta={beta}")
    input, target = _broadcast_pair("smooth_l1_loss", input, target)
    diff = input - target
    if beta == 0:
        return _reduce(diff.abs(), reduction)
    size = diff.abs()
    return _reduce(where(size < beta, diff * diff * (0.5 / beta), size - 0.5 * beta),
                   reduction)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,
               weight: Tensor | None = None) -> Tensor:
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta); = delta * smooth_l1(beta=delta).

    Example:
        >>> F.huber_loss(dt.zeros(2), dt.tensor([0.5, 3.0]), delta=2.0).item()
        2.0625
    """
    check_reduction("huber_loss", reduction)
    if not delta > 0:
        raise RuntimeError(f"huber_loss does not support non-positive values for delta, got "
                           f"delta={delta}")
    input, target = _broadcast_pair("huber_loss", input, target)
    diff = input - target
    size = diff.abs()
    loss = where(size < delta, diff * diff * 0.5, (size - 0.5 * delta) * delta)
    return _weighted("huber_loss", loss, weight, reduction, mean_by_weight=False)


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         size_average: bool | None = None, reduce: bool | None = None,
                         reduction: str = "mean") -> Tensor:
    """Binary cross-entropy of probabilities in [0, 1]; each log is clamped at -100, as torch.

    Args:
        weight: broadcast to the target's shape, rescales each element's loss.

    Example:
        >>> round(F.binary_cross_entropy(dt.tensor([0.5, 0.5]), dt.tensor([1.0, 0.0])).item(), 4)
        0.6931
    """
    reduction = _reduction("binary_cross_entropy", size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(f"binary_cross_entropy: Using a target size {target.shape} that is "
                         f"different to the input size {input.shape} is deprecated. Please "
                         "ensure they have the same size.")
    check_same_dtype("binary_cross_entropy", input, target, "input", "target")
    _check_probabilities("input", input)
    _check_probabilities("target", target)
    if weight is not None:
        try:
            weight = get_array_module(weight.array).broadcast_to(
                weight.array.astype(input.dtype, copy=False), target.shape)
        except ValueError:
            raise ValueError(f"binary_cross_entropy: weight shape {weight.shape} does not "
                             f"broadcast to the target shape {target.shape}") from None
    loss = ops.BinaryCrossEntropy.apply(input, target, weight=weight)
    return _reduce(loss, reduction)


def _check_probabilities(name: str, x: Tensor) -> None:
    if not bool(((x.array >= 0) & (x.array <= 1)).all()):  # NOTE: NaN fails too, as in torch
        bad = x.array[~((x.array >= 0) & (x.array <= 1))].ravel()[0]
        raise RuntimeError(f"binary_cross_entropy: all elements of {name} should be between 0 "
                           f"and 1, found {bad}")


def kl_div(input: Tensor, target: Tensor, size_average: bool | None = None,
           reduce: bool | None = None, reduction: str = "mean",
           log_target: bool = False) -> Tensor:
    """Kullback-Leibler divergence of `target` from log-probabilities `input`, element-wise
    target * (log target - input) (0 where target is 0), as torch.nn.functional.kl_div.

    Args:
        reduction: "batchmean" (sum / batch size, the mathematical KL), "sum", "none", or
            "mean" (over every element; torch warns that it differs from batchmean);
        log_target: `target` holds log-probabilities too.

    Example:
        >>> p = dt.rand(4, 5).softmax(1)
        >>> F.kl_div(p.log(), p, reduction="batchmean").abs().item() < 1e-6
        True
    """
    legacy = size_average is not None or reduce is not None
    if legacy:
        effective = legacy_reduction(size_average, reduce, stacklevel=2)
    else:
        check_reduction("kl_div", reduction, _REDUCTIONS + ("batchmean",))
        if reduction == "mean":
            warnings.warn("reduction: 'mean' divides the total loss by both the batch size and "
                          "the support size.'batchmean' divides only by the batch size, and "
                          "aligns with the KL div math definition.'mean' will be changed to "
                          "behave the same as 'batchmean' in the next major release.",
                          UserWarning, stacklevel=2)
        effective = "sum" if reduction == "batchmean" else reduction
    if log_target:
        loss = target.exp() * (target - input)
    else:
        nonzero = Tensor(target.array != 0)
        safe = where(nonzero, target, 1.0)  # NOTE: torch's xlogy: 0 log 0 = 0, no NaN
        loss = target * safe.log() - target * input
    loss = _reduce(loss, effective)
    if reduction == "batchmean" and input.ndim != 0:
        loss = loss / input.shape[0]
    return loss


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor,
                                     weight: Tensor | None = None,
                                     size_average: bool | None = None,
                                     reduce: bool | None = None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """Sigmoid + binary cross-entropy in one numerically stable expression.

    Example:
        >>> round(F.binary_cross_entropy_with_logits(dt.zeros(2), dt.tensor([1.0, 0.0])).item(), 4)
        0.6931
    """
    reduction = _reduction("binary_cross_entropy_with_logits", size_average, reduce, reduction)
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
