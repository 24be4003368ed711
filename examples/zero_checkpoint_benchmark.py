"""What a ZeroRedundancyOptimizer checkpoint costs, consolidated against sharded: save() time and
the bytes rank 0 writes, for the deep MLP (784-2048x3-10, 10.0M float32 parameters, Adam: 80 MB
of optimizer state) under DataParallel.

- consolidated: the optimizer's full state gathered to every rank and written by rank 0 into the
  stage shard, with the model (what CheckpointManager did before sharded files; reproduced here
  by saving `opt.state_dict()` through a wrapper);
- sharded: each rank writes its own range of the state (`zero-optimizer-00000-<rank>`), rank 0
  the model's shard besides.

    mpirun -n 2 python -m mpi4py examples/zero_checkpoint_benchmark.py [--saves 5] [--dir D]
    mpirun -n 4 python -m mpi4py examples/zero_checkpoint_benchmark.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn as nn
import disttrain.optim as optim


class Consolidated:
    """A ZeroRedundancyOptimizer seen as CheckpointManager saved it before sharded files: its
    consolidated state_dict() (a collective) in the stage shard."""

    def __init__(self, zero):
        self.zero = zero

    def state_dict(self):
        return self.zero.state_dict()


def build(comm):
    dt.manual_seed(0)
    layers = [nn.Linear(784, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(),
              nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10)]
    model = dist.DataParallel(nn.Sequential(*layers), comm)
    opt = dist.ZeroRedundancyOptimizer(model.parameters(), optim.Adam, comm=comm, lr=1e-4)
    rng = numpy.random.default_rng(comm.rank)
    x = dt.tensor(rng.standard_normal((64, 784), dtype=numpy.float32))
    y = dt.tensor(rng.integers(0, 10, 64))
    nn.CrossEntropyLoss()(model(x), y).backward()
    opt.step()  # NOTE: creates Adam's state (exp_avg, exp_avg_sq) on every shard
    return model, opt


def measure(comm, folder: Path, model, optimizer, saves: int) -> tuple[list[float], dict]:
    """save() seconds (the slowest rank's) of `saves` checkpoints, and the bytes each rank
    wrote in the last one (from its manifest)."""
    if comm.rank == 0:
        shutil.rmtree(folder, ignore_errors=True)
    comm.barrier()
    seconds = []
    with dist.CheckpointManager(str(folder), comm, keep_last=1) as ckpt:
        for step in range(1, saves + 1):
            comm.barrier()
            start = time.perf_counter()
            ckpt.save(step, model=model, optimizer=optimizer)
            seconds.append(comm.allreduce_obj(time.perf_counter() - start, op="max"))
    manifest = json.loads((folder / f"step-{saves:08d}" / "manifest.json").read_text())
    comm.barrier()  # NOTE: every rank has read it before rank 0 removes the folder again
    written: dict[int, int] = {}
    for entry in manifest["files"].values():
        written[entry["rank"]] = written.get(entry["rank"], 0) + entry["size"]
    return seconds, written


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--saves", type=int, default=5, help="checkpoints per mode and round")
    ap.add_argument("--rounds", type=int, default=2, help="alternated rounds of both modes")
    ap.add_argument("--dir", default="/tmp/disttrain-zero-ckpt-bench")
    args = ap.parse_args()
    comm = dist.init()
    model, opt = build(comm)
    modes = {"consolidated": Consolidated(opt), "sharded": opt}
    seconds = {mode: [] for mode in modes}
    written = {}
    for _ in range(args.rounds):
        for mode, optimizer in modes.items():
            times, written[mode] = measure(comm, Path(args.dir), model, optimizer, args.saves)
            seconds[mode] += times
    state_mb = comm.allreduce_obj(opt.optimizer_state_bytes()) / 1e6
    model.remove()
    if comm.rank == 0:
        shutil.rmtree(args.dir, ignore_errors=True)
        print(f"{comm.size} rank(s), deep MLP 784-2048x3-10, Adam state {state_mb:.1f} MB "
              f"in all; {args.rounds} x {args.saves} saves per mode, median")
        print("| mode | save() s (slowest rank) | rank 0 writes MB | largest other rank MB |")
        print("|---|---|---|---|")
        for mode in modes:
            others = max((v for r, v in written[mode].items() if r != 0), default=0)
            print(f"| {mode} | {statistics.median(seconds[mode]):.3f} | "
                  f"{written[mode][0] / 1e6:.1f} | {others / 1e6:.1f} |")

if __name__ == "__main__":
    main()
