"""Optimizers (SGD, Adam, AdamW, RMSprop) and learning-rate schedulers, as torch.optim."""

from __future__ import annotations

from disttrain.optim import lr_scheduler
from disttrain.optim.adam import Adam
from disttrain.optim.adamw import AdamW
from disttrain.optim.optimizer import Optimizer
from disttrain.optim.rmsprop import RMSprop
from disttrain.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "lr_scheduler"]
