"""SiLU, ELU, Softplus, Hardtanh and ReLU6 as in torch.nn (arguments, attributes and reprs).

`inplace=` is accepted and shown in the repr where torch has it; the result is always a new
tensor (see disttrain.functional.relu).
"""

from __future__ import annotations

import warnings

from disttrain.nn import functional as F
from disttrain.nn.module import Module
from disttrain.tensor import Tensor


def _inplace_repr(inplace: bool, sep: str = ", ") -> str:
    return f"{sep}inplace=True" if inplace else ""


class SiLU(Module):
    """x * sigmoid(x) element-wise (Ramachandran et al., 2017).

    - Paper: https://arxiv.org/abs/1710.05941

    Example:
        >>> round(nn.SiLU()(dt.tensor([1.0])).item(), 4)
        0.7311
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.silu(input, self.inplace)

    def extra_repr(self) -> str:
        return _inplace_repr(self.inplace, sep="")


class ELU(Module):
    """x where x > 0, else alpha * (exp(x) - 1) (Clevert et al., 2015).

    - Paper: https://arxiv.org/abs/1511.07289

    Args:
        alpha: the value the negative side saturates to is -alpha.
        inplace: accepted for torch compatibility.

    Example:
        >>> nn.ELU(alpha=0.5)(dt.tensor([2.0])).tolist()
        [2.0]
    """

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha, self.inplace = alpha, inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.elu(input, self.alpha, self.inplace)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + _inplace_repr(self.inplace)


class Softplus(Module):
    """log(1 + exp(beta * x)) / beta, linear (x itself) where beta * x > threshold.

    Args:
        beta: sharpness of the curve.
        threshold: above beta * x > threshold the output is x.

    Example:
        >>> nn.Softplus(beta=2.0, threshold=10.0)(dt.tensor([30.0])).tolist()
        [30.0]
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, input: Tensor) -> Tensor:
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Hardtanh(Module):
    """x clamped to [min_val, max_val], with gradient 0 at the bounds (as torch).

    Args:
        min_val, max_val: the bounds; max_val must be greater than min_val.
        inplace: accepted for torch compatibility.
        min_value, max_value: torch's deprecated names for min_val and max_val (FutureWarning).

    Example:
        >>> nn.Hardtanh(-2.0, 2.0)(dt.tensor([-3.0, 1.0, 3.0])).tolist()
        [-2.0, 1.0, 2.0]
    """

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False,
                 min_value: float | None = None, max_value: float | None = None):
        super().__init__()
        for old, new, value in (("min_value", "min_val", min_value),
                                ("max_value", "max_val", max_value)):
            if value is not None:
                warnings.warn(f"keyword argument `{old}` is deprecated and renamed to `{new}`",
                              FutureWarning, stacklevel=2)
        min_val = min_val if min_value is None else min_value
        max_val = max_val if max_value is None else max_value
        if max_val <= min_val:
            raise ValueError(f"{type(self).__name__}: max_val ({max_val}) must be greater than "
                             f"min_val ({min_val})")
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.hardtanh(input, self.min_val, self.max_val, self.inplace)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}" + _inplace_repr(self.inplace)


class ReLU6(Hardtanh):
    """min(max(x, 0), 6) element-wise: Hardtanh(0.0, 6.0).

    Example:
        >>> nn.ReLU6()(dt.tensor([-1.0, 3.0, 8.0])).tolist()
        [0.0, 3.0, 6.0]
    """

    def __init__(self, inplace: bool = False):
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self) -> str:
        return _inplace_repr(self.inplace, sep="")
