"""L1 / L2 penalties on parameters, as differentiable scalars to add to a loss.

Weight decay in the optimizers covers the common L2 case; these are for regularising inside
the loss (L1 for sparsity, a penalty on some parameters only, a penalty that shows in the
logged loss). Imports disttrain.tensor and disttrain.tensor_shape only.
"""

from __future__ import annotations

from collections.abc import Iterable

from disttrain.tensor import Tensor, tensor
from disttrain.tensor_shape import stack


def _penalty(owner: str, parameters, term) -> Tensor:
    parameters = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    for i, p in enumerate(parameters):
        if not isinstance(p, Tensor):
            raise TypeError(f"{owner}: parameters should be Tensors (e.g. model.parameters()), "
                            f"got {type(p).__name__} at position {i}")
    if not parameters:
        return tensor(0.0)
    # NOTE: one Stack and one Sum node over the per-parameter sums, not a chain of Adds
    return stack([term(p) for p in parameters]).sum()


def l1_penalty(parameters: Iterable[Tensor] | Tensor) -> Tensor:
    """sum over parameters of sum |w|: a 0-d Tensor whose gradient is sign(w) (0 at w = 0).

    Args:
        parameters: Tensors (e.g. `model.parameters()`) or a single Tensor.

    Example:
        >>> import disttrain as dt, disttrain.nn as nn
        >>> model = nn.Linear(4, 2)
        >>> loss = model(dt.ones(3, 4)).sum() + 1e-4 * nn.utils.l1_penalty(model.parameters())
        >>> loss.backward()
    """
    return _penalty("l1_penalty", parameters, lambda p: p.abs().sum())


def l2_penalty(parameters: Iterable[Tensor] | Tensor) -> Tensor:
    """sum over parameters of sum w^2 (no 1/2): a 0-d Tensor whose gradient is 2 w.

    So `loss + (wd / 2) * l2_penalty(model.parameters())` takes the same SGD step as
    `optim.SGD(..., weight_decay=wd)` on `loss` (for Adam, weight_decay is also this L2
    gradient term; AdamW's decoupled decay is not a penalty).

    Args:
        parameters: Tensors (e.g. `model.parameters()`) or a single Tensor.

    Example:
        >>> import disttrain as dt, disttrain.nn as nn, disttrain.nn.functional as F
        >>> model = nn.Linear(4, 2)
        >>> ce = F.cross_entropy(model(dt.ones(3, 4)), dt.tensor([0, 1, 1]))
        >>> loss = ce + 1e-4 * nn.utils.l2_penalty(model.parameters())
        >>> loss.backward()
    """
    return _penalty("l2_penalty", parameters, lambda p: (p * p).sum())
