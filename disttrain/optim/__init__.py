"""Optimizers (SGD, Adam, AdamW, RMSprop, Adadelta, Adagrad, NAdam, RAdam, LBFGS) and
learning-rate schedulers, as torch.optim."""

from __future__ import annotations

from disttrain.optim import lr_scheduler
from disttrain.optim.adadelta import Adadelta
from disttrain.optim.adagrad import Adagrad
from disttrain.optim.adam import Adam
from disttrain.optim.adamw import AdamW
from disttrain.optim.lbfgs import LBFGS
from disttrain.optim.nadam import NAdam
from disttrain.optim.optimizer import Optimizer
from disttrain.optim.radam import RAdam
from disttrain.optim.rmsprop import RMSprop
from disttrain.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adadelta", "Adagrad", "NAdam",
           "RAdam", "LBFGS", "lr_scheduler"]
