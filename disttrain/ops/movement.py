"""Movement primitives: reshape, permute, expand (explicit broadcasting), indexing, gather
and cat. Their backward moves gradients back without arithmetic (sums for expand, scatter-adds
for repeated indices)."""

from __future__ import annotations

import numpy

from disttrain import backend
from disttrain.autograd import Function
from disttrain.backend import get_array_module


class Reshape(Function):
    def forward(self, x, shape):
        self.save(x.shape)
        return x.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.saved[0])


class Permute(Function):
    def forward(self, x, order):
        self.save(tuple(numpy.argsort(order)))
        return x.transpose(order)

    def backward(self, grad):
        return grad.transpose(self.saved[0])


class Expand(Function):
    # NOTE: broadcasting is explicit; x.ndim == len(shape) (Tensor.expand reshapes first).
    def forward(self, x, shape):
        self.save(tuple(i for i, (a, b) in enumerate(zip(x.shape, shape)) if a != b))
        return get_array_module(x).broadcast_to(x, shape)

    def backward(self, grad):
        return grad.sum(axis=self.saved[0], keepdims=True)


def _is_basic_index(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, slice, numpy.integer))
               for p in parts)


class Index(Function):
    def forward(self, x, index):
        self.save(x.shape, x.dtype, index)
        return x[index]

    def backward(self, grad):
        shape, dtype, index = self.saved
        out = get_array_module(grad).zeros(shape, dtype)
        if _is_basic_index(index) or getattr(index, "dtype", None) == numpy.bool_:
            out[index] = grad  # NOTE: no repeated positions, so assignment is exact
        else:
            backend.scatter_add(out, index, grad)
        return out


class Gather(Function):
    def forward(self, x, index, axis):
        self.save(x.shape, x.dtype, index, axis)
        return get_array_module(x).take_along_axis(x, index, axis)

    def backward(self, grad):
        shape, dtype, index, axis = self.saved
        xp = get_array_module(grad)
        out = xp.zeros(shape, dtype)
        positions = list(xp.ix_(*[xp.arange(n) for n in index.shape]))
        positions[axis] = index
        backend.scatter_add(out, tuple(positions), grad)
        return out


class Cat(Function):
    def forward(self, *arrays, axis):
        self.save(axis, numpy.cumsum([a.shape[axis] for a in arrays])[:-1])
        return get_array_module(arrays[0]).concatenate(arrays, axis=axis)

    def backward(self, grad):
        axis, bounds = self.saved
        return tuple(get_array_module(grad).split(grad, bounds, axis=axis))
