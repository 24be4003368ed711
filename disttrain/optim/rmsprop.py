"""RMSprop, optionally centered and with momentum."""

from __future__ import annotations

from collections.abc import Iterable

from disttrain.backend import get_array_module
from disttrain.optim.adam import lerp_
from disttrain.optim.optimizer import (
    Optimizer,
    check_hyperparameters,
    chunk_arrays,
    grad_with_decay,
)
from disttrain.tensor import Tensor


class RMSprop(Optimizer):
    """RMSprop, PyTorch's `torch.optim.RMSprop`.

    v = alpha * v + (1 - alpha) * g * g; with `centered`, also g_avg = lerp(g_avg, g, 1 - alpha)
    and v_hat = v - g_avg**2, else v_hat = v. Then with momentum:
    buf = momentum * buf + g / (sqrt(v_hat) + eps), param -= lr * buf; without:
    param -= lr * g / (sqrt(v_hat) + eps). g = grad + weight_decay * param.

    Args:
        params: iterable of Parameters or of param-group dicts.
        lr: learning rate.
        alpha: smoothing constant of the squared-gradient average.
        eps: term added to the denominator for numerical stability.
        weight_decay: L2 penalty added to the gradient.
        momentum: momentum factor.
        centered: normalise by an estimate of the gradient's variance instead of its second
            moment.
        maximize: maximize the objective instead of minimizing it.

    Example:
        >>> w = nn.Parameter(dt.ones(2))
        >>> opt = optim.RMSprop([w], lr=0.01)
        >>> (w * w).sum().backward()
        >>> opt.step()
        >>> [round(x, 4) for x in w.tolist()]
        [0.9, 0.9]

    - Lecture: https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf
    """

    _array_state = True

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-2,
                 alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0,
                 momentum: float = 0, centered: bool = False, *, maximize: bool = False):
        check_hyperparameters(lr=lr, eps=eps, momentum=momentum, weight_decay=weight_decay,
                              alpha=alpha)
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered, maximize=maximize)
        super().__init__(params, defaults)

    def _update(self, param, grad, state, group) -> None:
        xp = get_array_module(param)
        lr, alpha, eps, momentum = group["lr"], group["alpha"], group["eps"], group["momentum"]
        weight_decay, maximize = group["weight_decay"], group["maximize"]
        if not state:
            state["step"] = 0.0
            state["square_avg"] = xp.zeros_like(param)
            if momentum > 0:
                state["momentum_buffer"] = xp.zeros_like(param)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(param)
        state["step"] += 1
        chunks = chunk_arrays(param, grad, state["square_avg"], state.get("grad_avg"),
                         state.get("momentum_buffer") if momentum > 0 else None)
        for p, g, square_avg, grad_avg, buf, scratch in chunks:
            g = grad_with_decay(p, g, weight_decay, maximize)
            square_avg *= alpha
            xp.multiply(g, 1 - alpha, out=scratch)
            scratch *= g
            square_avg += scratch
            if grad_avg is not None:
                lerp_(grad_avg, g, 1 - alpha, scratch)
                xp.multiply(grad_avg, grad_avg, out=scratch)
                avg = xp.subtract(square_avg, scratch, out=scratch)
                xp.sqrt(avg, out=avg)
            else:
                avg = xp.sqrt(square_avg, out=scratch)
            avg += eps
            if buf is not None:
                buf *= momentum
                buf += xp.divide(g, avg, out=scratch)
                update = xp.multiply(buf, lr, out=scratch)
            else:
                update = xp.divide(g, avg, out=scratch)
                update *= lr
            p -= update
