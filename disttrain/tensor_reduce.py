"""Tensor's reductions (sum, mean, var, std, max/min, amax, argmax/argmin) as a mixin of
disttrain.tensor.Tensor. Imports backend, dtypes, ops and shapes."""

from __future__ import annotations

from collections import namedtuple
from typing import TYPE_CHECKING

import numpy

from disttrain import ops
from disttrain.backend import get_array_module
from disttrain.dtypes import int64
from disttrain.shapes import normalize_axes, normalize_dim

if TYPE_CHECKING:
    from disttrain.tensor import Tensor

ReturnTypes = namedtuple("ReturnTypes", ["values", "indices"])  # torch.return_types


class ReductionMethods:
    """Reductions over all or some dims; `max(dim)`/`min(dim)` return (values, indices)."""

    __slots__ = ()

    def sum(self, dim=None, keepdim: bool = False, *, axis=None, keepdims=None) -> Tensor:
        axes = normalize_axes(dim if axis is None else axis, self.ndim, "sum")
        keep = keepdim if keepdims is None else keepdims
        x = self if self.dtype.kind in "fc" or self.dtype == int64 else self.long()
        return ops.Sum.apply(x, axis=axes, keepdims=keep)

    def mean(self, dim=None, keepdim: bool = False, *, axis=None, keepdims=None) -> Tensor:
        axes = normalize_axes(dim if axis is None else axis, self.ndim, "mean")
        if self.dtype.kind not in "fc":
            raise TypeError(f"mean: input dtype should be floating point, got {self.dtype}")
        count = int(numpy.prod([self.shape[a] for a in axes]))
        return self.sum(axes, keepdim if keepdims is None else keepdims) * (1.0 / max(count, 1))

    def var(self, dim=None, unbiased: bool = True, keepdim: bool = False, *,
            correction: int | None = None) -> Tensor:
        axes = normalize_axes(dim, self.ndim, "var")
        count = int(numpy.prod([self.shape[a] for a in axes]))
        ddof = correction if correction is not None else int(unbiased)
        centred = self - self.mean(axes, keepdim=True)
        return (centred * centred).sum(axes, keepdim) * (1.0 / max(count - ddof, 1))

    def std(self, dim=None, unbiased: bool = True, keepdim: bool = False, *,
            correction: int | None = None) -> Tensor:
        return self.var(dim, unbiased, keepdim, correction=correction).sqrt()

    def _extreme(self, dim, keepdim, kind: str):
        if dim is None:  # NOTE: ties share the gradient, as torch's full reduction does
            return ops.Max.apply(self, axis=None, keepdims=False) if kind == "max" else \
                -ops.Max.apply(-self, axis=None, keepdims=False)
        d = normalize_dim(dim, self.ndim, kind)
        indices = (self.argmax if kind == "max" else self.argmin)(d, keepdim=True)
        values = self.gather(d, indices)  # NOTE: the gradient goes to the returned index only
        if not keepdim:
            values, indices = values.squeeze(d), indices.squeeze(d)
        return ReturnTypes(values, indices)

    def max(self, dim: int | None = None, keepdim: bool = False):
        return self._extreme(dim, keepdim, "max")

    def min(self, dim: int | None = None, keepdim: bool = False):
        return self._extreme(dim, keepdim, "min")

    def amax(self, dim=None, keepdim: bool = False) -> Tensor:
        return ops.Max.apply(self, axis=normalize_axes(dim, self.ndim, "amax"), keepdims=keepdim)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        return self._arg(dim, keepdim, "argmax")

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        return self._arg(dim, keepdim, "argmin")

    def _arg(self, dim, keepdim, name):
        xp = get_array_module(self.array)
        if dim is None:
            return self._make(xp.asarray(getattr(self.array, name)(), dtype=int64))
        d = normalize_dim(dim, self.ndim, name)
        out = getattr(self.array, name)(axis=d)
        return self._make((xp.expand_dims(out, d) if keepdim else out).astype(int64))
