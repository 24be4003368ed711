"""Pipeline-parallel training over MPI, with the per-stage table and the measured bubble.

    launch/local.sh 2 examples/train_pipeline.py                       # deep MLP on digits
    launch/local.sh 4 examples/train_pipeline.py --dp 2                # 2 x 2: dp x pp
    launch/local.sh 4 examples/train_pipeline.py --synthetic 20 --microbatches 8 --schedule gpipe

--synthetic MS replaces the model by layers of known cost (forward MS ms, backward 2*MS ms,
spent sleeping so that more ranks than cores still measure the schedule, not the CPU), one per
stage, and compares the measured bubble with the theory (K-1)/(M+K-1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn as nn
import disttrain.optim as optim
from disttrain.data import datasets


class _Sleep(dt.Function):
    """Identity whose forward takes `ms` and backward 2 * `ms` (a layer of known cost)."""

    def forward(self, x, ms):
        self.saved = (ms,)
        time.sleep(ms / 1e3)
        return x.copy()

    def backward(self, grad):
        time.sleep(2 * self.saved[0] / 1e3)
        return grad


class SleepLayer(nn.Module):
    def __init__(self, ms: float):
        super().__init__()
        self.ms = ms
        self.scale = nn.Parameter(numpy.ones(1, numpy.float32))  # so it has a gradient

    def forward(self, x):
        return _Sleep.apply(x * self.scale, ms=self.ms)


def build_model(args, num_stages: int) -> nn.Sequential:
    dt.manual_seed(args.seed)
    if args.synthetic:
        # NOTE: balance="time" puts one sleeping layer per stage (the cheap Flatten and Linear
        # join the first and last), so every stage costs the same: the schedule's own bubble
        return nn.Sequential(nn.Flatten(), *[SleepLayer(args.synthetic) for _ in
                                             range(num_stages)], nn.Linear(784, 10))
    layers, width = [nn.Flatten(), nn.Linear(784, args.width), nn.ReLU()], args.width
    for _ in range(args.depth - 2):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def stage_table(rows: list[dict], partition, schedule: str, microbatches: int) -> str:
    k = len(rows)
    lines = [f"schedule {schedule}, {k} stages, {microbatches} micro-batches; theory bubble "
             f"(K-1)/(M+K-1) = {(k - 1) / (microbatches + k - 1):.3f}",
             "| stage | layers | step ms | compute ms | wait ms | send ms | peak live "
             "activations | idle (bubble) |", "|---|---|---|---|---|---|---|---|"]
    for row, (start, end) in zip(rows, partition):
        lines.append(f"| {int(row['stage'])} | {start}-{end - 1} | {row['step_s'] * 1e3:.1f} | "
                     f"{row['compute_s'] * 1e3:.1f} | {row['wait_s'] * 1e3:.1f} | "
                     f"{row['send_s'] * 1e3:.1f} | {int(row['peak_live'])} | "
                     f"{row['idle_fraction']:.3f} |")
    bubble = statistics.mean(r["idle_fraction"] for r in rows)
    lines.append(f"measured bubble (mean idle fraction over stages): {bubble:.3f}")
    return "\n".join(lines)


def draw_batch(rng, n: int, size: int):
    """`size` indices of n images, none repeated when size <= n; a bigger batch takes whole
    permutations one after the other (each image at most ceil(size / n) times)."""
    rounds = -(-size // n)
    return numpy.concatenate([rng.permutation(n) for _ in range(rounds)])[:size]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dp", type=int, default=1, help="data-parallel replicas (pp = ranks / dp)")
    ap.add_argument("--schedule", choices=["1f1b", "gpipe"], default="1f1b")
    ap.add_argument("--microbatches", type=int, default=4)
    ap.add_argument("--balance", default=None, help="None, 'params', 'time' or e.g. 3,5")
    ap.add_argument("--batch-size", type=int, default=64, help="global batch")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--depth", type=int, default=4, help="Linear layers of the MLP")
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--synthetic", type=float, default=0.0, metavar="MS")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="rank 0 writes the per-stage figures here")
    args = ap.parse_args(argv)

    # NOTE: opt in to glibc keeping freed blocks (disttrain.backend.tune_malloc): each step
    # reallocates its activations and gradients (6% faster deep-MLP steps)
    dt.tune_malloc()
    comm = dist.init()
    grid = dist.ProcessGrid(dp=args.dp, pp=comm.size // args.dp, comm=comm)
    balance = args.balance or ("time" if args.synthetic else None)
    if balance and balance[0].isdigit():
        balance = [int(v) for v in balance.split(",")]
    images, labels = datasets.Digits("train").arrays()
    sample = dt.tensor(images[:args.batch_size // args.dp])
    pipe = dist.Pipeline(build_model(args, grid.pp), grid, args.microbatches,
                         schedule=args.schedule, balance=balance, sample_input=sample)
    optimizer = optim.SGD(pipe.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    rng = numpy.random.default_rng(args.seed)
    per_replica = args.batch_size // args.dp
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    say(f"{comm.size} ranks: dp={grid.dp} x pp={grid.pp}, stages {pipe.partition}")
    if args.batch_size > len(images):
        say(f"note: --batch-size {args.batch_size} is more than the {len(images)} training "
            "images: a batch repeats images")
    if pipe.layer_times is not None:  # balance="time": what the partition was cut from
        stage_ms = [sum(pipe.layer_times[a:b]) * 1e3 for a, b in pipe.partition]
        say("profiled forward+backward per stage (ms): "
            + ", ".join(f"{t:.2f}" for t in stage_ms))
    history = []
    for step in range(args.steps):
        batch = draw_batch(rng, len(images), args.batch_size)  # same on every rank (seed)
        mine = batch[grid.dp_rank * per_replica:(grid.dp_rank + 1) * per_replica]
        optimizer.zero_grad()
        loss = pipe.step(dt.tensor(images[mine]), dt.tensor(labels[mine]), loss_fn)
        optimizer.step()
        history.append(pipe.stats)
        if step % 10 == 0 or step == args.steps - 1:
            say(f"step {step:4d}  loss {loss.item():.4f}", flush=True)
    # per-stage medians over the second half of the steps, gathered along the pipeline
    half = history[len(history) // 2:]
    mine = {key: statistics.median(h[key] for h in half) for key in half[0]}
    rows = grid.pp_comm.allgather_obj(mine)
    if grid.dp_rank == 0:
        say(stage_table(rows, pipe.partition, args.schedule, args.microbatches))
        # NOTE: a step ends when the slowest stage's does; every replica takes the same time
        step_s = max(r["step_s"] for r in rows)
        say(f"step {step_s * 1e3:.1f} ms (slowest stage, median of the second half): "
            f"{args.batch_size / step_s:.0f} samples/s over {comm.size} ranks")
        if args.json and comm.rank == 0:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "stages": rows, "partition": pipe.partition,
                           "step_s": step_s, "samples_per_s": args.batch_size / step_s},
                          f, indent=2)
    return rows


if __name__ == "__main__":
    main()
