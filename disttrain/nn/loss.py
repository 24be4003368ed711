"""Loss modules with torch.nn's names and constructor arguments (the deprecated
`size_average`/`reduce` pair included): MSELoss, L1Loss, SmoothL1Loss, HuberLoss,
CrossEntropyLoss, NLLLoss, BCELoss, BCEWithLogitsLoss, KLDivLoss."""

from __future__ import annotations

from disttrain.functional_loss import check_reduction, legacy_reduction
from disttrain.nn import functional as F
from disttrain.nn.module import Module
from disttrain.tensor import Tensor


class _Loss(Module):
    _reductions = ("mean", "sum", "none")

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__()
        if size_average is not None or reduce is not None:
            reduction = legacy_reduction(size_average, reduce)
        check_reduction(type(self).__name__, reduction, self._reductions)
        self.reduction = reduction


class _WeightedLoss(_Loss):
    def __init__(self, weight: Tensor | None = None, size_average=None, reduce=None,
                 reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)


class MSELoss(_Loss):
    """Mean squared error, as torch.nn.MSELoss.

    Example:
        >>> nn.MSELoss()(dt.zeros(3), dt.ones(3)).item()
        1.0
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Mean absolute error, as torch.nn.L1Loss.

    Example:
        >>> nn.L1Loss(reduction="sum")(dt.zeros(3), dt.ones(3)).item()
        3.0
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """Quadratic below `beta`, linear above, as torch.nn.SmoothL1Loss (see F.smooth_l1_loss).

    Example:
        >>> nn.SmoothL1Loss(beta=0.5)(dt.zeros(2), dt.tensor([0.25, 2.0])).item()
        0.90625
    """

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean",
                 beta: float = 1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """Quadratic below `delta`, delta-scaled linear above, as torch.nn.HuberLoss.

    Example:
        >>> nn.HuberLoss(delta=2.0)(dt.zeros(2), dt.tensor([0.5, 3.0])).item()
        2.0625
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction=reduction)
        self.delta = delta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of class indices given log-probabilities (N, C, ...).

    Example:
        >>> loss = nn.NLLLoss()(dt.randn(4, 10).log_softmax(1), dt.tensor([1, 0, 9, 3]))
    """

    def __init__(self, weight: Tensor | None = None, size_average=None,
                 ignore_index: int = -100, reduce=None, reduction: str = "mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.nll_loss(input, target, self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class CrossEntropyLoss(_WeightedLoss):
    """Softmax cross-entropy of logits (N, C, ...) against class indices or probabilities.

    Example:
        >>> loss = nn.CrossEntropyLoss()(dt.randn(4, 10), dt.tensor([1, 0, 9, 3]))
    """

    def __init__(self, weight: Tensor | None = None, size_average=None,
                 ignore_index: int = -100, reduce=None, reduction: str = "mean",
                 label_smoothing: float = 0.0):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(input, target, self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class BCELoss(_WeightedLoss):
    """Binary cross-entropy of probabilities in [0, 1], as torch.nn.BCELoss.

    Example:
        >>> round(nn.BCELoss()(dt.tensor([0.5, 0.5]), dt.tensor([1.0, 0.0])).item(), 4)
        0.6931
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid + binary cross-entropy, numerically stable; float targets in [0, 1].

    Example:
        >>> loss = nn.BCEWithLogitsLoss()(dt.randn(3), dt.tensor([1.0, 0.0, 1.0]))
    """

    def __init__(self, weight: Tensor | None = None, size_average=None, reduce=None,
                 reduction: str = "mean", pos_weight: Tensor | None = None):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(input, target, self.weight,
                                                  reduction=self.reduction,
                                                  pos_weight=self.pos_weight)


class KLDivLoss(_Loss):
    """Kullback-Leibler divergence loss on log-probability inputs, as torch.nn.KLDivLoss.

    Example:
        >>> loss = nn.KLDivLoss(reduction="batchmean")(dt.randn(4, 5).log_softmax(1),
        ...                                            dt.rand(4, 5).softmax(1))
    """

    _reductions = ("mean", "sum", "none", "batchmean")

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean",
                 log_target: bool = False):
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)
