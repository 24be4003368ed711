"""Tensor factories with torch's names: zeros, ones, full, arange, randn, rand, randint ..."""

from __future__ import annotations

import numpy

from disttrain import backend
from disttrain import random as _random
from disttrain.dtypes import as_array, default_float
from disttrain.shapes import shape_arg
from disttrain.tensor import Tensor


def _make(array, dtype, device, requires_grad) -> Tensor:
    if dtype is not None:
        array = array.astype(numpy.dtype(dtype), copy=False)
    if device is not None and device != "cpu":
        array = backend.to_device(array, device)
    return Tensor(array, requires_grad=requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _make(numpy.zeros(shape_arg(size), dtype or default_float), None, device,
                 requires_grad)


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _make(numpy.ones(shape_arg(size), dtype or default_float), None, device,
                 requires_grad)


def empty(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if dtype is None:
        dtype = default_float if isinstance(fill_value, float) else numpy.asarray(
            fill_value).dtype if not isinstance(fill_value, int) or isinstance(
            fill_value, bool) else numpy.int64
    return _make(numpy.full(shape_arg((size,)), fill_value, dtype), None, device,
                 requires_grad)


def _like(t: Tensor, fill, dtype, requires_grad, device=None) -> Tensor:
    xp = backend.get_array_module(t.array)
    array = xp.full(t.shape, fill, dtype or t.dtype)
    if device is not None:
        array = backend.to_device(array, device)
    return Tensor(array, requires_grad=requires_grad)


def zeros_like(input: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(input, 0, dtype, requires_grad, device)


def ones_like(input: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like(input, 1, dtype, requires_grad, device)


def empty_like(input: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor shaped like `input` (zero-filled here, as `empty`)."""
    return _like(input, 0, dtype, requires_grad, device)


def full_like(input: Tensor, fill_value, dtype=None, device=None,
              requires_grad: bool = False) -> Tensor:
    return _like(input, fill_value, dtype, requires_grad, device)


def randn_like(input: Tensor, dtype=None, device=None, requires_grad: bool = False, *,
               generator=None) -> Tensor:
    """Standard normal samples shaped like `input`, with its dtype and device unless given."""
    return randn(*input.shape, generator=generator, dtype=dtype or input.dtype,
                 device=device or input.device, requires_grad=requires_grad)


def rand_like(input: Tensor, dtype=None, device=None, requires_grad: bool = False, *,
              generator=None) -> Tensor:
    """U[0, 1) samples shaped like `input`, with its dtype and device unless given."""
    return rand(*input.shape, generator=generator, dtype=dtype or input.dtype,
                device=device or input.device, requires_grad=requires_grad)


def from_numpy(ndarray: numpy.ndarray) -> Tensor:
    """A Tensor sharing memory with the numpy array `ndarray` (writes to one show in the
    other), with its dtype, as torch.from_numpy.

    Example:
        >>> a = numpy.zeros(2); t = dt.from_numpy(a); a[0] = 5; t.tolist()
        [5.0, 0.0]
    """
    if not isinstance(ndarray, numpy.ndarray):
        raise TypeError(f"from_numpy: expected np.ndarray (got {type(ndarray).__name__})")
    if ndarray.dtype.kind not in "biuf":
        raise TypeError(f"from_numpy: can't convert a numpy array of dtype {ndarray.dtype}; "
                        "the supported kinds are bool, integers and floats")
    return Tensor(ndarray)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """`data` as a Tensor, sharing memory where it can (a Tensor or a numpy array that
    already has the dtype and device), else a copy, as torch.as_tensor."""
    if isinstance(data, Tensor):
        return data.to(device, dtype)
    if isinstance(data, numpy.ndarray) and (dtype is None or numpy.dtype(dtype) == data.dtype):
        return from_numpy(data).to(device)
    return Tensor(as_array(data, dtype, device))


def arange(start, end=None, step=1, dtype=None, device=None,
           requires_grad: bool = False) -> Tensor:
    if end is None:
        start, end = 0, start
    is_float = any(isinstance(v, float) for v in (start, end, step))
    array = numpy.arange(start, end, step, dtype=dtype or (default_float if is_float
                                                            else numpy.int64))
    return _make(array, None, device, requires_grad)


def linspace(start, end, steps: int, dtype=None, device=None) -> Tensor:
    return _make(numpy.linspace(start, end, steps, dtype=dtype or default_float), None,
                 device, False)


def eye(n: int, m: int | None = None, dtype=None, device=None) -> Tensor:
    return _make(numpy.eye(n, m, dtype=dtype or default_float), None, device, False)


def randn(*size, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from `generator` (default: the one dt.manual_seed seeds)."""
    dtype = numpy.dtype(dtype or default_float)
    rng = _random.resolve(generator)
    array = rng.standard_normal(shape_arg(size), dtype=dtype if dtype.itemsize >= 4 else None)
    return _make(array, dtype, device, requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dtype = numpy.dtype(dtype or default_float)
    rng = _random.resolve(generator)
    array = rng.random(shape_arg(size), dtype=dtype if dtype.itemsize >= 4 else None)
    return _make(array, dtype, device, requires_grad)


def randint(low, high=None, size=(), generator=None, dtype=None, device=None) -> Tensor:
    if high is None:
        low, high = 0, low
    array = _random.resolve(generator).integers(low, high, shape_arg((size,)))
    return _make(array, dtype or numpy.int64, device, False)


def randperm(n: int, generator=None, dtype=None, device=None) -> Tensor:
    return _make(_random.resolve(generator).permutation(n), dtype or numpy.int64, device, False)
