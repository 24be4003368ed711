"""Primitives for layers and losses: matmul, the fused linear, log_softmax, and the fused
NLL / cross-entropy losses (primitives for numerics and speed, each with a NOTE on why)."""

from __future__ import annotations

from disttrain.autograd import Function
from disttrain.backend import get_array_module


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
