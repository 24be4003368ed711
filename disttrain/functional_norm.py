"""Normalisation functionals: batch_norm, layer_norm, group_norm and normalize (torch's names
and arguments), composed from Tensor ops with no backward of their own.

Re-exported by disttrain.functional; imports tensor, ops and shapes only.
"""

from __future__ import annotations

import math

import numpy

from disttrain import ops
from disttrain.backend import get_array_module
from disttrain.shapes import normalize_dim
from disttrain.tensor import Tensor, no_grad


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


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalises each sample over the channels of each of `num_groups` groups and the spatial
    dims (biased variance), then applies a per-channel affine (Wu & He, 2018).

    - Paper: https://arxiv.org/abs/1803.08494

    Args:
        input: (N, C, *) with C divisible by num_groups.
        num_groups: number of groups the C channels are split into, in order.
        weight, bias: optional (C,) scale and shift.
        eps: added to the variance.

    Example:
        >>> F.group_norm(dt.randn(2, 4, 3), 2).shape
        (2, 4, 3)
    """
    _check_group_norm(input, num_groups, weight, bias)
    n, channels = input.shape[:2]
    grouped = input.reshape(n, num_groups, channels // num_groups * math.prod(input.shape[2:]))
    centred = grouped - grouped.mean(-1, keepdim=True)
    variance = (centred * centred).mean(-1, keepdim=True)
    out = (centred * (variance + eps).rsqrt()).reshape(input.shape)
    shape = (1, channels) + (1,) * (input.ndim - 2)
    if weight is not None:
        out = out * weight.reshape(shape)
    return out + bias.reshape(shape) if bias is not None else out


def _check_group_norm(input, num_groups, weight, bias) -> None:
    if input.ndim < 2:
        raise RuntimeError(f"group_norm: expected at least 2 dimensions for input tensor but "
                           f"received {input.ndim}")
    channels = input.shape[1]
    if num_groups <= 0 or channels % num_groups:
        raise RuntimeError(f"group_norm: expected number of channels in input to be divisible "
                           f"by num_groups, but got input of shape {input.shape} and "
                           f"num_groups={num_groups}")
    for name, param in (("weight", weight), ("bias", bias)):
        if param is not None and param.shape != (channels,):
            raise RuntimeError(f"group_norm: expected {name} to be a vector of size equal to "
                               f"the number of channels in input, but got {name} of shape "
                               f"{param.shape} and input of shape {input.shape}")
    size = [input.shape[0] * channels // num_groups, num_groups, *input.shape[2:]]
    if size[0] * math.prod(size[2:]) == 1:  # NOTE: torch's _verify_batch_size, on these sizes
        raise ValueError(f"group_norm: expected more than 1 value per channel when training, "
                         f"got input size {size}")


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """input / max(||input||_p, eps) along `dim`, as torch.nn.functional.normalize.

    Args:
        p: the norm's exponent (inf and -inf too; 0 counts non-zeros).
        dim: the dim the norm is taken over.
        eps: lower bound of the denominator, so zero vectors stay zero.

    Example:
        >>> F.normalize(dt.tensor([[3.0, 4.0]])).tolist()
        [[0.6000000238418579, 0.800000011920929]]
    """
    axis = normalize_dim(dim, input.ndim, "normalize")
    return input / _vector_norm(input, float(p), axis).clamp(min=eps)


def _vector_norm(input: Tensor, p: float, axis: int) -> Tensor:
    """||input||_p along `axis` (kept), with torch's zero gradient where the norm is 0."""
    if p == 0.0:  # NOTE: a count of non-zeros: piecewise constant, no gradient (as torch)
        counts = (input.array != 0).sum(axis=axis, keepdims=True)
        return Tensor(counts.astype(input.dtype))
    if math.isinf(p):
        magnitude = input.abs()
        return magnitude.amax(axis, keepdim=True) if p > 0 \
            else -(-magnitude).amax(axis, keepdim=True)
    if p == 1.0:
        return input.abs().sum(axis, keepdim=True)
    total = (input * input if p == 2.0 else input.abs() ** p).sum(axis, keepdim=True)
    positive = total.array > 0
    if bool(positive.all()):
        return total.sqrt() if p == 2.0 else total ** (1.0 / p)
    # NOTE: the root's derivative is infinite at 0, and 0 (the upstream gradient there) * inf
    # is nan: root a stand-in 1 where the sum is 0, then put the 0 back, as torch's norm does.
    ones = Tensor(get_array_module(total.array).ones_like(total.array))
    root = ops.Where.apply(total, ones, condition=positive) ** (1.0 / p)
    return ops.Where.apply(root, ones * 0.0, condition=positive)
