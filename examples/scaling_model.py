"""An alpha-beta scaling model of data-parallel training, fitted to measured collectives and
checked against measured DataParallel step times, projected to 64, 256 and 1,024 ranks.

    python examples/scaling_model.py                       # ~8 min here: measure, fit, project
    python examples/scaling_model.py --quick               # a ~1 min smoke run (2 ranks, small)
    python examples/scaling_model.py --scale-json bench-results/scale_benchmark.json

1. Measures (mpirun, one job per rank count and algorithm; Open MPI's tuned component with
   coll_tuned_use_dynamic_rules=1 and coll_tuned_allreduce_algorithm 4 = ring, 3 = recursive
   doubling) the time of all-reduce, reduce-scatter and all-gather for 1 KB .. 64 MB at --ranks
   (default 2,3,4; timing as allreduce_benchmark.py: barrier, one call, max over ranks, median),
   and the 1-rank forward / backward / optimizer time of the deep MLP 784-2048x3-10 (batch 256)
   and of char_lm.py's default transformer (batch 32 x 128 bytes per rank).
2. Fits latency alpha and inverse bandwidth beta per collective by least squares (relative
   error) on the cost formulas, for p ranks and n bytes:
     ring all-reduce      2(p-1) alpha + 2(p-1)/p n beta
     recursive doubling   s (alpha + n beta), s = log2 p (p a power of 2, else floor(log2 p)+2)
     reduce-scatter, all-gather   (p-1) alpha + (p-1)/p n beta
     hierarchical (L ranks per node, M = p/L nodes; as disttrain.distributed.hierarchical):
       intra-node reduce-scatter + inter-node all-reduce of n/L per local rank (the L streams
       share the node's link) + intra-node all-gather, with intra (measured) and inter
       (network) alpha, beta. The reduce-scatter timed is the Communicator's
       (`comm.reduce_scatter_v_`: a ring of MPI_Sendrecv from 64 KB per rank).
   A DataParallel step is  gamma(N) + o + exposed comm,  gamma(N) the per-rank compute with N
   ranks computing at once (scale_benchmark.py's `plain` run), o DataParallel's own cost
   (its 1-rank step minus the plain one), the buckets' all-reduces (DataParallel's
   bucket layout; each the faster of ring and recursive doubling, as the tuned component picks)
   overlapping a share phi of backward:  exposed = max(last bucket, comm - phi * backward).
   phi = 1 - the exposed share DataParallel measures itself (stats wait_s / comm_s, median
   over the rank counts), unless --overlap gives it. (On 2 cores it is 0: DataParallel only
   starts its communication thread when every rank has a spare core, so buckets are
   exchanged inline, and wait_s == comm_s.)
3. Checks the predicted step time against scale_benchmark.py's measured DataParallel step at
   every measured rank count (runs it, or reads --scale-json) and prints the errors.
4. Projects weak-scaling efficiency t1 / tN of DataParallel, ZeRO (reduce-scatter overlapped as
   DataParallel's all-reduce, all-gather after the step exposed) and DP x PP (S stages on one
   node, m micro-batches: bubble (S-1)/(m+S-1), stage imbalance, activation send/recv) to 64,
   256 and 1,024 ranks, flat vs hierarchical (8 ranks per node), for the networks in NETWORKS.

Prints markdown tables; writes OUT/scaling_model.json and the figure (--png, default
docs/scaling_model.png: measured vs predicted, and the projections). With 3 or more ranks on
fewer cores the ranks are oversubscribed: their collectives and compute are time-sliced, and
the model fits what they measure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # NOTE: before numpy loads its BLAS

import numpy as np  # noqa: E402
from allreduce_benchmark import Timer, iters_for  # noqa: E402
from alpha_beta_model import (  # noqa: E402
    KINDS,
    NETWORKS,
    PROJECT_RANKS,
    RANKS_PER_NODE,
    SPLIT_BYTES,
    ab,
    allreduce,
    best_partition,
    bucket_bytes,
    cost,
    dp_step,
    fit_regimes,
    network,
    pp_step,
)
from bench_utils import cpu_busy  # noqa: E402
from scale_benchmark import CONFIGS, MARK, _pool  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SIZES = [(1 << 10) * 4**i for i in range(9)]  # 1 KB, 4 KB, ..., 64 MB
ALGORITHMS = {"default": None, "ring": 4, "recursive_doubling": 3}  # Open MPI tuned numbers
MLP_CONFIG = "deep784-2048x3-10_b256"


# ------------------------------------------------------------------------------ measurement
def _time_size(comm, MPI, timer, nbytes: int, args) -> dict:
    """{collective: (bytes, median seconds)} for one message size: all-reduce of nbytes, and
    reduce-scatter / all-gather of the largest multiple of size float32s within it."""
    buf = np.ones(nbytes // 4, np.float32)
    part = np.empty(buf.size // comm.size, np.float32)
    whole = buf[:part.size * comm.size]
    calls = {"allreduce": (nbytes, lambda: comm.mpi_comm.Allreduce(MPI.IN_PLACE, buf,
                                                                   op=MPI.SUM))}
    if args.algorithm == "default" and part.size:
        # NOTE: the Communicator's reduce-scatter (a ring of MPI_Sendrecv from 64 KB per rank,
        # ring.py), which ZeRO and the hierarchical all-reduce use, not MPI_Reduce_scatter
        counts = [part.size] * comm.size
        calls["reduce_scatter"] = (whole.nbytes,
                                   lambda: comm.reduce_scatter_v_(whole, part, counts))
        calls["allgather"] = (whole.nbytes, lambda: comm.mpi_comm.Allgather(part, whole))
    iters = iters_for(nbytes, args.iters_scale)
    out = {}
    for name, (size, call) in calls.items():
        timer.run(call, max(3, iters // 10), lambda: buf.fill(1.0))  # NOTE: warm-up
        out[name] = (size, float(np.median(timer.max_over_ranks(
            timer.run(call, iters, lambda: buf.fill(1.0))))))
    return out


def worker_collectives(args) -> dict:
    """Times all-reduce (whichever algorithm the environment selected), and with
    --algorithm default also reduce-scatter and all-gather, of float32 buffers of SIZES."""
    import disttrain.distributed as dist

    comm = dist.init()
    from mpi4py import MPI  # NOTE: after init (MPI starts there, never at import)

    timer = Timer(comm.mpi_comm, MPI)
    out = {}
    for nbytes in [s for s in SIZES if s <= args.max_bytes]:
        for name, (size, t) in _time_size(comm, MPI, timer, nbytes, args).items():
            out.setdefault(name, {})[size] = t
    return {"rank": comm.rank, "ranks": comm.size, "algorithm": args.algorithm, "times": out}


def run_mpi(args, k: int, extra: list[str], env_extra: dict) -> dict:
    """One `mpirun -n k` of this script's worker; its rank 0 JSON line."""
    import shutil

    mpirun = shutil.which("mpirun", path=os.path.dirname(sys.executable)) or "mpirun"
    cmd = [mpirun, "-n", str(k), "--oversubscribe"] + \
        (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        cmd += ["-x", f"{var}=1"]
    cmd += [sys.executable, os.path.abspath(__file__)] + extra
    env = dict(os.environ, **env_extra)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"scaling_model: {' '.join(cmd)} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len(MARK):])


def measure_collectives(args) -> list[dict]:
    """[{ranks, algorithm, times: {collective: {bytes: seconds}}}] for every rank count and
    all-reduce algorithm."""
    results = []
    for k in args.ranks:
        for name, number in ALGORITHMS.items():
            env = {} if number is None else {
                "OMPI_MCA_coll_tuned_use_dynamic_rules": "1",
                "OMPI_MCA_coll_tuned_allreduce_algorithm": str(number)}
            busy = cpu_busy()
            t0 = time.perf_counter()
            out = run_mpi(args, k, ["--worker", "--algorithm", name, "--max-bytes",
                                    str(args.max_bytes), "--iters-scale",
                                    str(args.iters_scale)], env)
            out["cpu_busy_before"] = busy
            print(f"collectives: {k} ranks, all-reduce {name} ({time.perf_counter() - t0:.0f} s"
                  f", machine {busy or 0:.0%} busy before)", file=sys.stderr, flush=True)
            results.append(out)
    return results


def rows_of(collectives: list[dict]) -> dict:
    """{kind: [(p, n, seconds)]} for the fit, from measure_collectives' results."""
    rows = {k: [] for k in KINDS}
    for run in collectives:
        p, algo = run["ranks"], run["algorithm"]
        for coll, by_size in run["times"].items():
            kind = algo if coll == "allreduce" else coll
            if kind in rows:
                rows[kind] += [(p, int(n), t) for n, t in by_size.items()]
    return rows


def _time_step(model, loss_fn, opt, xs, ys, steps: int, warmup: int) -> dict:
    """Median forward, backward and optimizer seconds of `steps` steps, and each top-level
    child's forward seconds (the pipeline partition's layer costs)."""
    parts = {"forward": [], "backward": [], "step": []}
    children = list(model.children())
    layer_ts = np.zeros(len(children))
    for k in range(warmup + steps):
        x, y = xs[k % len(xs)], ys[k % len(ys)]
        opt.zero_grad()
        t0 = time.perf_counter()
        loss = loss_fn(model(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if k >= warmup:
            for key, t in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
                parts[key].append(t)
            h = x
            for i, child in enumerate(children):
                t0 = time.perf_counter()
                h = child(h)
                layer_ts[i] += time.perf_counter() - t0
    out = {key: float(np.median(v)) for key, v in parts.items()}
    out["layer_s"] = (layer_ts / steps).tolist()
    return out


def measure_compute(config: str, steps: int, warmup: int, quick: bool) -> dict:
    """1-rank step timing of the MLP `config` (scale_benchmark.CONFIGS) and char_lm.py's
    transformer (1 BLAS thread)."""
    import char_lm

    import disttrain as dt
    import disttrain.nn as nn
    import disttrain.optim as optim

    dt.tune_malloc()  # NOTE: as scale_benchmark.py and char_lm.py do
    sizes, batch = CONFIGS[config]
    dt.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    mlp = nn.Sequential(*layers)
    xs, ys = _pool(sizes, batch, 0)
    xs, ys = [dt.tensor(x) for x in xs], [dt.tensor(y) for y in ys]
    work = {"mlp": _time_step(mlp, nn.CrossEntropyLoss(), optim.SGD(mlp.parameters(), lr=0.01),
                              xs, ys, steps, warmup)}
    work["mlp"].update(batch=batch, act_bytes_per_sample=max(sizes[1:-1]) * 4,
                       param_bytes=[p.numel() * 4 for p in mlp.parameters()])
    a = char_lm.parse_args([])
    cfg = {k: getattr(a, k) for k in ("model", "layers", "d_model", "hidden", "heads", "ff",
                                      "dropout", "seq_len")}
    lm_batch = 8 if quick else 32  # NOTE: char_lm's default global batch, per rank here
    lm = char_lm.build_model(cfg)
    rng = np.random.default_rng(0)
    tok = [dt.tensor(rng.integers(0, char_lm.VOCAB, (lm_batch, cfg["seq_len"] + 1)))
           for _ in range(4)]
    work["char_lm"] = _time_step(lm, char_lm.lm_loss, optim.Adam(lm.parameters(), lr=2e-3),
                                 [t[:, :-1] for t in tok], [t[:, 1:] for t in tok],
                                 steps, warmup)
    work["char_lm"].update(batch=lm_batch, act_bytes_per_sample=cfg["seq_len"] *
                           cfg["d_model"] * 4, param_bytes=[p.numel() * 4
                                                            for p in lm.parameters()],
                           config=cfg)
    return work


def workload(measured: dict, max_stages: int = 4) -> dict:
    """The model's view of a measured workload: compute_s, backward_share, buckets, batch,
    act_bytes_per_sample, imbalance {stages: factor}."""
    total = measured["forward"] + measured["backward"] + measured["step"]
    costs = measured["layer_s"]
    return {"compute_s": total, "backward_share": measured["backward"] / total,
            "buckets": bucket_bytes(measured["param_bytes"]), "batch": measured["batch"],
            "act_bytes_per_sample": measured["act_bytes_per_sample"],
            "grad_bytes": sum(measured["param_bytes"]),
            "imbalance": {s: best_partition(costs, s) for s in range(1, max_stages + 1)
                          if s <= len(costs)}}


# ------------------------------------------------------------------------------ fit and check
def fit_all(rows: dict) -> dict:
    """{"all": {kind: (alpha, beta)} over every rank count, p: {kind: (alpha, beta)} per p}."""
    fits = {"all": {k: fit_regimes(k, r) for k, r in rows.items()}}
    for p in sorted({r[0] for rs in rows.values() for r in rs}):
        fits[p] = {k: fit_regimes(k, [r for r in rs if r[0] == p]) for k, rs in rows.items()}
    return fits


def fit_errors(rows: dict, fits: dict) -> dict:
    """{kind: {p: [|relative error| of each row]}} of each fit against its measurements."""
    out = {}
    for kind, rs in rows.items():
        for p, n, t in rs:
            err = abs(cost(kind, p, n, *ab(fits[kind], n)) / t - 1)
            out.setdefault(kind, {}).setdefault(p, []).append(err)
    return out


def measured_dp(scale: dict, config: str, estimator: str = "min") -> dict:
    """{N: {tN_s, t1_conc_s, comm_s, wait_s}} of disttrain DataParallel from a
    scale_benchmark.json: each figure's min (or median) over its rounds."""
    def seconds(row, key):
        return ((row[key] or {}).get(estimator) or 0.0) / 1e3

    return {row["ranks"]: {"tN_s": seconds(row, "tN_ms"), "t1_conc_s": seconds(row, "t1_conc_ms"),
                           "comm_s": seconds(row, "comm_ms"), "wait_s": seconds(row, "wait_ms")}
            for row in scale["table"]
            if row["framework"] == "disttrain" and row["config"] == config}


def shm_net(fits: dict, p: int) -> dict:
    """The measured machine as a net for allreduce(): the fits at p ranks (or all ranks)."""
    f = fits.get(p, fits["all"])
    return {"intra": f, "inter": f, "per_node": 1 << 30}


def predict_measured(w: dict, measured: dict, fits: dict, phi: float) -> dict:
    """{N: predicted DataParallel step seconds} with gamma(N) = the measured concurrent
    compute t1_conc(N)."""
    return {n: dp_step(w, n, shm_net(fits, n), phi, gamma=m["t1_conc_s"])
            for n, m in measured.items()}


def measured_phi(measured: dict) -> float | None:
    """The overlap share DataParallel itself measured: 1 - median(wait_s / comm_s) over the
    rank counts > 1 (wait_s: how long the end of backward waited for the exchanges); None
    without figures."""
    shares = [m["wait_s"] / m["comm_s"] for n, m in measured.items() if n > 1 and m["comm_s"]]
    return float(np.clip(1.0 - np.median(shares), 0.0, 1.0)) if shares else None


# ------------------------------------------------------------------------------ projection
def project(w: dict, fits: dict, phi: float, stages: int, micro: int) -> list[dict]:
    """Efficiency t1 / tN of DP, ZeRO and DP x PP, flat and hierarchical, for every network
    and PROJECT_RANKS; fits: {kind: (alpha, beta)} of the intra-node (measured) links."""
    rows = []
    for name in NETWORKS:
        net = network(fits, name)
        for p in PROJECT_RANKS:
            row = {"network": name, "ranks": p}
            for hier in (False, True):
                tag = "hier" if hier else "flat"
                row[f"dp_{tag}"] = w["compute_s"] / dp_step(w, p, net, phi, hierarchical=hier)
                row[f"zero_{tag}"] = w["compute_s"] / dp_step(w, p, net, phi,
                                                              hierarchical=hier, zero=True)
                row[f"pp_{tag}"] = w["compute_s"] / pp_step(w, p, net, phi, stages, micro,
                                                            hierarchical=hier)
            rows.append(row)
    return rows


def print_tables(res: dict) -> None:
    fits, errs = res["fits"], res["fit_errors"]
    print("\n## Fitted alpha (latency) and beta (inverse bandwidth)\n")
    print(f"| collective | ranks | alpha (us) < {SPLIT_BYTES >> 20} MB | 1/beta (GB/s) | alpha "
          "(us) >= | 1/beta (GB/s) | fit error median / max |")
    print("|---|---|---|---|---|---|---|")
    for kind in KINDS:
        for p in [k for k in fits if k != "all"] + ["all"]:
            fit = fits[p][kind]
            errors = [e for es in errs[p][kind].values() for e in es]
            cells = [f"{a * 1e6:.1f} | {1 / b / 1e9:.2f}" if b > 0 else f"{a * 1e6:.1f} | inf"
                     for a, b in (fit[:2], fit[2:4])]
            print(f"| {kind} | {p} | {cells[0]} | {cells[1]} | {np.median(errors):.0%} / "
                  f"{max(errors):.0%} |")
    if res.get("check"):
        print(f"\n## DataParallel {res['check_config']}: predicted vs measured step "
              f"(overlap phi = {res['phi']:.2f}; {res['estimator']} over rounds)\n")
        print("| ranks | t1_conc (ms) | measured (ms) | predicted (ms) | error | model comm (ms)"
              " | measured comm / exposed (ms) | eff measured | eff predicted |")
        print("|---|---|---|---|---|---|---|---|---|")
        for c in res["check"]:
            print(f"| {c['ranks']} | {c['t1_conc_s'] * 1e3:.0f} | {c['tN_s'] * 1e3:.0f} | "
                  f"{c['pred_s'] * 1e3:.0f} | {c['error']:+.1%} | {c['model_comm_s'] * 1e3:.1f}"
                  f" | {c['comm_s'] * 1e3:.1f} / {c['wait_s'] * 1e3:.1f} | {c['eff']:.3f} | "
                  f"{c['eff_pred']:.3f} |")
    for wname, rows in res["projection"].items():
        w = res["workloads"][wname]
        print(f"\n## Projected weak-scaling efficiency, {wname} (compute {w['compute_s'] * 1e3:.0f}"
              f" ms/step, {w['grad_bytes'] / 2**20:.1f} MB of gradients in "
              f"{len(w['buckets'])} buckets; DP x PP: {res['stages']} stages x "
              f"{res['micro']} micro-batches, imbalance {w['imbalance'][res['stages']]:.2f})\n")
        print("| network | ranks | DP flat | DP hier | ZeRO flat | ZeRO hier | DPxPP flat | "
              "DPxPP hier |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['network']} | {r['ranks']} | " + " | ".join(
                f"{r[k]:.3f}" for k in ("dp_flat", "dp_hier", "zero_flat", "zero_hier",
                                        "pp_flat", "pp_hier")) + " |")


def analyze(raw: dict, args) -> dict:
    """Fits, check and projection from raw measurements {collectives, compute, scale}."""
    rows = rows_of(raw["collectives"])
    fits = fit_all(rows)
    errs = {p: fit_errors(rows if p == "all" else
                          {k: [r for r in rs if r[0] == p] for k, rs in rows.items()}, f)
            for p, f in fits.items()}
    works = {name: workload(m) for name, m in raw["compute"].items()}
    res = {"fits": fits, "fit_errors": errs, "workloads": works, "stages": args.stages,
           "micro": args.microbatches, "check": [], "check_config": args.check_config,
           "estimator": args.estimator}
    w = works["mlp"]  # NOTE: measure_compute timed the checked MLP config
    measured = measured_dp(raw["scale"], args.check_config, args.estimator) \
        if raw.get("scale") else {}
    if 1 in measured:  # NOTE: DataParallel's own per-step cost (hooks, copies), at 1 rank
        w["overhead_s"] = max(0.0, measured[1]["tN_s"] - measured[1]["t1_conc_s"])
    phi = args.overlap
    if measured and len(measured) > 1:
        phi = measured_phi(measured) if phi is None else phi
        phi = 0.0 if phi is None else phi
        pred = predict_measured(w, measured, fits, phi)
        for n, m in sorted(measured.items()):
            net = shm_net(fits, n)
            comm = sum(allreduce(b, n, net) for b in w["buckets"])
            t1 = measured[1]["t1_conc_s"] if 1 in measured else m["t1_conc_s"]
            res["check"].append(dict(m, ranks=n, pred_s=pred[n], error=pred[n] / m["tN_s"] - 1,
                                     model_comm_s=comm, eff=t1 / m["tN_s"],
                                     eff_pred=t1 / pred[n]))
    res["phi"] = 0.0 if phi is None else phi
    # NOTE: the projection's intra-node figures: the fits at 2 ranks (not oversubscribed)
    base = fits.get(2, fits["all"])
    res["projection"] = {name: project(wk, base, res["phi"], args.stages,
                                       args.microbatches)
                         for name, wk in works.items()}
    res["hierarchical_wins"] = any(r["dp_hier"] > r["dp_flat"] * 1.05
                                   for rows_ in res["projection"].values() for r in rows_)
    return res


def plot(res: dict, rows: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    ax = axes[0][0]
    for kind, marker in (("ring", "o"), ("recursive_doubling", "s")):
        for p in sorted({r[0] for r in rows[kind]}):
            pts = sorted((n, t) for q, n, t in rows[kind] if q == p)
            ns = np.array([n for n, _ in pts])
            line, = ax.loglog(ns, [t * 1e6 for _, t in pts], marker, ms=4, alpha=0.7,
                              label=f"{kind} p={p}")
            ax.loglog(ns, [cost(kind, p, n, *ab(res["fits"][p][kind], n)) * 1e6 for n in ns], "-",
                      color=line.get_color(), lw=1)
    ax.set(xlabel="bytes", ylabel="all-reduce time (us)",
           title="all-reduce: measured (points) vs alpha-beta fit (lines)")
    ax.legend(fontsize=7)
    ax = axes[0][1]
    if res["check"]:
        ns = [c["ranks"] for c in res["check"]]
        ax.plot(ns, [c["tN_s"] * 1e3 for c in res["check"]], "o-", label="measured DP step")
        ax.plot(ns, [c["pred_s"] * 1e3 for c in res["check"]], "s--", label="predicted")
        ax.plot(ns, [c["t1_conc_s"] * 1e3 for c in res["check"]], "^:",
                label="compute alone, N ranks at once")
        for c in res["check"]:
            ax.annotate(f"{c['error']:+.0%}", (c["ranks"], c["pred_s"] * 1e3), fontsize=8,
                        textcoords="offset points", xytext=(4, 4))
        ax.set_xticks(ns)
    ax.set(xlabel="ranks (3 and 4: oversubscribed)", ylabel="step time (ms)",
           title=f"{res['check_config']}: measured vs predicted (phi={res['phi']:.2f})")
    ax.legend(fontsize=8)
    for ax, (wname, prows) in zip(axes[1], res["projection"].items()):
        for i, name in enumerate(NETWORKS):
            sel = [r for r in prows if r["network"] == name]
            ps = [r["ranks"] for r in sel]
            color = f"C{i}"
            ax.semilogx(ps, [r["dp_flat"] for r in sel], "o-", color=color,
                        label=f"{name} DP flat")
            if name != "shm":
                ax.semilogx(ps, [r["dp_hier"] for r in sel], "s--", color=color,
                            label=f"{name} DP hier")
            ax.semilogx(ps, [r["zero_hier" if name != "shm" else "zero_flat"] for r in sel],
                        "x:", color=color, alpha=0.6)
        ax.set(xlabel="ranks (8 per node)", ylabel="weak-scaling efficiency", ylim=(0, 1.05),
               title=f"{wname}: projected (x: ZeRO)")
        ax.set_xticks(list(PROJECT_RANKS), [str(p) for p in PROJECT_RANKS])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------ driver
def run_scale_benchmark(args) -> dict:
    """Runs scale_benchmark.py (DataParallel only) at 1 and --check-ranks; its JSON."""
    out = os.path.join(args.out, "scale")
    cmd = [sys.executable, os.path.join(HERE, "scale_benchmark.py"), "--no-torch",
           "--ranks", ",".join(map(str, args.check_ranks)), "--configs", args.check_config,
           "--rounds", str(args.rounds), "--steps", str(args.steps), "--warmup",
           str(args.warmup), "--wait-idle", "10", "--out", out]
    print("scaling_model: " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, timeout=args.timeout * 4, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "scale_benchmark.json")) as f:
        return json.load(f)


def driver(args) -> dict:
    if args.from_json:
        with open(args.from_json) as f:
            raw = json.load(f)["raw"]
    else:
        raw = {"collectives": measure_collectives(args),
               "compute": measure_compute(args.check_config, args.compute_steps,
                                          max(1, args.compute_steps // 5), args.quick)}
    if args.scale_json:
        with open(args.scale_json) as f:
            raw["scale"] = json.load(f)
    elif not raw.get("scale") and args.check_ranks:
        raw["scale"] = run_scale_benchmark(args)
    res = analyze(raw, args)
    print_tables(res)
    print(f"\nhierarchical all-reduce beats the flat one by > 5% somewhere in the projection: "
          f"{res['hierarchical_wins']}")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "scaling_model.json")
    meta = {"cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "ranks": args.ranks, "networks": NETWORKS, "ranks_per_node": RANKS_PER_NODE}
    with open(path, "w") as f:
        json.dump({"meta": meta, "raw": raw, "result": res}, f, indent=1,
                  default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    png = args.png or os.path.join(args.out, "scaling_model.png")
    try:
        plot(res, rows_of(raw["collectives"]), png)
    except ImportError:
        png = None
        print("scaling_model: matplotlib not installed, no plot", file=sys.stderr)
    print(f"\nwrote {path}" + (f" and {png}" if png else ""))
    return res


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", default="2,3,4", help="rank counts of the collective timings")
    ap.add_argument("--check-ranks", default="1,2,3,4",
                    help="rank counts of the measured DataParallel runs ('' : none)")
    ap.add_argument("--check-config", default=MLP_CONFIG, choices=list(CONFIGS),
                    help="scale_benchmark.py config the prediction is checked on")
    ap.add_argument("--scale-json", help="use this scale_benchmark.json instead of running it")
    ap.add_argument("--from-json", help="re-fit the raw measurements of a scaling_model.json")
    ap.add_argument("--max-bytes", type=int, default=SIZES[-1], help="largest message")
    ap.add_argument("--iters-scale", type=float, default=0.2,
                    help="x allreduce_benchmark.py's iteration counts (at least 20)")
    ap.add_argument("--compute-steps", type=int, default=20, help="1-rank compute steps timed")
    ap.add_argument("--rounds", type=int, default=4, help="scale_benchmark.py --rounds")
    ap.add_argument("--steps", type=int, default=20, help="scale_benchmark.py --steps")
    ap.add_argument("--warmup", type=int, default=5, help="scale_benchmark.py --warmup")
    ap.add_argument("--estimator", choices=["min", "median"], default="min",
                    help="of scale_benchmark.py's rounds: min (the round least disturbed by "
                         "other jobs) or median")
    ap.add_argument("--overlap", type=float, default=None,
                    help="share phi of backward that hides communication (default: as "
                         "DataParallel measured it in the checked runs)")
    ap.add_argument("--stages", type=int, default=2, help="pipeline stages of DP x PP")
    ap.add_argument("--microbatches", type=int, default=16, help="micro-batches of DP x PP")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2 ranks, <= 256 KB, the small MLP, few steps")
    ap.add_argument("--out", default=os.environ.get("BENCH_RESULTS", "bench-results"),
                    help="folder for scaling_model.json (and the scale_benchmark.py run)")
    ap.add_argument("--png", help="figure path (default OUT/scaling_model.png)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per mpirun")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--algorithm", default="default", choices=list(ALGORITHMS),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.ranks, args.check_ranks, args.max_bytes = "2", "1,2", 256 << 10
        args.iters_scale, args.compute_steps, args.rounds = 0.01, 3, 1
        args.steps, args.warmup = 2, 1
        args.check_config = "mlp784-500-10_b64"
    args.ranks = [int(k) for k in args.ranks.split(",") if k]
    args.check_ranks = [int(k) for k in args.check_ranks.split(",") if k]
    return args


def main(argv=None):
    args = parse_args(argv)
    if not args.worker:
        return driver(args)
    out = worker_collectives(args)
    if out.pop("rank") == 0:
        print(MARK + json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
