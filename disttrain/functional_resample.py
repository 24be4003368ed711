"""pad, interpolate and adaptive pooling as torch.nn.functional has them (re-exported there):
argument checks, torch's index and weight rules as small host tables, and the maths in the
ops.resample primitives (ConstantPad, AxisMap), so every path has a gradient."""

from __future__ import annotations

import functools
import math
import numbers

import numpy

from disttrain import ops
from disttrain.backend import get_array_module
from disttrain.functional_conv import avg_pool2d, max_pool2d
from disttrain.ops.resample import tables
from disttrain.tensor import Tensor

_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def pad(input: Tensor, pad, mode: str = "constant", value: float | None = None) -> Tensor:
    """Pads (or, with negative pads, crops) the last len(pad) // 2 dims, last dim first.

    Args:
        pad: (left, right) for the last dim, then (top, bottom) for the one before, ...
        mode: "constant" (with `value`, default 0), "reflect" (mirror without the edge),
            "replicate" (repeat the edge) or "circular" (wrap around); the last three pad
            1 to 3 trailing dims of an input with at most 2 more (as torch).

    Example:
        >>> F.pad(dt.ones(1, 2, 3), (1, 1), mode="reflect").shape
        (1, 2, 5)
    """
    pairs = _pad_pairs(input, pad)
    if mode == "constant":
        full = ((0, 0),) * (input.ndim - len(pairs)) + tuple(reversed(pairs))
        for axis, (lo, hi) in enumerate(full):
            if input.shape[axis] + lo + hi < 0:
                raise RuntimeError(f"pad: padding {tuple(pad)} makes dimension {axis} of input "
                                   f"{input.shape} negative ({input.shape[axis] + lo + hi})")
        return ops.ConstantPad.apply(input, pads=full, value=0 if value is None else value)
    if mode not in _PAD_MODES:
        raise NotImplementedError(f"pad: unrecognised padding mode {mode!r}; expected one of "
                                  f"{_PAD_MODES}")
    if value is not None and value != 0:
        raise RuntimeError(f'pad: padding mode "{mode}" doesn\'t take in value argument, got '
                           f"value={value}")
    if not 1 <= len(pairs) <= 3 or input.ndim not in (len(pairs) + 1, len(pairs) + 2):
        raise NotImplementedError(
            f"pad: padding size {2 * len(pairs)} is not supported for {input.ndim}D input with "
            f"mode={mode!r}; non-constant padding pads the last 1, 2 or 3 dims (2, 4 or 6 "
            "values) of an input with 1 or 2 more dims")
    out = input
    for i, (lo, hi) in enumerate(pairs):
        axis = input.ndim - 1 - i
        index = _pad_index(mode, input.shape[axis], lo, hi, axis, input.shape, tuple(pad))
        if not (lo == hi == 0):
            out = _axis_map(out, axis, _index_tables(index, input.shape[axis]))
    return out


def _pad_pairs(input: Tensor, pad) -> list[tuple[int, int]]:
    if not all(isinstance(p, numbers.Integral) for p in pad):
        raise TypeError(f"pad: pad must be a tuple of ints, got {tuple(pad)}")
    if len(pad) % 2:
        raise ValueError(f"pad: padding length must be divisible by 2, got {len(pad)} ({pad})")
    if len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: padding length should be less than or equal to two times the "
                         f"input dimension but got padding length {len(pad)} and input of "
                         f"dimension {input.ndim}")
    return [(int(pad[i]), int(pad[i + 1])) for i in range(0, len(pad), 2)]


@functools.lru_cache(maxsize=256)
def _pad_index(mode, size, lo, hi, axis, shape, pad) -> numpy.ndarray:
    """For each output position along the axis, the input position it copies."""
    if mode == "reflect" and (lo >= size or hi >= size):
        raise RuntimeError(f"pad: padding size should be less than the corresponding input "
                           f"dimension, but got: padding ({lo}, {hi}) at dimension {axis} of "
                           f"input {shape} (mode='reflect')")
    position = numpy.arange(size + lo + hi) - lo
    if size + lo + hi <= 0:
        raise RuntimeError(f"pad: negative padding {pad} leaves dimension {axis} of input "
                           f"{shape} empty")
    if mode == "reflect":
        return numpy.abs(size - 1 - numpy.abs(position - (size - 1)))
    if mode == "replicate":
        return numpy.clip(position, 0, size - 1)
    start, kept = max(-lo, 0), size - max(-lo, 0) - max(-hi, 0)  # circular: crop, then wrap
    if max(lo, hi) > kept:
        raise RuntimeError(f"pad: padding {pad} causes wrapping around more than once "
                           f"(dimension {axis} of input {shape}, mode='circular')")
    return start + (numpy.arange(size + lo + hi) - max(lo, 0)) % kept


@functools.lru_cache(maxsize=256)
def _index_tables_cached(index_bytes, n_in):
    index = numpy.frombuffer(index_bytes, numpy.int64)
    return tables(numpy.arange(len(index)), index, None, len(index), n_in)


def _index_tables(index, n_in):
    return _index_tables_cached(numpy.asarray(index, numpy.int64).tobytes(), n_in)


def _axis_map(x: Tensor, axis: int, map_tables) -> Tensor:
    table, transposed = map_tables
    return ops.AxisMap.apply(x, axis=axis, table=table, transposed=transposed)


# ---- interpolate

_MODES = ("nearest", "linear", "bilinear", "area")


def interpolate(input: Tensor, size=None, scale_factor=None, mode: str = "nearest",
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                antialias: bool = False) -> Tensor:
    """Resizes the spatial dims of (N, C, W) or (N, C, H, W), as torch.nn.functional.interpolate.

    Args:
        size / scale_factor: the output size, or its ratio to the input (exactly one).
        mode: "nearest" (source floor(dst * in / out), torch's legacy rule), "linear" (3-D),
            "bilinear" (4-D) or "area" (4-D, adaptive average pooling).
        align_corners: linear modes only; corner pixels' centres line up (default False).
        recompute_scale_factor: True computes the source positions from the output size
            rather than from `scale_factor` (they differ when in * scale is not an integer).

    Example:
        >>> F.interpolate(dt.ones(1, 3, 4, 4), scale_factor=2, mode="bilinear").shape
        (1, 3, 8, 8)
    """
    align_corners = _check_interpolate(input, mode, align_corners, antialias)
    sizes, scales = _output_sizes(input, size, scale_factor, recompute_scale_factor)
    if mode == "area":
        return adaptive_avg_pool2d(input, tuple(sizes))
    out = input
    for i in reversed(range(input.ndim - 2)):  # NOTE: last dim first, as torch's kernels sum
        axis, n_in = i + 2, input.shape[i + 2]
        map_tables = _interp_tables(mode, n_in, sizes[i], scales[i], align_corners,
                                    numpy.dtype(input.dtype).str)
        if map_tables is not None:
            out = _axis_map(out, axis, map_tables)
    return out


def _check_interpolate(input, mode, align_corners, antialias) -> bool:
    if mode in ("nearest", "nearest-exact", "area") and align_corners is not None:
        raise ValueError("interpolate: align_corners option can only be set with the "
                         f"interpolating modes: linear | bilinear, got mode={mode!r}")
    if mode not in _MODES:
        raise NotImplementedError(f"interpolate: mode {mode!r} is not supported; disttrain "
                                  f"has {_MODES}")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported by disttrain")
    if mode != "nearest":
        _check_float(f"interpolate(mode={mode!r})", input)
    wanted = {"linear": (3,), "bilinear": (4,), "area": (4,)}.get(mode, (3, 4))
    if input.ndim not in wanted:
        raise NotImplementedError(f"interpolate: got {input.ndim}D input, but mode {mode!r} "
                                  f"needs {' or '.join(f'{d}D' for d in wanted)} input "
                                  f"(N, C, ...); got shape {input.shape}")
    return bool(align_corners)


def _output_sizes(input, size, scale_factor, recompute):
    dims, spatial = input.ndim - 2, list(input.shape[2:])
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: exactly one of size or scale_factor should be defined, "
                         f"got size={size}, scale_factor={scale_factor}")
    if size is not None:
        if recompute:
            raise ValueError("interpolate: recompute_scale_factor is not meaningful with an "
                             "explicit size.")
        sizes = list(size) if isinstance(size, (list, tuple)) else [size] * dims
        if len(sizes) != dims:
            raise ValueError(f"interpolate: input with spatial dimensions of {spatial} and "
                             f"output size of {size} have different numbers of dimensions")
        if not all(isinstance(s, numbers.Integral) for s in sizes):
            raise TypeError(f"interpolate: size must be ints, got {size}")
        return [int(s) for s in sizes], [None] * dims
    scales = (list(scale_factor) if isinstance(scale_factor, (list, tuple))
              else [scale_factor] * dims)
    if len(scales) != dims:
        raise ValueError(f"interpolate: input with spatial dimensions of {spatial} and "
                         f"scale_factor of shape {scale_factor} have different numbers of "
                         "dimensions")
    sizes = [math.floor(float(n) * float(s)) for n, s in zip(spatial, scales)]
    if any(s <= 0 for s in sizes):
        raise ValueError(f"interpolate: output size {sizes} must be positive (input spatial "
                         f"size {spatial}, scale_factor {scale_factor})")
    return sizes, ([None] * dims if recompute else [float(s) for s in scales])


@functools.lru_cache(maxsize=256)
def _interp_tables(mode, n_in, n_out, scale, align_corners, dtype):
    """AxisMap tables of one axis (None when it is the identity), with torch's arithmetic."""
    outputs = numpy.arange(n_out)
    if mode == "nearest":
        source = _nearest_source(n_in, n_out, scale, numpy.dtype(dtype))
        if n_out == n_in and (source == outputs).all():
            return None
        return tables(outputs, source, None, n_out, n_in)
    if n_out == n_in:
        return None  # NOTE: linear modes copy here, whatever the scale factor says (torch)
    source, weight = _linear_source(n_in, n_out, scale, align_corners, numpy.dtype(dtype))
    rows = numpy.concatenate([outputs, outputs])
    return tables(rows, source.ravel(), weight.ravel(), n_out, n_in)


def _nearest_source(n_in, n_out, scale, dtype):
    """floor(dst * in / out) (or dst / scale_factor), as torch: in the input's float type,
    rounded to float32 before the floor."""
    opmath = numpy.float64 if dtype == numpy.float64 else numpy.float32
    ratio = opmath(1.0 / scale) if scale else opmath(n_in) / opmath(n_out)
    real = (ratio * numpy.arange(n_out).astype(opmath)).astype(numpy.float32)
    return numpy.minimum(numpy.floor(real).astype(numpy.int64), n_in - 1)


def _linear_source(n_in, n_out, scale, align_corners, dtype):
    """((i0, i1), (lambda0, lambda1)) rows, as torch's compute_source_index_and_lambda."""
    opmath = numpy.float64 if dtype == numpy.float64 else numpy.float32
    if align_corners:
        ratio = opmath(n_in - 1) / opmath(n_out - 1) if n_out > 1 else opmath(0)
        real = opmath(ratio) * numpy.arange(n_out).astype(opmath)
    else:
        ratio = opmath(1.0 / scale) if scale else opmath(n_in) / opmath(n_out)
        real = ratio * (numpy.arange(n_out).astype(opmath) + opmath(0.5)) - opmath(0.5)
        real = numpy.maximum(real, opmath(0))
    i0 = numpy.minimum(numpy.floor(real.astype(numpy.float32)).astype(numpy.int64), n_in - 1)
    lambda1 = numpy.clip(real - i0.astype(opmath), 0, 1).astype(opmath)
    i1 = i0 + (i0 < n_in - 1)
    return numpy.stack([i0, i1]), numpy.stack([opmath(1) - lambda1, lambda1])


# ---- adaptive pooling


def _check_float(op: str, input: Tensor) -> None:
    if input.dtype.kind != "f":
        raise NotImplementedError(f"{op}: not implemented for dtype {input.dtype} (as in torch);"
                                  f" convert the input with .float()")


def _adaptive_geometry(op: str, input: Tensor, output_size) -> tuple[int, int]:
    _check_float(op, input)
    if input.ndim not in (3, 4) or 0 in input.shape[-2:]:
        raise ValueError(f"{op}: expected a 3-D or 4-D input (N, C, H, W) with non-zero H and "
                         f"W, got shape {input.shape}")
    sizes = (output_size, output_size) if not isinstance(output_size, (tuple, list)) \
        else tuple(output_size)
    if len(sizes) != 2:
        raise ValueError(f"{op}: output_size must be an int or 2 values, got {output_size}")
    sizes = tuple(n if s is None else s for s, n in zip(sizes, input.shape[-2:]))
    if not all(isinstance(s, numbers.Integral) and s > 0 for s in sizes):
        raise ValueError(f"{op}: output_size must be positive ints (or None), got "
                         f"{output_size}")
    return int(sizes[0]), int(sizes[1])


def _bins(n_in: int, n_out: int) -> list[tuple[int, int]]:
    """torch's adaptive bins: [floor(i * in / out), ceil((i + 1) * in / out))."""
    return [(i * n_in // n_out, -(-(i + 1) * n_in // n_out)) for i in range(n_out)]


@functools.lru_cache(maxsize=256)
def _average_tables(n_in, n_out):
    rows, cols, weights = [], [], []
    for i, (start, end) in enumerate(_bins(n_in, n_out)):
        rows += [i] * (end - start)
        cols += range(start, end)
        weights += [1.0 / (end - start)] * (end - start)
    return tables(rows, cols, weights, n_out, n_in)


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """Mean over torch's adaptive bins, so any (H, W) gives `output_size`.

    Args:
        output_size: an int, or (OH, OW) where None keeps that input size.

    Example:
        >>> F.adaptive_avg_pool2d(dt.ones(2, 8, 7, 7), (1, 1)).shape
        (2, 8, 1, 1)
    """
    (oh, ow), (h, w) = _adaptive_geometry("adaptive_avg_pool2d", input, output_size), \
        input.shape[-2:]
    if oh == ow == 1:  # NOTE: the global average of ResNet-style heads: one reduction
        return input.mean((-2, -1), keepdim=True)
    if h % oh == 0 and w % ow == 0:
        return avg_pool2d(input, (h // oh, w // ow))
    out = input
    for axis, n_in, n_out in ((-1, w, ow), (-2, h, oh)):
        if n_in != n_out:
            out = _axis_map(out, input.ndim + axis, _average_tables(n_in, n_out))
    return out


def adaptive_max_pool2d(input: Tensor, output_size, return_indices: bool = False):
    """Max over torch's adaptive bins; with return_indices, also the flat (h * W + w) index of
    each maximum (the first in row-major order, as torch).

    Example:
        >>> F.adaptive_max_pool2d(dt.randn(2, 8, 7, 7), 3).shape
        (2, 8, 3, 3)
    """
    (oh, ow), (h, w) = _adaptive_geometry("adaptive_max_pool2d", input, output_size), \
        input.shape[-2:]
    if not return_indices and h % oh == 0 and w % ow == 0:
        return max_pool2d(input, (h // oh, w // ow))
    indices = _argmax_indices(input.array, _bins(h, oh), _bins(w, ow))
    flat = input.reshape(*input.shape[:-2], h * w)
    values = flat.gather(-1, Tensor(indices.reshape(*indices.shape[:-2], oh * ow)))
    values = values.reshape(*indices.shape)
    return (values, Tensor(indices)) if return_indices else values


def _argmax_indices(x, row_bins, col_bins):
    """Flat index of the first maximum of each bin: the first maximum of each row's column
    bin, then the first row holding the largest of those (row-major first overall)."""
    xp = get_array_module(x)
    col_index = xp.stack([x[..., s:e].argmax(-1) + s for s, e in col_bins], axis=-1)
    col_max = xp.take_along_axis(x, col_index, -1)
    out = []
    for s, e in row_bins:
        rows = col_max[..., s:e, :].argmax(-2)[..., None, :] + s
        cols = xp.take_along_axis(col_index, rows, -2)
        out.append(rows * x.shape[-1] + cols)
    return xp.concatenate(out, axis=-2).astype(xp.int64)
