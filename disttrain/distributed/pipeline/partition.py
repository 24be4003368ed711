"""Which layers each pipeline stage holds: pure functions of layer counts and costs, and the
profiler that measures per-layer costs for balance="time"."""

from __future__ import annotations

import time
from collections.abc import Callable

from disttrain.backend import get_array_module


def balanced_cuts(costs: list[float], num_stages: int) -> list[tuple[int, int]]:
    """Contiguous, non-empty [start, end) ranges of `costs` minimising the largest range sum.

    Example:
        >>> balanced_cuts([1, 1, 1, 3], 2)
        [(0, 3), (3, 4)]
    """
    n = len(costs)
    if not 1 <= num_stages <= n:
        raise ValueError(f"partition: cannot split {n} layers into {num_stages} non-empty stages")
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    inf = float("inf")
    # best[k][i]: smallest max-stage cost putting the first i layers into k stages
    best = [[inf] * (n + 1) for _ in range(num_stages + 1)]
    cut = [[0] * (n + 1) for _ in range(num_stages + 1)]
    best[0][0] = 0.0
    for k in range(1, num_stages + 1):
        for i in range(k, n - (num_stages - k) + 1):
            for j in range(k - 1, i):
                cost = max(best[k - 1][j], prefix[i] - prefix[j])
                if cost <= best[k][i]:  # NOTE: ties go to the later cut
                    best[k][i], cut[k][i] = cost, j
    bounds, end = [], n
    for k in range(num_stages, 0, -1):
        start = cut[k][end]
        bounds.append((start, end))
        end = start
    return bounds[::-1]


def partition(module, num_stages: int, balance=None, costs: list[float] | None = None):
    """The [start, end) layer range of every stage of an nn.Sequential.

    Args:
        module: the nn.Sequential (only its length and parameter counts are used).
        num_stages: number of pipeline stages.
        balance: None (equal layer counts), a list of layer counts per stage, "params"
            (balance parameter counts) or "time" (balance `costs`, seconds per layer).
    """
    n = len(module)
    if n < num_stages:
        raise ValueError(f"Pipeline: the model has {n} layers, fewer than the {num_stages} "
                         "stages; use fewer stages or split the model into more layers")
    if balance is None:
        sizes = [n // num_stages + (1 if s < n % num_stages else 0) for s in range(num_stages)]
    elif isinstance(balance, (list, tuple)):
        sizes = list(balance)
        if len(sizes) != num_stages or sum(sizes) != n or min(sizes) < 1:
            raise ValueError(f"Pipeline: balance={sizes} must give {num_stages} positive layer "
                             f"counts summing to len(module)={n}")
    elif balance == "params":
        return balanced_cuts([sum(p.numel() for p in layer.parameters()) for layer in module],
                             num_stages)
    elif balance == "time":
        if costs is None or len(costs) != n:
            raise ValueError("Pipeline: balance='time' needs one measured cost per layer")
        return balanced_cuts(list(costs), num_stages)
    else:
        raise ValueError(f"Pipeline: balance must be None, a list of layer counts, 'params' or "
                         f"'time', got {balance!r}")
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + size))
        start += size
    return bounds


def profile_layers(module, sample, repeats: int = 3,
                   clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds of forward + backward of each layer of an nn.Sequential on `sample`.

    Each layer runs `repeats` times on the previous layer's (detached) output, so the costs
    are those of the shapes a pipeline stage sees. The module's gradients are cleared after.

    Args:
        module: the nn.Sequential to time, layer by layer.
        sample: one micro-batch like those the pipeline will run.
        repeats: timed runs per layer; the cost is their mean.
        clock: a seconds counter (tests pass a fake one).

    Example:
        >>> costs = profile_layers(nn.Sequential(nn.Linear(4, 8), nn.Tanh()), dt.randn(2, 4))
        >>> len(costs)
        2
    """
    if repeats < 1:
        raise ValueError(f"profile_layers: repeats must be >= 1, got {repeats}")
    costs, h = [], _leaf(sample)
    for layer in module:
        start = clock()
        for _ in range(repeats):
            out = layer(h)
            if out.requires_grad:
                out.backward(get_array_module(out.array).ones_like(out.array))
        costs.append((clock() - start) / repeats)
        h = _leaf(out)
    for p in module.parameters():
        p.grad = None
    return costs


def _leaf(t):
    """`t` detached; floating tensors require grad so the next layer's backward reaches them."""
    t = t.detach()
    return t.requires_grad_() if t.dtype.kind == "f" else t
