"""The runnable docstring examples of disttrain.training (EarlyStopping, progress, Callback)
run and print what they show; fit()'s and the loggers' examples need a model and data, which
tests/unit/test_training.py covers."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["disttrain.training.early_stopping",
                                  "disttrain.training.progress",
                                  "disttrain.training.callbacks"])
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, report=False)
    assert result.attempted > 0 and result.failed == 0, result
