"""k optimizer steps of disttrain.optim against torch.optim on the same weights and gradients."""

from __future__ import annotations

import numpy
import pytest

import disttrain.optim as optim
from disttrain.nn import Parameter
from disttrain.tensor import Tensor

torch = pytest.importorskip("torch")

SHAPES = [(4, 3), (3,), (2, 2, 2), (257, 513)]  # the last one is updated in chunks
K_STEPS = 5
TOL = {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=1e-5, atol=1e-6)}

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict()),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.5, weight_decay=0.1, maximize=True)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    ("Adam", dict(lr=0.01, betas=(0.3, 0.9), eps=1e-6)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, maximize=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.05, amsgrad=True, maximize=True)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, maximize=True)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, alpha=0.3, centered=True, momentum=0.5, maximize=True)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-4)),
    ("Adadelta", dict(weight_decay=0.1, maximize=True)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.1, eps=1e-6)),
    ("Adagrad", dict(weight_decay=0.1, initial_accumulator_value=0.5)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.05, lr_decay=0.01, maximize=True)),
    ("NAdam", dict()),
    ("NAdam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, momentum_decay=0.1)),
    ("NAdam", dict(lr=0.01, weight_decay=0.1)),
    ("NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("NAdam", dict(lr=0.01, weight_decay=0.05, maximize=True)),
    ("RAdam", dict()),
    ("RAdam", dict(lr=0.01, betas=(0.8, 0.9), eps=1e-6)),
    ("RAdam", dict(lr=0.01, weight_decay=0.1)),
    ("RAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("RAdam", dict(lr=0.01, betas=(0.5, 0.6), weight_decay=0.05, maximize=True)),
]  # fmt: skip


def _weights(dtype, seed=0):
    rng = numpy.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]


def _grads(dtype, k=K_STEPS, seed=1):
    """Per step, one gradient per parameter; None (no gradient) for param 1 at step 2."""
    rng = numpy.random.default_rng(seed)
    steps = [[rng.standard_normal(shape).astype(dtype) for shape in SHAPES] for _ in range(k)]
    if k > 2:
        steps[2][1] = None
    return steps


def _pair(name, kwargs, dtype, groups=None):
    """(ours, params, torch's, torch params) built from the same initial weights."""
    weights = _weights(dtype)
    ours = [Parameter(Tensor(w.copy())) for w in weights]
    theirs = [torch.tensor(w.copy(), requires_grad=True) for w in weights]
    if groups is not None:  # groups: per-group overrides, splitting params as [:1] and [1:]
        split = lambda ps: [dict(groups[0], params=ps[:1]), dict(groups[1], params=ps[1:])]  # noqa: E731
        return (getattr(optim, name)(split(ours), **kwargs), ours,
                getattr(torch.optim, name)(split(theirs), **kwargs), theirs)
    return (getattr(optim, name)(ours, **kwargs), ours,
            getattr(torch.optim, name)(theirs, **kwargs), theirs)


def _feed(params, grads, as_grad):
    for p, g in zip(params, grads, strict=True):
        p.grad = None if g is None else as_grad(g.copy())


def _run(opt, params, grad_steps, as_grad):
    for grads in grad_steps:
        _feed(params, grads, as_grad)
        opt.step()


def _torch_grad(array):
    return torch.tensor(array)


def _assert_close(ours, theirs, dtype):
    for p, q in zip(ours, theirs, strict=True):
        assert p.array.dtype == numpy.dtype(dtype) and p.shape == tuple(q.shape)
        numpy.testing.assert_allclose(p.array, q.detach().numpy(), **TOL[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name, kwargs", CASES)
def test_k_steps_match_torch(name, kwargs, dtype):
    opt, ours, torch_opt, theirs = _pair(name, kwargs, dtype)
    grad_steps = _grads(dtype)
    for grads in grad_steps:
        _feed(ours, grads, Tensor)
        _feed(theirs, grads, _torch_grad)
        fed = [None if p.grad is None else p.grad.array.copy() for p in ours]
        opt.step()
        torch_opt.step()
        _assert_close(ours, theirs, dtype)
        for p, g in zip(ours, fed, strict=True):  # the gradients are read, never written
            assert g is None or numpy.array_equal(p.grad.array, g)


@pytest.mark.parametrize("name, kwargs", CASES)
def test_state_dict_matches_torch_layout(name, kwargs):
    opt, ours, torch_opt, theirs = _pair(name, kwargs, "float64")
    grad_steps = _grads("float64", k=3)
    _run(opt, ours, grad_steps, Tensor)
    _run(torch_opt, theirs, grad_steps, _torch_grad)
    sd, torch_sd = opt.state_dict(), torch_opt.state_dict()
    assert sorted(sd["state"]) == sorted(torch_sd["state"])
    for index, state in sd["state"].items():
        torch_state = torch_sd["state"][index]
        assert sorted(state) == sorted(torch_state)
        for key, value in state.items():
            expected = torch_state[key].numpy()
            assert isinstance(value, float if key in ("step", "mu_product") else numpy.ndarray)
            numpy.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-12)
    for group, torch_group in zip(sd["param_groups"], torch_sd["param_groups"], strict=True):
        assert group["params"] == torch_group["params"]
        assert {k: v for k, v in torch_group.items() if k in group} == group


@pytest.mark.parametrize("name, kwargs", CASES)
def test_state_dict_round_trip_mid_run_equals_uninterrupted(name, kwargs):
    grad_steps = _grads("float64", k=6)
    opt, ours, _, _ = _pair(name, kwargs, "float64")
    _run(opt, ours, grad_steps, Tensor)

    first, params, _, _ = _pair(name, kwargs, "float64")
    _run(first, params, grad_steps[:3], Tensor)
    sd = first.state_dict()
    resumed_params = [Parameter(Tensor(p.array.copy())) for p in params]
    resumed = getattr(optim, name)(resumed_params, lr=123.0)  # lr comes back from sd
    resumed.load_state_dict(sd)
    _run(first, params, grad_steps[3:4], Tensor)  # the old run must not share state
    _run(resumed, resumed_params, grad_steps[3:], Tensor)
    for p, q in zip(resumed_params, ours, strict=True):
        assert numpy.array_equal(p.array, q.array)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name, kwargs, groups", [
    ("SGD", dict(lr=0.1), [dict(lr=0.01), dict()]),
    ("SGD", dict(lr=0.1, momentum=0.9), [dict(momentum=0.5, nesterov=True), dict(lr=0.2)]),
    ("Adam", dict(lr=0.01), [dict(lr=0.1, betas=(0.5, 0.9)), dict(weight_decay=0.1)]),
    ("AdamW", dict(lr=0.01), [dict(lr=0.1), dict(weight_decay=0.5, amsgrad=True)]),
    ("RMSprop", dict(lr=0.01), [dict(lr=0.001, centered=True), dict(momentum=0.9)]),
    ("Adadelta", dict(), [dict(lr=0.5, rho=0.5), dict(weight_decay=0.1, maximize=True)]),
    ("Adagrad", dict(lr=0.1), [dict(lr_decay=0.5), dict(eps=1e-3, weight_decay=0.1)]),
    ("NAdam", dict(lr=0.01), [dict(momentum_decay=0.1), dict(weight_decay=0.1,
                                                            decoupled_weight_decay=True)]),
    ("RAdam", dict(lr=0.01), [dict(betas=(0.5, 0.6)), dict(weight_decay=0.1, maximize=True)]),
])  # fmt: skip
def test_per_group_hyperparameters_match_torch(name, kwargs, groups, dtype):
    opt, ours, torch_opt, theirs = _pair(name, kwargs, dtype, groups=groups)
    grad_steps = _grads(dtype)
    _run(opt, ours, grad_steps, Tensor)
    _run(torch_opt, theirs, grad_steps, _torch_grad)
    _assert_close(ours, theirs, dtype)


@pytest.mark.parametrize("name, kwargs", CASES[2::3])
def test_loads_torch_state_dict_and_continues_like_torch(name, kwargs):
    grad_steps = _grads("float64", k=5)
    opt, ours, torch_opt, theirs = _pair(name, kwargs, "float64")
    _run(torch_opt, theirs, grad_steps[:3], _torch_grad)
    for p, q in zip(ours, theirs, strict=True):
        p.array[...] = q.detach().numpy()
    opt.load_state_dict(torch_opt.state_dict())  # tensors in, arrays and float steps kept
    _run(opt, ours, grad_steps[3:], Tensor)
    _run(torch_opt, theirs, grad_steps[3:], _torch_grad)
    _assert_close(ours, theirs, "float64")
