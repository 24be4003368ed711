"""Gradient bucket assignment: a pure function, unit-tested without MPI."""

from __future__ import annotations

# NOTE: chosen with `examples/allreduce_benchmark.py --bucket-sweep` (README, issue #3): in-place
# MPI all-reduce bandwidth is flat from 1 to 16 MB and collapses above 16 MB on this machine.
DEFAULT_BUCKET_CAP_MB = 8.0
# NOTE: a small first bucket (as torch DDP's 1 MB) starts communication early in backward.
DEFAULT_FIRST_BUCKET_CAP_MB = 1.0
# NOTE: a gradient this big is exchanged where it lies, in a bucket of its own: its all-reduce
# runs at full bandwidth alone (1 MB: 8.4-9.9 GB/s here, as fast as 4-16 MB), and grouping it
# would cost a copy into the bucket, a memory pass that was 15-25% of the all-reduce itself.
DEFAULT_DIRECT_MB = 1.0


def assign_buckets(sizes_bytes: list[int], dtypes: list, cap_bytes: int,
                   first_cap_bytes: int | None = None,
                   direct_bytes: int | None = None) -> list[list[int]]:
    """Groups tensors, in the given order, into buckets of at most `cap_bytes` per dtype.

    Args:
        sizes_bytes: size of each tensor, in the order gradients are expected to become ready
            (DataParallel passes parameters in reverse registration order).
        dtypes: each tensor's dtype; a bucket holds one dtype (it is one flat array).
        cap_bytes: a bucket is closed before it would grow past this. A tensor bigger than
            the cap gets a bucket of its own and leaves the open bucket open, so the small
            biases between big weights share one bucket instead of one each.
        first_cap_bytes: cap of the first bucket of each dtype (default: cap_bytes).
        direct_bytes: a tensor of at least this size also gets a bucket of its own (default:
            only those bigger than the cap).

    Returns:
        Lists of indices into `sizes_bytes`, ordered by their last index (when, in ready order,
        the bucket is complete): the order in which every rank launches them, so collectives
        always pair up.

    Example:
        >>> assign_buckets([4, 4, 4, 4], ["f4"] * 4, cap_bytes=8)
        [[0, 1], [2, 3]]
    """
    if len(sizes_bytes) != len(dtypes):
        raise ValueError(f"assign_buckets: {len(sizes_bytes)} sizes but {len(dtypes)} dtypes")
    if cap_bytes <= 0:
        raise ValueError(f"assign_buckets: cap_bytes must be positive, got {cap_bytes}")
    first_cap = cap_bytes if first_cap_bytes is None else first_cap_bytes
    done: list[list[int]] = []
    open_buckets: dict = {}  # dtype -> (indices, bytes, cap)
    for index, (size, dtype) in enumerate(zip(sizes_bytes, dtypes)):
        if size > cap_bytes or (direct_bytes is not None and size >= direct_bytes):
            done.append([index])
            continue
        key = str(dtype)
        indices, used, cap = open_buckets.get(key, ([], 0, first_cap))
        if indices and used + size > cap:
            done.append(indices)
            indices, used, cap = [], 0, cap_bytes
        open_buckets[key] = (indices + [index], used + size, cap)
    done += [indices for indices, _, _ in open_buckets.values() if indices]
    return sorted(done, key=lambda bucket: bucket[-1])
