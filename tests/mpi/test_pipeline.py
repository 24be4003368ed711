"""Pipeline on every rank: each stage's loss and gradients equal the sequential model's after
several optimizer steps (GPipe and 1F1B, 2-4 stages, a dp x pp grid at 4 ranks)."""

from __future__ import annotations

import numpy
import pytest

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn as nn
import disttrain.optim as optim

BATCH, WIDTH = 10, 6  # NOTE: 10 over 4 or 3 micro-batches leaves a shorter last one


def _model(dtype, n_layers=6, seed=0):
    dt.manual_seed(seed)
    layers = []
    for i in range(n_layers - 1):
        layers += [nn.Linear(WIDTH, WIDTH, dtype=dtype)] + ([nn.Tanh()] if i % 2 else [])
    return nn.Sequential(*layers, nn.Linear(WIDTH, 3, dtype=dtype))


def _data(dtype, step):
    rng = numpy.random.default_rng(100 + step)
    return (dt.tensor(rng.standard_normal((BATCH, WIDTH)).astype(dtype)),
            dt.tensor(rng.integers(0, 3, BATCH)))


def _run(pipe_of, dtype, steps=3):
    """(pipeline losses, reference losses, max |param difference|) after `steps` steps."""
    full, reference = _model(dtype), _model(dtype)
    pipe = pipe_of(full)
    opt = optim.SGD(pipe.parameters(), lr=0.1, momentum=0.9)
    ref_opt = optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    losses, ref_losses, grad_diff = [], [], 0.0
    start, end = pipe.partition[pipe.stage_index]
    for step in range(steps):
        x, y = _data(dtype, step)
        opt.zero_grad()
        losses.append(pipe.step(x, y, loss_fn).item())
        ref_opt.zero_grad()
        ref_loss = loss_fn(reference(x), y)
        ref_loss.backward()
        ref_losses.append(ref_loss.item())
        mine = list(pipe.parameters())
        theirs = [p for layer in list(reference)[start:end] for p in layer.parameters()]
        assert len(mine) == len(theirs)
        grad_diff = max([grad_diff] + [float(numpy.abs(a.grad.array - b.grad.array).max())
                                       for a, b in zip(mine, theirs)])
        opt.step()
        ref_opt.step()
    return losses, ref_losses, grad_diff, pipe


TOL = {"float64": 1e-10, "float32": 1e-5}


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n_microbatches", [1, 2, 3, 4])
def test_pipeline_equals_sequential(comm, schedule, dtype, n_microbatches):
    losses, ref_losses, grad_diff, pipe = _run(
        lambda m: dist.Pipeline(m, comm, n_microbatches, schedule=schedule), dtype)
    assert pipe.num_stages == comm.size and pipe.stage_index == comm.rank
    assert numpy.allclose(losses, ref_losses, rtol=0, atol=TOL[dtype]), (losses, ref_losses)
    assert grad_diff <= TOL[dtype]


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("balance", [None, "params", "time", "list"])
def test_balance_options(comm, balance):
    n_layers = len(_model("float64"))
    if balance == "list":
        # NOTE: every stage gets a Linear (an optimizer needs parameters)
        balance = [1] * (comm.size - 2) + [2, n_layers - comm.size]
    sample = _data("float64", 0)[0]
    losses, ref_losses, grad_diff, pipe = _run(
        lambda m: dist.Pipeline(m, comm, 4, balance=balance, sample_input=sample), "float64",
        steps=2)
    assert numpy.allclose(losses, ref_losses, rtol=0, atol=1e-10)
    assert grad_diff <= 1e-10
    bounds = pipe.partition
    assert bounds[0][0] == 0 and bounds[-1][1] == n_layers and len(bounds) == comm.size
    assert all(a < b for a, b in bounds) and all(bounds[i][1] == bounds[i + 1][0]
                                                 for i in range(len(bounds) - 1))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_live_activations(comm, schedule):
    m = 2 * comm.size
    _, _, _, pipe = _run(lambda model: dist.Pipeline(model, comm, m, schedule=schedule),
                         "float64", steps=1)
    expected = m if schedule == "gpipe" else comm.size - comm.rank
    assert pipe.stats["peak_live"] == expected
    assert 0.0 <= pipe.stats["idle_fraction"] < 1.0


@pytest.mark.mpi(min_size=4)
def test_dp_x_pp_grid_equals_sequential(comm):
    """2 x 2 at 4 ranks: each pipeline sees its half of the batch; the dp all-reduce makes the
    gradients the full batch's."""
    grid = dist.ProcessGrid(dp=2, pp=comm.size // 2, comm=comm)
    full, reference = _model("float64"), _model("float64")
    pipe = dist.Pipeline(full, grid, 2, schedule="1f1b")
    loss_fn = nn.CrossEntropyLoss()
    x, y = _data("float64", 0)
    half = slice(grid.dp_rank * BATCH // 2, (grid.dp_rank + 1) * BATCH // 2)
    loss = pipe.step(x[half], y[half], loss_fn)
    ref_loss = loss_fn(reference(x), y)
    ref_loss.backward()
    start, end = pipe.partition[pipe.stage_index]
    theirs = [p for layer in list(reference)[start:end] for p in layer.parameters()]
    diff = max(float(numpy.abs(a.grad.array - b.grad.array).max())
               for a, b in zip(pipe.parameters(), theirs))
    mean_loss = comm.allreduce_obj(loss.item()) / comm.size
    assert diff <= 1e-10
    assert abs(mean_loss - ref_loss.item()) <= 1e-10


@pytest.mark.mpi(min_size=2)
def test_setup_mismatch_raises_on_every_rank(comm):
    with pytest.raises(ValueError, match=r"every rank must pass the same"):
        dist.Pipeline(_model("float64"), comm, 2 + comm.rank % 2)


def test_too_small_batch_is_an_error(comm):
    pipe = dist.Pipeline(_model("float64"), comm, 4)
    x, y = _data("float64", 0)
    with pytest.raises(ValueError, match=r"a batch of 3 cannot be split into 4 micro-batches"):
        pipe.step(x[:3], y[:3], nn.CrossEntropyLoss())
