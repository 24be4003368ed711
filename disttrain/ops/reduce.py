"""Reduction primitives: sum and max over axes."""

from __future__ import annotations

from disttrain.autograd import Function
from disttrain.backend import get_array_module


class Sum(Function):
    def forward(self, x, axis, keepdims):
        self.save(x.shape, axis, keepdims)
        return x.sum(axis=axis, keepdims=keepdims)

    def backward(self, grad):
        shape, axis, keepdims = self.saved
        xp = get_array_module(grad)
        if not keepdims:
            grad = xp.expand_dims(grad, axis)
        return xp.broadcast_to(grad, shape)


class Max(Function):
    # NOTE: ties share the gradient equally, as torch.amax does.
    def forward(self, x, axis, keepdims):
        y = x.max(axis=axis, keepdims=True)
        self.save(x, y, axis, keepdims)
        return y if keepdims else y.reshape([s for i, s in enumerate(y.shape)
                                             if axis is not None and i not in axis])

    def backward(self, grad):
        x, y, axis, keepdims = self.saved
        mask = x == y
        grad = grad.reshape(y.shape) / mask.sum(axis=axis, keepdims=True)
        return mask * grad


class Norm2(Function):
    """sqrt(sum(x**2)) over axes; the gradient x / norm is 0 where the norm is 0 (torch's
    subgradient), not 0/0."""

    def forward(self, x, axis, keepdims):
        xp = get_array_module(x)
        n = xp.sqrt((x * x).sum(axis=axis, keepdims=True))
        self.save(x, n)
        return n if keepdims else n.reshape([s for i, s in enumerate(n.shape)
                                             if axis is not None and i not in axis])

    def backward(self, grad):
        x, n = self.saved
        xp = get_array_module(x)
        safe = xp.where(n == 0, 1, n)
        return x * (grad.reshape(n.shape) / safe) * (n != 0)


class Prod(Function):
    """The product over one axis (or all elements: axis None). The gradient is the product of
    the other elements, from exclusive cumulative products, so zeros need no division."""

    def forward(self, x, axis, keepdims):
        flat = x.reshape(-1) if axis is None else x
        ax = 0 if axis is None else axis
        self.save(x, flat, ax, axis, keepdims)
        return x.prod(axis=axis, keepdims=keepdims)

    def backward(self, grad):
        x, flat, ax, axis, keepdims = self.saved
        xp = get_array_module(x)
        ones = xp.ones_like(xp.take(flat, [0], axis=ax))
        left = xp.cumprod(xp.concatenate([ones, xp.take(flat, range(flat.shape[ax] - 1),
                                                        axis=ax)], axis=ax), axis=ax)
        rev = xp.flip(flat, axis=ax)
        right = xp.flip(xp.cumprod(xp.concatenate(
            [ones, xp.take(rev, range(flat.shape[ax] - 1), axis=ax)], axis=ax), axis=ax), axis=ax)
        if axis is None:
            return (left * right * grad).reshape(x.shape)
        return left * right * (grad if keepdims else xp.expand_dims(grad, axis))


class Cumsum(Function):
    def forward(self, x, axis):
        self.save(axis)
        return x.cumsum(axis=axis)

    def backward(self, grad):
        (axis,) = self.saved
        xp = get_array_module(grad)
        return xp.flip(xp.flip(grad, axis=axis).cumsum(axis=axis), axis=axis)
