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
