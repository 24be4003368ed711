"""Which layers each pipeline stage holds: pure functions of layer counts and costs."""

from __future__ import annotations


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
