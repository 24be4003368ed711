"""RAdam, as torch.optim.RAdam."""

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


class RAdam(Optimizer):
    """RAdam, PyTorch's `torch.optim.RAdam` (the single-tensor algorithm).

    Adam whose adaptive term is switched on only once the variance of its estimate is
    tractable: with rho_inf = 2 / (1 - beta2) - 1 and rho_t = rho_inf - 2 t beta2**t /
    (1 - beta2**t), param -= lr * m_hat * r_t * sqrt(1 - beta2**t) / (sqrt(v) + eps) when
    rho_t > 5 (r_t the rectification term), else param -= lr * m_hat.

    Args:
        params: iterable of Parameters or of param-group dicts.
        lr: learning rate.
        betas: coefficients of the running averages of the gradient and its square.
        eps: term added to the denominator for numerical stability.
        weight_decay: weight decay (L2 penalty, or decoupled when `decoupled_weight_decay`).
        decoupled_weight_decay: decay the weights directly, as AdamW does.
        maximize: maximize the objective instead of minimizing it.

    Example:
        >>> w = nn.Parameter(dt.ones(2))
        >>> opt = optim.RAdam([w], lr=0.1)
        >>> (w * w).sum().backward()
        >>> opt.step()
        >>> [round(x, 4) for x in w.tolist()]
        [0.8, 0.8]

    - Paper: https://arxiv.org/abs/1908.03265
    """

    _array_state = True

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, decoupled_weight_decay: bool = False, *,
                 maximize: bool = False):
        check_hyperparameters(lr=lr, eps=eps, weight_decay=weight_decay, betas=betas)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _update(self, param, grad, state, group) -> None:
        xp = get_array_module(param)
        if not state:
            state["step"] = 0.0
            state["exp_avg"] = xp.zeros_like(param)
            state["exp_avg_sq"] = xp.zeros_like(param)
        state["step"] += 1
        step, lr, (beta1, beta2) = state["step"], group["lr"], group["betas"]
        weight_decay, decay_factor = group["weight_decay"], 1.0
        if group["decoupled_weight_decay"] and weight_decay != 0:
            weight_decay, decay_factor = 0, 1 - lr * weight_decay
        bias_correction1, bias_correction2 = 1 - beta1**step, 1 - beta2**step
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2
        rect = None
        if rho_t > 5.0:
            rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                    / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        chunks = chunk_arrays(param, grad, state["exp_avg"], state["exp_avg_sq"], scratches=2)
        for p, g, exp_avg, exp_avg_sq, adaptive, update in chunks:
            if decay_factor != 1.0:
                p *= decay_factor
            g = grad_with_decay(p, g, weight_decay, group["maximize"])
            lerp_(exp_avg, g, 1 - beta1, update)
            exp_avg_sq *= beta2
            xp.multiply(g, 1 - beta2, out=update)
            update *= g
            exp_avg_sq += update
            # NOTE: torch's order: ((m / bc1) * lr) * (sqrt(bc2) / (sqrt(v) + eps)) * rect,
            # where scalar / tensor is reciprocal(tensor) * scalar.
            xp.divide(exp_avg, bias_correction1, out=update)
            update *= lr
            if rect is not None:
                xp.sqrt(exp_avg_sq, out=adaptive)
                adaptive += group["eps"]
                xp.reciprocal(adaptive, out=adaptive)
                adaptive *= bias_correction2**0.5
                update *= adaptive
                update *= rect
            p -= update
