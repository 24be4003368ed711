"""Where DataParallel's gradient sync spends the time that raw MPI all-reduce does not.

Run under mpirun (2 ranks is the case it explains; with more ranks the mean-of-two op is not
used and its rows are skipped):

    mpirun --allow-run-as-root --oversubscribe -n 2 python examples/sync_breakdown.py
    mpirun ... python examples/sync_breakdown.py --sizes-mb 1,4 --blocks 6

For each size it times, interleaved in --blocks blocks (barrier, one call, max over ranks,
median), every buffer refilled by a copy before each call (untimed) as in
allreduce_benchmark.py:

  raw           MPI_Allreduce(IN_PLACE, SUM) of one buffer: the reference (ratio 1)
  raw_pieces    the same bytes as 1 MB pieces of one buffer (one all-reduce per piece)
  raw_separate  the same bytes as separately allocated 1 MB arrays: what DataParallel gets
                from backward, one array per gradient
  op_add        one buffer, a Python MPI user op that only adds: the cost of calling Python
                from MPI's reduction (2 ranks)
  op_mean       one buffer, the Communicator's mean-of-two op, (a + b) / 2 (2 ranks): the
                add plus the halving pass the mean needs
  mean_         Communicator.allreduce_mean_ on one buffer
  dp_sync       DataParallel.sync_grads() of a model of 1 MB parameters (allreduce_benchmark's
                dp mode)
  dp_python     sync_grads with every MPI call replaced by a no-op: DataParallel's own Python
                (per rank, no barrier)

Rank 0 prints one table per size: microseconds and raw / mode (the bandwidth ratio).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from allreduce_benchmark import fill_grads, flat_model, rebind  # noqa: E402

MB = 1 << 20


class _NoMPI:
    """A stand-in for the mpi4py communicator whose Allreduce does nothing."""

    def __init__(self, real):
        self.real = real

    def Allreduce(self, *args, **kwargs) -> None:
        pass

    def __getattr__(self, name):
        return getattr(self.real, name)


def refill_from(arrays, pristine):
    """Copies fresh values into each array before a call (untimed)."""
    def refill():
        offset = 0
        for a in arrays:
            np.copyto(a, pristine[offset:offset + a.size])
            offset += a.size
    return refill


def modes_for(nbytes: int, comm, MPI) -> dict:
    """name -> (call, refill) for one size."""
    import disttrain.distributed as dist
    from disttrain.distributed.comm import _mean_of_two_op

    w, n = comm.mpi_comm, nbytes // 4
    pristine = np.random.default_rng(comm.rank).standard_normal(n, dtype=np.float32)
    one = np.empty(n, np.float32)
    pieces = [one[s:s + MB // 4] for s in range(0, n, MB // 4)]
    separate = [np.empty(p.size, np.float32) for p in pieces]

    def add_only(inbuf, inoutbuf, datatype) -> None:
        b = np.frombuffer(inoutbuf, np.float32)
        np.add(np.frombuffer(inbuf, np.float32), b, out=b)

    def allreduce(arrays, op):
        return lambda: [w.Allreduce(MPI.IN_PLACE, a, op=op) for a in arrays]

    modes = {"raw": (allreduce([one], MPI.SUM), refill_from([one], pristine)),
             "raw_pieces": (allreduce(pieces, MPI.SUM), refill_from([one], pristine)),
             "raw_separate": (allreduce(separate, MPI.SUM), refill_from(separate, pristine))}
    if comm.size == 2:
        modes["op_add"] = (allreduce([one], MPI.Op.Create(add_only, commute=True)),
                           refill_from([one], pristine))
        modes["op_mean"] = (allreduce([one], _mean_of_two_op()), refill_from([one], pristine))
    modes["mean_"] = (lambda: comm.allreduce_mean_(one), refill_from([one], pristine))
    model = flat_model(nbytes, MB, seed=0)
    dp = dist.DataParallel(model, comm=comm)
    modes["dp_sync"] = (dp.sync_grads, rebind(model, fill_grads(model, np.random.default_rng(
        comm.rank))))
    return modes, dp


def python_only(comm, dp, before, iters: int) -> float:
    """Median seconds of dp.sync_grads() with the MPI calls made no-ops (this rank alone)."""
    real, comm.mpi_comm = comm.mpi_comm, _NoMPI(comm.mpi_comm)
    try:
        ts = []
        for _ in range(iters):
            before()
            t0 = time.perf_counter()
            dp.sync_grads()
            ts.append(time.perf_counter() - t0)
    finally:
        comm.mpi_comm = real
    return statistics.median(ts[iters // 10:])


def measure(nbytes: int, comm, MPI, args) -> dict:
    modes, dp = modes_for(nbytes, comm, MPI)
    w, times = comm.mpi_comm, {m: [] for m in modes}
    for block in range(args.blocks):
        order = list(modes) if block % 2 == 0 else list(modes)[::-1]
        for m in order:
            call, before = modes[m]
            for i in range(args.iters + 3):
                before()
                w.Barrier()
                t0 = time.perf_counter()
                call()
                t = w.allreduce(time.perf_counter() - t0, op=MPI.MAX)
                if i >= 3:  # NOTE: the first calls of a block warm the mode up again
                    times[m].append(t)
    out = {m: statistics.median(ts) for m, ts in times.items()}
    out["dp_python"] = python_only(comm, dp, modes["dp_sync"][1], 2000)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes-mb", default="1,4", help="comma-separated sizes in MB (whole)")
    ap.add_argument("--blocks", type=int, default=4, help="interleaved blocks per mode")
    ap.add_argument("--iters", type=int, default=40, help="timed calls per mode per block")
    args = ap.parse_args(argv)
    from mpi4py import MPI

    import disttrain
    import disttrain.distributed as dist

    disttrain.tune_malloc()  # NOTE: as allreduce_benchmark.py and training scripts do
    comm = dist.init()
    for mb in (int(s) for s in args.sizes_mb.split(",")):
        figures = measure(mb * MB, comm, MPI, args)
        if comm.rank == 0:
            pages = os.environ.get("GLIBC_TUNABLES") or "unset"
            print(f"\n### {mb} MB, {comm.size} ranks, float32 (median of the per-call max over "
                  f"ranks; dp_python: rank 0 alone; GLIBC_TUNABLES {pages})\n")
            print("| mode | us | raw / mode |")
            print("|---|---|---|")
            for m, t in figures.items():
                ratio = "-" if m == "dp_python" else f"{figures['raw'] / t:.3f}"
                print(f"| {m} | {t * 1e6:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
