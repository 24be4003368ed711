"""All-reduce bus bandwidth (nccl-tests definition) of disttrain's Communicator, of raw mpi4py,
and of DataParallel's bucketed gradient sync, for 4 KB to 64 MB (float32 SUM / mean).

Run under mpirun with any number of ranks, e.g.

    mpirun --allow-run-as-root --oversubscribe -n 2 python examples/allreduce_benchmark.py
    launch/local.sh 2 examples/allreduce_benchmark.py --json allreduce.json
    launch/local.sh 2 examples/allreduce_benchmark.py --bucket-sweep

Modes (columns), for every size (4 KB .. 64 MB in powers of 4, plus 64 MB as 4 x 16 MB calls):
  comm     `comm.allreduce_(x)` (disttrain Communicator, in place)
  mpi4py   `MPI.COMM_WORLD.Allreduce(MPI.IN_PLACE, x, MPI.SUM)` (the wrapper's overhead shows
           as the difference from `comm`); both refill x before every call (untimed) by a copy
           from a second buffer, as the dp mode refills its gradients
  dp       `DataParallel.sync_grads()` on a model whose float32 gradients total the size (1-D
           parameters of --param-kb each), default bucket size; before every call the .grads
           are written afresh and set (untimed) to their own arrays, as a backward pass leaves
           them (and as the raw modes refill their buffer), so the time includes DataParallel's
           1/n scaling and any copy of the gradients into its buckets (gradients of 1 MB or
           more are exchanged where they lie)
  dp_inplace  the same, but the .grads already live in the buckets (as sync_grads leaves
           them), so only the in-place 1/n scaling and the all-reduces remain
  dp16     the same with comm_hooks.fp16_compress_hook (half the bytes on the wire); its
           bandwidth counts the float32 gradient bytes, i.e. what the user gets. A second
           table gives the error float16 exchange adds: max |dp16 - exact mean| against the
           same for float32
Timing (as the usual MPI all-reduce benchmarks): barrier, time one call, per-iteration time =
max over ranks, median over the iterations after warm-up (>= 20; the modes are interleaved
in --blocks blocks so machine noise hits them alike). algbw = bytes / time,
busbw = algbw * 2 (n - 1) / n.

--bucket-sweep times DataParallel.sync_grads() on the deep MLP 784-2048x3-10 (38 MB of float32
gradients; --sweep-model mlp or many for others) for bucket_cap_mb in --caps (default
1,2,4,8,16,32), interleaved, and with --sweep-steps > 0 also a full overlapped training step
(SGD) per cap; it prints which cap is fastest.

Rank 0 prints markdown tables; --json PATH also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # NOTE: before numpy loads its BLAS
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from bench_utils import cpu_busy  # noqa: E402

SIZES = [(4 << 10) * 4**i for i in range(8)]  # 4 KB, 16 KB, ..., 64 MB (bytes)
MODES = ("comm", "mpi4py", "dp", "dp_inplace", "dp16")


def iters_for(nbytes: int, scale: float) -> int:
    base = 1000 if nbytes <= 64 << 10 else 200 if nbytes <= 1 << 20 else 50 \
        if nbytes <= 16 << 20 else 20
    return max(20, int(base * scale))


def size_label(nbytes: int) -> str:
    return f"{nbytes >> 20} MB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KB"


def busbw(nbytes: int, seconds: float, n: int) -> float:
    """GB/s, nccl-tests' bus bandwidth of an all-reduce."""
    return nbytes / seconds / 1e9 * 2 * (n - 1) / n


class Timer:
    """barrier; time one call; per-iteration max over ranks; median."""

    def __init__(self, mpi_comm, MPI):
        self.mpi_comm, self.MPI = mpi_comm, MPI

    def run(self, call, iters: int, before=None) -> list[float]:
        ts = np.empty(iters)
        for i in range(iters):
            if before is not None:
                before()
            self.mpi_comm.Barrier()
            t0 = time.perf_counter()
            call()
            ts[i] = time.perf_counter() - t0
        return ts.tolist()

    def max_over_ranks(self, ts: list[float]) -> list[float]:
        arr = np.asarray(ts, np.float64)
        self.mpi_comm.Allreduce(self.MPI.IN_PLACE, arr, op=self.MPI.MAX)
        return arr.tolist()


def flat_model(nbytes: int, param_bytes: int, seed: int):
    """A Module whose float32 parameters total `nbytes`, in 1-D pieces of <= param_bytes."""
    import disttrain as dt
    import disttrain.nn as nn

    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            left, i = nbytes // 4, 0
            while left > 0:
                k = min(left, max(1, param_bytes // 4))
                self.register_parameter(f"p{i}", nn.Parameter(dt.zeros(k)))
                left, i = left - k, i + 1

    dt.manual_seed(seed)
    return Flat()


def fill_grads(model, rng, scale: float = 1.0) -> list:
    """Random float32 .grads (different on every rank) in each parameter's memory order, as
    backward makes them (nn.Linear weights are column-major); returns the arrays."""
    from disttrain.tensor import Tensor

    arrays = []
    for p in model.parameters():
        g = np.empty_like(p.array)  # NOTE: keeps the parameter's C/F layout
        g[...] = rng.standard_normal(p.shape) * scale
        p.grad = Tensor(g)
        arrays.append(g)
    return arrays


def rebind(model, arrays):
    """Writes every gradient afresh and points its .grad at it again (DataParallel leaves them
    in its buckets, averaged in place): each call then starts from gradients just written, as
    backward leaves them, like the raw all-reduce's buffer, which is refilled before each call.
    NOTE: without the write the gradients were whatever the last call left, partly out of
    cache, which cost DataParallel 0.2 of the ratio at 1 MB (0.57 against 0.77)."""
    from disttrain.tensor import Tensor

    pristine = [g.copy() for g in arrays]

    def go():
        for p, g, fresh in zip(model.parameters(), arrays, pristine):
            np.copyto(g, fresh)
            p.grad = Tensor(g)
    return go



# ------------------------------------------------------------------------------ sizes table
def bench_sizes(args, comm, MPI, timer):
    import disttrain.distributed as dist
    from disttrain.distributed import comm_hooks

    n, rank = comm.size, comm.rank
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            raise SystemExit(f"--modes: unknown mode {m!r} (choose from {', '.join(MODES)})")
    rng = np.random.default_rng(1000 + rank)
    rows = []
    for nbytes in SIZES + ["64MBx4"]:
        chunked = nbytes == "64MBx4"
        total = 64 << 20 if chunked else nbytes
        buf = np.ones(total // 4, np.float32)
        pristine = rng.standard_normal(buf.size, dtype=np.float32)

        def reset(buf=buf, pristine=pristine):
            # NOTE: untimed, and the same refill as the dp mode's gradients (rebind): a copy
            # from another buffer, which leaves the caches as dp finds them (a fill() touched
            # half the memory and left the raw call a warmer cache than dp got)
            np.copyto(buf, pristine)

        calls = {}
        if chunked:
            step = (16 << 20) // 4
            pieces = [buf[s:s + step] for s in range(0, buf.size, step)]
            calls["comm"] = (lambda pieces=pieces: [comm.allreduce_(p) for p in pieces], reset)
            calls["mpi4py"] = (lambda pieces=pieces: [
                comm.mpi_comm.Allreduce(MPI.IN_PLACE, p, op=MPI.SUM) for p in pieces], reset)
        else:
            calls["comm"] = (lambda buf=buf: comm.allreduce_(buf), reset)
            calls["mpi4py"] = (lambda buf=buf: comm.mpi_comm.Allreduce(MPI.IN_PLACE, buf,
                                                                       op=MPI.SUM), reset)
            for mode, hook in (("dp", None), ("dp_inplace", None),
                               ("dp16", comm_hooks.fp16_compress_hook)):
                if mode not in modes:
                    continue
                model = flat_model(total, args.param_kb << 10, seed=0)
                dp = dist.DataParallel(model, comm=comm, bucket_cap_mb=args.bucket_cap_mb)
                if hook is not None:
                    dp.register_comm_hook(None, hook)
                arrays = fill_grads(model, rng)
                calls[mode] = (dp.sync_grads,
                               None if mode == "dp_inplace" else rebind(model, arrays))
        active = [m for m in modes if m in calls]
        iters = iters_for(total, args.iters_scale)
        warm = max(5, iters // 10)
        for m in active:
            call, before = calls[m]
            timer.run(call, warm, before)
        per_block = max(1, -(-iters // args.blocks))
        ts = {m: [] for m in active}
        for block in range(args.blocks):
            for m in active if block % 2 == 0 else active[::-1]:  # alternate the order
                call, before = calls[m]
                ts[m] += timer.run(call, per_block, before)
        row = {"size": "64 MB as 4x16 MB" if chunked else size_label(total), "bytes": total,
               "iters": per_block * args.blocks}
        for m in active:
            t = statistics.median(timer.max_over_ranks(ts[m]))
            row[m] = {"us": t * 1e6, "busbw_GBps": busbw(total, t, n)}
        rows.append(row)
        if rank == 0 and args.verbose:
            print(json.dumps(row), file=sys.stderr, flush=True)
        del calls, buf, pristine
    return rows


def fp16_error(args, comm, MPI):
    """max |DataParallel mean - exact (float64) mean| for float32 and float16 exchange."""
    import disttrain.distributed as dist
    from disttrain.distributed import comm_hooks

    out = []
    nbytes = 4 << 20
    for scale in (1.0, 1e-3, 1e-5):
        row = {"grad_scale": scale}
        for label, hook in (("float32", None), ("float16", comm_hooks.fp16_compress_hook)):
            model = flat_model(nbytes, args.param_kb << 10, seed=0)
            dp = dist.DataParallel(model, comm=comm, bucket_cap_mb=args.bucket_cap_mb)
            if hook is not None:
                dp.register_comm_hook(None, hook)
            rng = np.random.default_rng(77 + comm.rank)  # same grads for both dtypes
            arrays = fill_grads(model, rng, scale)
            exact = [g.astype(np.float64) for g in arrays]
            for e in exact:
                comm.mpi_comm.Allreduce(MPI.IN_PLACE, e, op=MPI.SUM)
                e /= comm.size
            dp.sync_grads()
            err = max(float(np.max(np.abs(p.grad.numpy().astype(np.float64) - e)))
                      for p, e in zip(model.parameters(), exact))
            ref = max(float(np.max(np.abs(e))) for e in exact)
            err = comm.mpi_comm.allreduce(err, op=MPI.MAX)
            row[label] = {"max_abs_err": err, "rel_to_max": err / ref if ref else 0.0,
                          "max_abs_mean": ref}
        out.append(row)
    return out


def print_sizes(rows, errs, n, args):
    modes = [m for m in MODES if any(m in r for r in rows)]
    ref = "mpi4py" if "mpi4py" in modes else None
    ratios = [m for m in modes if ref and m != ref]
    head = ["size"] + [f"{m} us" for m in modes] + [f"{m} busbw GB/s" for m in modes]
    head += [f"{m} / {ref}" for m in ratios]
    print(f"\n### All-reduce, {n} ranks, float32 (busbw = algbw * 2(n-1)/n; "
          f"ratios are of busbw; median of the per-iteration max over ranks)\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["size"]]
        cells += [f"{r[m]['us']:.4g}" if m in r else "-" for m in modes]
        cells += [f"{r[m]['busbw_GBps']:.3g}" if m in r else "-" for m in modes]
        cells += [f"{r[m]['busbw_GBps'] / r[ref]['busbw_GBps']:.2f}" if m in r and ref in r
                  else "-" for m in ratios]
        print("| " + " | ".join(cells) + " |")
    if errs:
        print(f"\n### Error of the gradient mean, DataParallel.sync_grads, {n} ranks, 4 MB of "
              "N(0, scale^2) gradients: max |result - exact float64 mean|\n")
        print("| grad scale | max abs mean | float32 exchange | float16 exchange | "
              "float16 err / max abs mean |")
        print("|---|---|---|---|---|")
        for e in errs:
            print(f"| {e['grad_scale']:g} | {e['float32']['max_abs_mean']:.3g} | "
                  f"{e['float32']['max_abs_err']:.3g} | {e['float16']['max_abs_err']:.3g} | "
                  f"{e['float16']['rel_to_max']:.3g} |")


# ------------------------------------------------------------------------------ bucket sweep
SWEEP_MODELS = {  # name -> (layer sizes, per-rank batch of the training-step column)
    "deep": ([784, 2048, 2048, 2048, 10], 256),  # 38 MB, three 16 MB weights dominate
    "mlp": ([784, 500, 10], 64),  # 1.5 MB, one 1.5 MB weight
    "many": ([784] + [512] * 16 + [10], 256),  # 17 MB in 1 MB weights: the cap matters
}


def mlp(sizes, seed: int):
    import disttrain as dt
    import disttrain.nn as nn

    dt.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


def bucket_sweep(args, comm, MPI, timer):
    import disttrain as dt
    import disttrain.distributed as dist
    import disttrain.nn as nn
    import disttrain.optim as optim

    caps = [float(c) for c in args.caps.split(",")]
    sizes_, batch = SWEEP_MODELS[args.sweep_model]
    rng = np.random.default_rng(2000 + comm.rank)
    setups = []
    for cap in caps:
        model = mlp(sizes_, seed=0)
        dp = dist.DataParallel(model, comm=comm, bucket_cap_mb=cap)
        arrays = fill_grads(model, rng)
        sizes = [sum(dict(model.named_parameters())[name].numel() * 4 for name in b) / 2**20
                 for b in dp.buckets]
        setups.append({"cap": cap, "dp": dp, "model": model, "before": rebind(model, arrays),
                       "buckets_mb": sizes, "opt": optim.SGD(dp.parameters(), lr=0.01)})
    nbytes = sum(p.numel() * 4 for p in setups[0]["model"].parameters())
    pool = 16
    xs = [dt.tensor(rng.standard_normal((batch, sizes_[0]), dtype=np.float32))
          for _ in range(pool)]
    ys = [dt.tensor(rng.integers(0, sizes_[-1], batch)) for _ in range(pool)]
    loss_fn = nn.CrossEntropyLoss()

    def train_step(s, k):
        s["opt"].zero_grad()
        loss_fn(s["dp"](xs[k % pool]), ys[k % pool]).backward()
        s["opt"].step()

    sync = {s["cap"]: [] for s in setups}
    step = {s["cap"]: [] for s in setups}
    for s in setups:  # warm-up
        timer.run(s["dp"].sync_grads, 3, s["before"])
    iters = max(20, int(20 * args.iters_scale))
    per_block = max(1, -(-iters // args.blocks))
    steps_per_block = -(-args.sweep_steps // args.blocks) if args.sweep_steps else 0
    if steps_per_block:
        for s in setups:
            for k in range(2):
                train_step(s, k)
    for _ in range(args.blocks):
        for s in setups:
            sync[s["cap"]] += timer.run(s["dp"].sync_grads, per_block, s["before"])
            if steps_per_block:
                counter = iter(range(len(step[s["cap"]]), 10**9))  # next batch of the pool
                step[s["cap"]] += timer.run(lambda s=s, c=counter: train_step(s, next(c)),
                                            steps_per_block)
    rows = []
    for s in setups:
        t = statistics.median(timer.max_over_ranks(sync[s["cap"]]))
        row = {"bucket_cap_mb": s["cap"], "buckets": len(s["buckets_mb"]),
               "bucket_mb": [round(b, 2) for b in s["buckets_mb"]], "sync_us": t * 1e6,
               "sync_busbw_GBps": busbw(nbytes, t, comm.size)}
        if steps_per_block:
            row["step_ms"] = statistics.median(timer.max_over_ranks(step[s["cap"]])) * 1e3
        rows.append(row)
    return nbytes, rows


def print_sweep(nbytes, rows, n, args):
    have_step = any("step_ms" in r for r in rows)
    sizes, batch = SWEEP_MODELS[args.sweep_model]
    arch = "-".join(str(k) for k in sizes)
    print(f"\n### DataParallel bucket sweep: MLP {arch}, {nbytes / 2**20:.1f} MB of "
          f"float32 gradients, {n} ranks\n")
    head = "| bucket_cap_mb | buckets | bucket sizes MB | sync ms | sync busbw GB/s |"
    print(head + (f" train step ms (b{batch}, overlapped) |" if have_step else ""))
    print("|---|---|---|---|---|" + ("---|" if have_step else ""))
    for r in rows:
        b = r["bucket_mb"]
        sizes = " ".join(f"{x:g}" for x in b) if len(b) <= 8 else \
            f"{min(b):g} .. {max(b):g} (median {statistics.median(b):g})"
        line = (f"| {r['bucket_cap_mb']:g} | {r['buckets']} | {sizes} | {r['sync_us'] / 1e3:.3g}"
                f" | {r['sync_busbw_GBps']:.3g} |")
        print(line + (f" {r['step_ms']:.4g} |" if have_step else ""))
    best = min(rows, key=lambda r: r["sync_us"])
    print(f"\nfastest sync: bucket_cap_mb={best['bucket_cap_mb']:g} "
          f"({best['sync_us'] / 1e3:.3g} ms)")
    if have_step:
        best = min(rows, key=lambda r: r["step_ms"])
        print(f"fastest training step: bucket_cap_mb={best['bucket_cap_mb']:g} "
              f"({best['step_ms']:.4g} ms)")




def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default=",".join(MODES),
                    help="comma-separated subset of: " + ", ".join(MODES))
    ap.add_argument("--iters-scale", type=float, default=1.0,
                    help="scale the iteration counts (1000 up to 64 KB ... 20 at 64 MB; the "
                         "minimum stays 20)")
    ap.add_argument("--blocks", type=int, default=4,
                    help="interleave the modes in this many blocks of iterations")
    ap.add_argument("--bucket-cap-mb", type=float, default=None,
                    help="DataParallel bucket size (default: DataParallel's default)")
    ap.add_argument("--param-kb", type=int, default=1024,
                    help="dp modes: size of each 1-D parameter of the synthetic model")
    ap.add_argument("--no-error", action="store_true", help="skip the float16 error table")
    ap.add_argument("--bucket-sweep", action="store_true",
                    help="time DataParallel sync of the deep MLP's gradients per bucket cap")
    ap.add_argument("--caps", default="1,2,4,8,16,32", help="--bucket-sweep: caps in MB")
    ap.add_argument("--sweep-model", choices=list(SWEEP_MODELS), default="deep",
                    help="--bucket-sweep: deep = 784-2048x3-10 (38 MB), mlp = 784-500-10, "
                         "many = 784-512x16-10 (17 MB in 1 MB weights)")
    ap.add_argument("--sweep-steps", type=int, default=20,
                    help="--bucket-sweep: also time this many overlapped training steps per "
                         "cap (0: skip)")
    ap.add_argument("--json", help="rank 0 writes the figures here")
    ap.add_argument("--verbose", action="store_true", help="print each row as it is measured")
    args = ap.parse_args(argv)

    from mpi4py import MPI

    import disttrain
    import disttrain.distributed as dist

    # NOTE: opt in to glibc keeping freed blocks (disttrain.backend.tune_malloc): gradients
    # are reallocated every step, and MPI moved cold, freshly page-faulted pages without it
    disttrain.tune_malloc()

    comm = dist.init()
    comm.barrier()
    busy = comm.bcast_obj(cpu_busy())  # NOTE: every rank sleeps meanwhile (MPI waits spin)
    if comm.rank == 0 and busy is not None and busy > 0.15:
        print(f"WARNING: the machine was {busy:.0%} busy before the benchmark (other jobs?); "
              "the figures are unreliable", file=sys.stderr, flush=True)
    timer = Timer(comm.mpi_comm, MPI)
    info = {"script": "allreduce_benchmark", "ranks": comm.size,
            "hosts": len(set(comm.allgather_obj(comm.host))),
            "mpi": MPI.Get_library_version().splitlines()[0].strip(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cpu_busy_before": busy,
            # NOTE: huge pages change MPI's shared-memory speed 1.5x (docs/PERFORMANCE.md)
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES")}
    if args.bucket_sweep:
        nbytes, rows = bucket_sweep(args, comm, MPI, timer)
        result = dict(info, mode="bucket_sweep", model=args.sweep_model, grad_bytes=nbytes,
                      results=rows)
        if comm.rank == 0:
            print_sweep(nbytes, rows, comm.size, args)
    else:
        rows = bench_sizes(args, comm, MPI, timer)
        want_err = not args.no_error and "dp16" in args.modes.split(",")
        errs = fp16_error(args, comm, MPI) if want_err else []
        result = dict(info, mode="sizes", results=rows, fp16_error=errs)
        if comm.rank == 0:
            print_sizes(rows, errs, comm.size, args)
    if comm.rank == 0:
        print(f"\n{comm.size} ranks on {info['hosts']} host(s); {info['mpi']}; "
              f"OMP_NUM_THREADS={info['omp_num_threads']}; "
              f"GLIBC_TUNABLES={info['glibc_tunables'] or '(unset: no huge pages under 4 MB)'}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
            print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
