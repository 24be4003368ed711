"""Reduce-scatter: Open MPI's MPI_Reduce_scatter_block against the Communicator's ring
(`comm.reduce_scatter_v_`, what ZeroRedundancyOptimizer and the hierarchical all-reduce use),
beside an in-place all-reduce and all-gather of the same bytes, float32, 64 KB .. 16 MB.

    mpirun --allow-run-as-root --oversubscribe -n 2 python examples/reduce_scatter_benchmark.py
    mpirun ... -n 4 python examples/reduce_scatter_benchmark.py --sizes-mb 1,4,16 --blocks 6

Modes, every buffer refilled by a copy before each call (untimed), interleaved in --blocks
blocks (barrier, one call, max over ranks, median):
  mpi_rs     MPI_Reduce_scatter_block(buf, part)
  ring_rs    the ring at every size (ring.ring_reduce_scatter_sum): size - 1 MPI_Sendrecv
             steps + numpy adds
  comm_rs    comm.reduce_scatter_v_(buf, part, counts): what ZeRO gets, the ring from 64 KB
             per rank (512 KB with more ranks than cores), MPI's below
  allreduce  MPI_Allreduce(IN_PLACE, buf): moves twice a reduce-scatter's bytes
  allgather  MPI_Allgather(IN_PLACE, buf): ZeRO's other half
Rank 0 prints microseconds and mpi_rs / ring_rs (how many times faster the ring is).
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("OMP_NUM_THREADS", "1")  # NOTE: before numpy loads its BLAS

import numpy as np  # noqa: E402
from allreduce_benchmark import Timer  # noqa: E402

KB = 1 << 10


def modes_for(nbytes: int, comm, MPI) -> tuple[dict, callable]:
    n = nbytes // 4 // comm.size * comm.size
    pristine = np.random.default_rng(comm.rank).standard_normal(n, dtype=np.float32)
    buf, part = np.empty(n, np.float32), np.empty(n // comm.size, np.float32)
    from disttrain.distributed.ring import ring_reduce_scatter_sum

    counts, w = [part.size] * comm.size, comm.mpi_comm
    ring, scratch = w.Dup(), np.empty(2 * part.size, np.float32)
    modes = {"mpi_rs": lambda: w.Reduce_scatter_block(buf, part, op=MPI.SUM),
             "ring_rs": lambda: ring_reduce_scatter_sum(ring, buf, part, counts, scratch),
             "comm_rs": lambda: comm.reduce_scatter_v_(buf, part, counts),
             "allreduce": lambda: w.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM),
             "allgather": lambda: w.Allgather(MPI.IN_PLACE, buf)}
    return modes, lambda: np.copyto(buf, pristine)


def measure(nbytes: int, comm, MPI, args) -> dict:
    modes, refill = modes_for(nbytes, comm, MPI)
    timer, times = Timer(comm.mpi_comm, MPI), {m: [] for m in modes}
    for block in range(args.blocks):
        for m in (list(modes) if block % 2 == 0 else list(modes)[::-1]):
            timer.run(modes[m], 3, refill)  # NOTE: warms the mode up again
            times[m] += timer.max_over_ranks(timer.run(modes[m], args.iters, refill))
    return {m: statistics.median(ts) for m, ts in times.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes-mb", default="0.0625,0.25,1,4,16",
                    help="comma-separated sizes in MB")
    ap.add_argument("--blocks", type=int, default=4, help="interleaved blocks per mode")
    ap.add_argument("--iters", type=int, default=20, help="timed calls per mode per block")
    args = ap.parse_args(argv)
    import disttrain
    import disttrain.distributed as dist

    disttrain.tune_malloc()  # NOTE: as allreduce_benchmark.py and training scripts do
    comm = dist.init()
    from mpi4py import MPI  # NOTE: after init (MPI starts there)

    if comm.rank == 0:
        print(f"| bytes | mpi_rs us | ring_rs us | comm_rs us | allreduce us | allgather us | "
              f"mpi_rs / ring_rs | ({comm.size} ranks, float32, GLIBC_TUNABLES "
              f"{os.environ.get('GLIBC_TUNABLES') or 'unset'}) |")
        print("|---|---|---|---|---|---|---|---|")
    for mb in (float(s) for s in args.sizes_mb.split(",")):
        nbytes = int(mb * (1 << 20))
        t = measure(nbytes, comm, MPI, args)
        if comm.rank == 0:
            label = f"{nbytes >> 20} MB" if nbytes >= 1 << 20 else f"{nbytes // KB} KB"
            print(f"| {label} | {t['mpi_rs'] * 1e6:.0f} | {t['ring_rs'] * 1e6:.0f} | "
                  f"{t['comm_rs'] * 1e6:.0f} | {t['allreduce'] * 1e6:.0f} | "
                  f"{t['allgather'] * 1e6:.0f} | "
                  f"{t['mpi_rs'] / t['ring_rs']:.2f} | |")


if __name__ == "__main__":
    main()
