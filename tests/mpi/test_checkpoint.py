"""CheckpointManager on every rank: a resumed run is bit-identical to an uninterrupted one, every
rank keeps its own RNG and data position, corruption falls back or refuses, pipeline stages keep
their own shards."""

from __future__ import annotations

import contextlib
import os

import numpy
import pytest

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn as nn
import disttrain.optim as optim
from disttrain.data import DataLoader, DistributedSampler, TensorDataset


@pytest.fixture
def ckpt_dir(mpi_tmp_path):
    """One directory shared by every rank (pytest-mpi's: rank 0's tmp_path)."""
    return str(mpi_tmp_path)


def _setup(comm, seed=0):
    dt.manual_seed(seed)
    model = dist.DataParallel(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3)), comm)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    sched = optim.lr_scheduler.StepLR(opt, 3, gamma=0.5)
    dataset = TensorDataset(dt.tensor(numpy.random.default_rng(0).standard_normal((48, 4))
                                      .astype(numpy.float32)),
                            dt.tensor(numpy.random.default_rng(1).integers(0, 3, 48)))
    sampler = DistributedSampler(dataset, comm.size, comm.rank, shuffle=True, seed=3)
    loader = DataLoader(dataset, batch_size=4, sampler=sampler)
    dt.manual_seed(100 + comm.rank)  # NOTE: each rank's own random stream (dropout-like noise)
    return model, opt, sched, loader, {"epoch": 0}


def _train(model, opt, sched, loader, state, steps, it=None):
    losses = []
    it = iter(loader) if it is None else it  # NOTE: a restored loader resumes mid-epoch
    for _ in range(steps):
        try:
            x, y = next(it)
        except StopIteration:
            state["epoch"] += 1
            loader.sampler.set_epoch(state["epoch"])
            it = iter(loader)
            x, y = next(it)
        noise = dt.randn(*x.shape) * 0.01  # consumes the default generator every step
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x + noise), y)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses, it


def _params(model):
    return [p.array.copy() for p in model.parameters()]


@pytest.mark.parametrize("async_save", [False, True])
def test_resume_is_bit_identical(comm, ckpt_dir, async_save):
    model, opt, sched, loader, state = _setup(comm)
    ckpt = dist.CheckpointManager(ckpt_dir, comm, keep_last=2, async_save=async_save)
    assert ckpt.restore(model=model, optimizer=opt, scheduler=sched, loader=loader,
                        state=state) == 0
    _, it = _train(model, opt, sched, loader, state, 5)
    ckpt.save(5, model=model, optimizer=opt, scheduler=sched, loader=loader, state=state)
    after, _ = _train(model, opt, sched, loader, state, 9, it)
    ckpt.wait()
    expected = _params(model)

    model, opt, sched, loader, state = _setup(comm, seed=7)  # different weights and stream
    resumed = dist.CheckpointManager(ckpt_dir, comm)
    step = resumed.restore(model=model, optimizer=opt, scheduler=sched, loader=loader,
                           state=state)
    again, _ = _train(model, opt, sched, loader, state, 9)
    assert step == 5
    assert after == again
    assert all(numpy.array_equal(a, b) for a, b in zip(expected, _params(model)))


def test_retention_and_latest(comm, ckpt_dir):
    model, opt, sched, loader, state = _setup(comm)
    ckpt = dist.CheckpointManager(ckpt_dir, comm, keep_last=2)
    for step in (1, 2, 3, 4):
        ckpt.save(step, model=model, optimizer=opt)
    steps = ckpt.committed_steps()
    with open(os.path.join(ckpt_dir, "latest")) as f:
        latest = f.read().strip()
    assert steps == [3, 4]
    assert latest == "step-00000004"
    assert not [n for n in os.listdir(ckpt_dir) if ".tmp" in n]


def test_corrupted_newest_falls_back_with_a_warning(comm, ckpt_dir):
    model, opt, _, _, _ = _setup(comm)
    ckpt = dist.CheckpointManager(ckpt_dir, comm, keep_last=3)
    ckpt.save(1, model=model, optimizer=opt)
    ckpt.save(2, model=model, optimizer=opt)
    comm.barrier()
    if comm.rank == 0:
        path = os.path.join(ckpt_dir, "step-00000002", "shard-00000.safetensors")
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0xFF]))
    comm.barrier()
    if comm.rank == 0:
        with pytest.warns(RuntimeWarning, match=r"skipping checkpoint step-00000002: rank \d+: "
                          r".*shard-00000.safetensors fails its sha256 check"):
            step = ckpt.restore(model=model, optimizer=opt)
    else:
        step = ckpt.restore(model=model, optimizer=opt)
    assert step == 1


def test_no_intact_checkpoint_raises_on_every_rank(comm, ckpt_dir):
    model, opt, _, _, _ = _setup(comm)
    ckpt = dist.CheckpointManager(ckpt_dir, comm)
    ckpt.save(1, model=model, optimizer=opt)
    comm.barrier()
    if comm.rank == comm.size - 1:  # this rank's own state file is damaged
        path = os.path.join(ckpt_dir, "step-00000001", f"rank-{comm.rank:05d}.json")
        with open(path, "a") as f:
            f.write(" ")
    comm.barrier()
    with pytest.warns(RuntimeWarning) if comm.rank == 0 else contextlib.nullcontext():
        with pytest.raises(RuntimeError, match=rf"(?s)no checkpoint in .* is intact.*rank "
                           rf"{comm.size - 1}: .*rank-{comm.size - 1:05d}.json has"):
            ckpt.restore(model=model, optimizer=opt)


@pytest.mark.mpi(min_size=2)
def test_pipeline_stages_write_their_own_shards(comm, ckpt_dir):
    dt.manual_seed(0)
    layers = [nn.Linear(4, 8), nn.Tanh()]
    for _ in range(comm.size - 2):
        layers += [nn.Linear(8, 8), nn.Tanh()]
    layers.append(nn.Linear(8, 3))
    # NOTE: every stage holds a Linear (an optimizer needs parameters)
    pipe = dist.Pipeline(nn.Sequential(*layers), comm, 2,
                         balance=[2] * (comm.size - 1) + [1])
    opt = optim.SGD(pipe.parameters(), lr=0.1, momentum=0.9)
    x, y = dt.randn(6, 4), dt.randint(0, 3, (6,))
    pipe.step(x, y, nn.CrossEntropyLoss())
    opt.step()
    ckpt = dist.CheckpointManager(ckpt_dir, comm)
    ckpt.save(1, model=pipe, optimizer=opt)
    saved = _params(pipe.module)
    for p in pipe.parameters():
        p.array[...] = 0
    step = ckpt.restore(model=pipe, optimizer=opt)
    files = sorted(os.listdir(os.path.join(ckpt_dir, "step-00000001")))
    assert step == 1
    assert all(numpy.array_equal(a, b) for a, b in zip(saved, _params(pipe.module)))
    assert [f for f in files if f.startswith("shard")] == [f"shard-{s:05d}.safetensors"
                                                          for s in range(comm.size)]


class _LooksDistributed(nn.Module):
    """A user's module that happens to have `.grid`, `.comm` and `.no_sync` attributes: being
    neither a Pipeline nor a DataParallel, its state is this rank's own."""

    def __init__(self, comm, rank: int):
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.fc.weight.array[...] = rank  # a different model on every rank
        self.grid = type("Grid", (), {"stage_index": 0, "dp_rank": 1})()
        self.comm = comm

    def no_sync(self):
        return contextlib.nullcontext()


def test_duck_typed_objects_get_per_rank_shards(comm, ckpt_dir):
    model = _LooksDistributed(comm, comm.rank)
    ckpt = dist.CheckpointManager(ckpt_dir, comm)
    ckpt.save(1, model=model)
    model.fc.weight.array[...] = -1
    step = ckpt.restore(model=model)
    files = sorted(os.listdir(os.path.join(ckpt_dir, "step-00000001")))
    assert step == 1 and (model.fc.weight.array == comm.rank).all()
    assert [f for f in files if f.startswith("shard")] == [f"shard-{r:05d}.safetensors"
                                                          for r in range(comm.size)]
