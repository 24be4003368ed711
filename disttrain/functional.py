"""Composite ops, layers' maths and losses, built from primitives (no hand-written backward).

Exposed to users as `disttrain.nn.functional` (torch.nn.functional's names and arguments).
"""

from __future__ import annotations

import math

import numpy

from disttrain import ops
from disttrain import random as _random
from disttrain.backend import get_array_module
from disttrain.ops.conv import pad2d, window_slices
from disttrain.tensor import Tensor, no_grad


def as_pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of ints (kernel sizes, strides ...) as an (h, w) pair; `name` is the
    argument in the error message, e.g. "conv2d: stride"."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, (int, numpy.integer)) for v in pair):
        raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _check_float_pair(op: str, a: Tensor, b: Tensor, a_name: str, b_name: str) -> None:
    if a.dtype != b.dtype:
        raise TypeError(f"{op}: {a_name} dtype {a.dtype} and {b_name} dtype {b.dtype} should be "
                        f"the same; convert one with .to({b.dtype}) or .to({a.dtype})")


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
    _check_float_pair("linear", input, weight, "input", "weight")
    return ops.Linear.apply(input, weight) if bias is None \
        else ops.Linear.apply(input, weight, bias)


def _conv_pads(padding, kernel, dilation, stride) -> tuple[int, int, int, int]:
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        if stride != (1, 1):
            raise ValueError(f"conv2d: padding='same' is not supported for strided "
                             f"convolutions, got stride={stride}")
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return (totals[0] // 2, totals[0] - totals[0] // 2, totals[1] // 2,
                totals[1] - totals[1] // 2)
    ph, pw = as_pair(padding, "conv2d: padding")
    return (ph, ph, pw, pw)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """2-D cross-correlation, as torch.nn.functional.conv2d.

    Shape: input (N, C, H, W) or (C, H, W), weight (O, C/groups, kh, kw) -> (N, O, OH, OW).
    """
    if input.ndim == 3:
        return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation,
                      groups).squeeze(0)
    if input.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"conv2d: expected input (N, C, H, W) and weight (O, C/groups, kh, kw),"
                         f" got input {input.shape} and weight {weight.shape}")
    if input.shape[1] != weight.shape[1] * groups:
        raise ValueError(f"conv2d: input has {input.shape[1]} channels but weight "
                         f"{weight.shape} with groups={groups} expects "
                         f"{weight.shape[1] * groups} (input {input.shape})")
    if weight.shape[0] % groups:
        raise ValueError(f"conv2d: out_channels={weight.shape[0]} is not divisible by "
                         f"groups={groups}")
    _check_float_pair("conv2d", input, weight, "input", "weight")
    stride, dilation = as_pair(stride, "conv2d: stride"), as_pair(dilation, "conv2d: dilation")
    kernel = weight.shape[2:]
    pads = _conv_pads(padding, kernel, dilation, stride)
    out_hw = tuple((size + lo + hi - d * (k - 1) - 1) // s + 1 for size, lo, hi, d, k, s in zip(
        input.shape[2:], pads[::2], pads[1::2], dilation, kernel, stride))
    if min(out_hw) <= 0:
        raise ValueError(f"conv2d: output size {out_hw} is too small (input {input.shape}, "
                         f"kernel {kernel}, padding {padding}, dilation {dilation})")
    inputs = (input, weight) if bias is None else (input, weight, bias)
    return ops.Conv2d.apply(*inputs, stride=stride, pads=pads, dilation=dilation, groups=groups,
                            out_hw=out_hw)


def _pool_geometry(op, input, kernel_size, stride, padding, dilation, ceil_mode):
    if input.ndim not in (3, 4):
        raise ValueError(f"{op}: expected a 3-D or 4-D input (N, C, H, W), got {input.shape}")
    kernel = as_pair(kernel_size, f"{op}: kernel_size")
    stride = kernel if stride is None or stride == [] else as_pair(stride, f"{op}: stride")
    pad, dilation = as_pair(padding, f"{op}: padding"), as_pair(dilation, f"{op}: dilation")
    if any(p * 2 > k for p, k in zip(pad, kernel)):
        raise ValueError(f"{op}: pad should be at most half of effective kernel size, but got "
                         f"pad={pad}, kernel_size={kernel}")
    out_hw, pads = [], []
    for size, k, s, p, d in zip(input.shape[-2:], kernel, stride, pad, dilation):
        span = size + 2 * p - d * (k - 1) - 1
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (out - 1) * s >= size + p:
            out -= 1
        if out <= 0:
            raise ValueError(f"{op}: output size is too small for input {input.shape} with "
                             f"kernel_size={kernel}, stride={stride}, padding={pad}")
        pads += [p, p + max(0, (out - 1) * s + d * (k - 1) + 1 - (size + 2 * p))]
        out_hw.append(out)
    return kernel, stride, dilation, tuple(pads), tuple(out_hw), pad


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False) -> Tensor:
    """Max over kh x kw windows, as torch.nn.functional.max_pool2d."""
    kernel, stride, dilation, pads, out_hw, _ = _pool_geometry(
        "max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode)
    return ops.MaxPool2d.apply(input, kernel=kernel, stride=stride, dilation=dilation,
                               pads=pads, out_hw=out_hw)


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """Mean over kh x kw windows, as torch.nn.functional.avg_pool2d."""
    kernel, stride, dilation, pads, out_hw, pad = _pool_geometry(
        "avg_pool2d", input, kernel_size, stride, padding, 1, ceil_mode)
    divisor = divisor_override or kernel[0] * kernel[1]
    if divisor_override is None and (ceil_mode or (any(pad) and not count_include_pad)):
        divisor = _avg_divisor(input, kernel, stride, pads, pad, out_hw, count_include_pad)
    return ops.AvgPool2d.apply(input, kernel=kernel, stride=stride, dilation=dilation,
                               pads=pads, out_hw=out_hw, divisor=divisor)


def _avg_divisor(input, kernel, stride, pads, pad, out_hw, count_include_pad):
    """How many positions each window averages: torch counts padding (unless told not to) but
    never the overhang that ceil_mode adds."""
    xp = get_array_module(input.array)
    h, w = input.shape[-2:]
    counted = xp.ones((h + 2 * pad[0], w + 2 * pad[1]) if count_include_pad else (h, w),
                      input.dtype)
    if not count_include_pad:
        counted = pad2d(counted, (pad[0], pad[0], pad[1], pad[1]))
    counted = pad2d(counted, (0, pads[1] - pads[0], 0, pads[3] - pads[2]))
    windows = window_slices(kernel, stride, (1, 1), out_hw)
    return sum(counted[window] for window in windows)


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


