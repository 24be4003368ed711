"""Shape and dimension arguments: normalising `dim`s, `*shape` varargs and -1 sizes, with
torch's error messages. Imports numpy only."""

from __future__ import annotations

import numpy


def shape_arg(shape) -> tuple:
    """`f(2, 3)` and `f((2, 3))` forms of a size argument, as a tuple of ints."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def resolve_shape(shape, size: int, op: str, old) -> tuple:
    """`shape` with its one -1 replaced so that it holds `size` elements (`old`: for errors)."""
    known = int(numpy.prod([s for s in shape if s != -1]))
    if shape.count(-1) > 1 or any(s < -1 for s in shape) or known == 0 or size % known:
        raise ValueError(f"{op}: shape {tuple(shape)} is invalid for input of size {size} "
                         f"(shape {old})")
    return tuple(size // known if s == -1 else s for s in shape)


def normalize_dim(dim: int, ndim: int, op: str) -> int:
    """`dim` in [0, ndim) (negative dims count from the end); IndexError naming `op`."""
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{op}: dimension out of range (expected to be in range of "
                         f"[{-max(ndim, 1)}, {max(ndim, 1) - 1}], but got {dim})")
    return dim % max(ndim, 1)


def normalize_axes(dim, ndim: int, op: str) -> tuple:
    """Sorted non-negative axes of an int, a sequence of ints, or None (all axes)."""
    if dim is None:
        return tuple(range(ndim))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    return tuple(sorted(normalize_dim(d, ndim, op) for d in dims))


def as_pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of ints (kernel sizes, strides ...) as an (h, w) pair; `name` is the
    argument in the error message, e.g. "conv2d: stride"."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, (int, numpy.integer)) for v in pair):
        raise ValueError(f"{name}: expected an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])
