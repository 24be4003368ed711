"""Adadelta, Adagrad, NAdam, RAdam and LBFGS against torch.optim on a small float64 model:
the same script body drives both libraries (a ported script), step after step."""

from __future__ import annotations

import numpy
import pytest

import disttrain as dt
import disttrain.nn  # noqa: F401  NOTE: loads dt.nn
import disttrain.optim  # noqa: F401
from disttrain.serialization import load, save

torch = pytest.importorskip("torch")

TOL = dict(rtol=1e-10, atol=1e-12)
N_STEPS = 12  # RAdam's rectified update starts at step 6

CASES = [
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1)),
    ("Adadelta", dict(maximize=True)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.3, eps=1e-8)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.1, maximize=True)),
    ("NAdam", dict()),
    ("NAdam", dict(lr=0.01, betas=(0.8, 0.99), momentum_decay=0.05, weight_decay=0.1)),
    ("NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("NAdam", dict(lr=0.01, maximize=True)),
    ("RAdam", dict()),
    ("RAdam", dict(lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1)),
    ("RAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("RAdam", dict(lr=0.01, maximize=True)),
]  # fmt: skip


def _model_data(seed=0):
    rng = numpy.random.default_rng(seed)
    weights = [rng.standard_normal(s) * 0.5 for s in [(8, 4), (8,), (3, 8), (3,)]]
    return weights, rng.standard_normal((16, 4)), rng.standard_normal((16, 3))


class Script:
    """A two-layer regression model and its data, written once for `m` = torch or disttrain."""

    def __init__(self, m, seed=0):
        weights, x, y = _model_data(seed)
        self.m = m
        self.params = [m.nn.Parameter(m.tensor(w.copy())) for w in weights]
        self.x, self.y = m.tensor(x), m.tensor(y)

    def loss(self):
        w1, b1, w2, b2 = self.params
        hidden = self.m.tanh(self.x @ w1.T + b1)
        return ((hidden @ w2.T + b2 - self.y) ** 2).mean()

    def train_step(self, opt):
        opt.zero_grad()
        loss = self.loss()
        loss.backward()
        opt.step()
        return loss.item()

    def closure(self, opt):
        def closure():
            opt.zero_grad()
            loss = self.loss()
            loss.backward()
            return loss
        return closure


def _assert_params_close(ours: Script, theirs: Script, tol=TOL):
    for p, q in zip(ours.params, theirs.params, strict=True):
        assert p.dtype == dt.float64 and tuple(p.shape) == tuple(q.shape)
        numpy.testing.assert_allclose(p.array, q.detach().numpy(), **tol)


def _make(m, name, kwargs, params):
    return getattr(m.optim, name)(params, **kwargs)


@pytest.mark.parametrize("name, kwargs", CASES)
def test_model_steps_match_torch(name, kwargs):
    ours, theirs = Script(dt), Script(torch)
    opt, torch_opt = _make(dt, name, kwargs, ours.params), _make(torch, name, kwargs,
                                                                 theirs.params)
    for _ in range(N_STEPS):
        loss, torch_loss = ours.train_step(opt), theirs.train_step(torch_opt)
        numpy.testing.assert_allclose(loss, torch_loss, **TOL)
        _assert_params_close(ours, theirs)


@pytest.mark.parametrize("name, kwargs", CASES[::2])
def test_state_dict_round_trip_mid_run_continues_like_torch(name, kwargs, tmp_path):
    ours, theirs = Script(dt), Script(torch)
    opt, torch_opt = _make(dt, name, kwargs, ours.params), _make(torch, name, kwargs,
                                                                 theirs.params)
    for _ in range(5):
        ours.train_step(opt), theirs.train_step(torch_opt)
    save(opt.state_dict(), tmp_path / "opt.safetensors")  # NOTE: through a checkpoint file
    resumed = Script(dt)
    for p, q in zip(resumed.params, ours.params, strict=True):
        p.array[...] = q.array
    resumed_opt = _make(dt, name, dict(kwargs, lr=123.0), resumed.params)
    resumed_opt.load_state_dict(load(tmp_path / "opt.safetensors"))
    for _ in range(N_STEPS - 5):
        resumed.train_step(resumed_opt), ours.train_step(opt), theirs.train_step(torch_opt)
        for p, q in zip(resumed.params, ours.params, strict=True):
            assert numpy.array_equal(p.array, q.array)
    _assert_params_close(resumed, theirs)


@pytest.mark.parametrize("name, kwargs", CASES[::3])
def test_step_lr_drives_them_like_torch(name, kwargs):
    ours, theirs = Script(dt), Script(torch)
    opt, torch_opt = _make(dt, name, kwargs, ours.params), _make(torch, name, kwargs,
                                                                 theirs.params)
    sched = dt.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    torch_sched = torch.optim.lr_scheduler.StepLR(torch_opt, step_size=3, gamma=0.5)
    for _ in range(N_STEPS):
        ours.train_step(opt), theirs.train_step(torch_opt)
        sched.step(), torch_sched.step()
        assert sched.get_last_lr() == torch_sched.get_last_lr()
        _assert_params_close(ours, theirs)
    assert opt.param_groups[0]["lr"] == kwargs.get("lr", opt.defaults["lr"]) * 0.5**4


@pytest.mark.parametrize("name, kwargs", CASES[1::3])
def test_add_param_group_mid_run_matches_torch(name, kwargs):
    ours, theirs = Script(dt), Script(torch)
    opt = _make(dt, name, kwargs, ours.params[:2])
    torch_opt = _make(torch, name, kwargs, theirs.params[:2])
    for step in range(N_STEPS):
        if step == 3:
            group = dict(lr=0.05, weight_decay=0.01)
            opt.add_param_group(dict(group, params=ours.params[2:]))
            torch_opt.add_param_group(dict(group, params=theirs.params[2:]))
        ours.train_step(opt), theirs.train_step(torch_opt)
        _assert_params_close(ours, theirs)
    assert {k: v for k, v in torch_opt.param_groups[1].items() if k in opt.param_groups[1]} \
        .keys() == opt.param_groups[1].keys()


def test_adagrad_has_state_from_construction_as_torch():
    ours, theirs = Script(dt), Script(torch)
    opt = dt.optim.Adagrad(ours.params, initial_accumulator_value=0.25)
    torch_opt = torch.optim.Adagrad(theirs.params, initial_accumulator_value=0.25)
    sd, torch_sd = opt.state_dict(), torch_opt.state_dict()
    assert sorted(sd["state"]) == sorted(torch_sd["state"]) == [0, 1, 2, 3]
    for index, state in sd["state"].items():
        assert state["step"] == float(torch_sd["state"][index]["step"]) == 0.0
        numpy.testing.assert_array_equal(state["sum"], torch_sd["state"][index]["sum"].numpy())


def test_nadam_loads_torchs_state_dict_and_continues_like_torch():
    ours, theirs = Script(dt), Script(torch)
    opt = dt.optim.NAdam(ours.params, lr=0.01)
    torch_opt = torch.optim.NAdam(theirs.params, lr=0.01)
    for _ in range(4):
        theirs.train_step(torch_opt)
    for p, q in zip(ours.params, theirs.params, strict=True):
        p.array[...] = q.detach().numpy()
    opt.load_state_dict(torch_opt.state_dict())  # mu_product: a float32 tensor in torch
    assert isinstance(opt.state[ours.params[0]]["mu_product"], float)
    for _ in range(4):
        ours.train_step(opt), theirs.train_step(torch_opt)
        _assert_params_close(ours, theirs)


# LBFGS: whole `step(closure)` calls (several iterations each) against torch's trajectory.
# NOTE: dozens of quasi-Newton iterations amplify the last-bit differences between torch's and
# numpy's BLAS dot products (1e-16 -> 1e-5 near the optimum), so long runs get LOOSE; the
# iteration and evaluation counts, which follow every branch taken, must still match exactly.
TIGHT, LOOSE = dict(rtol=1e-9, atol=1e-11), dict(rtol=1e-4, atol=1e-5)
LBFGS_CASES = [
    (dict(), LOOSE),
    (dict(lr=0.5, max_iter=7), TIGHT),
    (dict(max_iter=5, history_size=2), TIGHT),
    (dict(line_search_fn="strong_wolfe"), LOOSE),
    (dict(line_search_fn="strong_wolfe", max_iter=6, history_size=3), TIGHT),
    (dict(line_search_fn="strong_wolfe", lr=2.0, max_iter=4, max_eval=6), TIGHT),
    (dict(tolerance_grad=1e-3, tolerance_change=1e-5, max_iter=50), LOOSE),
]  # fmt: skip


def _lbfgs_pair(kwargs, seed=0):
    ours, theirs = Script(dt, seed), Script(torch, seed)
    opt, torch_opt = dt.optim.LBFGS(ours.params, **kwargs), torch.optim.LBFGS(theirs.params,
                                                                             **kwargs)
    return ours, opt, theirs, torch_opt


def _assert_lbfgs_state_like_torch(opt, torch_opt, tol):
    state = opt.state[opt.param_groups[0]["params"][0]]
    torch_state = torch_opt.state[torch_opt.param_groups[0]["params"][0]]
    for key in ("func_evals", "n_iter"):
        assert state[key] == torch_state[key], key
    assert len(state["old_dirs"]) == len(torch_state["old_dirs"])
    d = torch_state["d"].numpy()
    numpy.testing.assert_allclose(state["d"], d, atol=tol["rtol"] * abs(d).max(), rtol=0)
    numpy.testing.assert_allclose(float(state["t"]), float(torch_state["t"]), **TOL)


@pytest.mark.parametrize("kwargs, tol", LBFGS_CASES)
def test_lbfgs_trajectory_matches_torch(kwargs, tol):
    ours, opt, theirs, torch_opt = _lbfgs_pair(kwargs)
    for _ in range(4):
        loss = opt.step(ours.closure(opt))
        torch_loss = torch_opt.step(theirs.closure(torch_opt))
        assert isinstance(loss, dt.Tensor)  # the first evaluation's loss, as torch returns
        numpy.testing.assert_allclose(loss.item(), torch_loss.item(), **tol)
        _assert_params_close(ours, theirs, tol)
        _assert_lbfgs_state_like_torch(opt, torch_opt, tol)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_rosenbrock_matches_torch(line_search_fn):
    # NOTE: a curved valley: the strong-Wolfe search has to zoom, not only accept or expand.
    def rosenbrock(m, xy):
        return (1 - xy[0]) ** 2 + 100 * (xy[1] - xy[0] ** 2) ** 2

    runs = []
    for m in (dt, torch):
        xy = m.nn.Parameter(m.tensor(numpy.array([-1.5, 2.0])))
        opt = m.optim.LBFGS([xy], lr=1e-3 if line_search_fn is None else 1, max_iter=30,
                            line_search_fn=line_search_fn)

        def closure(m=m, xy=xy, opt=opt):
            opt.zero_grad()
            loss = rosenbrock(m, xy)
            loss.backward()
            return loss

        runs.append([(opt.step(closure), xy.detach().numpy().copy()) for _ in range(3)])
    for (loss, xy), (torch_loss, torch_xy) in zip(*runs, strict=True):
        numpy.testing.assert_allclose(loss.item(), torch_loss.item(), rtol=1e-9)
        numpy.testing.assert_allclose(xy, torch_xy, rtol=1e-8, atol=1e-10)
    if line_search_fn == "strong_wolfe":
        numpy.testing.assert_allclose(runs[0][-1][1], [1.0, 1.0], atol=1e-4)


@pytest.mark.parametrize("kwargs, tol", [LBFGS_CASES[2], LBFGS_CASES[4]])
def test_lbfgs_state_dict_round_trip_mid_run(kwargs, tol, tmp_path):
    ours, opt, theirs, torch_opt = _lbfgs_pair(kwargs)
    for _ in range(2):
        opt.step(ours.closure(opt)), torch_opt.step(theirs.closure(torch_opt))
    save(opt.state_dict(), tmp_path / "lbfgs.safetensors")
    resumed = Script(dt)
    for p, q in zip(resumed.params, ours.params, strict=True):
        p.array[...] = q.array
    resumed_opt = dt.optim.LBFGS(resumed.params, **kwargs)
    resumed_opt.load_state_dict(load(tmp_path / "lbfgs.safetensors"))
    for _ in range(3):
        resumed_opt.step(resumed.closure(resumed_opt)), opt.step(ours.closure(opt))
        torch_opt.step(theirs.closure(torch_opt))
        for p, q in zip(resumed.params, ours.params, strict=True):
            assert numpy.array_equal(p.array, q.array)
    _assert_params_close(resumed, theirs, tol)
    _assert_lbfgs_state_like_torch(resumed_opt, torch_opt, tol)


# The strong-Wolfe line search on its own, against torch's private `_strong_wolfe`, from
# starting steps that make it expand (tiny t), zoom (huge t), run out of evaluations (max_ls)
# or stop on a short bracket (tolerance_change).
def _rosenbrock(v):
    x, y = v
    f = (1 - x) ** 2 + 100 * (y - x * x) ** 2
    return float(f), numpy.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])


def _wiggly(v):
    return float((v**4).sum() / 4 - numpy.cos(3 * v).sum()), v**3 + 3 * numpy.sin(3 * v)


def _bumpy(v):
    return float((v**2).sum() + 0.3 * numpy.sin(7 * v).sum()), 2 * v + 2.1 * numpy.cos(7 * v)


def _compare_strong_wolfe(func, x0, t, max_ls, tolerance_change):
    from torch.optim.lbfgs import _strong_wolfe

    from disttrain.optim.line_search import strong_wolfe

    f0, g0 = func(x0)
    d = -g0 / numpy.abs(g0).max()
    kwargs = dict(max_ls=max_ls, tolerance_change=tolerance_change)
    ours = strong_wolfe(lambda x, t, d: func(x + t * d), x0, t, d, f0, g0, g0.dot(d), **kwargs)

    def torch_obj(x, t, d):
        f, g = func(x.numpy() + float(t) * d.numpy())
        return f, torch.tensor(g)

    g0_t, d_t = torch.tensor(g0), torch.tensor(d)
    theirs = _strong_wolfe(torch_obj, torch.tensor(x0), t, d_t, f0, g0_t, g0_t.dot(d_t), **kwargs)
    assert ours[3] == theirs[3]  # function evaluations
    numpy.testing.assert_allclose(float(ours[2]), float(theirs[2]), rtol=1e-12)  # step
    numpy.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
    numpy.testing.assert_allclose(ours[1], theirs[1].numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("func, start", [(_rosenbrock, [-1.2, 1.0]),
                                         (_wiggly, [1.3, -0.4, 2.2])])
@pytest.mark.parametrize("t", [1e-4, 0.05, 1.0, 40.0])
@pytest.mark.parametrize("max_ls, tolerance_change", [(25, 1e-9), (2, 1e-9), (0, 1e-9),
                                                      (25, 1e-3)])
def test_strong_wolfe_matches_torch(func, start, t, max_ls, tolerance_change):
    _compare_strong_wolfe(func, numpy.array(start), t, max_ls, tolerance_change)


# NOTE: starts found by a seeded search so that every branch of the zoom phase runs:
# insufficient progress (forced off a bound, or flagged), the short-bracket stop, and the
# swap of the bracket's ends.
@pytest.mark.parametrize("func, seed, t, tolerance_change", [
    (_bumpy, 629344848, 12.6673, 1e-9), (_bumpy, 289681278, 98.8523, 1e-9),
    (_bumpy, 453856947, 1.6548, 1e-9), (_bumpy, 878450703, 0.5498, 0.3),
    (_rosenbrock, 249508522, 0.1065, 0.3), (_rosenbrock, 790880679, 73.4278, 0.3),
])  # fmt: skip
def test_strong_wolfe_zoom_branches_match_torch(func, seed, t, tolerance_change):
    x0 = numpy.random.default_rng(seed).uniform(-2, 2, 2)
    _compare_strong_wolfe(func, x0, t, 25, tolerance_change)


@pytest.mark.parametrize("args", [
    (0.0, 1.0, -2.0, 1.0, 0.5, 1.5), (1.0, 0.5, 1.5, 0.0, 1.0, -2.0),
    (0.0, 1.0, -1.0, 2.0, 3.0, 4.0), (0.0, 0.0, -1.0, 1.0, 5.0, -3.0),
    (0.0, 0.0, 1.0, 1.0, 2.0 / 3.0, 1.0),  # no real minimiser: the interval's middle
])  # fmt: skip
@pytest.mark.parametrize("bounds", [None, (0.2, 0.4), (-5.0, 5.0)])
def test_cubic_interpolate_matches_torch(args, bounds):
    from torch.optim.lbfgs import _cubic_interpolate

    from disttrain.optim.line_search import cubic_interpolate

    tensors = [torch.tensor(a, dtype=torch.float64) if i in (2, 5) else a
               for i, a in enumerate(args)]  # NOTE: torch passes the slopes as tensors
    expected = float(_cubic_interpolate(*tensors, bounds=bounds))
    assert float(cubic_interpolate(*[numpy.float64(a) for a in args], bounds=bounds)) == \
        pytest.approx(expected, rel=1e-14, abs=1e-15)


# A custom optimizer written as PyTorch's docs and its own optimizers write one (param_groups,
# `state = self.state[p]`, lazy init on `len(state) == 0`, in-place Tensor updates under
# @torch.no_grad()), ported by changing its imports only.
CUSTOM_OPTIMIZERS = """
import math

import torch
from torch.optim import Optimizer


class MomentumSGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.9, weight_decay=0.0):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if group["weight_decay"] != 0:
                    d_p = d_p.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["momentum_buffer"] = d_p.clone().detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(d_p)
                state["step"] += 1
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


class SimpleAdam(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        defaults = dict(lr=lr, betas=betas, eps=eps)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias_correction1 = 1 - beta1 ** state["step"]
                bias_correction2 = 1 - beta2 ** state["step"]
                denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(group["eps"])
                p.addcdiv_(exp_avg, denom, value=-group["lr"] / bias_correction1)
        return loss
"""


def _custom_optimizers(m):
    source = CUSTOM_OPTIMIZERS
    if m is dt:
        source = source.replace("import torch\nfrom torch.optim import",
                                "import disttrain as torch\nfrom disttrain.optim import")
        assert "disttrain" in source
    namespace: dict = {}
    exec(compile(source, f"<custom optimizers for {m.__name__}>", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("name, kwargs", [
    ("MomentumSGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    ("SimpleAdam", dict(lr=0.01, betas=(0.8, 0.99))),
])  # fmt: skip
def test_torch_style_custom_optimizer_ports_by_import_change(name, kwargs):
    ours, theirs, resumed = Script(dt), Script(torch), Script(dt)
    opt = _custom_optimizers(dt)[name](ours.params, **kwargs)
    torch_opt = _custom_optimizers(torch)[name](theirs.params, **kwargs)
    for _ in range(4):
        ours.train_step(opt), theirs.train_step(torch_opt)
        _assert_params_close(ours, theirs)
    for p, q in zip(resumed.params, ours.params, strict=True):
        p.array[...] = q.array
    resumed_opt = _custom_optimizers(dt)[name](resumed.params, lr=123.0)
    resumed_opt.load_state_dict(opt.state_dict())
    state = resumed_opt.state[resumed.params[0]]
    assert state["step"] == 4 and isinstance(state["step"], int)
    assert all(isinstance(v, dt.Tensor) for k, v in state.items() if k != "step")
    for _ in range(4):
        resumed.train_step(resumed_opt), ours.train_step(opt), theirs.train_step(torch_opt)
        for p, q in zip(resumed.params, ours.params, strict=True):
            assert numpy.array_equal(p.array, q.array)
    _assert_params_close(resumed, theirs)
