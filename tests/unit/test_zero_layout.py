"""ZeroRedundancyOptimizer's shard layout: pure functions, no MPI."""

from __future__ import annotations

import pytest

from disttrain.distributed.zero_layout import overlap_counts, pieces, shard_ranges


@pytest.mark.parametrize("total,size", [(10, 4), (74, 3), (3, 4), (0, 2), (8, 1), (12, 4)])
def test_shard_ranges_cover_everything_once_remainder_first(total, size):
    ranges = shard_ranges(total, size)
    assert len(ranges) == size
    assert ranges[0][0] == 0 and ranges[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    lengths = [hi - lo for lo, hi in ranges]
    assert max(lengths) - min(lengths) <= 1
    assert lengths == sorted(lengths, reverse=True)


def test_shard_ranges_refuses_bad_sizes():
    with pytest.raises(ValueError, match="shard_ranges: need total >= 0 and size > 0, got "
                                         "total=5, size=0"):
        shard_ranges(5, 0)


def test_overlap_counts_sum_to_the_slice_in_rank_order():
    ranges = shard_ranges(10, 4)  # (0,3) (3,6) (6,8) (8,10)
    assert overlap_counts(2, 7, ranges) == [1, 3, 1, 0]
    assert overlap_counts(0, 10, ranges) == [3, 3, 2, 2]
    assert overlap_counts(8, 8, ranges) == [0, 0, 0, 0]
    for start in range(10):
        for end in range(start, 11):
            assert sum(overlap_counts(start, end, ranges)) == end - start


def test_pieces_of_tensors_laid_end_to_end():
    assert pieces([4, 2, 5], (3, 8)) == [(0, 3, 4), (1, 0, 2), (2, 0, 2)]
    assert pieces([4, 2, 5], (0, 11)) == [(0, 0, 4), (1, 0, 2), (2, 0, 5)]
    assert pieces([4, 0, 5], (4, 6)) == [(2, 0, 2)]
    assert pieces([4, 2], (6, 6)) == []
    sizes = [35, 7, 28, 4]  # every element in exactly one shard's pieces
    owned = [(i, e) for lo, hi in shard_ranges(74, 3) for i, a, b in pieces(sizes, (lo, hi))
             for e in range(a, b)]
    assert owned == [(i, e) for i, n in enumerate(sizes) for e in range(n)]
