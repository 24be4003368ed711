"""The attention softmax primitive (scaled dot-product attention and MultiheadAttention)."""

from __future__ import annotations

from disttrain.autograd import Function
from disttrain.backend import get_array_module


class MaskedSoftmax(Function):
    # NOTE: a primitive for speed: softmax(where(mask, x, -inf)) over the last axis in one node
    # and three passes, where the composite (where, log_softmax, exp) makes three nodes and
    # about twice the memory traffic on the (N, H, L, S) scores, forward and backward.
    def forward(self, x, keep=None):
        xp = get_array_module(x)
        if keep is not None:  # bool, broadcastable to x: True = the key takes part
            x = xp.where(keep, x, x.dtype.type(-xp.inf))
        y = x - x.max(axis=-1, keepdims=True)
        xp.exp(y, out=y)
        y /= y.sum(axis=-1, keepdims=True)
        self.save(y)
        return y

    def backward(self, grad):
        y = self.saved[0]
        grad_x = grad * y  # NOTE: then (grad - sum(grad * y)) * y in place: one temporary
        get_array_module(y).subtract(grad, grad_x.sum(axis=-1, keepdims=True), out=grad_x)
        grad_x *= y
        return grad_x
