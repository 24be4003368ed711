"""Shared by tests/unit/test_quantization*.py: a small digits CNN trained once per session."""

from __future__ import annotations

import functools

import numpy

import disttrain as dt
import disttrain.nn as nn
import disttrain.optim as optim
from disttrain.data import DataLoader, datasets


def small_cnn():
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(8 * 13 * 13, 32), nn.ReLU(), nn.Linear(32, 10))


@functools.lru_cache(maxsize=1)
def trained_digits_cnn():
    """(model in eval mode trained one epoch, validation images, labels, 256 calibration
    images from the training set)."""
    dt.manual_seed(0)
    train = datasets.Digits("train", val_fraction=0.2, seed=0)
    val = datasets.Digits("val", val_fraction=0.2, seed=0)
    model = small_cnn()
    optimizer, loss_fn = optim.Adam(model.parameters(), lr=2e-3), nn.CrossEntropyLoss()
    for x, y in DataLoader(train, batch_size=32, shuffle=True, seed=0):
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    images = dt.tensor(numpy.stack([val[i][0] for i in range(len(val))]))
    labels = numpy.array([int(val[i][1]) for i in range(len(val))])
    calibration = dt.tensor(numpy.stack([train[i][0] for i in range(256)]))
    return model.eval(), images, labels, calibration


def static_quantize(model, calibration, qconfig=None):
    from disttrain.quantization import convert, prepare

    prepared = prepare(model, qconfig)
    with dt.no_grad():
        prepared(calibration)
    return convert(prepared)


def logits(model, x):
    with dt.no_grad():
        return model(x).numpy()
