"""Resampling primitives: constant padding (with cropping), and a sparse linear map along one
axis, which is every separable resampling here (non-constant padding, nearest and bilinear
interpolation, adaptive average pooling), each a fixed table of source positions and weights.
Also the pure table builders the functionals use (numpy on the host, small: one row per output
position)."""

from __future__ import annotations

import numpy

from disttrain.autograd import Function
from disttrain.backend import get_array_module


def _crop_and_pad(x, pads, value):
    """`x` cropped where a pad is negative, then padded with `value` where it is positive;
    pads = ((lo, hi) per dim of x)."""
    crop = tuple(slice(max(-lo, 0), n - max(-hi, 0)) for n, (lo, hi) in zip(x.shape, pads))
    x = x[crop]
    if not any(lo > 0 or hi > 0 for lo, hi in pads):
        return x  # NOTE: a view; the backward of a plain pad is this crop
    # NOTE: full + one slice assignment is ~2.5x faster than xp.pad (numpy 2.x)
    out = get_array_module(x).full(
        tuple(n + max(lo, 0) + max(hi, 0) for n, (lo, hi) in zip(x.shape, pads)), value, x.dtype)
    out[tuple(slice(max(lo, 0), max(lo, 0) + n) for n, (lo, _) in zip(x.shape, pads))] = x
    return out


class ConstantPad(Function):
    # NOTE: one fill and copy instead of a cat of constant blocks; the backward is the same op
    # with the pads negated (a crop of the gradient where the input was padded, zeros where
    # cropped).
    def forward(self, x, *, pads, value):
        self.save(pads)
        return _crop_and_pad(x, pads, value)

    def backward(self, grad):
        (pads,) = self.saved
        return _crop_and_pad(grad, tuple((-lo, -hi) for lo, hi in pads), 0)


def _apply_table(x, axis, index, weight):
    """y[..., o, ...] = sum_k x[..., index[o, k], ...] * weight[o, k] along `axis`; an index
    equal to x.shape[axis] reads zeros (a missing term: rows have different lengths)."""
    xp = get_array_module(x)
    if int(index.max(initial=0)) == x.shape[axis]:  # NOTE: a zero slot, not weight 0 * inf
        zero_shape = x.shape[:axis] + (1,) + x.shape[axis + 1:]
        x = xp.concatenate([x, xp.zeros(zero_shape, x.dtype)], axis=axis)
    index = xp.asarray(index)
    shape = (-1,) + (1,) * (x.ndim - 1 - axis)
    out = None
    for k in range(index.shape[1]):
        term = xp.take(x, index[:, k], axis=axis)
        if weight is not None:
            term *= xp.asarray(weight[:, k], dtype=x.dtype).reshape(shape)
        out = term if out is None else out.__iadd__(term)
    return out


class AxisMap(Function):
    # NOTE: one primitive for all separable resampling: gathers of whole slices (xp.take) and
    # a multiply-add per table column, no per-pixel Python; the backward is the transposed
    # table, so it is gathers too (numpy's scatter-add, add.at, is ~10x slower).
    def forward(self, x, *, axis, table, transposed):
        self.save(axis, transposed)
        return _apply_table(x, axis, *table)

    def backward(self, grad):
        axis, transposed = self.saved
        return _apply_table(grad, axis, *transposed)


def tables(rows, cols, weights, n_out: int, n_in: int) -> tuple[tuple, tuple]:
    """((index, weight), (index, weight)) of the map out[rows[j]] += w[j] * in[cols[j]] and
    of its transpose, each (n, K) with K the most terms of one row; missing terms point one
    past the end (see _apply_table); weight is None when every weight is 1."""
    rows, cols = numpy.asarray(rows, numpy.int64), numpy.asarray(cols, numpy.int64)
    weights = None if weights is None else numpy.asarray(weights, numpy.float64)
    return (_table(rows, cols, weights, n_out, n_in),
            _table(cols, rows, weights, n_in, n_out))


def _table(rows, cols, weights, n_rows, n_cols):
    order = numpy.argsort(rows, kind="stable")
    rows, cols = rows[order], cols[order]
    counts = numpy.bincount(rows, minlength=n_rows)
    rank = numpy.arange(len(rows)) - (numpy.cumsum(counts) - counts)[rows]
    index = numpy.full((n_rows, max(int(counts.max(initial=0)), 1)), n_cols, numpy.int64)
    index[rows, rank] = cols
    if weights is None:
        return index, None
    weight = numpy.zeros(index.shape)
    weight[rows, rank] = weights[order]
    return index, weight
