"""nn.utils.l1_penalty / l2_penalty: values, gradients (against torch when present), use in a
loss, and l2 with the factor 1/2 equal to SGD's weight_decay for one step."""

from __future__ import annotations

import numpy as np
import pytest

import disttrain as dt
import disttrain.nn as nn
import disttrain.nn.functional as F
import disttrain.optim as optim

RNG = np.random.default_rng(0)
ARRAYS = [RNG.standard_normal((3, 4)), np.array([0.0, -2.0, 0.5]), RNG.standard_normal(5)]


def _params(dtype=np.float64):
    return [dt.tensor(a.astype(dtype), requires_grad=True) for a in ARRAYS]


def test_values_and_gradients():
    params = _params()
    l1 = nn.utils.l1_penalty(params)
    assert l1.shape == () and l1.requires_grad
    np.testing.assert_allclose(l1.item(), sum(np.abs(a).sum() for a in ARRAYS))
    l1.backward()
    for p, a in zip(params, ARRAYS, strict=True):
        np.testing.assert_array_equal(p.grad.numpy(), np.sign(a))  # NOTE: 0 at w = 0, as torch
    params = _params()
    l2 = nn.utils.l2_penalty(iter(params))
    np.testing.assert_allclose(l2.item(), sum((a * a).sum() for a in ARRAYS))
    l2.backward()
    for p, a in zip(params, ARRAYS, strict=True):
        np.testing.assert_allclose(p.grad.numpy(), 2 * a)


def test_single_tensor_empty_and_dtype():
    w = dt.tensor(np.array([1.0, -3.0], np.float32), requires_grad=True)
    assert nn.utils.l1_penalty(w).item() == 4.0 and nn.utils.l2_penalty(w).item() == 10.0
    assert nn.utils.l2_penalty(w).dtype == np.float32
    assert nn.utils.l2_penalty([]).item() == 0.0
    with pytest.raises(TypeError, match="l2_penalty: parameters should be Tensors "
                                        r"\(e.g. model.parameters\(\)\), got ndarray at "
                                        "position 1"):
        nn.utils.l2_penalty([w, np.ones(2)])


def test_matches_torch():
    torch = pytest.importorskip("torch")
    ours, theirs = _params(), [torch.tensor(a, requires_grad=True) for a in ARRAYS]
    loss = 0.3 * nn.utils.l1_penalty(ours) + 0.7 * nn.utils.l2_penalty(ours)
    expected = sum(0.3 * t.abs().sum() + 0.7 * (t * t).sum() for t in theirs)
    loss.backward()
    expected.backward()
    np.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-12)
    for p, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-12)


def _model():
    dt.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


X = dt.tensor(RNG.standard_normal((16, 4)).astype(np.float32))
Y = dt.tensor(RNG.integers(0, 3, 16))


def test_half_l2_in_the_loss_is_sgd_weight_decay():
    wd, lr = 0.05, 0.1
    decayed, penalised = _model(), _model()
    opt = optim.SGD(decayed.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    F.cross_entropy(decayed(X), Y).backward()
    opt.step()
    opt = optim.SGD(penalised.parameters(), lr=lr, momentum=0.9)
    loss = F.cross_entropy(penalised(X), Y) + (wd / 2) * nn.utils.l2_penalty(
        penalised.parameters())
    loss.backward()
    opt.step()
    for (name, a), b in zip(decayed.state_dict().items(), penalised.state_dict().values(),
                            strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=name)


def test_l1_step_moves_every_weight_by_lr_towards_zero():
    model = _model()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    opt = optim.SGD(model.parameters(), lr=0.01)
    nn.utils.l1_penalty(model.parameters()).backward()
    opt.step()
    for name, after in model.state_dict().items():
        expected = before[name] - np.float32(0.01) * np.sign(before[name])
        np.testing.assert_allclose(after, expected, rtol=1e-6, err_msg=name)
