"""The lazy package namespaces (disttrain.lazy): every public name of disttrain,
disttrain.distributed, its pipeline package and disttrain.launch resolves, is cached after the
first access, and is listed by dir(); unknown names raise AttributeError naming the package."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

import disttrain
import disttrain as dt

PACKAGES = ["disttrain", "disttrain.distributed", "disttrain.distributed.pipeline",
            "disttrain.launch"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves_and_is_listed(package):
    module = importlib.import_module(package)
    assert module.__all__, package
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
    assert set(module.__all__) <= set(dir(module))


@pytest.mark.parametrize("package", PACKAGES)
def test_unknown_name_is_an_attribute_error(package):
    module = importlib.import_module(package)
    with pytest.raises(AttributeError, match=rf"module '{package}' has no attribute 'nope'"):
        module.nope  # noqa: B018


def test_the_torch_names_keep_working():
    x = dt.tensor([1.0, 4.0])
    assert isinstance(dt.tensor, types.FunctionType) and isinstance(x, dt.Tensor)
    assert dt.sqrt(x).tolist() == [1.0, 2.0] and dt.sum(x).item() == 5.0
    assert dt.exp.__module__ == "disttrain.tensor_functions"
    assert (dt.float, dt.double, dt.long, dt.bool) == (dt.float32, dt.float64, dt.int64,
                                                      dt.bool_)
    assert isinstance(dt.nn, types.ModuleType) and dt.nn.Linear is not None
    from disttrain import Tensor, no_grad, tune_malloc  # noqa: F401


def test_a_name_is_cached_after_first_use():
    dt.zeros  # noqa: B018
    assert "zeros" in vars(disttrain)  # later lookups are plain attribute lookups


def test_importing_the_tensor_module_does_not_hide_dt_tensor():
    """The import system binds submodule disttrain.tensor on the package; dt.tensor stays the
    function whatever is imported first (a fresh interpreter, so nothing is cached yet)."""
    code = ("import disttrain.tensor, disttrain as dt; import types;"
            "assert isinstance(dt.tensor, types.FunctionType), dt.tensor;"
            "from disttrain.tensor import Tensor; assert dt.Tensor is Tensor")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
