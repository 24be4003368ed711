"""disttrain.distributed.ring's pure decisions: block offsets, and when the ring of
point-to-point exchanges is used instead of MPI_Reduce_scatter."""

from __future__ import annotations

import pytest

from disttrain.distributed.ring import (
    RING_MIN_BLOCK_BYTES,
    RING_MIN_BLOCK_BYTES_OVERSUBSCRIBED,
    block_offsets,
    ring_pays,
)

BLOCK = RING_MIN_BLOCK_BYTES // 4  # float32 elements per rank at the threshold


def test_block_offsets():
    assert block_offsets([3, 0, 2, 5]) == [0, 3, 3, 5]
    assert block_offsets([]) == []


@pytest.mark.parametrize("counts, expected", [
    ([BLOCK, BLOCK], True),                      # the threshold itself
    ([BLOCK - 1, BLOCK], False),                 # below it on average
    ([0, 2 * BLOCK], True),                      # 2 ranks: one exchange whatever the counts
    ([BLOCK] * 4, True),
    ([0, 0, 0, 4 * BLOCK], False),               # a reduce to one rank: MPI's tree
    ([0, 0, 2 * BLOCK, 2 * BLOCK], True),        # 3 * 2 <= 2 * 4
    ([0, 0, 0, 0, 3 * BLOCK, 3 * BLOCK], False),  # 5 * 3 > 2 * 6
    ([4 * BLOCK], False),                        # one rank: nothing to exchange
])
def test_ring_pays(counts, expected):
    assert ring_pays(counts, 4) is expected


def test_more_ranks_than_cores_need_bigger_blocks():
    shared = RING_MIN_BLOCK_BYTES_OVERSUBSCRIBED // 4
    assert ring_pays([BLOCK] * 4, 4) and not ring_pays([BLOCK] * 4, 4, oversubscribed=True)
    assert ring_pays([shared] * 4, 4, oversubscribed=True)
