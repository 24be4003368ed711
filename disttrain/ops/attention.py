"""The softmax primitive, with the optional bool mask of scaled dot-product attention."""

from __future__ import annotations

from disttrain.autograd import Function
from disttrain.backend import get_array_module


class Softmax(Function):
    # NOTE: a primitive for speed: softmax(where(keep, x, -inf)) in one node and three passes,
    # where the composite (where, log_softmax, exp) makes three nodes and about three times the
    # memory traffic on attention's (N, H, L, S) scores, forward and backward.
    def forward(self, x, axis=-1, keep=None):
        xp = get_array_module(x)
        if keep is not None:  # bool, broadcastable to x: True = the key takes part
            x = xp.where(keep, x, x.dtype.type(-xp.inf))
        y = x - x.max(axis=axis, keepdims=True)
        xp.exp(y, out=y)
        y /= y.sum(axis=axis, keepdims=True)
        self.save(y, axis)
        return y

    def backward(self, grad):
        y, axis = self.saved
        grad_x = grad * y  # NOTE: then (grad - sum(grad * y)) * y in place: one temporary
        get_array_module(y).subtract(grad, grad_x.sum(axis=axis, keepdims=True), out=grad_x)
        grad_x *= y
        return grad_x
