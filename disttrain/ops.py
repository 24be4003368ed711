"""Primitive differentiable ops: forward and backward side by side, arrays in, arrays out.

Only `Function.apply` makes graph nodes. Inputs of element-wise binary ops already have equal
shapes (broadcasting is the explicit `Expand`). Imports backend and tensor only.
"""

from __future__ import annotations

import math

import numpy

from disttrain import backend
from disttrain.autograd import Function
from disttrain.backend import get_array_module


# ---------------------------------------------------------------- element-wise
class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, grad):
        return grad, grad


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, grad):
        return grad, -grad if self.needs_input_grad[1] else None


class Mul(Function):
    def forward(self, a, b):
        self.save(a, b)
        return a * b

    def backward(self, grad):
        a, b = self.saved
        return (grad * b if self.needs_input_grad[0] else None,
                grad * a if self.needs_input_grad[1] else None)


class Div(Function):
    def forward(self, a, b):
        self.save(a, b)
        return a / b

    def backward(self, grad):
        a, b = self.saved
        grad_a = grad / b
        return grad_a, (-grad_a * a / b) if self.needs_input_grad[1] else None


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, grad):
        return -grad


class Pow(Function):  # x ** c for a constant exponent c
    def forward(self, x, exponent):
        self.save(x, exponent)
        return x ** exponent

    def backward(self, grad):
        x, exponent = self.saved
        return grad * (exponent * x ** (exponent - 1))


class Exp(Function):
    def forward(self, x):
        y = get_array_module(x).exp(x)
        self.save(y)
        return y

    def backward(self, grad):
        return grad * self.saved[0]


class Log(Function):
    def forward(self, x):
        self.save(x)
        return get_array_module(x).log(x)

    def backward(self, grad):
        return grad / self.saved[0]


class Sqrt(Function):
    def forward(self, x):
        y = get_array_module(x).sqrt(x)
        self.save(y)
        return y

    def backward(self, grad):
        return grad / (2 * self.saved[0])


class Abs(Function):
    def forward(self, x):
        xp = get_array_module(x)
        self.save(xp.sign(x))
        return xp.abs(x)

    def backward(self, grad):
        return grad * self.saved[0]


class ReLU(Function):
    # NOTE: a primitive (not max(x, 0)) so the gradient at the tie x == 0 is 0, as in torch.
    def forward(self, x):
        y = get_array_module(x).maximum(x, 0)
        self.save(y)
        return y

    def backward(self, grad):
        return grad * (self.saved[0] > 0)


class Sigmoid(Function):
    # NOTE: exp(-logaddexp(0, -x)) never overflows, unlike 1 / (1 + exp(-x)).
    def forward(self, x):
        xp = get_array_module(x)
        y = xp.exp(-xp.logaddexp(0, -x))
        self.save(y)
        return y

    def backward(self, grad):
        y = self.saved[0]
        return grad * y * (1 - y)


class LogSigmoid(Function):
    # NOTE: a primitive for numerics: -logaddexp(0, -x) is finite for every x.
    def forward(self, x):
        self.save(x)
        return -get_array_module(x).logaddexp(0, -x)

    def backward(self, grad):
        x = self.saved[0]
        return grad * get_array_module(x).exp(-get_array_module(x).logaddexp(0, x))


class Tanh(Function):
    def forward(self, x):
        y = get_array_module(x).tanh(x)
        self.save(y)
        return y

    def backward(self, grad):
        y = self.saved[0]
        return grad * (1 - y * y)


class Erf(Function):
    def forward(self, x):
        self.save(x)
        return backend.erf(x)

    def backward(self, grad):
        x = self.saved[0]
        return grad * (2 / math.sqrt(math.pi)) * get_array_module(x).exp(-x * x)


class Clamp(Function):
    def forward(self, x, low, high):
        self.save(x, low, high)
        return get_array_module(x).clip(x, low, high)

    def backward(self, grad):
        x, low, high = self.saved
        inside = True if low is None else x >= low
        inside = inside & (True if high is None else x <= high)
        return grad * inside


class Where(Function):
    def forward(self, a, b, condition):
        self.save(condition)
        return get_array_module(a).where(condition, a, b)

    def backward(self, grad):
        xp, condition = get_array_module(grad), self.saved[0]
        zero = grad.dtype.type(0)
        return (xp.where(condition, grad, zero) if self.needs_input_grad[0] else None,
                xp.where(condition, zero, grad) if self.needs_input_grad[1] else None)


class Cast(Function):
    def forward(self, x, dtype):
        self.save(x.dtype)
        return x.astype(dtype)

    def backward(self, grad):
        return grad.astype(self.saved[0])


class ToDevice(Function):
    def forward(self, x, device):
        self.save(backend.device_of(x))
        return backend.to_device(x, device)

    def backward(self, grad):
        return backend.to_device(grad, self.saved[0])


class Clone(Function):
    def forward(self, x):
        return x.copy()

    def backward(self, grad):
        return grad


# ---------------------------------------------------------------- movement
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


# ---------------------------------------------------------------- reductions
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


# ---------------------------------------------------------------- matmul
class MatMul(Function):
    def forward(self, a, b):
        self.save(a, b)
        return a @ b

    def backward(self, grad):
        a, b = self.saved
        return (grad @ b.swapaxes(-1, -2) if self.needs_input_grad[0] else None,
                a.swapaxes(-1, -2) @ grad if self.needs_input_grad[1] else None)


def _is_f_order(array) -> bool:
    return array.flags.f_contiguous and not array.flags.c_contiguous


class Linear(Function):
    # NOTE: fused x @ w.T + b: one node and no transposed copies on the hot path of every MLP.
    def forward(self, x, weight, bias=None):
        self.save(x, weight)
        y = x @ weight.T
        if bias is not None:
            y += bias
        return y

    def backward(self, grad):
        x, weight = self.saved
        needs = self.needs_input_grad
        grad2d = grad.reshape(-1, grad.shape[-1])
        grad_x = grad @ weight if needs[0] else None
        grad_w = None
        if needs[1]:  # NOTE: produce the gradient in the weight's memory order (see nn.Linear)
            x2d = x.reshape(-1, x.shape[-1])
            grad_w = (x2d.T @ grad2d).T if _is_f_order(weight) else grad2d.T @ x2d
        grad_b = grad2d.sum(axis=0) if len(needs) > 2 and needs[2] else None
        return grad_x, grad_w, grad_b


# ---------------------------------------------------------------- losses
class LogSoftmax(Function):
    # NOTE: a primitive for numerics: log(softmax(x)) underflows where x - logsumexp does not.
    def forward(self, x, axis):
        xp = get_array_module(x)
        shifted = x - x.max(axis=axis, keepdims=True)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        self.save(y, axis)
        return y

    def backward(self, grad):
        y, axis = self.saved
        return grad - get_array_module(y).exp(y) * grad.sum(axis=axis, keepdims=True)


def _nll_forward(logp, target, weight, ignore_index, reduction) -> tuple:
    """(loss, what _nll_backward needs) for log-probabilities (N, C) and targets (N,)."""
    xp = get_array_module(logp)
    rows = xp.arange(logp.shape[0])
    valid = target != ignore_index
    if weight is None and bool(valid.all()):  # the common case: no weights, none ignored
        w, total = None, logp.dtype.type(len(target))
        losses = -logp[rows, target]
    else:
        target = xp.where(valid, target, 0)
        w = (weight[target] if weight is not None else xp.ones(len(target), logp.dtype))
        w = w * valid
        losses, total = -logp[rows, target] * w, w.sum()
    saved = (logp.shape, logp.dtype, rows, target, w, total, reduction)
    if reduction == "none":
        return losses, saved
    out = losses.sum()
    return (out / total if reduction == "mean" else out), saved


def _nll_backward(grad, shape, dtype, rows, target, w, total, reduction):
    out = get_array_module(grad).zeros(shape, dtype)
    scale = grad / total if reduction == "mean" else grad
    out[rows, target] = -scale if w is None else -w * scale
    return out


class NLLLoss(Function):
    # NOTE: a primitive so the backward is a scatter into one row per sample, not a one-hot.
    def forward(self, logp, target, weight, ignore_index, reduction):
        out, self.saved = _nll_forward(logp, target, weight, ignore_index, reduction)
        return out

    def backward(self, grad):
        return _nll_backward(grad, *self.saved)


class CrossEntropy(Function):
    # NOTE: log_softmax + nll fused into one node for the hot path of every classifier: the
    # backward is the NLL scatter pushed through log_softmax's Jacobian in one expression.
    def forward(self, logits, target, weight, ignore_index, reduction):
        xp = get_array_module(logits)
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = xp.exp(shifted)
        sumexp = exp.sum(axis=1, keepdims=True)
        out, nll = _nll_forward(shifted - xp.log(sumexp), target, weight, ignore_index,
                                reduction)
        exp /= sumexp
        self.save(exp, nll)
        return out

    def backward(self, grad):
        probs, nll = self.saved
        grad_logp = _nll_backward(grad, *nll)  # a fresh array: safe to update in place
        grad_logp -= probs * grad_logp.sum(axis=1, keepdims=True)
        return grad_logp


# ---------------------------------------------------------------- convolution and pooling
def _pad2d(x, pads, value=0):
    top, bottom, left, right = pads
    if not (top or bottom or left or right):
        return x
    widths = ((0, 0),) * (x.ndim - 2) + ((top, bottom), (left, right))
    return get_array_module(x).pad(x, widths, constant_values=value)


def _unpad2d(x, pads):
    top, bottom, left, right = pads
    return x[..., top:x.shape[-2] - bottom, left:x.shape[-1] - right]


def _window_slices(kernel, stride, dilation, out_hw):
    """For each kernel offset (i, j), the strided slice of the padded input it reads."""
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
        xpad = _pad2d(x, pads)
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
        slices = _window_slices(kernel, stride, dilation, out_hw)
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
        xpad = _pad2d(x, pads, fill)
        slices = _window_slices(kernel, stride, dilation, out_hw)
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
        xpad = _pad2d(x, pads)
        slices = _window_slices(kernel, stride, dilation, out_hw)
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
