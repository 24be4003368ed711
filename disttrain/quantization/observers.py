"""Observers: modules that watch tensors during calibration and pick quantization parameters
(MinMaxObserver, PerChannelMinMaxObserver, HistogramObserver), and QConfig, the pair of
observer factories prepare() uses. Imports numpy, disttrain.nn and .qtypes only."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy

from disttrain.backend import asnumpy
from disttrain.nn.module import Module
from disttrain.quantization.qtypes import QDType, calculate_qparams, qint8, quint8
from disttrain.tensor import Tensor


def _host(x):
    return asnumpy(x.array if isinstance(x, Tensor) else x)


class MinMaxObserver(Module):
    """Records the running minimum and maximum of every tensor it sees (per tensor).

    Args:
        dtype: disttrain.quint8 (activations, asymmetric) or disttrain.qint8.
        symmetric: a zero point at the middle of the range (qint8: 0) instead of fitted.

    Example:
        >>> obs = MinMaxObserver()
        >>> _ = obs(Tensor(numpy.array([-1.0, 1.55], numpy.float32)))
        >>> [round(float(v), 6) for v in obs.calculate_qparams()]
        [0.01, 100.0]
    """

    def __init__(self, dtype: QDType = quint8, symmetric: bool = False):
        super().__init__()
        self.dtype, self.symmetric = dtype, symmetric
        self.register_buffer("min_val", numpy.array(numpy.inf, numpy.float32))
        self.register_buffer("max_val", numpy.array(-numpy.inf, numpy.float32))

    def forward(self, x):
        values = _host(x)
        if values.size:
            self.min_val.array[...] = min(float(self.min_val.array), float(values.min()))
            self.max_val.array[...] = max(float(self.max_val.array), float(values.max()))
        return x

    def calculate_qparams(self) -> tuple:
        """(scale, zero_point) for the range seen; (1.0, zero point of 0.0) before any data,
        as torch does (a model converted only to load a state_dict into)."""
        lo, hi = float(self.min_val.array), float(self.max_val.array)
        if lo > hi:
            lo = hi = 0.0
        return calculate_qparams(lo, hi, self.dtype, self.symmetric)

    def extra_repr(self) -> str:
        return f"min_val={float(self.min_val.array)}, max_val={float(self.max_val.array)}"


class PerChannelMinMaxObserver(MinMaxObserver):
    """Minimum and maximum per slice along `ch_axis` (weights: one scale per output channel).

    Args:
        ch_axis: the channel axis (0: output channels of Linear/Conv2d weights).
        dtype: disttrain.qint8 (default) or disttrain.quint8.
        symmetric: zero point 0 for qint8 (default True, what the int8 kernels expect).
    """

    def __init__(self, ch_axis: int = 0, dtype: QDType = qint8, symmetric: bool = True):
        super().__init__(dtype, symmetric)
        self.ch_axis = ch_axis

    def forward(self, x):
        values = numpy.moveaxis(_host(x), self.ch_axis, 0)
        values = values.reshape(values.shape[0], -1)
        lo, hi = values.min(axis=1), values.max(axis=1)
        if self.min_val.ndim:
            lo, hi = numpy.minimum(lo, self.min_val.array), numpy.maximum(hi, self.max_val.array)
        self.min_val, self.max_val = Tensor(lo), Tensor(hi)
        return x

    def calculate_qparams(self) -> tuple:
        return calculate_qparams(self.min_val.array, self.max_val.array, self.dtype,
                                 self.symmetric)


class HistogramObserver(MinMaxObserver):
    """Keeps a histogram of the values seen and picks the range [lo, hi] that minimises the
    expected squared quantization error: rounding noise (count * step**2 / 12) inside the range
    plus the clipping error of the values outside it.

    NOTE: the default for activations (as torch's x86 qconfig): min-max lets one outlier in a
    calibration batch stretch the step for every value; the L2-optimal range clips it.

    Args:
        bins: histogram resolution (the range searched is over bin edges).
        dtype: disttrain.quint8 (default).
    """

    def __init__(self, bins: int = 2048, dtype: QDType = quint8, symmetric: bool = False):
        super().__init__(dtype, symmetric)
        self.bins = bins
        self.register_buffer("histogram", numpy.zeros(bins, numpy.float64))

    def forward(self, x):
        values = _host(x).ravel().astype(numpy.float64)
        if not values.size:
            return x
        old_lo, old_hi = float(self.min_val.array), float(self.max_val.array)
        super().forward(values)
        lo, hi = float(self.min_val.array), float(self.max_val.array)
        counts = self.histogram.array
        if old_lo <= old_hi and (lo, hi) != (old_lo, old_hi):
            # NOTE: the range grew: move the old counts to the new bins at their centres
            centres = old_lo + (numpy.arange(self.bins) + 0.5) * (old_hi - old_lo) / self.bins
            counts = numpy.histogram(centres, self.bins, (lo, hi), weights=counts)[0]
        self.histogram.array[...] = counts + numpy.histogram(values, self.bins, (lo, hi))[0]
        return x

    def calculate_qparams(self) -> tuple:
        lo, hi = float(self.min_val.array), float(self.max_val.array)
        if lo >= hi:
            return super().calculate_qparams()
        lo, hi = _l2_optimal_range(self.histogram.array, lo, hi, self.dtype.qmax - self.dtype.qmin)
        return calculate_qparams(lo, hi, self.dtype, self.symmetric)


def _l2_optimal_range(counts, lo: float, hi: float, levels: int, stride: int = 8) -> tuple:
    """The (lo, hi) among bin edges (every `stride`-th, plus the ends) with the smallest
    rounding + clipping squared error for a histogram of `counts` over [lo, hi]."""
    edges = numpy.linspace(lo, hi, len(counts) + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    cand = numpy.unique(numpy.r_[numpy.arange(0, len(counts) + 1, stride), len(counts)])
    # prefix sums of count, count * x and count * x**2 give each tail's error in closed form
    s0, s1, s2 = (numpy.r_[0.0, numpy.cumsum(counts * centres ** p)] for p in (0, 1, 2))
    e = edges[cand]
    below = e ** 2 * s0[cand] - 2 * e * s1[cand] + s2[cand]  # values under edge e clip to e
    above = (e ** 2 * (s0[-1] - s0[cand]) - 2 * e * (s1[-1] - s1[cand]) + (s2[-1] - s2[cand]))
    inside = s0[cand][None, :] - s0[cand][:, None]  # [i, j]: counts between cand[i], cand[j]
    step = (e[None, :] - e[:, None]) / levels
    error = below[:, None] + above[None, :] + inside * step ** 2 / 12
    error[step <= 0] = numpy.inf
    i, j = numpy.unravel_index(numpy.argmin(error), error.shape)
    return float(e[i]), float(e[j])


class QConfig(NamedTuple):
    """What prepare() observes with: `activation` and `weight` are callables returning a new
    observer (a class, or functools.partial of one with arguments).

    Example:
        >>> import functools
        >>> qc = QConfig(activation=MinMaxObserver,
        ...              weight=functools.partial(PerChannelMinMaxObserver, ch_axis=0))
    """

    activation: Callable[[], Module]
    weight: Callable[[], Module]


# NOTE: uint8 asymmetric activations (a ReLU output uses all 256 levels, zero point 0) with the
# L2-optimal histogram range, and int8 symmetric per-output-channel weights (zero point 0, so
# no cross terms in the GEMM): torch's x86/fbgemm default, which ONNX Runtime runs as u8s8.
default_qconfig = QConfig(activation=HistogramObserver, weight=PerChannelMinMaxObserver)
minmax_qconfig = QConfig(activation=MinMaxObserver, weight=PerChannelMinMaxObserver)
