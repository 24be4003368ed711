"""Convolution and pooling primitives (im2col + GEMM conv2d, max/avg pooling over strided
slices) and their padding and window helpers, shared with functional.avg_pool2d."""

from __future__ import annotations

import numpy

from disttrain.autograd import Function
from disttrain.backend import get_array_module


def pad2d(x, pads, value=0):
    """`x` padded with `value` by pads = (top, bottom, left, right) in its last two dims."""
    top, bottom, left, right = pads
    if not (top or bottom or left or right):
        return x
    widths = ((0, 0),) * (x.ndim - 2) + ((top, bottom), (left, right))
    return get_array_module(x).pad(x, widths, constant_values=value)


def _unpad2d(x, pads):
    top, bottom, left, right = pads
    return x[..., top:x.shape[-2] - bottom, left:x.shape[-1] - right]


def window_slices(kernel, stride, dilation, out_hw) -> list:
    """For each kernel offset (i, j), the strided slice of the padded input it reads (row-major
    over the kernel), so a pooling is a loop over kh*kw slices, not over output pixels."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    return [(..., slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
             slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)) for i in range(kh) for j in range(kw)]


def _im2col(xpad, kernel, stride, dilation, out_hw):
    """(N, C, H, W) -> (N*OH*OW, C*kh*kw) through a strided view and one copy."""
    xp = get_array_module(xpad)
    n, c = xpad.shape[:2]
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    s = xpad.strides
    windows = xp.lib.stride_tricks.as_strided(
        xpad, (n, oh, ow, c, kh, kw), (s[0], s[2] * sh, s[3] * sw, s[1], s[2] * dh, s[3] * dw))
    return windows.reshape(n * oh * ow, c * kh * kw)


class Conv2d(Function):
    # NOTE: im2col + one GEMM (batched over groups); the backward scatters kh*kw slices.
    def forward(self, x, weight, bias=None, *, stride, pads, dilation, groups, out_hw):
        xpad = pad2d(x, pads)
        out_c, kernel = weight.shape[0], weight.shape[2:]
        cols = _im2col(xpad, kernel, stride, dilation, out_hw)
        w = weight.reshape(groups, out_c // groups, -1)
        if groups == 1:
            y = cols @ w[0].T
        else:
            y = cols.reshape(len(cols), groups, -1).transpose(1, 0, 2) @ w.transpose(0, 2, 1)
            y = y.transpose(1, 0, 2).reshape(len(cols), out_c)
        if bias is not None:
            y += bias
        self.save(cols, weight, xpad.shape, pads, stride, dilation, groups, out_hw)
        return y.reshape(x.shape[0], *out_hw, out_c).transpose(0, 3, 1, 2)

    def backward(self, grad):
        cols, weight, pad_shape, pads, stride, dilation, groups, out_hw = self.saved
        xp, needs = get_array_module(grad), self.needs_input_grad
        out_c, kernel = weight.shape[0], weight.shape[2:]
        grad2d = grad.transpose(0, 2, 3, 1).reshape(-1, out_c)
        grad_g = grad2d.reshape(len(grad2d), groups, -1).transpose(1, 0, 2)  # (G, NL, Og)
        cols_g = cols.reshape(len(cols), groups, -1).transpose(1, 0, 2)  # (G, NL, CgK)
        grad_w = (grad_g.transpose(0, 2, 1) @ cols_g).reshape(weight.shape) if needs[1] else None
        grad_b = grad2d.sum(axis=0) if len(needs) > 2 and needs[2] else None
        if not needs[0]:
            return None, grad_w, grad_b
        w = weight.reshape(groups, out_c // groups, -1)
        grad_cols = (grad_g @ w).transpose(1, 0, 2).reshape(grad.shape[0], *out_hw, -1, *kernel)
        grad_pad = xp.zeros(pad_shape, grad.dtype)
        slices = window_slices(kernel, stride, dilation, out_hw)
        for k, window in enumerate(slices):
            grad_pad[window] += grad_cols[..., k // kernel[1], k % kernel[1]].transpose(0, 3, 1, 2)
        return _unpad2d(grad_pad, pads), grad_w, grad_b


class MaxPool2d(Function):
    # NOTE: a running maximum over the kh*kw strided slices (no window copy); the backward
    # sends each gradient to the first maximum in scan order, as torch does. Arrays are made
    # in the input's memory order ("K"): conv outputs are channels-last in memory, and mixing
    # layouts in one element-wise op costs ~5x.
    def forward(self, x, kernel, stride, dilation, pads, out_hw):
        fill = -numpy.inf if x.dtype.kind == "f" else numpy.iinfo(x.dtype).min
        xpad = pad2d(x, pads, fill)
        slices = window_slices(kernel, stride, dilation, out_hw)
        y = xpad[slices[0]].copy(order="K")
        xp = get_array_module(x)
        for window in slices[1:]:
            xp.maximum(y, xpad[window], out=y)
        self.save(xpad, y, slices, pads)
        return y

    def backward(self, grad):
        xpad, y, slices, pads = self.saved
        xp = get_array_module(grad)
        grad = _like_layout(grad, y)
        grad_pad = xp.zeros_like(xpad)
        unrouted = xp.ones_like(y, dtype=bool)
        for window in slices:
            hit = xpad[window] == y
            hit &= unrouted
            grad_pad[window] += grad * hit
            unrouted &= ~hit
        return _unpad2d(grad_pad, pads)


def _like_layout(array, like):
    """`array` in `like`'s memory order (one copy, only when the orders differ)."""
    if array.strides == like.strides or array.shape != like.shape:
        return array
    out = get_array_module(like).empty_like(like)
    out[...] = array
    return out


class AvgPool2d(Function):
    def forward(self, x, kernel, stride, dilation, pads, out_hw, divisor):
        xpad = pad2d(x, pads)
        slices = window_slices(kernel, stride, dilation, out_hw)
        y = xpad[slices[0]].copy()
        for window in slices[1:]:
            y += xpad[window]
        self.save(xpad.shape, slices, pads, divisor)
        return y / divisor if not isinstance(divisor, int) else y * (1.0 / divisor)

    def backward(self, grad):
        pad_shape, slices, pads, divisor = self.saved
        grad = grad / divisor
        grad_pad = get_array_module(grad).zeros(pad_shape, grad.dtype)
        for window in slices:
            grad_pad[window] += grad
        return _unpad2d(grad_pad, pads)
