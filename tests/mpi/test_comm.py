"""The Communicator's collectives and point-to-point calls on every rank, with expectations
computed from rank and size."""

from __future__ import annotations

import math

import numpy
import pytest
from mpi_helpers import same_on_all_ranks

import disttrain as dt
import disttrain.distributed as dist

DTYPES = [numpy.float32, numpy.float64, numpy.int64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["sum", "max", "min", "prod"])
def test_allreduce_in_place(comm, op, dtype):
    x = numpy.full((2, 3), comm.rank + 1, dtype)
    out = comm.allreduce_(x, op=op)
    ranks = range(1, comm.size + 1)
    expected = {"sum": sum(ranks), "max": comm.size, "min": 1, "prod": math.prod(ranks)}[op]
    assert out is x
    assert x.dtype == dtype and x.shape == (2, 3)
    numpy.testing.assert_array_equal(x, numpy.full((2, 3), expected, dtype))


def test_allreduce_mean_of_ranks(comm):
    """The ChainerMN check: every rank contributes its rank; the mean is (size - 1) / 2."""
    x = numpy.full(5, float(comm.rank))
    comm.allreduce_(x)
    numpy.testing.assert_allclose(x / comm.size, (comm.size - 1) / 2)


def test_allreduce_unknown_op(comm):
    with pytest.raises(ValueError, match="op: expected one of"):
        comm.allreduce_(numpy.zeros(2), op="mean")


@pytest.mark.parametrize("root", ["first", "last"])
def test_bcast_from_root(comm, root):
    root = 0 if root == "first" else comm.size - 1
    x = numpy.arange(6, dtype=numpy.float64).reshape(2, 3) + 100 * comm.rank
    out = comm.bcast_(x, root=root)
    assert out is x
    numpy.testing.assert_array_equal(x, numpy.arange(6).reshape(2, 3) + 100 * root)


def test_allgather_stacks_every_rank(comm):
    x = numpy.arange(6, dtype=numpy.int64).reshape(2, 3) + 10 * comm.rank
    out = comm.allgather(x)
    assert out.shape == (comm.size, 2, 3) and out.dtype == numpy.int64
    for r in range(comm.size):
        numpy.testing.assert_array_equal(out[r], numpy.arange(6).reshape(2, 3) + 10 * r)
    numpy.testing.assert_array_equal(x, numpy.arange(6).reshape(2, 3) + 10 * comm.rank)


def test_reduce_scatter_gives_each_rank_its_block(comm):
    rows = 2 * comm.size
    x = numpy.arange(rows * 3, dtype=numpy.float64).reshape(rows, 3) + comm.rank
    out = comm.reduce_scatter(x)
    full = sum(numpy.arange(rows * 3).reshape(rows, 3) + r for r in range(comm.size))
    assert out.shape == (2, 3)
    numpy.testing.assert_array_equal(out, full[2 * comm.rank:2 * comm.rank + 2])


@pytest.mark.mpi(min_size=2)
def test_reduce_scatter_indivisible_names_rank(comm):
    x = numpy.zeros((comm.size + 1, 2))
    with pytest.raises(ValueError, match=rf"rank {comm.rank}: reduce_scatter needs "
                                         rf"array.shape\[0\] \({comm.size + 1}\) divisible by "
                                         rf"size \({comm.size}\)"):
        comm.reduce_scatter(x)


@pytest.mark.mpi(min_size=2)
def test_send_recv_ring_with_tags(comm):
    """rank -> rank + 1 around the ring; two tags, received in the opposite order."""
    right, left = (comm.rank + 1) % comm.size, (comm.rank - 1) % comm.size
    first = numpy.full(4, comm.rank, numpy.float32)
    second = numpy.full((2, 2), 10 + comm.rank, numpy.int64)
    got_first, got_second = numpy.empty_like(first), numpy.empty_like(second)
    # NOTE: small messages go eagerly, so both sends return before the matching receives
    comm.send(first, dest=right, tag=1)
    comm.send(second, dest=right, tag=2)
    returned = (comm.recv_(got_second, source=left, tag=2), comm.recv_(got_first, left, tag=1))
    assert returned[0] is got_second and returned[1] is got_first
    numpy.testing.assert_array_equal(got_first, numpy.full(4, left, numpy.float32))
    numpy.testing.assert_array_equal(got_second, numpy.full((2, 2), 10 + left))


@pytest.mark.mpi(min_size=2)
def test_recv_size_mismatch_raises(comm):
    """A message shorter than the buffer is received in full (no rank waits), then reported."""
    right, left = (comm.rank + 1) % comm.size, (comm.rank - 1) % comm.size
    comm.send(numpy.ones(3, numpy.float64), dest=right, tag=7)
    buffer = numpy.zeros(5, numpy.float64)
    with pytest.raises(ValueError, match=rf"rank {comm.rank}: recv_ from rank {left} \(tag 7\) "
                                         r"got 24 bytes into a 40-byte buffer \(5,\) float64"):
        comm.recv_(buffer, source=left, tag=7)


def test_split_even_odd(comm):
    sub = comm.split(comm.rank % 2)
    mates = [r for r in range(comm.size) if r % 2 == comm.rank % 2]
    total = sub.allreduce_(numpy.array([comm.rank], numpy.int64))
    reverse = comm.split(comm.rank % 2, key=-comm.rank)
    assert isinstance(sub, dist.Communicator)
    assert (sub.size, sub.rank) == (len(mates), mates.index(comm.rank))
    assert total.tolist() == [sum(mates)]
    assert reverse.rank == len(mates) - 1 - mates.index(comm.rank)


def test_objects(comm):
    got = comm.bcast_obj({"root": comm.rank, "tag": [1, 2]} if comm.rank == 0 else None)
    everyone = comm.allgather_obj(("rank", comm.rank))
    assert got == {"root": 0, "tag": [1, 2]}
    assert everyone == [("rank", r) for r in range(comm.size)]


def test_fortran_ordered_arrays(comm):
    """Column-major arrays (as nn.Linear weights may be) keep their values and order."""
    base = numpy.arange(12, dtype=numpy.float32).reshape(3, 4)
    summed = comm.allreduce_(numpy.asfortranarray(base + comm.rank))
    rooted = comm.bcast_(numpy.asfortranarray(base * (comm.rank + 1)), root=comm.size - 1)
    gathered = comm.allgather(numpy.asfortranarray(base + 100 * comm.rank))
    right, left = (comm.rank + 1) % comm.size, (comm.rank - 1) % comm.size
    comm.send(numpy.asfortranarray(base - comm.rank), dest=right, tag=3)
    received = comm.recv_(numpy.asfortranarray(numpy.zeros((3, 4), numpy.float32)), left, tag=3)
    scattered = comm.reduce_scatter(numpy.asfortranarray(
        numpy.arange(comm.size * 2 * 3, dtype=numpy.float64).reshape(comm.size * 2, 3)))
    assert summed.flags.f_contiguous and received.flags.f_contiguous
    numpy.testing.assert_array_equal(summed, comm.size * base + sum(range(comm.size)))
    numpy.testing.assert_array_equal(rooted, base * comm.size)
    assert gathered.shape == (comm.size, 3, 4)
    for r in range(comm.size):
        numpy.testing.assert_array_equal(gathered[r], base + 100 * r)
    numpy.testing.assert_array_equal(received, base - left)
    full = comm.size * numpy.arange(comm.size * 2 * 3).reshape(comm.size * 2, 3)
    numpy.testing.assert_array_equal(scattered, full[2 * comm.rank:2 * comm.rank + 2])


def test_non_contiguous_array_rejected(comm):
    x = numpy.zeros((4, 4))[:, ::2]
    with pytest.raises(ValueError, match=rf"rank {comm.rank}: MPI buffers must be contiguous"):
        comm.allreduce_(x)


def test_rank_and_size(comm):
    hosts = comm.allgather_obj(comm.host)
    local = comm.allgather_obj((comm.local_rank, comm.local_size))
    assert dist.init() is comm and dist.is_initialized()
    assert (dist.get_rank(), dist.get_world_size()) == (comm.rank, comm.size)
    assert 0 <= comm.rank < comm.size
    assert 0 <= comm.local_rank < comm.local_size <= comm.size
    assert comm.local_size == hosts.count(comm.host)
    mine = sorted(lr for (lr, _), h in zip(local, hosts) if h == comm.host)
    assert mine == list(range(comm.local_size))


def test_same_on_all_ranks_helper(comm):
    assert same_on_all_ranks(comm, numpy.arange(3.0))
    assert same_on_all_ranks(comm, numpy.arange(3.0) * comm.rank) == (comm.size == 1)


def test_reduce_gather_scatter_on_arrays(comm):
    root = comm.size - 1
    x = numpy.full(3, comm.rank + 1, numpy.int64)
    reduced = comm.reduce_(x, root=root, op="max")
    gathered = comm.gather(numpy.full(2, comm.rank, numpy.float32), root=root)
    chunks = numpy.arange(comm.size * 2, dtype=numpy.float64).reshape(comm.size, 2)
    mine = comm.scatter_(numpy.zeros(2), chunks if comm.rank == root else None, root=root)
    assert reduced is x
    assert x.tolist() == [comm.size if comm.rank == root else comm.rank + 1] * 3
    if comm.rank == root:
        assert gathered.tolist() == [[r, r] for r in range(comm.size)]
    else:
        assert gathered is None
    assert mine.tolist() == [2 * comm.rank, 2 * comm.rank + 1]


@pytest.mark.mpi(min_size=2)
def test_nonblocking_send_and_any_source_receive(comm):
    right = (comm.rank + 1) % comm.size
    incoming = numpy.zeros(4, numpy.int64)
    receive = comm.irecv_(incoming, source=None, tag=9)
    send = comm.isend(numpy.full(4, comm.rank, numpy.int64), dest=right, tag=9)
    assert send.wait() is None
    sender = receive.wait()
    assert receive.test() and send.test() and receive.wait() == sender
    assert sender == (comm.rank - 1) % comm.size
    assert incoming.tolist() == [sender] * 4


def test_allreduce_of_a_tensor_and_of_what_is_not_an_array(comm):
    t = dt.full((2,), float(comm.rank))
    assert comm.allreduce_(t) is t and t.tolist() == [sum(range(comm.size))] * 2
    for value in (1.0, [1.0, 2.0], None):
        with pytest.raises(TypeError, match=rf"allreduce_ \(rank {comm.rank}\): expected a "
                                            rf"disttrain Tensor or a numpy/cupy array, got "
                                            rf"{type(value).__name__}"):
            comm.allreduce_(value)
