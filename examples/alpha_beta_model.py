"""The alpha-beta cost model of examples/scaling_model.py (numpy and disttrain's pure bucket
rule only): collective costs, their least-squares fit, DataParallel / ZeRO / DP x PP step
times, flat and hierarchical."""

from __future__ import annotations

import math

import numpy as np

KINDS = ("ring", "recursive_doubling", "reduce_scatter", "allgather")
# NOTE: per-link alpha (s) and bandwidth (Gb/s). TCP over Ethernet pays the kernel stack on
# every message: MPI ping-pong latency is ~20-50 us on 10-25 GbE and ~15-20 us on 100 GbE;
# InfiniBand verbs (RDMA, kernel bypass) ~1-2 us. "shm" takes the measured figures.
NETWORKS = {"shm": None, "25GbE": (30e-6, 25.0), "100GbE": (20e-6, 100.0),
            "IB200": (2e-6, 200.0)}
PROJECT_RANKS = (64, 256, 1024)
RANKS_PER_NODE = 8
SPLIT_BYTES = 2 << 20  # NOTE: fit_regimes: small and large messages fitted apart


# ------------------------------------------------------------------------------ cost model
def rd_steps(p: int) -> int:
    """Steps of Open MPI's recursive doubling: log2 p, plus a fold-in and a fold-out step when
    p is not a power of 2."""
    if p <= 1:
        return 0
    k = int(math.floor(math.log2(p)))
    return k if 1 << k == p else k + 2


def coefficients(kind: str, p: int, n: float) -> tuple[float, float]:
    """(multiplier of alpha, multiplier of beta) of collective `kind` on p ranks, n bytes."""
    if p <= 1:
        return 0.0, 0.0
    if kind == "ring":
        return 2.0 * (p - 1), 2.0 * (p - 1) / p * n
    if kind == "recursive_doubling":
        s = rd_steps(p)
        return float(s), s * float(n)
    if kind in ("reduce_scatter", "allgather"):
        return float(p - 1), (p - 1) / p * n
    raise ValueError(f"coefficients: kind must be one of {KINDS}, got {kind!r}")


def cost(kind: str, p: int, n: float, alpha: float, beta: float) -> float:
    a, b = coefficients(kind, p, n)
    return a * alpha + b * beta


def _lstsq(kind: str, rows) -> np.ndarray:
    a = np.array([coefficients(kind, p, n) for p, n, _ in rows])
    a_w = a / np.array([r[2] for r in rows])[:, None]
    t_w = np.ones(len(rows))
    x = np.linalg.lstsq(a_w, t_w, rcond=None)[0]
    if (x < 0).any():  # NOTE: clamp to the better one-parameter fit (non-negative LS, 2 vars)
        ones = [np.array([max(0.0, (a_w[:, i] @ t_w) / (a_w[:, i] @ a_w[:, i])), 0.0])
                for i in (0, 1)]
        ones[1] = ones[1][::-1]
        x = min(ones, key=lambda f: np.sum((a_w @ f - t_w) ** 2))
    return x


def fit_alpha_beta(kind: str, rows, reject: float = 3.0) -> tuple[float, float]:
    """Least-squares (alpha, beta) >= 0 of `kind` from rows (p, n bytes, seconds), each row
    weighted by 1/seconds (relative error: sizes span five decades). Rows more than `reject`
    times off the first fit (a rank descheduled by other jobs: a scheduler quantum on a 4 us
    call) are dropped and the rest refitted."""
    rows = [r for r in rows if r[0] > 1]
    if len(rows) < 2:
        raise ValueError(f"fit_alpha_beta({kind}): need >= 2 rows with p > 1, got {len(rows)}")
    x = _lstsq(kind, rows)
    kept = [r for r in rows if 1 / reject <= r[2] / max(cost(kind, r[0], r[1], *x), 1e-12)
            <= reject]
    if 2 <= len(kept) < len(rows):
        x = _lstsq(kind, kept)
    return float(x[0]), float(x[1])


def fit_beta(kind: str, rows, alpha: float) -> float:
    """beta >= 0 of `kind` with alpha fixed: the median of the rows' own (t - a alpha) / b,
    which a few large sizes, one of them slowed by another job, cannot drag."""
    per_row = [(t - coefficients(kind, p, n)[0] * alpha) / coefficients(kind, p, n)[1]
               for p, n, t in rows]
    return max(0.0, float(np.median(per_row)))


def fit_regimes(kind: str, rows) -> tuple[float, float, float, float]:
    """(alpha, beta) below SPLIT_BYTES and (alpha, beta) from it up: shared-memory MPI changes
    protocol (copy-in/copy-out to single-copy) and leaves the caches at a few MB, so one line
    cannot fit 1 KB .. 64 MB. The large messages only fit beta: their time is bandwidth, and
    three sizes cannot also place the latency (it stays the small messages' alpha)."""
    small = [r for r in rows if r[1] < SPLIT_BYTES and r[0] > 1]
    large = [r for r in rows if r[1] >= SPLIT_BYTES and r[0] > 1]
    if len(small) < 2:
        raise ValueError(f"fit_regimes({kind}): need >= 2 rows with p > 1 below "
                         f"{SPLIT_BYTES} bytes, got {len(small)}")
    alpha, beta = fit_alpha_beta(kind, small)
    return alpha, beta, alpha, (fit_beta(kind, large, alpha) if large else beta)


def ab(fit, n: float) -> tuple[float, float]:
    """The (alpha, beta) of a fit for an n-byte message: (alpha, beta), or fit_regimes'."""
    return tuple(fit[:2]) if len(fit) == 2 or n < SPLIT_BYTES else tuple(fit[2:4])


def resolve(fits: dict, n: float) -> dict:
    return {k: ab(v, n) for k, v in fits.items()}


def allreduce(n: float, p: int, net: dict, hierarchical: bool = False, groups: int = 1,
              kind: str = "allreduce") -> float:
    """Seconds of an all-reduce ('allreduce') or reduce-scatter / all-gather (`kind`) of n bytes
    over p ranks laid out net['per_node'] to a node (net: 'intra' and 'inter' {kind: (alpha,
    beta)}); `groups` such collectives run at once on every node (DP x PP), sharing its link.
    Flat: the best of ring and recursive doubling; a ring crosses each node boundary once, a
    recursive-doubling step between nodes sends every local rank's n bytes through the link.
    Hierarchical all-reduce: intra-node reduce-scatter, inter-node all-reduce of the n/L
    shards, intra-node all-gather (reduce-scatter / all-gather: intra then inter)."""
    intra, inter = resolve(net["intra"], n), resolve(net["inter"], n)
    per_node = min(net["per_node"], p)
    nodes = max(1, p // per_node)
    half = kind != "allreduce"
    if nodes == 1:
        if half:
            return cost(kind, p, n, *intra[kind])
        return min(cost(k, p, n, *intra[k]) for k in ("ring", "recursive_doubling"))
    if not hierarchical:
        if half:
            a, b = coefficients(kind, p, n)
            return a * inter[kind][0] + b * inter[kind][1] * groups
        a, b = coefficients("ring", p, n)
        ring = a * inter["ring"][0] + b * inter["ring"][1] * groups
        local = cost("recursive_doubling", per_node, n, *intra["recursive_doubling"])
        s = rd_steps(nodes)
        rdbl = local + s * (inter["recursive_doubling"][0]
                            + n * inter["recursive_doubling"][1] * per_node * groups)
        return min(ring, rdbl)
    share = per_node * groups  # NOTE: every local rank sends its 1/per_node shard at once
    chunk = n / per_node
    if half:
        a, b = coefficients(kind, nodes, chunk)
        return cost(kind, per_node, n, *intra[kind]) + a * inter[kind][0] \
            + b * inter[kind][1] * share
    between = min(coefficients(k, nodes, chunk)[0] * inter[k][0]
                  + coefficients(k, nodes, chunk)[1] * inter[k][1] * share
                  for k in ("ring", "recursive_doubling"))
    # NOTE: as disttrain.distributed.hierarchical: the Communicator's ring reduce-scatter in
    # the node, the shards between nodes, the all-gather in the node last
    local = cost("reduce_scatter", per_node, n, *intra["reduce_scatter"])
    return local + between + cost("allgather", per_node, n, *intra["allgather"])


def network(fits: dict, name: str, per_node: int = RANKS_PER_NODE) -> dict:
    """The `net` of allreduce(): intra-node = the measured fits; inter-node = NETWORKS[name]
    (every kind the same alpha and beta; "shm": the measured fits, one node of any size)."""
    spec = NETWORKS[name]
    if spec is None:
        return {"intra": fits, "inter": fits, "per_node": 1 << 30}
    alpha, gbps = spec
    return {"intra": fits, "inter": {k: (alpha, 8.0 / (gbps * 1e9)) for k in KINDS},
            "per_node": per_node}


def exposed(comm_s: float, last_s: float, backward_s: float, phi: float) -> float:
    """Communication left after overlapping a share phi of backward (never below the bucket
    that can only start when backward ends)."""
    return max(last_s, comm_s - phi * backward_s) if comm_s > 0 else 0.0


def bucket_bytes(param_bytes: list[int]) -> list[int]:
    """DataParallel's buckets (bytes, launch order) for parameters of these sizes (float32,
    registration order), by the same rule as its reducer (disttrain.distributed.buckets)."""
    from disttrain.distributed.buckets import (
        DEFAULT_BUCKET_CAP_MB,
        DEFAULT_DIRECT_MB,
        DEFAULT_FIRST_BUCKET_CAP_MB,
        assign_buckets,
    )

    sizes = list(reversed(param_bytes))
    cap = int(DEFAULT_BUCKET_CAP_MB * 2**20)
    groups = assign_buckets(sizes, ["float32"] * len(sizes), cap,
                            int(DEFAULT_FIRST_BUCKET_CAP_MB * 2**20),
                            min(cap, int(DEFAULT_DIRECT_MB * 2**20)))
    return [sum(sizes[i] for i in g) for g in groups]


def dp_step(w: dict, p: int, net: dict, phi: float, gamma: float | None = None,
            hierarchical: bool = False, zero: bool = False) -> float:
    """Seconds of one DataParallel (or ZeRO: reduce-scatter then all-gather) step of workload
    `w` on p ranks; gamma: the per-rank compute (default w's 1-rank compute)."""
    gamma = w["compute_s"] if gamma is None else gamma
    backward = gamma * w["backward_share"]
    kind = "reduce_scatter" if zero else "allreduce"
    times = [allreduce(b, p, net, hierarchical, kind=kind) for b in w["buckets"]]
    step = gamma + w.get("overhead_s", 0.0) + exposed(sum(times), times[-1] if times else 0.0,
                                                      backward, phi)
    if zero:
        step += sum(allreduce(b, p, net, hierarchical, kind="allgather") for b in w["buckets"])
    return step


def pp_step(w: dict, p: int, net: dict, phi: float, stages: int, micro: int,
            hierarchical: bool = False) -> float:
    """Seconds of one DP x PP step: the `stages` stages of a pipeline on one node (activations
    over shared memory), p / stages replicas of each stage; every rank does the work of one
    rank's batch (the pipeline takes stages x batch in `micro` micro-batches)."""
    if p % stages:
        raise ValueError(f"pp_step: ranks ({p}) must be a multiple of stages ({stages})")
    slots = micro + stages - 1  # NOTE: GPipe / 1F1B: bubble (S-1)/(m+S-1)
    compute = w["compute_s"] * w["imbalance"][stages] * slots / micro
    act = stages * w["batch"] / micro * w["act_bytes_per_sample"]
    # NOTE: a reduce-scatter at p = 2 is one exchange: alpha + n beta
    alpha, beta = ab(net["intra"]["reduce_scatter"], act)
    p2p = 0.0 if stages == 1 else slots * 2 * (alpha + act * beta)  # activation + its gradient
    sub = dict(net, per_node=max(1, net["per_node"] // stages))
    grads = [b / stages for b in w["buckets"]]
    times = [allreduce(b, p // stages, sub, hierarchical, groups=stages) for b in grads]
    backward = compute * w["backward_share"] / slots  # NOTE: only the last micro-batch's
    return compute + p2p + exposed(sum(times), times[-1] if times else 0.0, backward, phi)


def best_partition(costs: list[float], stages: int) -> float:
    """max stage cost * stages / total of the best split of `costs` (in order) into `stages`
    contiguous parts: 1.0 is a perfectly balanced pipeline."""
    import itertools

    n, total = len(costs), sum(costs)
    if stages <= 1 or total <= 0:
        return 1.0
    if stages > n:
        raise ValueError(f"best_partition: {stages} stages but only {n} layers")
    prefix = np.concatenate([[0.0], np.cumsum(costs)])
    best = min(max(prefix[b] - prefix[a] for a, b in zip((0, *cuts), (*cuts, n)))
               for cuts in itertools.combinations(range(1, n), stages - 1))
    return float(best * stages / total)
