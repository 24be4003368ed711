"""What a checkpoint costs the training loop: synchronous save against asynchronous save (host
snapshot, then write + fsync + commit in a background thread), for the deep MLP (10M parameters,
Adam: 120 MB of state per checkpoint).

    python examples/checkpoint_benchmark.py [--steps 30] [--every 5] [--dir /tmp/ckpt-bench]
    launch/local.sh 2 examples/checkpoint_benchmark.py          # with DataParallel on 2 ranks
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time

import numpy

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn as nn
import disttrain.optim as optim


def run(comm, folder: str, steps: int, every: int, mode: str) -> dict:
    dt.manual_seed(0)
    layers = [nn.Linear(784, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(),
              nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10)]
    model = dist.DataParallel(nn.Sequential(*layers), comm)
    opt = optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    rng = numpy.random.default_rng(comm.rank)
    xs = [dt.tensor(rng.standard_normal((128, 784), dtype=numpy.float32)) for _ in range(8)]
    ys = [dt.tensor(rng.integers(0, 10, 128)) for _ in range(8)]
    ckpt = None
    if mode != "none":
        ckpt = dist.CheckpointManager(folder, comm, keep_last=2, async_save=mode == "async")
    save_s, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        opt.zero_grad()
        loss_fn(model(xs[step % 8]), ys[step % 8]).backward()
        opt.step()
        if ckpt is not None and step % every == 0:
            t0 = time.perf_counter()
            ckpt.save(step, model=model, optimizer=opt)
            save_s.append(time.perf_counter() - t0)
    if ckpt is not None:
        ckpt.wait()
    total = time.perf_counter() - start
    return {"total_s": comm.allreduce_obj(total, op="max"),
            "save_call_ms": statistics.median(save_s) * 1e3 if save_s else 0.0}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--every", type=int, default=5, help="checkpoint every N steps")
    ap.add_argument("--dir", default="/tmp/disttrain-ckpt-bench")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    comm = dist.init()
    results = {mode: [] for mode in ("none", "sync", "async")}
    for _ in range(args.rounds):
        for mode in results:
            if comm.rank == 0:
                shutil.rmtree(args.dir, ignore_errors=True)
            comm.barrier()
            results[mode].append(run(comm, args.dir, args.steps, args.every, mode))
    if comm.rank == 0:
        base = statistics.median(r["total_s"] for r in results["none"])
        saves = args.steps // args.every
        print(f"{comm.size} rank(s), {args.steps} steps, a checkpoint every {args.every} "
              f"({saves} saves), median of {args.rounds} rounds")
        print("| mode | training time s | added per checkpoint ms | save() call ms |")
        print("|---|---|---|---|")
        for mode, runs in results.items():
            total = statistics.median(r["total_s"] for r in runs)
            call = statistics.median(r["save_call_ms"] for r in runs)
            added = (total - base) / saves * 1e3 if mode != "none" else 0.0
            print(f"| {mode} | {total:.2f} | {added:.0f} | {call:.0f} |")


if __name__ == "__main__":
    main()
