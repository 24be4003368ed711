"""Times one full training step (zero_grad, forward, loss, backward, SGD step) at 1 BLAS thread:
disttrain, a hand-written numpy MLP (forward and backward written out by hand: the "speed of
light" for numpy) and, when installed, PyTorch CPU. The three are interleaved round
by round in one process so machine noise hits them alike; ratios are per round, then medians.
Peak memory is measured in a fresh subprocess per (framework, model).

    python examples/benchmark_core.py --rounds 7 --steps 20 --json out.json
    python examples/benchmark_core.py --configs mnist_example_b64,vgg_cifar_b64 --rounds 5

Configs: three MLP/CNN micro-models, the classic PyTorch MNIST example network
(mnist_example_b64: two 3x3 convs, max-pool, dropout, 9216-128-10, log_softmax + nll_loss) and a
small VGG-style CIFAR network (vgg_cifar_b64: 3x32x32, conv widths 32-64-128).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # NOTE: before numpy loads its BLAS
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

POOL = 16  # cycle through 16 random batches, as the references do (no overfitting one batch)
CONFIGS = {  # name -> (kind, layer sizes, batch)
    "mlp784-500-10_b64": ("mlp", [784, 500, 10], 64),
    "cnn_b64": ("cnn", None, 64),
    "deep784-2048x3-10_b256": ("mlp", [784, 2048, 2048, 2048, 10], 256),
    "mnist_example_b64": ("mnist_example", None, 64),
    "vgg_cifar_b64": ("vgg_cifar", None, 64),
}
INPUT_SHAPES = {"mlp": (784,), "cnn": (1, 28, 28), "mnist_example": (1, 28, 28),
                "vgg_cifar": (3, 32, 32)}


def _pool(kind, batch, rng):
    shape = (batch, *INPUT_SHAPES[kind])
    xs = [rng.standard_normal(shape, dtype=np.float32) for _ in range(POOL)]
    ys = [rng.integers(0, 10, batch) for _ in range(POOL)]
    return xs, ys


def build_model(nn, kind, sizes):
    """The benchmark model from `nn` (disttrain.nn or torch.nn: the same names)."""
    if kind == "cnn":
        return nn.Sequential(nn.Conv2d(1, 32, 3, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(32 * 13 * 13, 128), nn.ReLU(), nn.Linear(128, 10))
    if kind == "mnist_example":  # pytorch/examples mnist/main.py's Net (log_softmax + nll_loss)
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(128, 10), nn.LogSoftmax(dim=1))
    if kind == "vgg_cifar":  # three VGG blocks (two 3x3 convs, pool) of widths 32-64-128
        layers, c = [], 3
        for width in (32, 64, 128):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(),
                       nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c = width
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 4 * 4, 10))
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


def _loss(nn, kind):
    return nn.NLLLoss() if kind == "mnist_example" else nn.CrossEntropyLoss()


def make_disttrain(kind, sizes, xs, ys):
    import disttrain as dt
    import disttrain.nn as nn
    import disttrain.optim as optim

    dt.manual_seed(0)
    model = build_model(nn, kind, sizes)
    opt, loss_fn = optim.SGD(model.parameters(), lr=0.01), _loss(nn, kind)
    xs, ys = [dt.tensor(x) for x in xs], [dt.tensor(y) for y in ys]

    def step(i):
        opt.zero_grad()
        loss = loss_fn(model(xs[i]), ys[i])
        loss.backward()
        opt.step()

    return step


def make_torch(kind, sizes, xs, ys):
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    nn = torch.nn
    model = build_model(nn, kind, sizes)
    opt, loss_fn = torch.optim.SGD(model.parameters(), lr=0.01), _loss(nn, kind)
    xs, ys = [torch.from_numpy(x) for x in xs], [torch.from_numpy(y) for y in ys]

    def step(i):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xs[i]), ys[i])
        loss.backward()
        opt.step()

    return step


class _NumpyMLP:
    """The hand-written reference step: the MLP's forward, backward and SGD update in numpy."""

    def __init__(self, sizes, rng, lr=0.01):
        self.W, self.b, self.lr = [], [], lr
        for i, o in zip(sizes[:-1], sizes[1:]):
            k = 1.0 / np.sqrt(i)
            self.W.append(rng.uniform(-k, k, (i, o)).astype(np.float32))
            self.b.append(rng.uniform(-k, k, o).astype(np.float32))

    def step(self, x, y):
        acts, n = [x], len(self.W)
        for i in range(n):
            z = acts[-1] @ self.W[i]
            z += self.b[i]
            if i < n - 1:
                np.maximum(z, 0, out=z)
            acts.append(z)
        z = acts.pop()
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        rows = np.arange(x.shape[0])
        g = z
        g[rows, y] -= 1.0
        g /= x.shape[0]
        grads_w, grads_b = [None] * n, [None] * n
        for i in reversed(range(n)):
            a = acts[i]
            grads_w[i], grads_b[i] = a.T @ g, g.sum(axis=0)
            if i > 0:
                g = g @ self.W[i].T
                g *= a > 0
        for p, grad in zip(self.W + self.b, grads_w + grads_b):
            grad *= self.lr
            p -= grad


def make_numpy(kind, sizes, xs, ys):
    if kind != "mlp":
        return None
    net = _NumpyMLP(sizes, np.random.default_rng(0))
    return lambda i: net.step(xs[i], ys[i])


FRAMEWORKS = {"disttrain": make_disttrain, "numpy": make_numpy, "torch": make_torch}


def _time_steps(step, steps, start):
    times = []
    for k in range(steps):
        t0 = time.perf_counter()
        step((start + k) % POOL)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_config(name, frameworks, rounds, steps, warmup):
    kind, sizes, batch = CONFIGS[name]
    xs, ys = _pool(kind, batch, np.random.default_rng(1))
    steps_by_fw = {fw: FRAMEWORKS[fw](kind, sizes, xs, ys) for fw in frameworks}
    steps_by_fw = {fw: s for fw, s in steps_by_fw.items() if s is not None}
    for step in steps_by_fw.values():
        _time_steps(step, warmup, 0)
    per_round = {fw: [] for fw in steps_by_fw}
    for r in range(rounds):
        for fw, step in steps_by_fw.items():
            per_round[fw].append(_time_steps(step, steps, r * steps))
    result = {"ms": {fw: statistics.median(v) for fw, v in per_round.items()}}
    for ref in ("numpy", "torch"):
        if ref in per_round:
            ratios = [a / b for a, b in zip(per_round["disttrain"], per_round[ref])]
            result[f"disttrain/{ref}"] = statistics.median(ratios)
            result[f"disttrain/{ref}_range"] = [min(ratios), max(ratios)]
    return result


def _status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process in MiB. NOTE: not ru_maxrss, which Linux
    carries over from the parent across fork + exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_probe(framework, name, steps):
    """Run in a fresh process: peak RSS of `steps` training steps, total and above baseline."""
    kind, sizes, batch = CONFIGS[name]
    xs, ys = _pool(kind, batch, np.random.default_rng(1))
    if framework == "torch":
        import torch  # noqa: F401  (import cost belongs to the baseline)
    else:
        import disttrain

        disttrain.tune_malloc()  # NOTE: as the timed runs (main), so the numbers compare
    baseline = _status_mb("VmRSS")
    step = FRAMEWORKS[framework](kind, sizes, xs, ys)
    for k in range(steps):
        step(k % POOL)
    peak = _status_mb("VmHWM")
    print(json.dumps({"peak_rss_mb": peak, "baseline_mb": baseline,
                      "training_mb": peak - baseline}))


def measure_memory(framework, name, steps=5):
    out = subprocess.run([sys.executable, __file__, "--memory-probe", framework, name,
                          "--steps", str(steps)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per round")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help=f"comma-separated, from: {', '.join(CONFIGS)}")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--memory-probe", nargs=2, metavar=("FRAMEWORK", "CONFIG"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_probe:
        return memory_probe(*args.memory_probe, args.steps)
    import disttrain

    # NOTE: opt in to glibc keeping freed blocks (disttrain.backend.tune_malloc): each step
    # reallocates its activations and gradients, and the deep MLP step was 6% faster for it
    disttrain.tune_malloc()
    try:
        import threadpoolctl
        threadpoolctl.threadpool_limits(1)
    except ImportError:
        pass
    frameworks = ["disttrain", "numpy"]
    try:
        import torch  # noqa: F401
        frameworks.append("torch")
    except ImportError:
        print("torch not installed: PyTorch columns skipped (pip install torch==2.13.0)")
    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        ap.error(f"--configs: unknown {unknown}; choose from {list(CONFIGS)}")
    results = {}
    for name in names:
        res = bench_config(name, frameworks, args.rounds, args.steps, args.warmup)
        res["memory"] = {fw: measure_memory(fw, name) for fw in frameworks
                         if fw != "numpy" and name in CONFIGS}
        results[name] = res
        _print_row(name, res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def _print_row(name, res):
    ms = res["ms"]
    cols = [f"{name:24s}"] + [f"{fw} {v:7.3f} ms" for fw, v in ms.items()]
    for ref in ("numpy", "torch"):
        if f"disttrain/{ref}" in res:
            lo, hi = res[f"disttrain/{ref}_range"]
            cols.append(f"x{ref} {res[f'disttrain/{ref}']:.3f} [{lo:.2f}-{hi:.2f}]")
    mem = res.get("memory", {})
    if "torch" in mem:
        ratio = mem["disttrain"]["training_mb"] / max(mem["torch"]["training_mb"], 1e-9)
        cols.append(f"peak RSS dt {mem['disttrain']['peak_rss_mb']:.0f} MB / torch "
                    f"{mem['torch']['peak_rss_mb']:.0f} MB; training delta ratio {ratio:.2f}")
    print(" | ".join(cols), flush=True)


if __name__ == "__main__":
    main()
