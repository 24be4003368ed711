"""Composite ops, layers' maths and losses, built from primitives (no hand-written backward).

Exposed to users as `disttrain.nn.functional` (torch.nn.functional's names and arguments);
conv2d and the poolings live in functional_conv and are re-exported here.
"""

from __future__ import annotations

import math

import numpy

from disttrain import ops
from disttrain import random as _random
from disttrain.backend import get_array_module
from disttrain.dtypes import check_same_dtype
from disttrain.functional_conv import avg_pool2d, conv2d, max_pool2d  # noqa: F401 (re-exported)
from disttrain.tensor import Tensor, no_grad


# ---------------------------------------------------------------- activations
# NOTE: `inplace` is accepted wherever torch takes it, so scripts port unchanged; the result
# is always computed out of place (the input is left as it was), which autograd never rejects.
def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(input, 0) element-wise, as torch.nn.functional.relu.

    Args:
        input: any float tensor.
        inplace: accepted for torch compatibility; the result is a new tensor.

    Example:
        >>> F.relu(dt.tensor([-1.0, 2.0]), inplace=True).tolist()
        [0.0, 2.0]
    """
    return ops.ReLU.apply(input)


def sigmoid(input: Tensor) -> Tensor:
    return ops.Sigmoid.apply(input)


def tanh(input: Tensor) -> Tensor:
    return ops.Tanh.apply(input)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """input where input > 0, else input * negative_slope (`inplace`: as relu)."""
    return ops.Where.apply(input, input * negative_slope, condition=input.array > 0)


def logsigmoid(input: Tensor) -> Tensor:
    return ops.LogSigmoid.apply(input)


def softplus(input: Tensor) -> Tensor:
    return -ops.LogSigmoid.apply(-input)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    if approximate == "none":
        return 0.5 * input * (1.0 + ops.Erf.apply(input * (1.0 / math.sqrt(2.0))))
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (input + 0.044715 * input * input * input)
        return 0.5 * input * (1.0 + inner.tanh())
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def softmax(input: Tensor, dim: int) -> Tensor:
    return input.softmax(dim)


def log_softmax(input: Tensor, dim: int) -> Tensor:
    return input.log_softmax(dim)


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False,
            generator=None) -> Tensor:
    """Zeroes each element with probability p in training, scaling the rest by 1 / (1 - p).

    Args:
        p: probability of an element being zeroed.
        training: apply dropout only if True (identity otherwise).
        inplace: accepted for torch compatibility; the result is a new tensor.
        generator: numpy Generator for the mask (default: the one dt.manual_seed seeds).

    Example:
        >>> F.dropout(dt.ones(2, 3), p=0.5, training=False).tolist()
        [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    xp = get_array_module(input.array)
    keep = _random.resolve(generator).random(input.shape, dtype=numpy.float32) >= p
    mask = xp.asarray(keep.astype(input.dtype) * input.dtype.type(1.0 / (1.0 - p)))
    return input * Tensor(mask)


# ---------------------------------------------------------------- linear and convolution
def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = input @ weight.T + bias.  Shape: (*, in) x (out, in) -> (*, out)."""
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input.shape[-1]={input.shape[-1] if input.ndim else None} "
                         f"does not match weight.shape[1]={weight.shape[1]} (input {input.shape}, "
                         f"weight {weight.shape})")
    check_same_dtype("linear", input, weight, "input", "weight")
    return ops.Linear.apply(input, weight) if bias is None \
        else ops.Linear.apply(input, weight, bias)


# ---------------------------------------------------------------- normalisation
def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalises over every dim but the channel dim 1; updates running stats in training."""
    axes = (0,) + tuple(range(2, input.ndim))
    count = int(numpy.prod([input.shape[a] for a in axes]))
    shape = (1, -1) + (1,) * (input.ndim - 2)
    if training:
        if count <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when "
                             f"training, got input size {input.shape}")
        mean = input.mean(axes, keepdim=True)
        centred = input - mean
        var = (centred * centred).mean(axes, keepdim=True)
        if running_mean is not None:
            with no_grad():
                running_mean.array *= 1 - momentum
                running_mean.array += momentum * mean.array.reshape(-1)
                running_var.array *= 1 - momentum
                running_var.array += (momentum * count / (count - 1)) * var.array.reshape(-1)
    else:
        centred = input - running_mean.reshape(shape)
        var = running_var.reshape(shape)
    out = centred * (var + eps).rsqrt()
    if weight is not None:
        out = out * weight.reshape(shape)
    return out + bias.reshape(shape) if bias is not None else out


def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalises over the trailing `normalized_shape` dims, as torch's layer_norm."""
    normalized_shape = tuple(normalized_shape)
    if input.shape[input.ndim - len(normalized_shape):] != normalized_shape:
        raise ValueError(f"layer_norm: expected input with trailing shape {normalized_shape}, "
                         f"got {input.shape}")
    axes = tuple(range(input.ndim - len(normalized_shape), input.ndim))
    centred = input - input.mean(axes, keepdim=True)
    out = centred * ((centred * centred).mean(axes, keepdim=True) + eps).rsqrt()
    if weight is not None:
        out = out * weight
    return out + bias if bias is not None else out


# ---------------------------------------------------------------- losses
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


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    labels = tensor.array
    classes = int(labels.max()) + 1 if num_classes < 0 else num_classes
    xp = get_array_module(labels)
    return Tensor((labels[..., None] == xp.arange(classes)).astype(numpy.int64))


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    return input.flatten(start_dim, end_dim)


def embedding(input: Tensor, weight: Tensor) -> Tensor:
    return weight[input.array]


