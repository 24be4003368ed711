"""Parameter initialisers with torch.nn.init's names; each takes an explicit `generator=`.
Samples are drawn on the host with numpy, then copied to the tensor's device."""

from __future__ import annotations

import math
import warnings

import numpy

from disttrain import random as _random
from disttrain.backend import get_array_module
from disttrain.tensor import Tensor

_GAINS = {"linear": 1.0, "identity": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0,
          "sigmoid": 1.0, "tanh": 5.0 / 3, "relu": math.sqrt(2.0), "selu": 3.0 / 4}


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a non-linearity, as torch.nn.init.calculate_gain."""
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity not in _GAINS:
        raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}; expected "
                         f"one of {sorted(_GAINS) + ['leaky_relu']}")
    return _GAINS[nonlinearity]


def calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight (out, in, *kernel), as torch computes them."""
    if tensor.ndim < 2:
        raise ValueError(f"init: fan in and fan out can not be computed for a tensor with fewer "
                         f"than 2 dimensions (shape {tensor.shape})")
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


_calculate_fan_in_and_fan_out = calculate_fan_in_and_fan_out  # torch's name, for ported scripts


def _fill(tensor: Tensor, values) -> Tensor:
    xp = get_array_module(tensor.array)
    tensor.array[...] = xp.asarray(values, dtype=tensor.dtype)
    return tensor


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator=None) -> Tensor:
    return _fill(tensor, _random.resolve(generator).uniform(a, b, tensor.shape))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
    return _fill(tensor, _random.resolve(generator).normal(mean, std, tensor.shape))


def constant_(tensor: Tensor, val: float) -> Tensor:
    tensor.array[...] = val
    return tensor


def zeros_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 0)


def ones_(tensor: Tensor) -> Tensor:
    return constant_(tensor, 1)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def _kaiming_std(tensor, a, mode, nonlinearity) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    if fan == 0:
        raise ValueError(f"kaiming init: cannot initialise a tensor with zero {mode} "
                         f"(shape {tensor.shape})")
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", generator=None) -> Tensor:
    """U(-b, b) with b = gain * sqrt(3 / fan) (He et al., 2015)."""
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", generator=None) -> Tensor:
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity), generator)


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                  b: float = 2.0, generator=None) -> Tensor:
    """Fills `tensor` from N(mean, std) truncated to [a, b] (a and b are absolute bounds, not
    multiples of std), by inverse-CDF sampling as torch does.

    Args:
        mean, std: of the normal distribution before truncation.
        a, b: the lowest and highest value drawn.
        generator: numpy Generator (default: the one dt.manual_seed seeds).

    Example:
        >>> w = nn.init.trunc_normal_(dt.zeros(100), std=0.02, a=-0.04, b=0.04)
        >>> w.abs().max().item() <= 0.04
        True
    """
    if mean < a - 2 * std or mean > b + 2 * std:
        warnings.warn("mean is more than 2 std from [a, b] in nn.init.trunc_normal_. The "
                      "distribution of values may be incorrect.", UserWarning, stacklevel=2)
    low, high = _normal_cdf((a - mean) / std), _normal_cdf((b - mean) / std)
    uniform = _random.resolve(generator).uniform(low, high, tensor.shape)
    # NOTE: keep the probability inside (0, 1): its inverse CDF is infinite at the ends
    uniform = numpy.clip(uniform, numpy.finfo(numpy.float64).tiny, 1.0 - 2.0 ** -53)
    return _fill(tensor, numpy.clip(_normal_ppf(uniform) * std + mean, a, b))


def _normal_cdf(x: float) -> float:
    return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0


# NOTE: Acklam's rational approximation of the standard normal inverse CDF (relative error
# < 1.15e-9 over (0, 1)): numpy has no erfinv, and this is far finer than float32 needs.
_PPF_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
          1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
_PPF_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
          6.680131188771972e01, -1.328068155288572e01, 1.0)
_PPF_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
          -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
_PPF_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
          3.754408661907416e00, 1.0)
_PPF_LOW = 0.02425


def _normal_ppf(p: numpy.ndarray) -> numpy.ndarray:
    """The standard normal inverse CDF of float64 probabilities in (0, 1)."""
    central = p - 0.5
    r = central * central
    out = numpy.polyval(_PPF_A, r) * central / numpy.polyval(_PPF_B, r)
    tail = numpy.minimum(p, 1.0 - p)
    in_tail = tail < _PPF_LOW
    q = numpy.sqrt(-2.0 * numpy.log(tail[in_tail]))
    tail_value = numpy.polyval(_PPF_C, q) / numpy.polyval(_PPF_D, q)
    out[in_tail] = numpy.where(p[in_tail] < 0.5, tail_value, -tail_value)
    return out


def orthogonal_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """Fills `tensor` (viewed as rows = shape[0] by the rest) with a (semi-)orthogonal matrix
    times `gain`: orthonormal rows if rows <= cols, else orthonormal columns (Saxe et al.).

    - Paper: https://arxiv.org/abs/1312.6120

    Example:
        >>> w = nn.init.orthogonal_(dt.zeros(3, 5)).numpy()
        >>> bool(numpy.allclose(w @ w.T, numpy.eye(3), atol=1e-6))
        True
    """
    if tensor.ndim < 2:
        raise ValueError(f"orthogonal_: only tensors with 2 or more dimensions are supported, "
                         f"got shape {tensor.shape}")
    if tensor.numel() == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    flat = _random.resolve(generator).normal(0.0, 1.0, (rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = numpy.linalg.qr(flat)
    q *= numpy.sign(numpy.diag(r))  # NOTE: makes Q uniformly (Haar) distributed, as torch
    if rows < cols:
        q = q.T
    return _fill(tensor, gain * q.reshape(tensor.shape))
