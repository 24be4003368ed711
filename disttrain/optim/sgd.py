"""Stochastic gradient descent with optional momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

from collections.abc import Iterable

from disttrain.backend import get_array_module
from disttrain.optim.optimizer import (
    Optimizer,
    check_hyperparameters,
    chunk_arrays,
    grad_with_decay,
)
from disttrain.tensor import Tensor


class SGD(Optimizer):
    """Stochastic gradient descent (optionally with momentum), PyTorch's `torch.optim.SGD`.

    With g = grad + weight_decay * param, each step does
    buf = momentum * buf + (1 - dampening) * g (buf = g on the first step),
    g = g + momentum * buf if nesterov else buf (when momentum != 0), then param -= lr * g.

    Args:
        params: iterable of Parameters or of param-group dicts.
        lr: learning rate.
        momentum: momentum factor (0 disables the momentum buffer).
        dampening: dampening for momentum.
        weight_decay: L2 penalty added to the gradient.
        nesterov: use Nesterov momentum (needs momentum > 0 and dampening == 0).
        maximize: maximize the objective instead of minimizing it.

    Example:
        >>> w = nn.Parameter(dt.ones(2))
        >>> opt = optim.SGD([w], lr=0.1, momentum=0.9)
        >>> (w * w).sum().backward()
        >>> opt.step()
        >>> [round(x, 4) for x in w.tolist()]
        [0.8, 0.8]

    - Nesterov: http://www.cs.toronto.edu/~hinton/absps/momentum.pdf
    """

    _array_state = True

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-3,
                 momentum: float = 0, dampening: float = 0, weight_decay: float = 0,
                 nesterov: bool = False, *, maximize: bool = False):
        check_hyperparameters(lr=lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _update(self, param, grad, state, group) -> None:
        xp = get_array_module(param)
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        weight_decay, maximize = group["weight_decay"], group["maximize"]
        buf = state.get("momentum_buffer")
        is_first = momentum != 0 and buf is None
        if is_first:
            buf = state["momentum_buffer"] = xp.empty_like(param)
        for p, g, b, scratch in chunk_arrays(param, grad, buf):
            d = grad_with_decay(p, g, weight_decay, maximize)
            if momentum != 0:
                if is_first:
                    xp.copyto(b, d)
                else:
                    b *= momentum
                    b += d if dampening == 0 else xp.multiply(d, 1 - dampening, out=scratch)
                if group["nesterov"]:
                    xp.multiply(b, momentum, out=scratch)
                    d = xp.add(scratch, d, out=scratch)
                else:
                    d = b
            p -= xp.multiply(d, lr, out=scratch)
