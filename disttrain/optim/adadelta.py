"""Adadelta, as torch.optim.Adadelta."""

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


class Adadelta(Optimizer):
    """Adadelta, PyTorch's `torch.optim.Adadelta` (the single-tensor algorithm).

    v = rho * v + (1 - rho) * g * g, delta = sqrt(u + eps) / sqrt(v + eps) * g,
    u = rho * u + (1 - rho) * delta * delta, param -= lr * delta, with
    g = grad + weight_decay * param (negated grad when `maximize`).

    Args:
        params: iterable of Parameters or of param-group dicts.
        lr: coefficient that scales delta before it is applied to the parameters.
        rho: coefficient of the running averages of the squared gradient and update.
        eps: term added inside the square roots for numerical stability.
        weight_decay: weight decay (L2 penalty).
        maximize: maximize the objective instead of minimizing it.

    Example:
        >>> w = nn.Parameter(dt.ones(2))
        >>> opt = optim.Adadelta([w])
        >>> (w * w).sum().backward()
        >>> opt.step()
        >>> [round(x, 6) for x in w.tolist()]
        [0.996838, 0.996838]

    - Paper: https://arxiv.org/abs/1212.5701
    """

    _array_state = True

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1.0,
                 rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0, *,
                 maximize: bool = False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        check_hyperparameters(eps=eps, weight_decay=weight_decay)
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _update(self, param, grad, state, group) -> None:
        xp = get_array_module(param)
        if not state:
            state["step"] = 0.0
            state["square_avg"] = xp.zeros_like(param)
            state["acc_delta"] = xp.zeros_like(param)
        state["step"] += 1
        lr, rho, eps = group["lr"], group["rho"], group["eps"]
        chunks = chunk_arrays(param, grad, state["square_avg"], state["acc_delta"], scratches=2)
        for p, g, square_avg, acc_delta, std, delta in chunks:
            g = grad_with_decay(p, g, group["weight_decay"], group["maximize"])
            square_avg *= rho  # NOTE: torch's addcmul_ order: v + ((1 - rho) * g) * g
            xp.multiply(g, 1 - rho, out=std)
            std *= g
            square_avg += std
            xp.add(square_avg, eps, out=std)
            xp.sqrt(std, out=std)
            xp.add(acc_delta, eps, out=delta)
            xp.sqrt(delta, out=delta)
            delta /= std
            delta *= g
            acc_delta *= rho
            xp.multiply(delta, 1 - rho, out=std)
            std *= delta
            acc_delta += std
            delta *= -lr  # NOTE: torch's add_(delta, alpha=-lr)
            p += delta
