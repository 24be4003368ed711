"""torch.distributed's API on every rank: init_process_group / destroy_process_group, torchrun's
variables, the Tensor collectives in place (expectations from rank and size), point-to-point
calls, object collectives, and their error messages (which name the call, the argument and the
rank; every rank raises alike, so no rank waits)."""

from __future__ import annotations

import math
import os

import numpy
import pytest

import disttrain as dt
import disttrain.distributed as dist
from disttrain import env
from disttrain.utils.data.distributed import DistributedSampler

R = dist.ReduceOp


@pytest.fixture
def fresh(comm):
    """No group initialised at the start; the world initialised again afterwards (the other
    tests use it)."""
    if dist.is_initialized():
        dist.destroy_process_group()
    yield comm
    if dist.is_initialized():
        dist.destroy_process_group()
    dist.init()


# ---------------------------------------------------------------- the process group
@pytest.mark.parametrize("backend", [None, "mpi", "gloo", "GLOO", dist.Backend.MPI])
def test_init_process_group_over_mpi(fresh, backend, monkeypatch):
    comm = fresh
    for name in env.TORCHRUN_RANK_VARS:
        monkeypatch.delenv(name, raising=False)
    assert not dist.is_initialized() and dist.group.WORLD is None and env.process_group() is None
    dist.init_process_group(backend=backend, init_method="env://", world_size=comm.size,
                            rank=comm.rank)
    exported = {name: os.environ[name] for name in env.TORCHRUN_RANK_VARS}
    state = (dist.is_initialized(), dist.get_backend(), dist.group.WORLD)
    with pytest.raises(ValueError, match=r"trying to initialize the default process group "
                                         r"twice! \(call destroy_process_group\(\) first\)"):
        dist.init_process_group(backend=backend)
    dist.destroy_process_group()
    after = (dist.is_initialized(), dist.group.WORLD, env.process_group())

    assert state == (True, "mpi", comm)
    assert (dist.get_rank(comm), dist.get_world_size(comm)) == (comm.rank, comm.size)
    assert exported == {"RANK": str(comm.rank), "WORLD_SIZE": str(comm.size),
                        "LOCAL_RANK": str(comm.local_rank),
                        "LOCAL_WORLD_SIZE": str(comm.local_size)}
    assert after == (False, None, None)


def test_calls_after_destroy_raise_and_init_again_works(fresh):
    dist.init_process_group("gloo")
    dist.destroy_process_group()
    with pytest.raises(ValueError, match=r"^all_reduce: Default process group has not been "
                                         r"initialized"):
        dist.all_reduce(dt.ones(1))
    with pytest.raises(ValueError, match=r"^barrier: Default process group"):
        dist.barrier()
    dist.init_process_group()
    t = dt.ones(1)
    dist.all_reduce(t)
    assert t.tolist() == [fresh.size]


def test_world_size_and_rank_that_differ_from_mpi_raise_on_every_rank(fresh):
    size, rank = fresh.size, fresh.rank
    with pytest.raises(ValueError) as wrong_size:
        dist.init_process_group("gloo", world_size=size + 1)
    not_initialized = not dist.is_initialized()
    with pytest.raises(ValueError) as wrong_rank:
        dist.init_process_group("gloo", rank=(rank + 1) % (size + 1))
    message = str(wrong_size.value)

    assert not_initialized
    assert message.startswith(f"init_process_group (rank {rank}): rank 0: world_size="
                              f"{size + 1} but mpirun started {size} rank(s)")
    assert f"rank {size - 1}: world_size={size + 1}" in message
    assert "Start N ranks with `mpirun -n N python script.py` (not torchrun" in message
    for r in range(size):  # NOTE: every rank's problem, on every rank
        assert f"rank {r}: rank={(r + 1) % (size + 1)} but its MPI rank is {r}" in str(
            wrong_rank.value)


def test_stale_torchrun_variables_are_overwritten_under_mpirun(fresh, monkeypatch):
    # NOTE: e.g. inherited from a parent process that ran dist.init(): mpirun's answer wins
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", str(fresh.size + 2))
    dist.init_process_group("gloo")
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"]) == (str(fresh.rank), str(fresh.size))
    dist.destroy_process_group()


def test_distributed_sampler_takes_the_groups_rank_and_size(fresh):
    dist.init_process_group("gloo")
    sampler = DistributedSampler(range(10 * fresh.size), seed=4)
    shares = fresh.allgather_obj(list(sampler))
    dist.destroy_process_group()
    with pytest.raises(ValueError, match=r"call dist.init_process_group\(\)"):
        DistributedSampler(range(4))
    assert (sampler.num_replicas, sampler.rank) == (fresh.size, fresh.rank)
    assert sorted(i for share in shares for i in share) == list(range(10 * fresh.size))


# ---------------------------------------------------------------- collectives
REDUCED = {  # ReduceOp -> the result of every rank contributing rank + 1
    R.SUM: lambda n: n * (n + 1) / 2, R.PRODUCT: lambda n: math.factorial(n),
    R.MIN: lambda n: 1, R.MAX: lambda n: n, R.AVG: lambda n: (n + 1) / 2,
}


@pytest.mark.parametrize("op, dtype", [
    (op, dtype) for op in REDUCED for dtype in (dt.float32, dt.float64, dt.int64)
    if not (op is R.AVG and dtype == dt.int64)],  # NOTE: AVG needs floats (tested below)
    ids=lambda v: v.name if isinstance(v, R) else str(v))
def test_all_reduce_in_place(comm, op, dtype):
    t = dt.full((2, 3), comm.rank + 1, dtype=dtype)
    array = t.array
    returned = dist.all_reduce(t, op=op)
    assert returned is None and t.array is array and t.dtype == dtype
    numpy.testing.assert_allclose(t.numpy(), numpy.full((2, 3), REDUCED[op](comm.size)))


@pytest.mark.parametrize("op", [R.BOR, R.BXOR, R.BAND], ids=lambda op: op.name)
def test_all_reduce_bitwise(comm, op):
    t = dt.tensor([1 << comm.rank, 1 << comm.rank], dtype=dt.int64)
    dist.all_reduce(t, op)
    distinct_bits = 2**comm.size - 1  # NOTE: rank r contributes bit r only
    expected = {R.BOR: distinct_bits, R.BXOR: distinct_bits, R.BAND: int(comm.size == 1)}[op]
    assert t.tolist() == [expected] * 2


def test_async_op_returns_completed_work(comm):
    t = dt.ones(3)
    work = dist.all_reduce(t, async_op=True)
    assert isinstance(work, dist.Work) and work.is_completed() and work.wait() is True
    assert dist.broadcast(t, src=0, async_op=True).wait() and dist.barrier(async_op=True).wait()
    assert t.tolist() == [comm.size] * 3


@pytest.mark.parametrize("src", ["first", "last"])
def test_broadcast_and_reduce(comm, src):
    root = 0 if src == "first" else comm.size - 1
    t = dt.arange(4, dtype=dt.float32) + 10 * comm.rank
    dist.broadcast(t, src=root)
    r = dt.full((3,), comm.rank + 1.0)
    dist.reduce(r, dst=root, op=R.SUM)
    a = dt.full((2,), comm.rank + 1.0)
    dist.reduce(a, dst=root, op=R.AVG)
    assert t.tolist() == [10.0 * root + i for i in range(4)]
    mine = comm.rank + 1.0
    assert r.tolist() == [comm.size * (comm.size + 1) / 2 if comm.rank == root else mine] * 3
    assert a.tolist() == [(comm.size + 1) / 2 if comm.rank == root else mine] * 2


def test_all_gather_and_into_tensor(comm):
    mine = dt.arange(6, dtype=dt.float64).reshape(2, 3) + 100 * comm.rank
    out = [dt.zeros(2, 3, dtype=dt.float64) for _ in range(comm.size)]
    dist.all_gather(out, mine)
    flat = dt.zeros(2 * comm.size, 3, dtype=dt.float64)
    dist.all_gather_into_tensor(flat, mine)
    stacked = dt.zeros(comm.size, 2, 3, dtype=dt.float64)
    dist.all_gather_into_tensor(stacked, mine)
    expected = numpy.stack([numpy.arange(6).reshape(2, 3) + 100 * r for r in range(comm.size)])
    numpy.testing.assert_array_equal(numpy.stack([o.numpy() for o in out]), expected)
    numpy.testing.assert_array_equal(flat.numpy(), expected.reshape(-1, 3))
    numpy.testing.assert_array_equal(stacked.numpy(), expected)


def test_reduce_scatter_and_tensor(comm):
    n = comm.size
    inputs = [dt.full((2, 2), float(10 * r + comm.rank)) for r in range(n)]
    out = dt.zeros(2, 2)
    dist.reduce_scatter(out, inputs, op=R.SUM)
    big = dt.arange(n * 4, dtype=dt.float32).reshape(n * 2, 2) * (comm.rank + 1)
    block = dt.zeros(2, 2)
    dist.reduce_scatter_tensor(block, big, op=R.MAX)
    averaged = dt.zeros(2, 2)
    dist.reduce_scatter_tensor(averaged, big.reshape(n, 2, 2), op=R.AVG)
    ranks = sum(range(n))
    assert out.tolist() == [[10.0 * comm.rank * n + ranks] * 2] * 2
    mine = numpy.arange(n * 4, dtype=numpy.float32).reshape(n, 2, 2)[comm.rank]
    numpy.testing.assert_array_equal(block.numpy(), mine * n)
    numpy.testing.assert_allclose(averaged.numpy(), mine * (n + 1) / 2)


@pytest.mark.parametrize("root", ["first", "last"])
def test_gather_and_scatter(comm, root):
    root = 0 if root == "first" else comm.size - 1
    is_root = comm.rank == root
    gathered = [dt.zeros(3, dtype=dt.int64) for _ in range(comm.size)] if is_root else None
    dist.gather(dt.full((3,), comm.rank * 7, dtype=dt.int64), gathered, dst=root)
    pieces = [dt.full((2,), 5.0 * r) for r in range(comm.size)] if is_root else None
    mine = dt.zeros(2)
    dist.scatter(mine, pieces, src=root)
    if is_root:
        assert [g.tolist() for g in gathered] == [[7 * r] * 3 for r in range(comm.size)]
    assert mine.tolist() == [5.0 * comm.rank] * 2


def test_collectives_on_a_sub_group(comm):
    sub = comm.split(comm.rank % 2)
    mates = [r for r in range(comm.size) if r % 2 == comm.rank % 2]
    t = dt.tensor([float(comm.rank)])
    dist.all_reduce(t, group=sub)
    assert t.tolist() == [sum(mates)]
    assert (dist.get_rank(sub), dist.get_world_size(sub)) == (mates.index(comm.rank), len(mates))


# ---------------------------------------------------------------- point to point, objects
@pytest.mark.mpi(min_size=2)
def test_send_recv_ring(comm):
    right, left = (comm.rank + 1) % comm.size, (comm.rank - 1) % comm.size
    got, anyone = dt.zeros(3), dt.zeros(2, dtype=dt.int64)
    # NOTE: small messages go eagerly, so both sends return before the matching receives
    dist.send(dt.full((3,), float(comm.rank)), dst=right, tag=5)
    dist.send(dt.full((2,), 10 + comm.rank, dtype=dt.int64), dst=right, tag=6)
    sender_any = dist.recv(anyone, tag=6)
    sender = dist.recv(got, src=left, tag=5)
    assert (sender, sender_any) == (left, left)
    assert got.tolist() == [float(left)] * 3 and anyone.tolist() == [10 + left] * 2


@pytest.mark.mpi(min_size=2)
def test_isend_irecv_exchange_both_ways(comm):
    right, left = (comm.rank + 1) % comm.size, (comm.rank - 1) % comm.size
    big = 1 << 18  # NOTE: 2 MB each way: blocking sends in a ring would wait on each other
    from_left, from_right = dt.zeros(big), dt.zeros(big)
    works = [dist.irecv(from_left, src=left), dist.irecv(from_right, src=right, tag=1),
             dist.isend(dt.full((big,), float(comm.rank)), dst=right),
             dist.isend(dt.full((big,), -float(comm.rank)), dst=left, tag=1)]
    done = [w.wait() for w in works]
    assert done == [True] * 4 and all(w.is_completed() for w in works)
    assert float(from_left.array[0]) == left and float(from_left.array[-1]) == left
    assert float(from_right.array[-1]) == -right


def test_object_collectives(comm):
    everyone = [None] * comm.size
    dist.all_gather_object(everyone, {"rank": comm.rank, "pair": (comm.rank, "x")})
    root = comm.size - 1
    sent = [{"lr": 0.1}, (1, 2), "text"] if comm.rank == root else [None, None, None]
    dist.broadcast_object_list(sent, src=root)
    gathered = [None] * comm.size if comm.rank == 0 else None
    dist.gather_object(comm.rank * 2, gathered, dst=0)
    assert everyone == [{"rank": r, "pair": (r, "x")} for r in range(comm.size)]
    assert sent == [{"lr": 0.1}, (1, 2), "text"]
    if comm.rank == 0:
        assert gathered == [2 * r for r in range(comm.size)]


# ---------------------------------------------------------------- errors (every rank alike)
def test_non_tensor_arguments_name_the_call_and_rank(comm):
    rank = comm.rank
    with pytest.raises(TypeError, match=rf"all_reduce \(rank {rank}\): tensor must be a "
                                        r"disttrain Tensor, got ndarray"):
        dist.all_reduce(numpy.ones(2))
    with pytest.raises(TypeError, match=rf"all_gather \(rank {rank}\): tensor_list\[0\] must "
                                        r"be a disttrain Tensor, got float"):
        dist.all_gather([1.0] * comm.size, dt.ones(1))
    with pytest.raises(TypeError, match=rf"send \(rank {rank}\): tensor must be a disttrain "
                                        r"Tensor, got list"):
        dist.send([1.0], dst=0)
    with pytest.raises(TypeError, match=rf"all_reduce \(rank {rank}\): op must be a "
                                        r"dist.ReduceOp \(e.g. dist.ReduceOp.SUM\), got 'sum'"):
        dist.all_reduce(dt.ones(1), op="sum")
    with pytest.raises(TypeError, match=rf"allreduce_ \(rank {rank}\): expected a disttrain "
                                        r"Tensor or a numpy/cupy array, got float"):
        comm.allreduce_(1.0)


def test_comm_allreduce_accepts_tensors(comm):
    t = dt.full((2,), float(comm.rank))
    assert comm.allreduce_(t) is t
    gathered = comm.allgather(dt.full((1,), float(comm.rank)))
    assert isinstance(gathered, dt.Tensor) and gathered.tolist() == [[r] for r in range(comm.size)]
    assert t.tolist() == [sum(range(comm.size))] * 2


def test_list_length_shape_and_dtype_mismatches(comm):
    rank, size = comm.rank, comm.size
    with pytest.raises(ValueError, match=rf"all_gather \(rank {rank}\): tensor_list must hold "
                                         rf"one Tensor per rank \({size}\), got {size + 1}"):
        dist.all_gather([dt.zeros(2) for _ in range(size + 1)], dt.zeros(2))
    shapes = [dt.zeros(2) for _ in range(size - 1)] + [dt.zeros(3)]
    with pytest.raises(ValueError, match=rf"all_gather \(rank {rank}\): tensor_list\[{size - 1}\]"
                                         r" has shape \(3,\) dtype float32, expected shape \(2,\) "
                                         r"dtype float32"):
        dist.all_gather(shapes, dt.zeros(2))
    dtypes = [dt.zeros(2, dtype=dt.float64) for _ in range(size)]
    with pytest.raises(ValueError, match=rf"reduce_scatter \(rank {rank}\): input_list\[0\] has "
                                         r"shape \(2,\) dtype float64, expected shape \(2,\) "
                                         r"dtype float32"):
        dist.reduce_scatter(dt.zeros(2), dtypes)
    with pytest.raises(ValueError, match=rf"all_gather_into_tensor \(rank {rank}\): "
                                         rf"output_tensor must have {size} x 2 elements of dtype "
                                         r"float32 .* got shape \(1,\) dtype float32"):
        dist.all_gather_into_tensor(dt.zeros(1), dt.zeros(2))


def test_ranks_out_of_range_and_ops_for_the_wrong_dtype(comm):
    rank, size = comm.rank, comm.size
    with pytest.raises(ValueError, match=rf"broadcast \(rank {rank}\): src={size} is out of "
                                         rf"range for a group of {size} rank\(s\) \(expected 0 "
                                         rf"<= src < {size}\)"):
        dist.broadcast(dt.ones(1), src=size)
    with pytest.raises(ValueError, match=rf"reduce \(rank {rank}\): dst=-1 is out of range"):
        dist.reduce(dt.ones(1), dst=-1)
    with pytest.raises(TypeError, match=rf"broadcast \(rank {rank}\): src must be an int rank, "
                                        r"got None"):
        dist.broadcast(dt.ones(1))
    with pytest.raises(ValueError, match=rf"send \(rank {rank}\): dst={rank} is this rank "
                                         r"itself"):
        dist.send(dt.ones(1), dst=rank)
    with pytest.raises(TypeError, match=rf"all_reduce \(rank {rank}\): ReduceOp.AVG needs a "
                                        r"floating-point tensor, got dtype int64"):
        dist.all_reduce(dt.ones(1, dtype=dt.int64), op=R.AVG)
    with pytest.raises(TypeError, match=rf"all_reduce \(rank {rank}\): ReduceOp.BAND needs an "
                                        r"integer or bool tensor, got dtype float32"):
        dist.all_reduce(dt.ones(1), op=R.BAND)
    with pytest.raises(ValueError, match=rf"gather \(rank {rank}\): gather_list must hold one "
                                         rf"Tensor per rank \({size}\), got {size + 1}"
                                         if rank == 0 else r"gather_list must be None \(or "
                                         r"empty\) on ranks other than dst=0, got"):
        dist.gather(dt.ones(1), [dt.ones(1)] * (size + 1), dst=0)
    with pytest.raises(ValueError, match=rf"all_gather_object \(rank {rank}\): the object list "
                                         rf"must be a list of {size} entries"):
        dist.all_gather_object([], 1)


def test_all_reduce_of_a_0d_loss(comm):
    """The usual logging line: a scalar loss (0-d, from a graph) averaged over ranks."""
    weight = dt.ones(3, requires_grad=True)
    loss = (weight * float(comm.rank + 1)).sum()
    dist.all_reduce(loss, op=R.AVG)
    total = dt.zeros(1)
    total += loss.detach()
    dist.all_reduce(total)
    assert loss.shape == () and f"{loss.item():.2f}" == f"{3 * (comm.size + 1) / 2:.2f}"
    assert total.item() == pytest.approx(3 * comm.size * (comm.size + 1) / 2)
