"""Composite ops and layers' maths, built from primitives (no hand-written backward).

Exposed to users as `disttrain.nn.functional` (torch.nn.functional's names and arguments);
conv2d and the poolings live in functional_conv and are re-exported here.
"""

from __future__ import annotations

import math
import warnings

import numpy

from disttrain import ops
from disttrain import random as _random
from disttrain.backend import get_array_module
from disttrain.dtypes import check_same_dtype
from disttrain.functional_conv import avg_pool2d, conv2d, max_pool2d  # noqa: F401 (re-exported)
from disttrain.functional_norm import (  # noqa: F401 (re-exported)
    batch_norm,
    group_norm,
    layer_norm,
    normalize,
)
from disttrain.tensor import Tensor


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


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta * input)) / beta, and input itself where beta * input > threshold.

    Example:
        >>> round(F.softplus(dt.tensor([0.0]), beta=2.0).item(), 4)
        0.3466
    """
    scaled = input if beta == 1.0 else input * beta
    smooth = -ops.LogSigmoid.apply(-scaled)  # NOTE: logaddexp(0, x): finite for every x
    if beta != 1.0:
        smooth = smooth / beta
    return ops.Where.apply(input, smooth, condition=scaled.array > threshold)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """input * sigmoid(input) (the swish of Ramachandran et al., 2017); `inplace`: as relu."""
    return input * ops.Sigmoid.apply(input)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """input where input > 0, else alpha * (exp(input) - 1); `inplace`: as relu.

    The gradient at 0 is alpha, as torch's (x <= 0 takes the exponential branch).
    """
    # NOTE: clamp first so exp never overflows where the branch is not taken: an inf there
    # would turn the zero gradient Where sends back into inf * 0 = nan.
    negative = (input.clamp(max=0.0).exp() - 1.0) * alpha
    return ops.Where.apply(input, negative, condition=input.array > 0)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0,
             inplace: bool = False) -> Tensor:
    """input clamped to [min_val, max_val]; `inplace`: as relu.

    Unlike clamp, the gradient is 0 at the bounds themselves, as torch's hardtanh.

    Example:
        >>> F.hardtanh(dt.tensor([-3.0, 0.5, 2.0])).tolist()
        [-1.0, 0.5, 1.0]
    """
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val cannot be greater than max_val, got "
                         f"min_val={min_val}, max_val={max_val}")
    x = input.array
    clipped = Tensor(get_array_module(x).clip(x, min_val, max_val))
    return ops.Where.apply(input, clipped, condition=(x > min_val) & (x < max_val))


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """min(max(input, 0), 6), as hardtanh(input, 0, 6) (gradient 0 at 0 and 6, as torch)."""
    return hardtanh(input, 0.0, 6.0)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    if approximate == "none":
        return 0.5 * input * (1.0 + ops.Erf.apply(input * (1.0 / math.sqrt(2.0))))
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (input + 0.044715 * input * input * input)
        return 0.5 * input * (1.0 + inner.tanh())
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def _softmax_dim(name: str, ndim: int, stacklevel: int) -> int:
    """torch's _get_softmax_dim: the legacy implicit dim, with its deprecation warning."""
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call "
                  "to include dim=X as an argument.", UserWarning, stacklevel=stacklevel)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
            dtype=None) -> Tensor:
    """exp(input) / sum(exp(input)) along `dim`.

    Args:
        dim: the dim to normalise over; None picks torch's legacy implicit dim (0 for 0-, 1-
            and 3-dim input, else 1) and warns as torch does.
        _stacklevel: the warning's stacklevel (torch's private argument; 3 = the caller).
        dtype: cast the input to this dtype first (e.g. dt.float64), as torch.

    Example:
        >>> F.softmax(dt.zeros(2, 2), dim=1).tolist()
        [[0.5, 0.5], [0.5, 0.5]]
    """
    if dim is None:
        dim = _softmax_dim("softmax", input.ndim, _stacklevel)
    return (input if dtype is None else input.to(dtype)).softmax(dim)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
                dtype=None) -> Tensor:
    """log(softmax(input, dim)), computed stably; `dim` and `dtype` as in softmax."""
    if dim is None:
        dim = _softmax_dim("log_softmax", input.ndim, _stacklevel)
    return (input if dtype is None else input.to(dtype)).log_softmax(dim)


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
            dtype=None) -> Tensor:
    """softmax(-input, dim); `dim` and `dtype` as in softmax."""
    if dim is None:
        dim = _softmax_dim("softmin", input.ndim, _stacklevel)
    return (-(input if dtype is None else input.to(dtype))).softmax(dim)


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
    _check_probability("dropout", p)
    if not training or p == 0.0:
        return input
    return _masked(input, p, input.shape, generator)


def _check_probability(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: dropout probability has to be between 0 and 1, but got {p}")


def _masked(input: Tensor, p: float, noise_shape: tuple, generator) -> Tensor:
    """input * mask / (1 - p), the mask drawn with shape `noise_shape` (broadcast over input)."""
    if p == 1.0:
        return input * 0.0
    xp = get_array_module(input.array)
    keep = _random.resolve(generator).random(noise_shape, dtype=numpy.float32) >= p
    mask = xp.asarray(keep.astype(input.dtype) * input.dtype.type(1.0 / (1.0 - p)))
    return input * Tensor(mask)


def _feature_dropout(input: Tensor, p: float, training: bool, generator) -> Tensor:
    """torch's feature_dropout: one draw per (sample, channel), the first two dims."""
    if not training or p == 0.0 or input.numel() == 0:
        return input
    if input.ndim < 2:
        raise RuntimeError(f"Feature dropout requires at least 2 dimensions in the input, got "
                           f"input of shape {input.shape}")
    return _masked(input, p, input.shape[:2] + (1,) * (input.ndim - 2), generator)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False,
              generator=None) -> Tensor:
    """Zeroes whole channels (input[n, c, :]) with probability p, scaling the rest by
    1 / (1 - p); arguments as dropout.

    Shape:
        (N, C, L) or unbatched (C, L); the same shape out.

    Example:
        >>> F.dropout1d(dt.ones(2, 3, 4), p=0.5, training=False).shape
        (2, 3, 4)
    """
    _check_probability("dropout1d", p)
    if input.ndim not in (2, 3):
        raise RuntimeError(
            f"dropout1d: Expected 2D or 3D input, but received a {input.ndim}D input. Note that "
            "dropout1d exists to provide channel-wise dropout on inputs with 1 spatial "
            "dimension, a channel dimension, and an optional batch dimension (i.e. 2D or 3D "
            "inputs).")
    if input.ndim == 3:
        return _feature_dropout(input, p, training, generator)
    return _feature_dropout(input.unsqueeze(0), p, training, generator).squeeze(0)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False,
              generator=None) -> Tensor:
    """Zeroes whole channels (input[n, c, :, :]) with probability p, scaling the rest by
    1 / (1 - p); arguments as dropout.

    As torch, a 3-D input is read as (N, C, L) (1-D channel dropout, with torch's warning),
    and other than 3- or 4-D inputs warn that they are deprecated.

    Shape:
        (N, C, H, W); the same shape out.

    Example:
        >>> F.dropout2d(dt.ones(2, 3, 4, 4), p=0.5, training=False).shape
        (2, 3, 4, 4)
    """
    _check_probability("dropout2d", p)
    if input.ndim not in (3, 4):
        warnings.warn(
            f"dropout2d: Received a {input.ndim}-D input to dropout2d, which is deprecated and "
            "will result in an error in a future release. To retain the behavior and silence "
            "this warning, please use dropout instead. Note that dropout2d exists to provide "
            "channel-wise dropout on inputs with 2 spatial dimensions, a channel dimension, and "
            "an optional batch dimension (i.e. 3D or 4D inputs).", UserWarning, stacklevel=2)
    if input.ndim == 3:
        warnings.warn(
            "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D "
            "dropout behavior is desired - input is interpreted as shape (N, C, L), where C is "
            "the channel dim. This behavior will change in a future release to interpret the "
            "input as one without a batch dimension, i.e. shape (C, H, W). To maintain the 1D "
            "channel-wise dropout behavior, please switch to using dropout1d instead.",
            UserWarning, stacklevel=2)
    return _feature_dropout(input, p, training, generator)


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


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot encoding: shape (*tensor.shape, num_classes), 1 at each label.

    Args:
        tensor: int64 class indices (torch's LongTensor), each in [0, num_classes).
        num_classes: -1 infers it as tensor.max() + 1.

    Example:
        >>> F.one_hot(dt.tensor([0, 2]), 3).tolist()
        [[1, 0, 0], [0, 0, 1]]
    """
    labels = tensor.array
    if labels.dtype != numpy.int64:
        raise RuntimeError(f"one_hot: expected an index tensor of dtype int64 (torch's "
                           f"LongTensor), got dtype {labels.dtype}")
    if num_classes == -1 and labels.size == 0:
        raise RuntimeError("one_hot: can not infer total number of classes from empty tensor; "
                           "pass num_classes")
    if labels.size and int(labels.min()) < 0:
        raise RuntimeError(f"one_hot: class values must be non-negative, got {int(labels.min())}")
    classes = int(labels.max()) + 1 if num_classes == -1 else num_classes
    if labels.size and int(labels.max()) >= classes:
        raise RuntimeError(f"one_hot: class values must be smaller than num_classes="
                           f"{classes}, got {int(labels.max())}")
    xp = get_array_module(labels)
    return Tensor((labels[..., None] == xp.arange(classes)).astype(numpy.int64))


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    return input.flatten(start_dim, end_dim)


def embedding(input: Tensor, weight: Tensor) -> Tensor:
    return weight[input.array]


