"""disttrain.optim.lr_scheduler lr sequences against torch.optim.lr_scheduler."""

from __future__ import annotations

import json

import numpy
import pytest

import disttrain.optim as optim
from disttrain.tensor import Tensor

torch = pytest.importorskip("torch")

N_STEPS = 30
LRS = (0.1, 0.02)  # two param groups, so per-group lrs are checked too


def _lambda_decay(epoch):
    return 0.95**epoch


def _lambda_inverse(epoch):
    return 1.0 / (epoch + 1)


SCHEDULERS = {
    "step": lambda m, o: m.StepLR(o, step_size=3),
    "step_gamma": lambda m, o: m.StepLR(o, step_size=5, gamma=0.5),
    "multistep": lambda m, o: m.MultiStepLR(o, milestones=[3, 7, 7, 15], gamma=0.5),
    "multistep_unsorted": lambda m, o: m.MultiStepLR(o, milestones=[20, 2]),
    "exponential": lambda m, o: m.ExponentialLR(o, gamma=0.9),
    "cosine": lambda m, o: m.CosineAnnealingLR(o, T_max=10),
    "cosine_eta_min": lambda m, o: m.CosineAnnealingLR(o, T_max=7, eta_min=0.01),
    "lambda": lambda m, o: m.LambdaLR(o, lr_lambda=_lambda_decay),
    "lambda_list": lambda m, o: m.LambdaLR(o, lr_lambda=[_lambda_inverse, _lambda_decay]),
    "linear": lambda m, o: m.LinearLR(o),
    "linear_custom": lambda m, o: m.LinearLR(o, start_factor=0.25, end_factor=0.5,
                                             total_iters=8),
    "linear_decay": lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.0,
                                            total_iters=12),
    "warmup_cosine": lambda m, o: m.SequentialLR(o, [m.LinearLR(o, 0.1, total_iters=5),
                                                     m.CosineAnnealingLR(o, T_max=25)], [5]),
    "three_phase": lambda m, o: m.SequentialLR(o, [m.ExponentialLR(o, 0.8),
                                                   m.StepLR(o, 4),
                                                   m.MultiStepLR(o, [2, 3])], [6, 14]),
}  # fmt: skip


def _optimizers():
    ours = optim.SGD([{"params": [Tensor(numpy.zeros(2), requires_grad=True)], "lr": lr}
                      for lr in LRS])
    theirs = torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)], "lr": lr}
                              for lr in LRS])
    return ours, theirs


def _lr_sequence(opt, sched, n_steps):
    lrs = [[g["lr"] for g in opt.param_groups]]
    for _ in range(n_steps):
        opt.step()  # NOTE: torch warns when the scheduler steps before the optimizer
        sched.step()
        lrs.append([g["lr"] for g in opt.param_groups])
        assert sched.get_last_lr() == lrs[-1]
    return lrs


@pytest.mark.parametrize("case", sorted(SCHEDULERS))
def test_lr_sequence_matches_torch(case):
    opt, torch_opt = _optimizers()
    ours = _lr_sequence(opt, SCHEDULERS[case](optim.lr_scheduler, opt), N_STEPS)
    theirs = _lr_sequence(torch_opt, SCHEDULERS[case](torch.optim.lr_scheduler, torch_opt),
                          N_STEPS)
    numpy.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)


@pytest.mark.parametrize("case", sorted(SCHEDULERS))
def test_state_dict_resume_continues_the_sequence(case):
    opt, _ = _optimizers()
    expected = _lr_sequence(opt, SCHEDULERS[case](optim.lr_scheduler, opt), N_STEPS)

    opt, _ = _optimizers()
    sched = SCHEDULERS[case](optim.lr_scheduler, opt)
    first = _lr_sequence(opt, sched, 12)
    sched_sd = json.loads(json.dumps(sched.state_dict()))  # plain JSON data, no functions
    opt_sd = opt.state_dict()

    opt, _ = _optimizers()
    sched = SCHEDULERS[case](optim.lr_scheduler, opt)
    sched.load_state_dict(sched_sd)
    opt.load_state_dict(opt_sd)  # NOTE: after the scheduler, as torch documents
    rest = _lr_sequence(opt, sched, N_STEPS - 12)
    assert first + rest[1:] == expected


METRICS = [1.0, 0.9, 0.9, 0.95, 0.9, 0.9, 0.89999, 0.8, 0.8, 0.8, 0.81, 0.8, 0.8, 0.8, 0.8,
           0.7, 0.75, 0.75, 0.75, 0.75, 0.76, 0.77, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]

PLATEAU = [
    dict(),
    dict(patience=2),
    dict(patience=1, factor=0.5, cooldown=2),
    dict(patience=0, threshold=0.05, threshold_mode="abs"),
    dict(mode="max", patience=1, factor=0.5),
    dict(mode="max", patience=2, threshold=0.01, threshold_mode="abs", cooldown=1),
    dict(patience=0, factor=0.5, min_lr=[0.02, 0.01]),
    dict(patience=0, factor=0.5, min_lr=0.015),
    dict(patience=0, factor=0.9, eps=0.005),
]


def _plateau_run(opt, sched, metrics):
    lrs, counters = [], []
    for metric in metrics:
        opt.step()
        sched.step(metric)
        lrs.append([g["lr"] for g in opt.param_groups])
        assert sched.get_last_lr() == lrs[-1]
        counters.append((sched.best, sched.num_bad_epochs, sched.cooldown_counter))
    return lrs, counters


@pytest.mark.parametrize("kwargs", PLATEAU)
def test_reduce_lr_on_plateau_matches_torch(kwargs):
    opt, torch_opt = _optimizers()
    ours = _plateau_run(opt, optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs), METRICS)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(torch_opt, **kwargs)
    theirs = _plateau_run(torch_opt, sched, METRICS)
    numpy.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12, atol=0)
    assert ours[1] == theirs[1]


@pytest.mark.parametrize("kwargs", PLATEAU)
def test_reduce_lr_on_plateau_resumes_from_state_dict(kwargs):
    opt, _ = _optimizers()
    expected = _plateau_run(opt, optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs), METRICS)

    opt, _ = _optimizers()
    sched = optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    first = _plateau_run(opt, sched, METRICS[:11])
    sched_sd, opt_sd = json.loads(json.dumps(sched.state_dict())), opt.state_dict()
    opt, _ = _optimizers()
    sched = optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    sched.load_state_dict(sched_sd)
    opt.load_state_dict(opt_sd)
    rest = _plateau_run(opt, sched, METRICS[11:])
    assert (first[0] + rest[0], first[1] + rest[1]) == expected
