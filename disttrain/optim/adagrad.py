"""Adagrad, as torch.optim.Adagrad."""

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


class Adagrad(Optimizer):
    """Adagrad, PyTorch's `torch.optim.Adagrad` (the single-tensor, dense algorithm).

    s += g * g, param -= clr * g / (sqrt(s) + eps) with clr = lr / (1 + (t - 1) * lr_decay)
    at step t, g = grad + weight_decay * param (negated grad when `maximize`). As in torch, the
    state ("step", "sum" = initial_accumulator_value) exists from construction for every
    parameter, and a parameter added later by `add_param_group` starts from the constructor's
    initial_accumulator_value.

    Args:
        params: iterable of Parameters or of param-group dicts.
        lr: learning rate.
        lr_decay: learning-rate decay per step.
        weight_decay: weight decay (L2 penalty).
        initial_accumulator_value: starting value of the sum of squared gradients.
        eps: term added to the denominator for numerical stability.
        maximize: maximize the objective instead of minimizing it.

    Example:
        >>> w = nn.Parameter(dt.ones(2))
        >>> opt = optim.Adagrad([w], lr=0.1)
        >>> (w * w).sum().backward()
        >>> opt.step()
        >>> [round(x, 4) for x in w.tolist()]
        [0.9, 0.9]

    - Paper: https://jmlr.org/papers/v12/duchi11a.html
    """

    _array_state = True

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-2,
                 lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, *,
                 maximize: bool = False):
        check_hyperparameters(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay)
        if not 0.0 <= initial_accumulator_value:
            raise ValueError(
                f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, maximize=maximize)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p.array, self.state[p])

    def _init_state(self, param, state) -> None:
        state["step"] = 0.0
        state["sum"] = get_array_module(param).full_like(
            param, self.defaults["initial_accumulator_value"])

    def _update(self, param, grad, state, group) -> None:
        xp = get_array_module(param)
        if not state:
            self._init_state(param, state)
        state["step"] += 1
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        for p, g, state_sum, std, update in chunk_arrays(param, grad, state["sum"], scratches=2):
            g = grad_with_decay(p, g, group["weight_decay"], group["maximize"])
            xp.multiply(g, g, out=update)
            state_sum += update
            xp.sqrt(state_sum, out=std)
            std += group["eps"]
            xp.multiply(g, -clr, out=update)  # NOTE: torch's addcdiv_: p + (value * g) / std
            update /= std
            p += update
