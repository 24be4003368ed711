"""CheckpointManager on every rank: a resumed run is bit-identical to an uninterrupted one, every
rank keeps its own RNG and data position, corruption falls back or refuses, pipeline stages keep
their own shards; and under faults: one job per directory (a lock naming its holder), malformed
manifests count as corruption, saved work is never started over silently nor overwritten."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import subprocess
import sys

import numpy
import pytest

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn as nn
import disttrain.optim as optim
from disttrain import env
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


# ---------------------------------------------------------------- faults (issue 9)
HOLDER = """
import sys
from disttrain.distributed.checkpoint_lock import DirectoryLock
lock = DirectoryLock(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()
"""


def _start_holder(ckpt_dir):
    """Rank 0: another process holding the directory's lock until killed (None elsewhere)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, ckpt_dir], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    return holder, holder.stdout.readline().strip()


def test_a_second_job_on_the_directory_is_refused_naming_the_holder(comm, ckpt_dir):
    holder, said = _start_holder(ckpt_dir) if comm.rank == 0 else (None, None)
    pid, said = comm.bcast_obj((holder.pid, said) if holder else None)
    with pytest.raises(RuntimeError, match=rf"rank {comm.rank}: .* is in use by another job: "
                       rf"pid {pid} on host \S+, started \S+Z, command: \S*python\S* -c"):
        dist.CheckpointManager(ckpt_dir, comm)
    if holder is not None:  # NOTE: SIGKILL: the kernel drops its lock, nothing to clean up
        holder.kill()
        holder.communicate(timeout=30)
    comm.barrier()
    with dist.CheckpointManager(ckpt_dir, comm) as ckpt:
        step = ckpt.restore()
    assert said == "locked" and step == 0


def test_close_releases_the_lock_and_one_process_shares_it(comm, ckpt_dir):
    model = nn.Linear(2, 2)
    first = dist.CheckpointManager(ckpt_dir, comm)
    second = dist.CheckpointManager(ckpt_dir, comm)  # the same job: allowed
    second.save(1, model=model)
    second.close()
    first.close()
    holder, said = _start_holder(ckpt_dir) if comm.rank == 0 else (None, "locked")
    if holder is not None:
        holder.kill()
        holder.communicate(timeout=30)
    with pytest.raises(RuntimeError, match=rf"CheckpointManager.save: rank {comm.rank}: the "
                       r"manager of .* is closed"):
        first.save(2, model=model)
    assert said == "locked"


def _damage_manifest(ckpt_dir, step, change):
    path = os.path.join(ckpt_dir, f"step-{step:08d}", "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    with open(path, "w") as f:
        json.dump(change(manifest), f)


def _set(key, value):
    return lambda m: {**m, key: value}


def _set_file(key, value):
    def change(m):
        m["files"]["shard-00000.safetensors"][key] = value
        return m
    return change


@pytest.mark.parametrize("change, problem", [
    (lambda m: [], r"the manifest is list, not an object"),
    (lambda m: None, r"the manifest is NoneType, not an object"),
    (lambda m: {k: v for k, v in m.items() if k != "files"}, r"files is missing"),
    (_set("files", []), r"files is \[\], not an object"),
    (_set("format_version", 99), r"format_version is 99, this disttrain reads 1"),
    (_set("world_size", "2"), r"world_size is '2', not a positive integer"),
    (_set("step", 7), r"step is 7, the directory says 2"),
    (_set("lineage", 5), r"lineage is 5, not a string"),
    (_set_file("size", "12"), r"files\['shard-00000.safetensors'\].size is '12', not a byte"),
    (_set_file("sha256", 123), r"files\['shard-00000.safetensors'\].sha256 is 123, not 64 hex"),
    (_set_file("rank", None), r"files\['shard-00000.safetensors'\].rank is None, not an int"),
    (lambda m: {**m, "files": {"x": None}}, r"files\['x'\] is NoneType, not an object"),
])  # fmt: skip
def test_a_malformed_manifest_is_a_corrupted_checkpoint(comm, ckpt_dir, change, problem):
    model = dist.DataParallel(nn.Linear(3, 2), comm)
    ckpt = dist.CheckpointManager(ckpt_dir, comm)
    ckpt.save(1, model=model)
    ckpt.save(2, model=model)
    comm.barrier()
    if comm.rank == 0:
        _damage_manifest(ckpt_dir, 2, change)
    comm.barrier()
    with pytest.warns(RuntimeWarning, match=r"skipping checkpoint step-00000002: rank \d+: "
                      r".*step-00000002/manifest.json is not a valid manifest: " + problem
                      ) if comm.rank == 0 else contextlib.nullcontext():
        step = ckpt.restore(model=model)
    assert step == 1


def test_a_missing_newest_manifest_falls_back_and_keeps_that_directory(comm, ckpt_dir):
    model = dist.DataParallel(nn.Linear(3, 2), comm)
    ckpt = dist.CheckpointManager(ckpt_dir, comm)
    ckpt.save(1, model=model)
    ckpt.save(2, model=model)
    comm.barrier()
    if comm.rank == 0:
        os.remove(os.path.join(ckpt_dir, "step-00000002", "manifest.json"))
    comm.barrier()
    with pytest.warns(RuntimeWarning, match=r"skipping checkpoint step-00000002: rank \d+: "
                      r".*step-00000002/manifest.json is missing; moved intact to .*rejected-"
                      ) if comm.rank == 0 else contextlib.nullcontext():
        step = ckpt.restore(model=model)
    ckpt.save(2, model=model)  # a new step 2: the old one was moved aside, not overwritten
    kept = glob.glob(os.path.join(ckpt_dir, "rejected-*", "step-00000002", "shard-00000*"))
    assert step == 1 and len(kept) == 1 and ckpt.committed_steps() == [1, 2]


def _lose_manifests(comm, ckpt_dir, steps):
    model = dist.DataParallel(nn.Linear(3, 2), comm)
    with dist.CheckpointManager(ckpt_dir, comm) as ckpt:
        for step in steps:
            ckpt.save(step, model=model)
    comm.barrier()
    if comm.rank == 0:
        for path in glob.glob(os.path.join(ckpt_dir, "step-*", "manifest.json")):
            os.remove(path)
    comm.barrier()
    return model


def test_saved_work_without_a_restorable_checkpoint_is_never_started_over(comm, ckpt_dir):
    model = _lose_manifests(comm, ckpt_dir, [1, 2])
    ckpt = dist.CheckpointManager(ckpt_dir, comm, start_fresh=False)
    with pytest.warns(RuntimeWarning) if comm.rank == 0 else contextlib.nullcontext():
        with pytest.raises(RuntimeError, match=(
                rf"(?s)rank {comm.rank}: no checkpoint in .* is intact; refusing to start over "
                r"silently.*step 2: rank 0: .*manifest.json is missing.*found: step-00000002/ "
                r"\(no manifest.json\); step-00000001/ \(no manifest.json\); latest says "
                r"'step-00000002'.*start_fresh=True \(disttrain-launch --start-fresh\)")):
            ckpt.restore(model=model)
    assert sorted(os.listdir(os.path.join(ckpt_dir, "step-00000001")))  # untouched


def test_latest_alone_is_saved_work_too(comm, ckpt_dir):
    if comm.rank == 0:
        with open(os.path.join(ckpt_dir, "latest"), "w") as f:
            f.write("step-00000009\n")
    comm.barrier()
    ckpt = dist.CheckpointManager(ckpt_dir, comm, start_fresh=False)
    with pytest.raises(RuntimeError, match=r"(?s)refusing to start over.*found: latest says "
                       r"'step-00000009'"):
        ckpt.restore()


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_start_fresh_moves_old_checkpoints_aside_intact(comm, ckpt_dir, monkeypatch, how):
    model = _lose_manifests(comm, ckpt_dir, [1, 2])
    if how == "environment":  # what disttrain-launch --start-fresh exports
        monkeypatch.setenv(env.START_FRESH, "1")
    ckpt = dist.CheckpointManager(ckpt_dir, comm, start_fresh=True if how == "argument" else None)
    with pytest.warns(RuntimeWarning, match=r"starting fresh at step 0 as asked; the earlier "
                      r"checkpoints of .* were moved intact to .*previous-\d{8}T\d{6}Z"
                      ) if comm.rank == 0 else contextlib.nullcontext():
        step = ckpt.restore(model=model)
    ckpt.save(1, model=model)
    moved = sorted(os.listdir(glob.glob(os.path.join(ckpt_dir, "previous-*"))[0]))
    assert step == 0 and moved == ["latest", "step-00000001", "step-00000002"]
    assert ckpt.restore(model=model) == 1  # later restores resume this run


def test_save_never_overwrites_or_deletes_another_runs_checkpoints(comm, ckpt_dir):
    model = dist.DataParallel(nn.Linear(3, 2), comm)
    with dist.CheckpointManager(ckpt_dir, comm) as ckpt:
        ckpt.save(1, model=model)
        ckpt.save(2, model=model)
    ckpt = dist.CheckpointManager(ckpt_dir, comm, keep_last=1)  # a new run that never restored
    with pytest.raises(RuntimeError, match=rf"CheckpointManager.save: rank {comm.rank}: "
                       r".*step-00000002 exists and this run did not write it \(its manifest "
                       r"names lineage '[0-9a-f]+'; this run's lineage is '[0-9a-f]+'\); "
                       r"refusing to overwrite it"):
        ckpt.save(2, model=model)
    for step in (3, 4, 5):
        ckpt.save(step, model=model)
    assert ckpt.committed_steps() == [1, 2, 5]  # keep_last=1 of its own; none of the other's
