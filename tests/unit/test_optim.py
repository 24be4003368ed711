"""Optimizer and scheduler bookkeeping: validation messages, zero_grad, state_dict, skipping."""

from __future__ import annotations

import json
import re

import numpy
import pytest

import disttrain.optim as optim
from disttrain.nn import Parameter
from disttrain.optim import lr_scheduler
from disttrain.tensor import Tensor

OPTIMIZERS = [optim.SGD, optim.Adam, optim.AdamW, optim.RMSprop, optim.Adadelta, optim.NAdam,
              optim.RAdam]


def _param(*shape, dtype=numpy.float32, value=1.0):
    return Parameter(Tensor(numpy.full(shape, value, dtype=dtype)))


def _with_grad(param, value=0.5):
    param.grad = Tensor(numpy.full(param.shape, value, dtype=param.dtype))
    return param


@pytest.mark.parametrize("cls, kwargs, message", [
    (optim.SGD, dict(lr=-1), "Invalid learning rate: -1"),
    (optim.SGD, dict(momentum=-0.5), "Invalid momentum value: -0.5"),
    (optim.SGD, dict(weight_decay=-1e-4), "Invalid weight_decay value: -0.0001"),
    (optim.SGD, dict(nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (optim.SGD, dict(nesterov=True, momentum=0.9, dampening=0.1), "Nesterov momentum requires"),
    (optim.Adam, dict(lr=-1), "Invalid learning rate: -1"),
    (optim.Adam, dict(eps=-1e-8), "Invalid epsilon value: -1e-08"),
    (optim.Adam, dict(betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    (optim.Adam, dict(betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
    (optim.Adam, dict(weight_decay=-1), "Invalid weight_decay value: -1"),
    (optim.AdamW, dict(lr=-1), "Invalid learning rate: -1"),
    (optim.AdamW, dict(betas=(0.9, 1.5)), "Invalid beta parameter at index 1: 1.5"),
    (optim.RMSprop, dict(lr=-1), "Invalid learning rate: -1"),
    (optim.RMSprop, dict(alpha=-0.1), "Invalid alpha value: -0.1"),
    (optim.RMSprop, dict(momentum=-1), "Invalid momentum value: -1"),
    (optim.RMSprop, dict(eps=-1), "Invalid epsilon value: -1"),
    (optim.Adadelta, dict(lr=-1), "Invalid learning rate: -1"),
    (optim.Adadelta, dict(rho=1.5), "Invalid rho value: 1.5"),
    (optim.Adadelta, dict(eps=-1e-6), "Invalid epsilon value: -1e-06"),
    (optim.Adadelta, dict(weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
    (optim.Adagrad, dict(lr=-0.5), "Invalid learning rate: -0.5"),
    (optim.Adagrad, dict(lr_decay=-1), "Invalid lr_decay value: -1"),
    (optim.Adagrad, dict(weight_decay=-1), "Invalid weight_decay value: -1"),
    (optim.Adagrad, dict(initial_accumulator_value=-1),
     "Invalid initial_accumulator_value value: -1"),
    (optim.Adagrad, dict(eps=-1), "Invalid epsilon value: -1"),
    (optim.NAdam, dict(lr=-1), "Invalid learning rate: -1"),
    (optim.NAdam, dict(eps=-1), "Invalid epsilon value: -1"),
    (optim.NAdam, dict(betas=(1.0, 0.9)), "Invalid beta parameter at index 0: 1.0"),
    (optim.NAdam, dict(betas=(0.9, 1.0)), "Invalid beta parameter at index 1: 1.0"),
    (optim.NAdam, dict(weight_decay=-1), "Invalid weight_decay value: -1"),
    (optim.NAdam, dict(momentum_decay=-1), "Invalid momentum_decay value: -1"),
    (optim.RAdam, dict(lr=-1), "Invalid learning rate: -1"),
    (optim.RAdam, dict(eps=-1), "Invalid epsilon value: -1"),
    (optim.RAdam, dict(betas=(-0.1, 0.9)), "Invalid beta parameter at index 0: -0.1"),
    (optim.RAdam, dict(betas=(0.9, 2.0)), "Invalid beta parameter at index 1: 2.0"),
    (optim.RAdam, dict(weight_decay=-1), "Invalid weight_decay value: -1"),
    (optim.LBFGS, dict(lr=-1), "Invalid learning rate: -1"),
    (optim.LBFGS, dict(line_search_fn="wolfe"),
     "line_search_fn must be None or 'strong_wolfe' (only 'strong_wolfe' is supported), got "
     "'wolfe'"),
])  # fmt: skip
def test_invalid_hyperparameters_raise(cls, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cls([_param(2)], **kwargs)


def test_defaults_are_torchs():
    p = [_param(2)]
    assert optim.SGD(p).defaults["lr"] == 1e-3
    assert optim.Adam(p).defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                                          amsgrad=False, maximize=False,
                                          decoupled_weight_decay=False)
    assert optim.AdamW(p).defaults["weight_decay"] == 1e-2
    assert optim.AdamW(p).defaults["decoupled_weight_decay"] is True
    rmsprop = optim.RMSprop(p).defaults
    assert (rmsprop["lr"], rmsprop["alpha"], rmsprop["eps"]) == (1e-2, 0.99, 1e-8)
    assert optim.Adadelta(p).defaults == dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0,
                                              maximize=False)
    assert optim.Adagrad(p).defaults == dict(lr=1e-2, lr_decay=0, eps=1e-10, weight_decay=0,
                                             initial_accumulator_value=0, maximize=False)
    assert optim.NAdam(p).defaults == dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8,
                                           weight_decay=0, momentum_decay=4e-3,
                                           decoupled_weight_decay=False, maximize=False)
    assert optim.RAdam(p).defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                                           weight_decay=0, decoupled_weight_decay=False,
                                           maximize=False)
    assert optim.LBFGS(p).defaults == dict(lr=1, max_iter=20, max_eval=25, tolerance_grad=1e-7,
                                           tolerance_change=1e-9, history_size=100,
                                           line_search_fn=None)
    assert optim.LBFGS(p, max_iter=9).defaults["max_eval"] == 11  # max_iter * 5 // 4


@pytest.mark.parametrize("cls", [*OPTIMIZERS, optim.Adagrad, optim.LBFGS])
def test_bad_params_raise(cls):
    p = _param(2)
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        cls([])
    with pytest.raises(ValueError, match="duplicate parameter"):
        cls([p, _param(3), p])
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        cls([{"params": [p]}, {"params": [_param(1), p]}])
    with pytest.raises(TypeError, match="should be an iterable of Tensors or dicts"):
        cls(p)
    with pytest.raises(TypeError, match="optimizer can only optimize Tensors.*ndarray"):
        cls([numpy.zeros(2)])
    with pytest.raises(TypeError, match="ordered collections"):
        cls({p})
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        cls([Tensor(numpy.ones(2), requires_grad=True) * 2.0])


def test_add_param_group_uses_defaults_and_its_own_values():
    w, b = _param(2), _param(3)
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": b, "lr": 0.5})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["params"] == [b]
    with pytest.raises(TypeError, match="param_group must be a dict"):
        opt.add_param_group([b])


def test_zero_grad_set_to_none_and_in_place():
    p, q = _with_grad(_param(3)), _param(2)
    opt = optim.SGD([p, q], lr=0.1)
    array = p.grad.array
    opt.zero_grad(set_to_none=False)
    assert p.grad.array is array and not array.any() and q.grad is None
    opt.zero_grad()
    assert p.grad is None and q.grad is None


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_step_skips_params_without_grad(cls):
    p, q = _with_grad(_param(3)), _param(2)
    opt = cls([p, q], lr=0.1)
    opt.step()
    assert numpy.array_equal(q.array, numpy.ones(2)) and q not in opt.state
    assert not numpy.array_equal(p.array, numpy.ones(3))
    assert list(opt.state_dict()["state"]) == ([] if cls is optim.SGD else [0])


@pytest.mark.parametrize("cls, kwargs", [
    (optim.SGD, dict(momentum=0.9, weight_decay=0.1, maximize=True)),
    (optim.Adam, dict(weight_decay=0.1, maximize=True)),
    (optim.RMSprop, dict(weight_decay=0.1, centered=True, momentum=0.9)),
    (optim.Adadelta, dict(weight_decay=0.1, maximize=True)),
    (optim.Adagrad, dict(weight_decay=0.1, maximize=True, lr_decay=0.1)),
    (optim.NAdam, dict(weight_decay=0.1, maximize=True)),
    (optim.RAdam, dict(weight_decay=0.1, maximize=True)),
])  # fmt: skip
def test_step_never_writes_the_gradient(cls, kwargs):
    p = _with_grad(_param(3))
    grad = p.grad.array
    opt = cls([p], lr=0.1, **kwargs)
    opt.step()
    opt.step()
    assert p.grad.array is grad and numpy.array_equal(grad, numpy.full(3, 0.5, numpy.float32))


def test_step_closure_returns_its_loss():
    p = _with_grad(_param(2))
    assert optim.SGD([p], lr=0.1).step(lambda: 1.5) == 1.5


def test_state_dict_is_a_host_copy_and_load_copies_back():
    p = _with_grad(_param(3))
    opt = optim.Adam([p], lr=0.1)
    opt.step()
    sd = opt.state_dict()
    assert sd["param_groups"][0]["params"] == [0]
    assert sd["state"][0]["step"] == 1.0 and isinstance(sd["state"][0]["step"], float)
    sd["state"][0]["exp_avg"][:] = 7.0
    assert not (opt.state[p]["exp_avg"] == 7.0).any()

    q = _param(3)
    other = optim.Adam([q])
    sd["state"] = {"0": {k: (v.astype(numpy.float64) if k != "step" else v)
                         for k, v in sd["state"][0].items()}}  # JSON-style key, float64 arrays
    other.load_state_dict(sd)
    loaded = other.state[q]["exp_avg"]
    assert loaded.dtype == numpy.float32 and (loaded == 7.0).all()
    assert loaded is not sd["state"]["0"]["exp_avg"]
    assert other.param_groups[0]["lr"] == 0.1 and other.param_groups[0]["params"] == [q]


def test_load_state_dict_checks_groups():
    w, b = _param(2), _param(3)
    sd = optim.SGD([{"params": [w]}, {"params": [b]}], lr=0.1).state_dict()
    with pytest.raises(ValueError, match="different number of parameter groups: 2 in state_dict"):
        optim.SGD([w, b], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group: group 1"):
        optim.SGD([{"params": [w]}, {"params": [b, _param(1)]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"missing \['state'\]"):
        optim.SGD([w]).load_state_dict({"param_groups": []})


def test_adamw_load_keeps_decoupled_weight_decay():
    p = _param(2)
    sd = optim.Adam([p]).state_dict()
    opt = optim.AdamW([p])
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["decoupled_weight_decay"] is True


def _sgd(lr=0.1):
    return optim.SGD([_param(2)], lr=lr)


@pytest.mark.parametrize("make, error, message", [
    (lambda: lr_scheduler.StepLR(object(), 3), TypeError, "object is not an Optimizer"),
    (lambda: lr_scheduler.StepLR(_sgd(), 0), ValueError, "step_size must be a positive int"),
    (lambda: lr_scheduler.CosineAnnealingLR(_sgd(), 0), ValueError, "T_max must be positive"),
    (lambda: lr_scheduler.LinearLR(_sgd(), start_factor=0), ValueError, "Starting multiplicative"),
    (lambda: lr_scheduler.LinearLR(_sgd(), end_factor=2), ValueError, "Ending multiplicative"),
    (lambda: lr_scheduler.LambdaLR(_sgd(), [abs, abs]), ValueError, "Expected 1 lr_lambdas"),
    (lambda: lr_scheduler.StepLR(_sgd(), 3, last_epoch=4), KeyError, "initial_lr"),
    (lambda: lr_scheduler.ReduceLROnPlateau(_sgd(), factor=1.0), ValueError, "Factor should be"),
    (lambda: lr_scheduler.ReduceLROnPlateau(_sgd(), mode="up"), ValueError, "mode 'up' is unkn"),
    (lambda: lr_scheduler.ReduceLROnPlateau(_sgd(), threshold_mode="x"), ValueError, "threshold"),
    (lambda: lr_scheduler.ReduceLROnPlateau(_sgd(), min_lr=[0, 0]), ValueError, "expected 1 min"),
    (lambda: lr_scheduler.SequentialLR(_sgd(), [], []), ValueError, "at least one scheduler"),
])  # fmt: skip
def test_scheduler_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_sequential_lr_checks_its_schedulers():
    opt = _sgd()
    a, b = lr_scheduler.LinearLR(opt), lr_scheduler.StepLR(opt, 2)
    with pytest.raises(ValueError, match="one milestone fewer than schedulers"):
        lr_scheduler.SequentialLR(opt, [a, b], [])
    with pytest.raises(ValueError, match="same optimizer"):
        lr_scheduler.SequentialLR(opt, [a, lr_scheduler.StepLR(_sgd(), 2)], [3])
    plateau = lr_scheduler.ReduceLROnPlateau(opt)
    with pytest.raises(ValueError, match="does not support ReduceLROnPlateau"):
        lr_scheduler.SequentialLR(opt, [a, plateau], [3])


def test_lambda_lr_state_dict_holds_no_function():
    sched = lr_scheduler.LambdaLR(_sgd(), lambda epoch: 0.5**epoch)
    sched.step()
    sd = sched.state_dict()
    assert sd["lr_lambdas"] == [None] and "optimizer" not in sd
    assert json.loads(json.dumps(sd)) == sd


def test_scheduler_initial_lr_and_last_epoch():
    opt = _sgd(lr=0.1)
    sched = lr_scheduler.ExponentialLR(opt, gamma=0.5)
    assert opt.param_groups[0]["initial_lr"] == 0.1 and sched.last_epoch == 0
    sched.step()
    assert sched.last_epoch == 1 and sched.get_last_lr() == [0.05]
    assert sched.base_lrs == [0.1]


def test_reduce_lr_on_plateau_accepts_a_tensor_metric():
    opt = _sgd(lr=1.0)
    sched = lr_scheduler.ReduceLROnPlateau(opt, patience=0)
    sched.step(Tensor(numpy.array(1.0)))
    sched.step(Tensor(numpy.array(2.0)))
    assert sched.get_last_lr() == [0.1]


@pytest.mark.parametrize("cls, kwargs", [
    (optim.SGD, dict(momentum=0.9, nesterov=True, weight_decay=0.1)),
    (optim.Adam, dict(amsgrad=True, maximize=True)),
    (optim.AdamW, dict()),
    (optim.RMSprop, dict(centered=True, momentum=0.5)),
    (optim.Adadelta, dict(weight_decay=0.1)),
    (optim.Adagrad, dict(lr_decay=0.1, maximize=True)),
    (optim.NAdam, dict(weight_decay=0.1, decoupled_weight_decay=True)),
    (optim.RAdam, dict(betas=(0.5, 0.99), weight_decay=0.1)),
])  # fmt: skip
def test_chunked_update_equals_whole_array_update(cls, kwargs):
    # a (700, 300) float32 param is updated in cache-sized chunks; a transposed (non-contiguous)
    # gradient makes the same update run on whole arrays: the results must be bit-identical.
    rng = numpy.random.default_rng(0)
    weights, grad = rng.standard_normal((700, 300)), rng.standard_normal((300, 700))
    chunked, whole = (Parameter(Tensor(weights.astype(numpy.float32))) for _ in range(2))
    opts = [cls([chunked], lr=0.01, **kwargs), cls([whole], lr=0.01, **kwargs)]
    for _ in range(7):  # NOTE: RAdam's rectified update starts at step 6
        chunked.grad = Tensor(numpy.ascontiguousarray(grad.T, dtype=numpy.float32))
        whole.grad = Tensor(grad.astype(numpy.float32).T)
        assert not whole.grad.array.flags.c_contiguous
        for opt in opts:
            opt.step()
    assert numpy.array_equal(chunked.array, whole.array)


def test_step_rejects_a_gradient_of_the_wrong_shape():
    p = _param(3)
    p.grad = Tensor(numpy.ones(4, numpy.float32))
    with pytest.raises(ValueError, match=r"SGD.step: parameter of shape \(3,\) has a gradient "):
        optim.SGD([p]).step()


def test_adagrad_state_exists_from_construction():
    p, q = _with_grad(_param(3)), _param(2)
    opt = optim.Adagrad([p, q], lr=0.1, initial_accumulator_value=0.5)
    assert opt.state[q]["step"] == 0.0 and numpy.array_equal(opt.state[q]["sum"], [0.5, 0.5])
    opt.step()
    assert opt.state[p]["step"] == 1.0 and opt.state[q]["step"] == 0.0
    assert numpy.array_equal(q.array, numpy.ones(2)) and list(opt.state_dict()["state"]) == [0, 1]
    # NOTE: as torch, a group added later starts from the constructor's accumulator value
    r = _with_grad(_param(1))
    opt.add_param_group({"params": [r], "initial_accumulator_value": 9.0})
    opt.step()
    assert opt.state[r]["sum"][0] == numpy.float32(0.5 + 0.25)


def test_state_is_a_defaultdict_keyed_by_parameter():
    p, q = _with_grad(_param(3)), _param(2)
    opt = optim.Adam([p, q])
    assert q not in opt.state and opt.state[q] == {} and q in opt.state
    opt.step()
    assert set(opt.state[p]) == {"step", "exp_avg", "exp_avg_sq"}
    assert list(opt.state_dict()["state"]) == [0]  # the empty entry for q is left out
    opt.load_state_dict(opt.state_dict())
    assert opt.state[_param(1)] == {}


class _TensorStateSGD(optim.Optimizer):
    """A torch-style subclass: overrides step() and keeps Tensors in self.state[p]."""

    def __init__(self, params, lr=0.1):
        super().__init__(params, dict(lr=lr))

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["buf"] = p.grad.clone()
                else:
                    state["buf"].mul_(0.5).add_(p.grad)
                state["step"] += 1
                p.data.add_(state["buf"], alpha=-group["lr"])


def test_torch_style_subclass_gets_tensor_state_back():
    p = _with_grad(_param(3, dtype=numpy.float64))
    opt = _TensorStateSGD([p])
    opt.step()
    opt.step()
    sd = opt.state_dict()
    assert isinstance(sd["state"][0]["buf"], numpy.ndarray) and sd["state"][0]["step"] == 2
    q = _with_grad(_param(3, dtype=numpy.float64))
    other = _TensorStateSGD([q])
    other.load_state_dict(sd)
    buf = other.state[q]["buf"]
    assert isinstance(buf, Tensor) and buf.dtype == numpy.float64
    assert other.state[q]["step"] == 2 and isinstance(other.state[q]["step"], int)
    opt.step()
    other.step()
    assert numpy.array_equal(buf.array, opt.state[p]["buf"].array)


def _lbfgs_closure(opt, p):
    def closure():
        opt.zero_grad()
        loss = ((p - 3.0) ** 2).sum()
        loss.backward()
        return loss
    return closure


def test_lbfgs_needs_a_closure_and_one_group():
    p = _param(2, dtype=numpy.float64)
    opt = optim.LBFGS([p])
    with pytest.raises(TypeError, match=r"LBFGS.step\(\) needs a closure that re-evaluates"):
        opt.step()
    with pytest.raises(ValueError, match=r"doesn't support per-parameter options"):
        optim.LBFGS([{"params": [p]}, {"params": [_param(1)]}])
    opt.add_param_group({"params": [_param(1)]})  # NOTE: accepted, as torch; step refuses
    with pytest.raises(ValueError, match="parameter groups\\): it has 2 groups"):
        opt.step(_lbfgs_closure(opt, p))


def test_lbfgs_solves_a_quadratic_and_returns_the_first_loss():
    p = _param(2, dtype=numpy.float64)
    opt = optim.LBFGS([p], line_search_fn="strong_wolfe")
    loss = opt.step(_lbfgs_closure(opt, p))
    assert isinstance(loss, Tensor) and loss.item() == 8.0  # (1 - 3)**2 * 2, before the step
    numpy.testing.assert_allclose(p.array, [3.0, 3.0], atol=1e-9)
    state = opt.state[p]
    assert state["n_iter"] >= 1 and state["func_evals"] >= 2
    assert opt.step(_lbfgs_closure(opt, p)).item() < 1e-12  # converged: returns at once
