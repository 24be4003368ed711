"""`inplace=` is accepted wherever torch takes it (functional and modules), gives the same
values and gradients as the default, and shows in the module repr as torch's does."""

from __future__ import annotations

import numpy
import pytest

import disttrain as dt
import disttrain.nn as nn
import disttrain.nn.functional as F

X = numpy.array([[-1.5, -0.2, 0.3], [2.0, -3.0, 0.7]], dtype=numpy.float32)

CASES = {
    "F.relu": lambda x, inplace: F.relu(x, inplace=inplace),
    "F.leaky_relu": lambda x, inplace: F.leaky_relu(x, 0.2, inplace=inplace),
    "F.dropout_eval": lambda x, inplace: F.dropout(x, 0.5, False, inplace=inplace),
    "F.dropout_train": lambda x, inplace: F.dropout(
        x, 0.5, True, inplace, generator=numpy.random.default_rng(0)),
    "nn.ReLU": lambda x, inplace: nn.ReLU(inplace=inplace)(x),
    "nn.LeakyReLU": lambda x, inplace: nn.LeakyReLU(0.2, inplace=inplace)(x),
    "nn.Dropout": lambda x, inplace: nn.Dropout(
        0.5, inplace=inplace, generator=numpy.random.default_rng(0))(x),
}


def _run(fn, inplace):
    x = dt.tensor(X, requires_grad=True)
    out = fn(x, inplace)
    (out * dt.tensor(numpy.arange(6, dtype=numpy.float32).reshape(2, 3))).sum().backward()
    return out.detach().numpy(), x.grad.numpy()


@pytest.mark.parametrize("name", CASES)
def test_inplace_gives_the_same_values_and_gradients(name):
    values, grad = _run(CASES[name], False)
    values_inplace, grad_inplace = _run(CASES[name], True)
    numpy.testing.assert_array_equal(values_inplace, values)
    numpy.testing.assert_array_equal(grad_inplace, grad)


def test_relu_inplace_values():
    out = F.relu(dt.tensor(X), inplace=True)
    numpy.testing.assert_array_equal(out.numpy(), numpy.maximum(X, 0))
    numpy.testing.assert_allclose(F.leaky_relu(dt.tensor(X), 0.2, True).numpy(),
                                  numpy.where(X > 0, X, 0.2 * X))


@pytest.mark.parametrize("module, text", [
    (nn.ReLU(), "ReLU()"),
    (nn.ReLU(inplace=True), "ReLU(inplace=True)"),
    (nn.LeakyReLU(), "LeakyReLU(negative_slope=0.01)"),
    (nn.LeakyReLU(0.2, inplace=True), "LeakyReLU(negative_slope=0.2, inplace=True)"),
    (nn.Dropout(0.3), "Dropout(p=0.3, inplace=False)"),
    (nn.Dropout(0.3, inplace=True), "Dropout(p=0.3, inplace=True)"),
])
def test_module_repr_shows_inplace_as_torch(module, text):
    assert repr(module) == text


def test_module_reprs_match_torch():
    torch = pytest.importorskip("torch")
    for ours, theirs in [(nn.ReLU(inplace=True), torch.nn.ReLU(inplace=True)),
                         (nn.LeakyReLU(0.2, True), torch.nn.LeakyReLU(0.2, True)),
                         (nn.Dropout(0.3, True), torch.nn.Dropout(0.3, True))]:
        assert repr(ours) == repr(theirs)
