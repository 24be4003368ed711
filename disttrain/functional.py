"""Composite ops and layers' maths, built from primitives (no hand-written backward).

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


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    labels = tensor.array
    classes = int(labels.max()) + 1 if num_classes < 0 else num_classes
    xp = get_array_module(labels)
    return Tensor((labels[..., None] == xp.arange(classes)).astype(numpy.int64))


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    return input.flatten(start_dim, end_dim)


def embedding(input: Tensor, weight: Tensor) -> Tensor:
    return weight[input.array]


