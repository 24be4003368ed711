"""Communicator.reduce_scatter_v_ / reduce_scatter: the ring of MPI_Sendrecv (ring.py) that
replaces Open MPI's slow shared-memory MPI_Reduce_scatter. At 1-4 ranks: unequal and empty
blocks, every dtype ZeRO and users pass, the input left as it was, the in-place form, its own
communicator (a user's pending message on the same tag is not taken), and bad counts."""

from __future__ import annotations

import numpy
import pytest

from disttrain.distributed.ring import block_offsets


def _counts(size: int, pattern: str) -> list[int]:
    if pattern == "even":
        return [5] * size
    if pattern == "uneven":
        return [3 + 2 * r for r in range(size)]
    return [0 if r % 2 else 4 + r for r in range(size)]  # "some empty"


@pytest.mark.parametrize("pattern", ["even", "uneven", "some_empty"])
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64, numpy.int64])
def test_each_rank_gets_its_block_of_the_sum(comm, pattern, dtype):
    counts = _counts(comm.size, pattern)
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
    counts = _counts(comm.size, "uneven")
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
    counts = [3] * comm.size
    out = numpy.empty(3)
    comm.reduce_scatter_v_(numpy.ones(3 * comm.size), out, counts)
    got = numpy.empty(4)
    comm.mpi_comm.Recv(got, source=left, tag=0)
    request.Wait()
    numpy.testing.assert_array_equal(out, numpy.full(3, float(comm.size)))
    numpy.testing.assert_array_equal(got, numpy.full(4, 100.0 + left))


def test_reduce_scatter_block_goes_through_the_ring(comm):
    x = numpy.arange(comm.size * 6, dtype=numpy.float32).reshape(comm.size * 2, 3) * (
        comm.rank + 1)
    out = comm.reduce_scatter(x)
    full = numpy.arange(comm.size * 6, dtype=numpy.float32).reshape(comm.size * 2, 3) * sum(
        r + 1 for r in range(comm.size))
    numpy.testing.assert_array_equal(out, full[2 * comm.rank:2 * comm.rank + 2])
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
