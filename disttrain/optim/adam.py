"""Adam (and the decoupled-weight-decay switch AdamW builds on)."""

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


class Adam(Optimizer):
    """Adam, PyTorch's `torch.optim.Adam` (the single-tensor, non-fused algorithm).

    m = lerp(m, g, 1 - beta1), v = beta2 * v + (1 - beta2) * g * g, then
    param -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps), with
    g = grad + weight_decay * param (L2), or param *= 1 - lr * weight_decay first when
    `decoupled_weight_decay` (AdamW). `amsgrad` uses the running max of v in the denominator.

    Args:
        params: iterable of Parameters or of param-group dicts.
        lr: learning rate.
        betas: coefficients of the running averages of the gradient and its square.
        eps: term added to the denominator for numerical stability.
        weight_decay: weight decay (L2 penalty, or decoupled when `decoupled_weight_decay`).
        amsgrad: use the AMSGrad variant.
        maximize: maximize the objective instead of minimizing it.
        decoupled_weight_decay: decay the weights directly, as AdamW.

    Example:
        >>> w = nn.Parameter(dt.ones(2))
        >>> opt = optim.Adam([w], lr=0.1)
        >>> (w * w).sum().backward()
        >>> opt.step()
        >>> [round(x, 4) for x in w.tolist()]
        [0.9, 0.9]

    - Paper: https://arxiv.org/abs/1412.6980 (AMSGrad: https://openreview.net/forum?id=ryQu7f-RZ)
    """

    _array_state = True

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False):
        check_hyperparameters(lr=lr, eps=eps, weight_decay=weight_decay, betas=betas)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _update(self, param, grad, state, group) -> None:
        xp = get_array_module(param)
        lr, (beta1, beta2), weight_decay = group["lr"], group["betas"], group["weight_decay"]
        if not state:
            state["step"] = 0.0
            state["exp_avg"] = xp.zeros_like(param)
            state["exp_avg_sq"] = xp.zeros_like(param)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(param)
        state["step"] += 1
        step, eps, maximize = state["step"], group["eps"], group["maximize"]
        decay_factor = 1.0
        if group["decoupled_weight_decay"]:
            decay_factor, weight_decay = 1 - lr * weight_decay, 0
        step_size = lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        chunks = chunk_arrays(param, grad, state["exp_avg"], state["exp_avg_sq"],
                         state.get("max_exp_avg_sq"))
        for p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, scratch in chunks:
            if decay_factor != 1.0:
                p *= decay_factor
            g = grad_with_decay(p, g, weight_decay, maximize)
            lerp_(exp_avg, g, 1 - beta1, scratch)
            exp_avg_sq *= beta2
            xp.multiply(g, 1 - beta2, out=scratch)
            scratch *= g
            exp_avg_sq += scratch
            if max_exp_avg_sq is not None:
                exp_avg_sq = xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
            denom = xp.sqrt(exp_avg_sq, out=scratch)
            denom /= bias_correction2_sqrt
            denom += eps
            update = xp.divide(exp_avg, denom, out=scratch)
            update *= step_size
            p -= update


def lerp_(start, end, weight: float, scratch) -> None:
    """start = start + weight * (end - start) in place, rounded as torch.lerp_ on the CPU."""
    xp = get_array_module(start)
    xp.subtract(end, start, out=scratch)
    if weight < 0.5:
        scratch *= weight
        start += scratch
    else:  # NOTE: torch's second branch; exact at weight == 1
        scratch *= 1 - weight
        xp.subtract(end, scratch, out=start)
