"""Learning-rate schedulers with PyTorch's semantics (`torch.optim.lr_scheduler`).

Schedules use torch's recursive ("chainable") formulas, so their sequences match torch's to
rounding. `state_dict()` holds plain numbers, lists and strings, never the optimizer or a function.
"""

from disttrain.optim.lr_scheduler.base import LRScheduler
from disttrain.optim.lr_scheduler.plateau import ReduceLROnPlateau
from disttrain.optim.lr_scheduler.schedules import (
    CosineAnnealingLR,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    MultiStepLR,
    StepLR,
)
from disttrain.optim.lr_scheduler.sequential import SequentialLR

__all__ = ["LRScheduler", "LambdaLR", "StepLR", "MultiStepLR", "ExponentialLR",
           "CosineAnnealingLR", "LinearLR", "SequentialLR", "ReduceLROnPlateau"]
