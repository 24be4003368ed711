"""NAdam, as torch.optim.NAdam."""

from __future__ import annotations

from collections.abc import Iterable

import numpy

from disttrain.backend import get_array_module
from disttrain.optim.adam import lerp_
from disttrain.optim.optimizer import (
    Optimizer,
    check_hyperparameters,
    chunk_arrays,
    grad_with_decay,
)
from disttrain.tensor import Tensor


class NAdam(Optimizer):
    """NAdam, PyTorch's `torch.optim.NAdam` (the single-tensor algorithm).

    Adam with Nesterov momentum: with mu_t = beta1 * (1 - 0.5 * 0.96**(t * momentum_decay))
    and their running product prod_t, param -= lr * (1 - mu_t) / (1 - prod_t) * g / denom
    + lr * mu_{t+1} / (1 - prod_t * mu_{t+1}) * m / denom, denom = sqrt(v / (1 - beta2**t))
    + eps. `decoupled_weight_decay` multiplies the weights by 1 - lr * weight_decay instead
    of adding weight_decay * param to g (NAdamW).

    Args:
        params: iterable of Parameters or of param-group dicts.
        lr: learning rate.
        betas: coefficients of the running averages of the gradient and its square.
        eps: term added to the denominator for numerical stability.
        weight_decay: weight decay (L2 penalty, or decoupled when `decoupled_weight_decay`).
        momentum_decay: the momentum decay psi.
        decoupled_weight_decay: decay the weights directly, as AdamW does.
        maximize: maximize the objective instead of minimizing it.

    Example:
        >>> w = nn.Parameter(dt.ones(2))
        >>> opt = optim.NAdam([w], lr=0.1)
        >>> (w * w).sum().backward()
        >>> opt.step()
        >>> [round(x, 4) for x in w.tolist()]
        [0.8944, 0.8944]

    - Paper: https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ
    """

    _array_state = True

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 2e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, maximize: bool = False):
        check_hyperparameters(lr=lr, eps=eps, weight_decay=weight_decay,
                              momentum_decay=momentum_decay, betas=betas)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _update(self, param, grad, state, group) -> None:
        xp = get_array_module(param)
        if not state:
            state["step"] = 0.0
            state["mu_product"] = 1.0
            state["exp_avg"] = xp.zeros_like(param)
            state["exp_avg_sq"] = xp.zeros_like(param)
        state["step"] += 1
        step, lr, (beta1, beta2) = state["step"], group["lr"], group["betas"]
        weight_decay, decay_factor = group["weight_decay"], 1.0
        if group["decoupled_weight_decay"] and weight_decay != 0:
            weight_decay, decay_factor = 0, 1 - lr * weight_decay
        mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * group["momentum_decay"])))
        mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * group["momentum_decay"])))
        # NOTE: torch keeps mu_product in a float32 tensor (the default scalar dtype), so the
        # running product is rounded to float32 at every step; so is it here.
        mu_product = float(numpy.float32(state["mu_product"]) * numpy.float32(mu))
        state["mu_product"] = mu_product
        grad_scale = -lr * (1.0 - mu) / (1.0 - mu_product)
        avg_scale = (-lr * mu_next) / (1.0 - mu_product * mu_next)
        bias_correction2 = 1 - beta2**step
        chunks = chunk_arrays(param, grad, state["exp_avg"], state["exp_avg_sq"], scratches=2)
        for p, g, exp_avg, exp_avg_sq, denom, update in chunks:
            if decay_factor != 1.0:
                p *= decay_factor
            g = grad_with_decay(p, g, weight_decay, group["maximize"])
            lerp_(exp_avg, g, 1 - beta1, update)
            exp_avg_sq *= beta2
            xp.multiply(g, 1 - beta2, out=update)
            update *= g
            exp_avg_sq += update
            xp.divide(exp_avg_sq, bias_correction2, out=denom)
            xp.sqrt(denom, out=denom)
            denom += group["eps"]
            for numerator, scale in ((g, grad_scale), (exp_avg, avg_scale)):
                xp.multiply(numerator, scale, out=update)  # NOTE: torch's addcdiv_ order
                update /= denom
                p += update
