"""The Example sections of disttrain.metrics' docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import numpy
import pytest

import disttrain.metrics as M

MODULES = ["classification", "curves", "ranking", "stateful"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(f"disttrain.metrics.{name}")
    names = {public: getattr(M, public) for public in M.__all__}
    result = doctest.testmod(module, extraglobs={"numpy": numpy, **names}, report=False)
    assert result.attempted > 0 and result.failed == 0, result
