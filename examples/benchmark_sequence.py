"""Times one training step (zero_grad, forward, loss, backward, Adam step) of two sequence models
at 1 BLAS thread, disttrain beside PyTorch CPU in one process, interleaved round by round so
machine noise hits both alike; ratios are per round, then median [min-max] (as
examples/benchmark_core.py does).

    lstm         nn.LSTM(64, 256, num_layers=2, batch_first=True) + Linear head,
                 batch 32, sequence 64, cross-entropy over 256 classes at every position
    transformer  nn.TransformerEncoder(TransformerEncoderLayer(128, 4, 512, batch_first=True),
                 4 layers) + Linear head, batch 16, sequence 128, same loss

    python examples/benchmark_sequence.py --rounds 5 --steps 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # NOTE: before numpy loads its BLAS
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

POOL = 4  # NOTE: cycle through a few random batches, as benchmark_core.py does
CLASSES = 256
CONFIGS = {  # name -> (batch, sequence length, input width)
    "lstm": (32, 64, 64),
    "transformer": (16, 128, 128),
}


def build(nn, name):
    """The benchmark model from `nn` (disttrain.nn or torch.nn: the same names); returns
    forward(x) -> (batch, seq, CLASSES) logits and the modules holding the parameters."""
    if name == "lstm":
        rnn, head = nn.LSTM(64, 256, num_layers=2, batch_first=True), nn.Linear(256, CLASSES)
        return (lambda x: head(rnn(x)[0])), [rnn, head]
    layer = nn.TransformerEncoderLayer(128, 4, 512, dropout=0.0, batch_first=True)
    enc, head = nn.TransformerEncoder(layer, num_layers=4), nn.Linear(128, CLASSES)
    return (lambda x: head(enc(x))), [enc, head]


def _pool(name, rng):
    batch, seq, width = CONFIGS[name]
    xs = [rng.standard_normal((batch, seq, width), dtype=np.float32) for _ in range(POOL)]
    ys = [rng.integers(0, CLASSES, (batch * seq,)) for _ in range(POOL)]
    return xs, ys


def make_disttrain(name, xs, ys):
    import disttrain as dt
    import disttrain.nn as nn
    import disttrain.optim as optim

    dt.manual_seed(0)
    forward, modules = build(nn, name)
    params = [p for m in modules for p in m.parameters()]
    opt, loss_fn = optim.Adam(params, lr=1e-3), nn.CrossEntropyLoss()
    xs, ys = [dt.tensor(x) for x in xs], [dt.tensor(y) for y in ys]

    def step(i):
        opt.zero_grad()
        loss = loss_fn(forward(xs[i]).reshape(-1, CLASSES), ys[i])
        loss.backward()
        opt.step()

    return step


def make_torch(name, xs, ys):
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    forward, modules = build(torch.nn, name)
    params = [p for m in modules for p in m.parameters()]
    opt, loss_fn = torch.optim.Adam(params, lr=1e-3), torch.nn.CrossEntropyLoss()
    xs, ys = [torch.from_numpy(x) for x in xs], [torch.from_numpy(y) for y in ys]

    def step(i):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(forward(xs[i]).reshape(-1, CLASSES), ys[i])
        loss.backward()
        opt.step()

    return step


def _time_steps(step, steps, start):
    times = []
    for k in range(steps):
        t0 = time.perf_counter()
        step((start + k) % POOL)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench(name, rounds, steps, warmup):
    """Median step ms of each framework and disttrain/torch per round: median, [min, max]."""
    xs, ys = _pool(name, np.random.default_rng(1))
    fns = {"disttrain": make_disttrain(name, xs, ys), "torch": make_torch(name, xs, ys)}
    for step in fns.values():
        _time_steps(step, warmup, 0)
    per_round = {fw: [] for fw in fns}
    for r in range(rounds):
        for fw, step in fns.items():
            per_round[fw].append(_time_steps(step, steps, r * steps))
    ratios = [a / b for a, b in zip(per_round["disttrain"], per_round["torch"])]
    return {"ms": {fw: statistics.median(v) for fw, v in per_round.items()},
            "per_round_ms": per_round, "disttrain/torch": statistics.median(ratios),
            "disttrain/torch_range": [min(ratios), max(ratios)]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    import disttrain

    # NOTE: as the other examples: glibc keeps freed blocks, each step reallocates activations
    disttrain.tune_malloc()
    try:
        import threadpoolctl
        threadpoolctl.threadpool_limits(1)
    except ImportError:
        pass
    results = {}
    for name in args.configs.split(","):
        if name not in CONFIGS:
            raise ValueError(f"benchmark_sequence: --configs names {name!r}; expected one of "
                             f"{sorted(CONFIGS)}")
        res = results[name] = bench(name, args.rounds, args.steps, args.warmup)
        lo, hi = res["disttrain/torch_range"]
        print(f"{name:12s} | disttrain {res['ms']['disttrain']:8.2f} ms | torch "
              f"{res['ms']['torch']:8.2f} ms | x torch {res['disttrain/torch']:.3f} "
              f"[{lo:.2f}-{hi:.2f}]", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
