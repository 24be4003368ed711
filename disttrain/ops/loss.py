"""Loss primitives whose numerics must be torch's exactly: binary cross-entropy on
probabilities (clamped logs, a gradient with its own epsilon)."""

from __future__ import annotations

import numpy

from disttrain.autograd import Function
from disttrain.backend import get_array_module

_LOG_FLOOR = -100.0  # NOTE: torch's clamp on each log, so p = 0 or 1 gives a finite loss
_GRAD_EPSILON = 1e-12  # NOTE: torch's floor on x (1 - x) in the input gradient


class BinaryCrossEntropy(Function):
    # NOTE: a primitive because torch's input gradient, (x - t) / max(x (1 - x), 1e-12), is not
    # the derivative of its clamped loss (that is 0 * inf at x = 0 or 1); composing the clamp
    # would give NaN or 0 where torch gives a large finite gradient.
    def forward(self, x, target, *, weight=None):
        xp = get_array_module(x)
        with numpy.errstate(divide="ignore"):  # NOTE: log(0) = -inf is clamped just below
            log_x, log_not_x = xp.log(x), xp.log1p(-x)
        loss = ((target - 1) * xp.maximum(log_not_x, _LOG_FLOOR)
                - target * xp.maximum(log_x, _LOG_FLOOR))
        self.save(x, target, weight, log_x, log_not_x)
        return loss if weight is None else loss * weight

    def backward(self, grad):
        x, target, weight, log_x, log_not_x = self.saved
        xp = get_array_module(grad)
        if weight is not None:
            grad = grad * weight
        grad_x = grad_target = None
        if self.needs_input_grad[0]:
            grad_x = grad * (x - target) / xp.maximum(x * (1 - x), _GRAD_EPSILON)
        if self.needs_input_grad[1]:
            grad_target = grad * (log_not_x - log_x)
        return grad_x, grad_target
