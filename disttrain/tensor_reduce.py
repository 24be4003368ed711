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
TopK = namedtuple("topk", ["values", "indices"])  # NOTE: torch.return_types.topk's name
Sort = namedtuple("sort", ["values", "indices"])


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

    def max(self, dim: int | Tensor | None = None, keepdim: bool = False):
        """The largest element; with `dim`, (values, indices) along it; with a Tensor, the
        element-wise maximum (torch.max(input, other) is torch.maximum)."""
        if isinstance(dim, ReductionMethods):
            return self.maximum(dim)
        return self._extreme(dim, keepdim, "max")

    def min(self, dim: int | Tensor | None = None, keepdim: bool = False):
        """The smallest element; with `dim`, (values, indices); with a Tensor, minimum."""
        if isinstance(dim, ReductionMethods):
            return self.minimum(dim)
        return self._extreme(dim, keepdim, "min")

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
        """The k largest (or smallest) elements along `dim` as (values, indices), largest
        first (torch.topk); gradients flow to the selected elements.

        Example:
            >>> dt.tensor([3.0, 1.0, 2.0]).topk(2).indices.tolist()
            [0, 2]
        """
        axis = normalize_dim(dim, max(self.ndim, 1), "topk")
        size = self.shape[axis] if self.ndim else 1
        if not isinstance(k, int) or not 0 <= k <= size:
            raise ValueError(f"topk: k ({k}) must be an int in [0, {size}], the size of "
                             f"dimension {dim} (shape {self.shape})")
        order = self._order(axis, descending=largest, stable=True)
        indices = order[(slice(None),) * axis + (slice(0, k),)] if self.ndim else order
        return TopK(self._take(axis, indices), self._make(indices))

    def sort(self, dim: int = -1, descending: bool = False, *, stable: bool = False):
        """(values, indices) sorted along `dim` (torch.sort); `stable` keeps equal elements in
        their order (always done here); gradients flow back through the values."""
        axis = normalize_dim(dim, max(self.ndim, 1), "sort")
        indices = self._order(axis, descending, stable)
        return Sort(self._take(axis, indices), self._make(indices))

    def argsort(self, dim: int = -1, descending: bool = False, *, stable: bool = False):
        """The indices that sort this tensor along `dim` (torch.argsort)."""
        axis = normalize_dim(dim, max(self.ndim, 1), "argsort")
        return self._make(self._order(axis, descending, stable))

    def _order(self, axis: int, descending: bool, stable: bool):
        array, xp = self.array, get_array_module(self.array)
        if self.ndim == 0:
            return xp.zeros((), dtype=int64)
        if descending:  # NOTE: a stable sort of -x keeps equal elements in index order
            array = -(array.astype(int64) if array.dtype.kind in "bu" else array)
        # NOTE: cupy's argsort is always stable (and older cupy takes no `kind`)
        order = xp.argsort(array, axis=axis, kind="stable") if xp is numpy else \
            xp.argsort(array, axis=axis)
        return order.astype(int64, copy=False)

    def _take(self, axis: int, indices) -> Tensor:
        if self.ndim == 0:
            return self.clone()
        return self.gather(axis, self._make(indices))

    def norm(self, p="fro", dim=None, keepdim: bool = False, dtype=None) -> Tensor:
        """The vector p-norm over `dim` (all elements by default), as torch.norm: p = 2 or
        "fro", 1, inf, -inf, 0 (count of non-zeros) or any other number."""
        x = self if dtype is None else self.to(dtype=dtype)
        if x.dtype.kind not in "fc":
            raise TypeError(f"norm: input dtype should be floating point, got {x.dtype}")
        axes = normalize_axes(dim, x.ndim, "norm")
        if p in ("fro", 2, 2.0):
            return ops.Norm2.apply(x, axis=axes, keepdims=keepdim)
        if isinstance(p, str) or not isinstance(p, (int, float)):
            raise ValueError(f"norm: p should be a number or 'fro', got {p!r}")
        if p == float("inf"):
            return x.abs().amax(axes, keepdim)
        if p == float("-inf"):
            return -(-x.abs()).amax(axes, keepdim)
        if p == 0:
            return (x != 0).to(dtype=x.dtype).sum(axes, keepdim)
        return (x.abs() ** p).sum(axes, keepdim) ** (1.0 / p)

    def amin(self, dim=None, keepdim: bool = False) -> Tensor:
        return -(-self).amax(dim, keepdim)

    def prod(self, dim: int | None = None, keepdim: bool = False, dtype=None) -> Tensor:
        x = self if dtype is None else self.to(dtype=dtype)
        axis = None if dim is None else normalize_dim(dim, x.ndim, "prod")
        return ops.Prod.apply(x, axis=axis, keepdims=keepdim and dim is not None)

    def cumsum(self, dim: int, dtype=None) -> Tensor:
        x = self if dtype is None else self.to(dtype=dtype)
        x = x if x.dtype.kind in "fc" or x.dtype == int64 else x.long()
        return ops.Cumsum.apply(x, axis=normalize_dim(dim, x.ndim, "cumsum"))

    def logsumexp(self, dim, keepdim: bool = False) -> Tensor:
        """log(sum(exp(x))) over `dim`, shifted by the (constant) max for stability."""
        axes = normalize_axes(dim, self.ndim, "logsumexp")
        shift = self.detach().amax(axes, keepdim=True)
        shift = shift.masked_fill(~get_array_module(shift.array).isfinite(shift.array), 0.0)
        out = (self - shift).exp().sum(axes, keepdim=True).log() + shift
        return out if keepdim else out.reshape(
            [n for i, n in enumerate(out.shape) if i not in axes])

    def any(self, dim=None, keepdim: bool = False) -> Tensor:
        return self._make(self.array.any(axis=normalize_axes(dim, self.ndim, "any"),
                                         keepdims=keepdim))

    def all(self, dim=None, keepdim: bool = False) -> Tensor:
        return self._make(self.array.all(axis=normalize_axes(dim, self.ndim, "all"),
                                         keepdims=keepdim))

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
