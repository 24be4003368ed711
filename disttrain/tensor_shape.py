"""Tensor's shape, movement and indexing methods as a mixin of disttrain.tensor.Tensor, and the
free functions cat and stack. Imports ops and shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy

from disttrain import ops
from disttrain.backend import get_array_module
from disttrain.shapes import normalize_dim, resolve_shape, shape_arg

if TYPE_CHECKING:
    from disttrain.tensor import Tensor


class ShapeMethods:
    """reshape/view, permute/transpose, (un)squeeze, expand, indexing, split and gather."""

    __slots__ = ()

    def reshape(self, *shape) -> Tensor:
        shape = shape_arg(shape)
        if -1 in shape or any(s < -1 for s in shape):
            shape = resolve_shape(shape, self.array.size, "reshape", self.shape)
        elif int(numpy.prod(shape)) != self.array.size:
            raise ValueError(f"reshape: shape {tuple(shape)} is invalid for input of size "
                             f"{self.array.size} (shape {self.shape})")
        return self if tuple(shape) == self.shape else ops.Reshape.apply(self, shape=tuple(shape))

    view = reshape

    def view_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    reshape_as = view_as

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        if self.ndim == 0:
            return self.reshape(1)
        start = normalize_dim(start_dim, self.ndim, "flatten")
        end = normalize_dim(end_dim, self.ndim, "flatten")
        return self.reshape(self.shape[:start] + (-1,) + self.shape[end + 1:])

    def unflatten(self, dim: int, sizes) -> Tensor:
        dim = normalize_dim(dim, self.ndim, "unflatten")
        return self.reshape(self.shape[:dim] + tuple(sizes) + self.shape[dim + 1:])

    def permute(self, *dims) -> Tensor:
        dims = shape_arg(dims)
        order = tuple(normalize_dim(d, self.ndim, "permute") for d in dims)
        if sorted(order) != list(range(self.ndim)):
            raise ValueError(f"permute: dims {tuple(dims)} are not a permutation of the "
                             f"{self.ndim} dimensions of shape {self.shape}")
        return ops.Permute.apply(self, order=order)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        order = list(range(self.ndim))
        d0 = normalize_dim(dim0, self.ndim, "transpose")
        d1 = normalize_dim(dim1, self.ndim, "transpose")
        order[d0], order[d1] = order[d1], order[d0]
        return ops.Permute.apply(self, order=tuple(order))

    def t(self) -> Tensor:
        return self.transpose(0, 1) if self.ndim == 2 else self

    def unsqueeze(self, dim: int) -> Tensor:
        dim = normalize_dim(dim, self.ndim + 1, "unsqueeze")
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim: int | None = None) -> Tensor:
        if dim is None:
            return self.reshape(tuple(s for s in self.shape if s != 1))
        dim = normalize_dim(dim, self.ndim, "squeeze")
        if self.shape[dim] != 1:
            return self
        return self.reshape(self.shape[:dim] + self.shape[dim + 1:])

    def expand(self, *sizes) -> Tensor:
        sizes = shape_arg(sizes)
        if len(sizes) < self.ndim:
            raise ValueError(f"expand: the number of sizes ({len(sizes)}) must be >= the number "
                             f"of dimensions of shape {self.shape}")
        x = self.reshape((1,) * (len(sizes) - self.ndim) + self.shape)
        shape = tuple(s if n == -1 else n for s, n in zip(x.shape, sizes))
        for s, n in zip(x.shape, shape):
            if s != n and s != 1:
                raise ValueError(f"expand: shape {self.shape} cannot be expanded to {sizes}")
        return x if shape == x.shape else ops.Expand.apply(x, shape=shape)

    def expand_as(self, other: Tensor) -> Tensor:
        return self.expand(*other.shape)

    def contiguous(self) -> Tensor:
        return self

    def narrow(self, dim: int, start: int, length: int) -> Tensor:
        """The slice [start, start + length) of dimension `dim` (torch.narrow; start may be
        negative).

        Example:
            >>> dt.arange(6).reshape(2, 3).narrow(1, 1, 2).tolist()
            [[1, 2], [4, 5]]
        """
        axis = normalize_dim(dim, self.ndim, "narrow")
        size = self.shape[axis]
        begin = start + size if start < 0 else start
        if not 0 <= begin <= size or length < 0 or begin + length > size:
            raise ValueError(f"narrow: start ({start}) + length ({length}) must lie within "
                             f"dimension {dim} of size {size} (shape {self.shape})")
        return self[(slice(None),) * axis + (slice(begin, begin + length),)]

    def tril(self, diagonal: int = 0) -> Tensor:
        """The lower triangle of the last two dims (elements j <= i + diagonal), rest 0.

        Example:
            >>> dt.ones(3, 3).tril().tolist()
            [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
        """
        return self._triangle("tril", diagonal, lower=True)

    def triu(self, diagonal: int = 0) -> Tensor:
        """The upper triangle of the last two dims (elements j >= i + diagonal), rest 0."""
        return self._triangle("triu", diagonal, lower=False)

    def _triangle(self, name: str, diagonal: int, lower: bool) -> Tensor:
        if self.ndim < 2:
            raise ValueError(f"{name}: input must have at least 2 dims, got shape {self.shape}")
        n, m = self.shape[-2:]
        keep = numpy.tri(n, m, diagonal, dtype=bool) if lower else \
            ~numpy.tri(n, m, diagonal - 1, dtype=bool)
        # NOTE: a where (masked_fill), not a multiply: inf * 0 would give NaN off the triangle
        return self.masked_fill(get_array_module(self.array).asarray(~keep), 0)

    def __getitem__(self, index) -> Tensor:
        return ops.Index.apply(self, index=index_arrays(index))

    def chunk(self, chunks: int, dim: int = 0) -> list[Tensor]:
        size = -(-self.shape[dim] // chunks)
        return self.split(size, dim)

    def split(self, split_size, dim: int = 0) -> list[Tensor]:
        dim, n = normalize_dim(dim, self.ndim, "split"), self.shape[dim]
        sizes = [split_size] * (n // split_size) + ([n % split_size] if n % split_size else []) \
            if isinstance(split_size, int) else list(split_size)
        if sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} sum to {sum(sizes)}, expected {n}")
        starts = numpy.cumsum([0] + sizes[:-1])
        lead = (slice(None),) * dim
        return [self[lead + (slice(int(s), int(s) + k),)] for s, k in zip(starts, sizes)]

    def __setitem__(self, index, value):
        index = index_arrays(index)
        self._inplace("__setitem__", lambda a: a.__setitem__(index, self._other(value)))

    def gather(self, dim: int, index: Tensor) -> Tensor:
        """out[i][j] = self[index[i][j]][j] for dim=0 (torch.gather); repeated indices add up
        their gradients."""
        if index.dtype.kind not in "iu" or index.ndim != self.ndim:
            raise ValueError(f"gather: index must be an integer tensor with {self.ndim} dims, "
                             f"got dtype {index.dtype} and shape {index.shape}")
        axis = normalize_dim(dim, self.ndim, "gather")
        return ops.Gather.apply(self, index=index.array, axis=axis)


def index_arrays(index):
    """An index with its Tensors replaced by their arrays (numpy/cupy index them)."""
    if isinstance(index, ShapeMethods):
        return index.array
    if isinstance(index, tuple):
        return tuple(i.array if isinstance(i, ShapeMethods) else i for i in index)
    return index


def cat(tensors, dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    d = normalize_dim(dim, tensors[0].ndim, "cat")
    for i, t in enumerate(tensors):
        if t.ndim != tensors[0].ndim or t.shape[:d] + t.shape[d + 1:] != \
                tensors[0].shape[:d] + tensors[0].shape[d + 1:]:
            raise ValueError(f"cat: sizes of tensors must match except in dimension {d}: "
                             f"tensor 0 has shape {tensors[0].shape}, tensor {i} has {t.shape}")
    return ops.Cat.apply(*tensors, axis=d)


def stack(tensors, dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: expects each tensor to be equal size, but got "
                             f"{tensors[0].shape} at entry 0 and {t.shape} at entry {i}")
    d = normalize_dim(dim, tensors[0].ndim + 1, "stack")
    return cat([t.unsqueeze(d) for t in tensors], d)
