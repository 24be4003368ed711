"""ZeroRedundancyOptimizer's sharded state on every rank: each rank's sharded_state_dict() holds
its own range; the shards of a run at one world size load at another (resharding) into exactly
the consolidated state; CheckpointManager writes one zero-*.safetensors file per rank (~1/size
of the state each), resumes bit for bit at the same size reading only the rank's own file,
reshards at another size reading only the files that overlap, detects a corrupted or missing
rank file, still reads checkpoints that hold the consolidated state, and refuses a layout that
does not match, naming the rank.

The model's 74 parameters (Linear(5, 7), Linear(7, 4)) split unevenly over 3 and 4 ranks.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import struct
import warnings

import numpy
import pytest

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn as nn
import disttrain.optim as optim
from disttrain.distributed import zero_checkpoint
from disttrain.distributed.zero_layout import shard_ranges

TOTAL = 74  # elements of make_model()'s parameters
NAMES = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")  # Adam(amsgrad=True)'s element-wise state


def make_model(seed: int = 0, hidden: int = 7) -> nn.Module:
    dt.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, hidden), nn.Tanh(), nn.Linear(hidden, 4)).to(dt.float64)


def setup(comm, seed: int = 0, hidden: int = 7, stage: int = 1):
    dp = dist.DataParallel(make_model(seed, hidden), comm=comm)
    return dp, dist.ZeroRedundancyOptimizer(dp.parameters(), optim.Adam, comm=comm, lr=0.01,
                                            betas=(0.8, 0.99), amsgrad=True, stage=stage)


def batches(rank: int, steps: int, seed: int = 0) -> list:
    rng = numpy.random.default_rng(1000 * seed + rank)
    return [dt.tensor(rng.standard_normal((3, 5))) for _ in range(steps)]


def train(model, opt, xs) -> None:
    for x in xs:
        opt.zero_grad()
        (model(x) ** 2).mean().backward()
        opt.step()


def params(model) -> list:
    return [p.array.copy() for p in model.parameters()]


def state_problems(full: dict, expected: dict) -> list[str]:
    """Where two plain-format optimizer state_dicts differ (bit for bit); [] when equal."""
    problems = [] if full["param_groups"] == expected["param_groups"] else ["param_groups"]
    if sorted(full["state"]) != sorted(expected["state"]):
        return problems + [f"indices {sorted(full['state'])} != {sorted(expected['state'])}"]
    for index, entry in expected["state"].items():
        if sorted(full["state"][index]) != sorted(entry):
            problems.append(f"names of {index}")
            continue
        problems += [f"{index}.{key}" for key, value in entry.items()
                     if not numpy.array_equal(full["state"][index][key], value)]
    return problems


@contextlib.contextmanager
def opened_files(monkeypatch):
    """The names of the files zero_checkpoint opens inside the block."""
    names, real = [], zero_checkpoint.safe_open
    monkeypatch.setattr(zero_checkpoint, "safe_open",
                        lambda path, **kw: names.append(os.path.basename(path)) or real(path, **kw))
    yield names
    monkeypatch.setattr(zero_checkpoint, "safe_open", real)


def overlapping(saved_size: int, size: int, rank: int) -> list[int]:
    lo, hi = shard_ranges(TOTAL, size)[rank]
    return [r for r, (a, b) in enumerate(shard_ranges(TOTAL, saved_size)) if a < hi and lo < b]


def test_sharded_state_dict_is_this_ranks_range_of_the_consolidated_state(comm):
    dp, opt = setup(comm)
    train(dp, opt, batches(comm.rank, 3))
    full, shard = opt.state_dict(), opt.sharded_state_dict()
    dp.remove()
    lo, hi = shard_ranges(TOTAL, comm.size)[comm.rank]
    layout = shard["layout"]
    assert (layout["world_size"], layout["rank"], layout["range"]) == (comm.size, comm.rank,
                                                                       [lo, hi])
    assert layout["flat_size"] == TOTAL and sum(layout["sizes"]) == TOTAL
    assert layout["shapes"] == [[7, 5], [7], [4, 7], [4]]
    assert sorted(shard["state"]) == sorted(NAMES)
    for name in NAMES:  # the consolidated state, cut at the flat layout's offsets
        flat = numpy.zeros(TOTAL)
        for pos, (offset, size) in enumerate(zip(layout["offsets"], layout["sizes"])):
            order = layout["orders"][pos]  # NOTE: the parameter's memory order (a weight: F)
            flat[offset:offset + size] = full["state"][pos][name].reshape(-1, order=order)
        assert numpy.array_equal(shard["state"][name], flat[lo:hi]), name
    assert all(entry["scalars"] == {"step": 3.0} for entry in shard["params"].values())
    assert shard["param_groups"] == full["param_groups"]


def test_shards_load_at_another_world_size_into_the_same_state(comm):
    """world (size M) -> each rank alone (1) -> halves (rank % 2) -> world again: every load
    gives exactly the state the M ranks had."""
    dp, opt = setup(comm)
    train(dp, opt, batches(comm.rank, 3))
    dp.remove()
    expected, saved = opt.state_dict(), params(dp.module)
    shards = comm.allgather_obj(opt.sharded_state_dict())  # NOTE: small model: all in memory
    results = []
    for sub in (comm.split(color=comm.rank), comm.split(color=comm.rank % 2), comm):
        model = make_model(seed=5)
        model.load_state_dict({n: a for (n, _), a in zip(model.named_parameters(), saved)})
        resumed = dist.ZeroRedundancyOptimizer(model.parameters(), optim.Adam, comm=sub, lr=0.5)
        resumed.load_sharded_state_dict(shards)
        results.append(state_problems(resumed.state_dict(), expected))
        shards = sub.allgather_obj(resumed.sharded_state_dict())
    assert results == [[], [], []]


@pytest.mark.parametrize(("stage", "async_save"), [(1, False), (2, True)])
def test_checkpoint_manager_resume_is_bit_identical(comm, mpi_tmp_path, monkeypatch, stage,
                                                    async_save):
    dp, opt = setup(comm, stage=stage)
    ckpt = dist.CheckpointManager(str(mpi_tmp_path), comm, async_save=async_save)
    train(dp, opt, batches(comm.rank, 2))
    ckpt.save(2, model=dp, optimizer=opt)
    train(dp, opt, batches(comm.rank, 3, seed=1))
    dp.remove()
    expected, expected_state = params(dp.module), opt.state_dict()
    ckpt.close()
    dp, opt = setup(comm, seed=9, stage=stage)
    resumed = dist.CheckpointManager(str(mpi_tmp_path), comm)
    with opened_files(monkeypatch) as opened:
        step = resumed.restore(model=dp, optimizer=opt)
    train(dp, opt, batches(comm.rank, 3, seed=1))
    dp.remove()
    resumed.close()
    full, folder = opt.state_dict(), mpi_tmp_path / "step-00000002"
    assert step == 2
    assert all(numpy.array_equal(a, b) for a, b in zip(expected, params(dp.module)))
    assert state_problems(full, expected_state) == []
    assert opened == [f"zero-optimizer-00000-{comm.rank:05d}.safetensors"]  # its own only
    assert sorted(p.name for p in folder.glob("zero-*")) == [
        f"zero-optimizer-00000-{r:05d}.safetensors" for r in range(comm.size)]
    assert sorted(dt.load(str(folder / "shard-00000.safetensors"))) == ["model"]


def data_bytes(path) -> int:
    """Bytes of a safetensors file's tensor data (its size less the header)."""
    with open(path, "rb") as f:
        (header,) = struct.unpack("<Q", f.read(8))
    return os.path.getsize(path) - 8 - header


def test_each_rank_file_holds_its_share_of_the_state(comm, mpi_tmp_path):
    dp, opt = setup(comm, hidden=64)  # 5*64 + 64 + 64*4 + 4 = 644 elements
    train(dp, opt, batches(comm.rank, 2))
    with dist.CheckpointManager(str(mpi_tmp_path), comm) as ckpt:
        ckpt.save(1, model=dp, optimizer=opt)
    dp.remove()
    plain = sum(v.nbytes for entry in opt.state_dict()["state"].values() for v in entry.values()
                if hasattr(v, "nbytes"))
    lo, hi = shard_ranges(644, comm.size)[comm.rank]
    folder = mpi_tmp_path / "step-00000001"
    mine = data_bytes(folder / f"zero-optimizer-00000-{comm.rank:05d}.safetensors")
    everyone = comm.allgather_obj(mine)
    assert plain == 644 * 8 * len(NAMES)
    assert mine == (hi - lo) * 8 * len(NAMES)  # exactly this rank's range, nothing more
    assert sum(everyone) == plain
    assert os.path.getsize(folder / f"zero-optimizer-00000-{comm.rank:05d}.safetensors") < (
        plain / comm.size + 4096)  # + the JSON header (layout, scalars, param_groups)


@pytest.mark.mpi(min_size=2)
def test_checkpoint_manager_reshards_reading_only_the_overlapping_files(comm, mpi_tmp_path,
                                                                        monkeypatch):
    """Saved by `size` ranks, restored by groups of ranks (rank % 2) of other sizes, each from
    its own copy of the directory (one job per directory)."""
    dp, opt = setup(comm)
    with dist.CheckpointManager(str(mpi_tmp_path / "saved"), comm) as ckpt:
        train(dp, opt, batches(comm.rank, 3))
        ckpt.save(3, model=dp, optimizer=opt)
    dp.remove()
    expected, saved = opt.state_dict(), params(dp.module)
    sub = comm.split(color=comm.rank % 2)
    copy = mpi_tmp_path / f"group{comm.rank % 2}"
    if sub.rank == 0:
        shutil.copytree(mpi_tmp_path / "saved", copy)
    sub.barrier()
    dp, opt = setup(sub, seed=9)
    with dist.CheckpointManager(str(copy), sub) as ckpt, opened_files(monkeypatch) as opened:
        step = ckpt.restore(model=dp, optimizer=opt)
    dp.remove()
    full = opt.state_dict()
    assert step == 3
    assert all(numpy.array_equal(a, b) for a, b in zip(saved, params(dp.module)))
    assert state_problems(full, expected) == []
    assert opened == [f"zero-optimizer-00000-{r:05d}.safetensors"
                      for r in overlapping(comm.size, sub.size, sub.rank)]


@pytest.mark.mpi(min_size=2)
def test_checkpoint_manager_restores_one_ranks_checkpoint_at_every_rank(comm, mpi_tmp_path):
    """Each rank alone (the whole global batch) saves; the world restores rank 0's."""
    xs = [batches(r, 2) for r in range(comm.size)]
    alone = comm.split(color=comm.rank)
    dp, opt = setup(alone)
    for step in range(2):
        opt.zero_grad()
        (sum((dp(x[step]) ** 2).mean() for x in xs) / comm.size).backward()
        opt.step()
    with dist.CheckpointManager(str(mpi_tmp_path / f"alone{comm.rank}"), alone) as ckpt:
        ckpt.save(2, model=dp, optimizer=opt)
    dp.remove()
    expected = opt.state_dict()
    comm.barrier()
    dp, opt = setup(comm, seed=9)
    with dist.CheckpointManager(str(mpi_tmp_path / "alone0"), comm) as ckpt:
        step = ckpt.restore(model=dp, optimizer=opt)
    dp.remove()
    full = opt.state_dict()
    assert step == 2
    assert state_problems(full, expected) == []


@pytest.mark.mpi(min_size=2)
def test_per_rank_state_refuses_another_world_size(comm, mpi_tmp_path):
    dp, opt = setup(comm)
    with dist.CheckpointManager(str(mpi_tmp_path / "saved"), comm) as ckpt:
        ckpt.save(1, model=dp, optimizer=opt, rng=numpy.random.default_rng(0))
    dp.remove()
    alone = comm.split(color=comm.rank)
    if alone.rank == 0:
        shutil.copytree(mpi_tmp_path / "saved", mpi_tmp_path / f"copy{comm.rank}")
    dp, opt = setup(alone)
    with dist.CheckpointManager(str(mpi_tmp_path / f"copy{comm.rank}"), alone) as ckpt:
        with pytest.warns(RuntimeWarning), pytest.raises(
                RuntimeError, match=rf"rank 0: .* was written by {comm.size} ranks, this job "
                                    r"has 1; per-rank state \(rng\) restores only at the same"):
            ckpt.restore(model=dp, optimizer=opt, rng=numpy.random.default_rng(1))
    dp.remove()


def damage(path, how: str) -> None:
    if how == "missing":
        os.remove(path)
    else:  # flip one byte of the tensor data
        with open(path, "r+b") as f:
            f.seek(-1, 2)
            byte = f.read(1)
            f.seek(-1, 2)
            f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("how", ["corrupted", "missing"])
def test_a_damaged_rank_file_is_detected_and_skipped(comm, mpi_tmp_path, how):
    dp, opt = setup(comm)
    ckpt = dist.CheckpointManager(str(mpi_tmp_path), comm, keep_last=3)
    train(dp, opt, batches(comm.rank, 1))
    ckpt.save(1, model=dp, optimizer=opt)
    expected = opt.state_dict()
    train(dp, opt, batches(comm.rank, 1, seed=1))
    ckpt.save(2, model=dp, optimizer=opt)
    comm.barrier()
    victim = comm.size - 1
    name = f"zero-optimizer-00000-{victim:05d}.safetensors"
    if comm.rank == victim:
        damage(mpi_tmp_path / "step-00000002" / name, how)
    comm.barrier()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step = ckpt.restore(model=dp, optimizer=opt)
    dp.remove()
    ckpt.close()
    full = opt.state_dict()
    why = "fails its sha256 check" if how == "corrupted" else "is missing"
    assert step == 1
    assert state_problems(full, expected) == []
    if comm.rank == 0:  # NOTE: the file's own rank verifies it (at the same world size)
        assert any(re.search(rf"skipping checkpoint step-00000002: rank {victim}: .*{name} "
                             rf"{why}", str(w.message)) for w in caught), caught


class Consolidated:
    """Saves a ZeroRedundancyOptimizer as CheckpointManager did before the sharded files: its
    consolidated state_dict() in the stage's shard."""

    def __init__(self, zero):
        self.zero = zero

    def state_dict(self):
        return self.zero.state_dict()


def test_a_checkpoint_holding_the_consolidated_state_still_restores(comm, mpi_tmp_path):
    dp, opt = setup(comm)
    train(dp, opt, batches(comm.rank, 2))
    with dist.CheckpointManager(str(mpi_tmp_path), comm) as ckpt:
        ckpt.save(2, model=dp, optimizer=Consolidated(opt))
    dp.remove()
    expected = opt.state_dict()
    dp, opt = setup(comm, seed=9)
    with dist.CheckpointManager(str(mpi_tmp_path), comm) as ckpt:
        step = ckpt.restore(model=dp, optimizer=opt)
    dp.remove()
    full = opt.state_dict()
    assert not list((mpi_tmp_path / "step-00000002").glob("zero-*"))
    assert step == 2
    assert state_problems(full, expected) == []


def test_a_mismatched_layout_is_refused_naming_the_rank(comm):
    dp, opt = setup(comm)
    train(dp, opt, batches(comm.rank, 1))
    dp.remove()
    shards = comm.allgather_obj(opt.sharded_state_dict())
    other, other_opt = setup(comm, hidden=8)
    other.remove()
    where = rf"load_sharded_state_dict \(rank {comm.rank}\)"
    with pytest.raises(ValueError, match=rf"{where}: the saved layout does not match this "
                                         r"optimizer's: parameter 0 has shape \(7, 5\) in the "
                                         r"checkpoint, \(8, 5\) here"):
        other_opt.load_sharded_state_dict(shards)
    with pytest.raises(ValueError, match=rf"{where}: got no shards"):
        opt.load_sharded_state_dict([])
    if comm.size > 1:
        with pytest.raises(ValueError, match=rf"{where}: shards\[\d\] is rank \d's of a "
                                             rf"{comm.size}-rank run, expected rank"):
            opt.load_sharded_state_dict(shards[1:] + shards[:1])  # each one off


@pytest.mark.mpi(min_size=2)
def test_save_refuses_an_optimizer_over_part_of_the_ranks(comm, mpi_tmp_path):
    alone = comm.split(color=comm.rank)
    dp, opt = setup(alone)
    dp.remove()
    with dist.CheckpointManager(str(mpi_tmp_path), comm) as ckpt:
        with pytest.raises(ValueError, match=rf"rank {comm.rank}: ZeroRedundancyOptimizer "
                                             rf"'optimizer' spans 1 of the manager's "
                                             rf"{comm.size} ranks"):
            ckpt.save(1, optimizer=opt)


def test_saved_files_lists_every_saved_rank_even_one_the_manifest_lost():
    files = {n: {} for n in ("shard-00000.safetensors", "zero-optimizer-00000-00000.safetensors",
                             "zero-optimizer-00000-00002.safetensors",
                             "zero-optimizer-00001-00000.safetensors",
                             "zero-opt-00000-00005.safetensors")}
    assert zero_checkpoint.saved_files({"files": files}, "optimizer", 0) == [
        f"zero-optimizer-00000-{r:05d}.safetensors" for r in range(3)]
    assert zero_checkpoint.saved_files({"files": files}, "optimizer", 1) == [
        "zero-optimizer-00001-00000.safetensors"]
    assert zero_checkpoint.saved_files({"files": files}, "sched", 0) == []


@pytest.mark.mpi(min_size=4)
def test_pipeline_stages_write_their_own_sharded_files(comm, mpi_tmp_path):
    """dp=2 x pp=2 (every 4 ranks a grid; ranks past a multiple of 4 sit it out): each
    stage's optimizer spans its data-parallel group and writes
    zero-optimizer-<stage>-<dp_rank>; resume is bit-identical."""
    color = comm.rank // 4
    world = comm.split(color=color)
    if world.size < 4:
        return

    def build(seed: int):
        dt.manual_seed(seed)
        grid = dist.ProcessGrid(dp=2, pp=2, comm=world)
        net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).to(dt.float64)
        pipe = dist.Pipeline(net, grid, 2, balance=[2, 1])
        return pipe, dist.ZeroRedundancyOptimizer(pipe.parameters(), optim.Adam,
                                                  comm=grid.dp_comm, lr=0.01)

    def train_pipe(pipe, opt, seed: int) -> None:
        rng = numpy.random.default_rng(seed)
        for _ in range(2):
            x, y = dt.tensor(rng.standard_normal((4, 4))), dt.tensor(rng.integers(0, 3, 4))
            opt.zero_grad()
            pipe.step(x, y, nn.CrossEntropyLoss())
            opt.step()

    folder = mpi_tmp_path / f"grid{color}"
    pipe, opt = build(0)
    train_pipe(pipe, opt, 0)
    with dist.CheckpointManager(str(folder), world) as ckpt:
        ckpt.save(1, model=pipe, optimizer=opt)
    train_pipe(pipe, opt, 1)
    expected = params(pipe)
    pipe, opt = build(5)
    with dist.CheckpointManager(str(folder), world) as ckpt:
        step = ckpt.restore(model=pipe, optimizer=opt)
    train_pipe(pipe, opt, 1)
    files = sorted(p.name for p in (folder / "step-00000001").glob("zero-*"))
    assert step == 1
    assert files == [f"zero-optimizer-{s:05d}-{r:05d}.safetensors" for s in (0, 1)
                     for r in (0, 1)]
    assert all(numpy.array_equal(a, b) for a, b in zip(expected, params(pipe)))
