"""Where ZeroRedundancyOptimizer's shards lie: pure functions over element counts, unit-tested
without MPI. The parameters are laid end to end in one flat buffer (in DataParallel's bucket
order); rank r owns one contiguous range of it."""

from __future__ import annotations


def shard_ranges(total: int, size: int) -> list[tuple[int, int]]:
    """Splits `total` elements into `size` contiguous [start, end) ranges, in rank order; the
    first `total % size` ranges hold one element more.

    Example:
        >>> shard_ranges(10, 4)
        [(0, 3), (3, 6), (6, 8), (8, 10)]
    """
    if size <= 0 or total < 0:
        raise ValueError(f"shard_ranges: need total >= 0 and size > 0, got total={total}, "
                         f"size={size}")
    base, extra = divmod(total, size)
    ranges, start = [], 0
    for rank in range(size):
        end = start + base + (rank < extra)
        ranges.append((start, end))
        start = end
    return ranges


def overlap_counts(start: int, end: int, ranges: list[tuple[int, int]]) -> list[int]:
    """How many elements of [start, end) fall in each rank's range (the receive counts of a
    reduce-scatter of that slice of the flat buffer).

    Example:
        >>> overlap_counts(2, 7, [(0, 3), (3, 6), (6, 8), (8, 10)])
        [1, 3, 1, 0]
    """
    return [max(0, min(end, hi) - max(start, lo)) for lo, hi in ranges]


def pieces(sizes: list[int], shard: tuple[int, int]) -> list[tuple[int, int, int]]:
    """The parts of each tensor that fall in `shard`: (tensor index, first, last element of
    the tensor) for tensors of `sizes` laid end to end; tensors outside the shard are absent.

    Example:
        >>> pieces([4, 2, 5], (3, 8))
        [(0, 3, 4), (1, 0, 2), (2, 0, 2)]
    """
    out, offset = [], 0
    lo, hi = shard
    for index, n in enumerate(sizes):
        first, last = max(lo, offset), min(hi, offset + n)
        if first < last:
            out.append((index, first - offset, last - offset))
        offset += n
    return out
