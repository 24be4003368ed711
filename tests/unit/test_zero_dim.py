"""0-d tensors hold 0-d ndarrays (never numpy scalars), as torch's do: full reductions, losses,
scalar indexing and 0-d gradients, and the in-place ops, numpy() and dt.save that need it."""

from __future__ import annotations

import numpy
import pytest

import disttrain as dt
import disttrain.nn as nn
import disttrain.nn.functional as F

X = numpy.arange(12, dtype=numpy.float32).reshape(3, 4) / 7
LOGITS = numpy.linspace(-1, 1, 12, dtype=numpy.float32).reshape(3, 4)
LABELS = numpy.array([0, 3, 1])

ZERO_DIM = {
    "sum": lambda x: x.sum(),
    "mean": lambda x: x.mean(),
    "var": lambda x: x.var(),
    "std": lambda x: x.std(),
    "max": lambda x: x.max(),
    "min": lambda x: x.min(),
    "amax": lambda x: x.amax(),
    "index_ij": lambda x: x[1, 2],
    "index_ij_negative": lambda x: x[-1, -1],
    "scalar_arithmetic": lambda x: x[0, 0] * x[1, 1] + 1.0,
    "compare": lambda x: x.sum() > 1.0,
    "mse_loss": lambda x: F.mse_loss(x, x.detach() * 2),
    "cross_entropy": lambda x: F.cross_entropy(x, dt.tensor(LABELS)),
    "cross_entropy_smoothing": lambda x: F.cross_entropy(x, dt.tensor(LABELS),
                                                         label_smoothing=0.1),
    "cross_entropy_probs": lambda x: F.cross_entropy(x, x.detach().softmax(1)),
    "nll_loss": lambda x: F.nll_loss(x.log_softmax(1), dt.tensor(LABELS)),
    "nll_loss_sum": lambda x: F.nll_loss(x.log_softmax(1), dt.tensor(LABELS), reduction="sum"),
    "bce_with_logits": lambda x: F.binary_cross_entropy_with_logits(x, x.detach().sigmoid()),
    "nn_CrossEntropyLoss": lambda x: nn.CrossEntropyLoss()(x, dt.tensor(LABELS)),
    "nn_MSELoss": lambda x: nn.MSELoss(reduction="sum")(x, x.detach()),
}


def _zero_dim(name: str) -> dt.Tensor:
    with dt.no_grad():
        return ZERO_DIM[name](dt.tensor(LOGITS if "loss" in name or "cross" in name else X))


@pytest.mark.parametrize("name", ZERO_DIM)
def test_zero_dim_results_hold_0d_ndarrays(name):
    out = ZERO_DIM[name](dt.tensor(X, requires_grad=True))
    assert out.shape == ()
    assert type(out.array) is numpy.ndarray, type(out.array)
    assert type(out.detach().numpy()) is numpy.ndarray


@pytest.mark.parametrize("name", ZERO_DIM)
def test_inplace_ops_on_zero_dim_results(name):
    t = _zero_dim(name)
    if t.dtype == dt.bool:
        t = t.float()
    value = float(t.item())
    t += 1
    t /= 2
    t.add_(3)
    t.mul_(2)
    assert t.item() == pytest.approx(((value + 1) / 2 + 3) * 2, rel=1e-5)
    t.zero_()
    assert t.item() == 0.0
    t.fill_(4.5)
    assert t.item() == 4.5
    t.copy_(dt.tensor(-2.0))
    assert t.item() == -2.0


def test_zero_and_fill_change_a_loss_value():
    loss = _zero_dim("cross_entropy")
    assert loss.item() != 0.0
    assert loss.zero_().item() == 0.0 and loss.fill_(7).item() == 7.0


def test_gradient_of_a_0d_leaf_is_a_0d_array():
    a = dt.tensor(3.0, requires_grad=True)
    (a * a).backward()
    assert type(a.grad.array) is numpy.ndarray and a.grad.shape == ()
    assert a.grad.item() == 6.0
    (a * 2.0).backward()  # accumulates into the 0-d array
    assert a.grad.item() == 8.0
    a.grad.zero_()
    assert a.grad.item() == 0.0


def test_hooks_on_0d_tensors_get_0d_arrays():
    a = dt.tensor(2.0, requires_grad=True)
    seen = []
    a.register_hook(lambda g: seen.append(type(g.array)))
    h = a * 3.0
    h.register_hook(lambda g: seen.append(type(g.array)))
    (h * h).backward()
    assert seen == [numpy.ndarray, numpy.ndarray]


def test_data_setter_takes_a_numpy_scalar_as_a_0d_array():
    t = dt.tensor(1.0)
    t.data = numpy.float32(5.0)
    assert type(t.array) is numpy.ndarray and t.add_(1).item() == 6.0


def test_save_and_load_a_0d_loss(tmp_path):
    loss = _zero_dim("cross_entropy")
    path = tmp_path / "loss.safetensors"
    dt.save({"loss": loss, "sum": _zero_dim("sum")}, path)
    loaded = dt.load(path)
    assert set(loaded) == {"loss", "sum"}
    numpy.testing.assert_array_equal(numpy.asarray(loaded["loss"]), loss.numpy())
    assert numpy.asarray(loaded["loss"]).shape == ()
    assert float(numpy.asarray(loaded["sum"])) == pytest.approx(float(X.sum()), rel=1e-6)
