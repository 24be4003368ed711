"""AdamW: Adam with decoupled weight decay."""

from __future__ import annotations

from collections.abc import Iterable

from disttrain.optim.adam import Adam
from disttrain.tensor import Tensor


class AdamW(Adam):
    """AdamW, PyTorch's `torch.optim.AdamW`: Adam whose weight decay shrinks the weights directly.

    Each step first does param *= 1 - lr * weight_decay, then the Adam update without any L2
    term in the gradient.

    Args:
        params: iterable of Parameters or of param-group dicts.
        lr: learning rate.
        betas: coefficients of the running averages of the gradient and its square.
        eps: term added to the denominator for numerical stability.
        weight_decay: decoupled weight decay coefficient.
        amsgrad: use the AMSGrad variant.
        maximize: maximize the objective instead of minimizing it.

    Example:
        >>> w = nn.Parameter(dt.ones(2))
        >>> opt = optim.AdamW([w], lr=0.1, weight_decay=0.5)
        >>> (w * w).sum().backward()
        >>> opt.step()
        >>> [round(x, 4) for x in w.tolist()]
        [0.85, 0.85]

    - Paper: https://arxiv.org/abs/1711.05101
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # NOTE: as torch: AdamW always decays decoupled
            group["decoupled_weight_decay"] = True
