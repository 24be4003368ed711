"""Communicator.reduce_scatter_v_ / reduce_scatter: the ring of MPI_Sendrecv (ring.py) that
replaces Open MPI's slow shared-memory MPI_Reduce_scatter. At 1-4 ranks: unequal and empty
blocks, every dtype ZeRO and users pass, the input left as it was, the in-place form, its own
communicator (a user's pending message on the same tag is not taken), and bad counts."""

from __future__ import annotations

import numpy
import pytest

import disttrain.distributed as dist
from disttrain.distributed.ring import block_offsets

BIG = 20000  # elements: 80-160 KB blocks, the ring's sizes (ring.RING_MIN_BLOCK_BYTES)


@pytest.fixture(autouse=True)
def _ring_even_when_oversubscribed(comm, monkeypatch):
    """3 and 4 ranks share 2 cores in CI, where the ring waits for 512 KB blocks: the tests
    want it from 64 KB (tests/unit/test_ring.py checks the choice)."""
    monkeypatch.setattr(comm._ring, "oversubscribed", False)


def _counts(size: int, pattern: str, unit: int = 1) -> list[int]:
    if pattern == "even":
        return [5 * unit] * size
    if pattern == "uneven":
        return [(3 + 2 * r) * unit for r in range(size)]
    if pattern == "one_rank":  # a bucket inside one rank's shard: a reduce
        return [0] * (size - 1) + [7 * unit]
    return [0 if r % 2 else (4 + r) * unit for r in range(size)]  # "some empty"


@pytest.mark.parametrize("pattern", ["even", "uneven", "some_empty", "one_rank"])
@pytest.mark.parametrize("unit", [1, BIG], ids=["mpi", "ring"])
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64, numpy.int64])
def test_each_rank_gets_its_block_of_the_sum(comm, pattern, unit, dtype):
    counts = _counts(comm.size, pattern, unit)
    n = sum(counts)
    mine = (numpy.arange(n) * (comm.rank + 1) + comm.rank).astype(dtype)
    before = mine.copy()
    out = numpy.full(counts[comm.rank], -7, dtype)
    assert comm.reduce_scatter_v_(mine, out, counts) is out
    full = sum((numpy.arange(n) * (r + 1) + r).astype(dtype) for r in range(comm.size))
    start = block_offsets(counts)[comm.rank]
    numpy.testing.assert_array_equal(out, full[start:start + counts[comm.rank]])
    numpy.testing.assert_array_equal(mine, before)  # only read


def test_in_place_into_its_own_block(comm):
    counts = _counts(comm.size, "uneven", BIG)
    flat = numpy.linspace(0.0, 1.0, sum(counts)) + comm.rank
    start = block_offsets(counts)[comm.rank]
    own = flat[start:start + counts[comm.rank]]
    expected = sum(numpy.linspace(0.0, 1.0, sum(counts)) + r for r in range(comm.size))
    comm.reduce_scatter_v_(flat, own, counts)
    numpy.testing.assert_allclose(own, expected[start:start + counts[comm.rank]], rtol=1e-15)


def test_a_large_float32_sum_matches_float64(comm):
    counts = [(1 << 18) + r for r in range(comm.size)]  # 1 MB blocks: MPI's large protocol
    rng = numpy.random.default_rng(comm.rank)
    flat = rng.standard_normal(sum(counts)).astype(numpy.float32)
    total = sum(numpy.random.default_rng(r).standard_normal(sum(counts)).astype(numpy.float32)
                .astype(numpy.float64) for r in range(comm.size))
    out = numpy.empty(counts[comm.rank], numpy.float32)
    comm.reduce_scatter_v_(flat, out, counts)
    start = block_offsets(counts)[comm.rank]
    numpy.testing.assert_allclose(out, total[start:start + counts[comm.rank]], atol=2e-6)


@pytest.mark.mpi(min_size=2)
def test_a_users_pending_message_is_not_taken(comm):
    """The ring's messages go over a duplicate communicator: a user's send with tag 0 to the
    right neighbour, pending during the reduce-scatter, still reaches the user's receive."""
    right, left = (comm.rank + 1) % comm.size, (comm.rank - 1) % comm.size
    note = numpy.full(4, 100.0 + comm.rank)
    request = comm.mpi_comm.Isend(note, dest=right, tag=0)
    counts = [BIG] * comm.size
    out = numpy.empty(BIG)
    comm.reduce_scatter_v_(numpy.ones(BIG * comm.size), out, counts)
    assert comm._ring.comm is not None  # the ring ran
    got = numpy.empty(4)
    comm.mpi_comm.Recv(got, source=left, tag=0)
    request.Wait()
    numpy.testing.assert_array_equal(out, numpy.full(BIG, float(comm.size)))
    numpy.testing.assert_array_equal(got, numpy.full(4, 100.0 + left))


def test_reduce_scatter_block_goes_through_the_ring(comm):
    rows = comm.size * (2 * BIG // 3)
    x = numpy.arange(rows * 3, dtype=numpy.float32).reshape(rows, 3) % 1000 * (comm.rank + 1)
    out = comm.reduce_scatter(x)
    full = numpy.arange(rows * 3, dtype=numpy.float32).reshape(rows, 3) % 1000 * sum(
        r + 1 for r in range(comm.size))
    mine = rows // comm.size
    numpy.testing.assert_array_equal(out, full[mine * comm.rank:mine * (comm.rank + 1)])
    x = x[:2 * comm.size]
    maxed = comm.reduce_scatter(x, op="max")  # not a sum: MPI's own
    numpy.testing.assert_array_equal(maxed, (x / (comm.rank + 1) * comm.size)[
        2 * comm.rank:2 * comm.rank + 2])


@pytest.mark.parametrize("bad", ["entries", "total", "out"])
def test_bad_counts_name_the_rank(comm, bad):
    counts = [2] * comm.size
    flat, out = numpy.zeros(2 * comm.size), numpy.zeros(2)
    if bad == "entries":
        counts = counts + [0]
    elif bad == "total":
        counts[0] += 1
    else:
        out = numpy.zeros(3)
    with pytest.raises(ValueError, match=rf"reduce_scatter_v_ \(rank {comm.rank}\): counts "
                                         r".* must have \d+ entries summing to the array's"):
        comm.reduce_scatter_v_(flat, out, counts)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("setting", ["allowed", "oversubscribed"])
def test_ranks_agree_on_the_ring(comm, setting):
    """Rank 0 alone told not to use the ring (DISTTRAIN_RING_REDUCE_SCATTER=0), or alone on
    a node with more ranks than cores: every rank takes the same path, no rank waits for ever."""
    fresh = dist.Communicator(comm.mpi_comm)
    if setting == "allowed":
        fresh._ring.allowed = comm.rank != 0
    else:
        fresh._ring.oversubscribed = comm.rank == 0
    counts = [BIG] * comm.size  # 160 KB blocks: the ring unless oversubscribed
    out = numpy.empty(BIG)
    fresh.reduce_scatter_v_(numpy.ones(BIG * comm.size), out, counts)
    numpy.testing.assert_array_equal(out, numpy.full(BIG, float(comm.size)))
    assert fresh._ring.comm is None if setting == "allowed" else fresh._ring.oversubscribed
