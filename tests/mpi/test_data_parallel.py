"""DataParallel on every rank: N ranks on shards equal one process on the full batch.

Each rank trains on its contiguous shard of a global batch drawn from a fixed seed; the
single-process reference is computed on every rank locally, from the same seed, on the whole
global batch. Models are built with per-rank seeds, so the equivalence also checks that
rank 0's parameters are broadcast at construction.
"""

from __future__ import annotations

import time

import numpy
import pytest
from mpi_helpers import same_on_all_ranks, shard

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn as nn
import disttrain.nn.functional as F
import disttrain.optim as optim
from disttrain.data import DataLoader, DistributedSampler, TensorDataset
from disttrain.distributed import comm_hooks

PER_RANK = 6  # samples per rank per step: the global batch is PER_RANK * size
STEPS = 4
CLASSES = 5
TINY_MB = 1e-6  # 1 byte: every parameter gets a bucket of its own
ATOL = 1e-5  # float32, after STEPS SGD-momentum steps (issue #3)


def make_mlp(seed: int) -> nn.Module:
    dt.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, CLASSES))


def make_cnn(seed: int) -> nn.Module:
    dt.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 2 * 2, CLASSES))


MODELS = {"mlp": (make_mlp, (10,)), "cnn": (make_cnn, (1, 8, 8))}


def global_batches(size: int, sample_shape: tuple, steps: int = STEPS, seed: int = 1234):
    """[(x, y)] of STEPS global batches of PER_RANK * size samples, identical on every rank."""
    rng = numpy.random.default_rng(seed)
    n = PER_RANK * size
    return [(rng.standard_normal((n, *sample_shape)).astype(numpy.float32),
             rng.integers(0, CLASSES, n)) for _ in range(steps)]


def sgd(params):
    return optim.SGD(params, lr=0.1, momentum=0.9)


def train(model, batches) -> None:
    """SGD-momentum steps of mean cross-entropy, one per batch."""
    optimizer = sgd(model.parameters())
    for x, y in batches:
        optimizer.zero_grad()
        F.cross_entropy(model(dt.tensor(x)), dt.tensor(y)).backward()
        optimizer.step()


def max_param_diff(model, reference) -> float:
    return max(float(numpy.abs(p.array - q.array).max())
               for p, q in zip(model.parameters(), reference.parameters()))


def all_params_same_on_ranks(comm, model) -> bool:
    """Every parameter bit-identical on every rank (one collective per parameter)."""
    return all([same_on_all_ranks(comm, p.array) for p in model.parameters()])


@pytest.mark.parametrize("cap_mb", [TINY_MB, 1e-3, None], ids=["tiny", "1KB", "default"])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_equals_single_process_full_batch(comm, kind, cap_mb):
    make, sample_shape = MODELS[kind]
    batches = global_batches(comm.size, sample_shape)
    reference = make(seed=100)
    train(reference, batches)

    model = make(seed=100 + comm.rank)
    dp = dist.DataParallel(model, bucket_cap_mb=cap_mb, first_bucket_cap_mb=cap_mb or 1.0)
    train(dp, [(shard(x, comm.rank, comm.size), shard(y, comm.rank, comm.size))
               for x, y in batches])
    identical = all_params_same_on_ranks(comm, model)

    assert max_param_diff(model, reference) <= ATOL
    assert identical
    n_params = len(list(model.parameters()))
    if cap_mb == TINY_MB:
        assert len(dp.buckets) == n_params
    if cap_mb is None:
        assert len(dp.buckets) == 1  # a few KB: one default bucket
    # NOTE: one rank: the gradients already are the mean, nothing is exchanged
    exchanged = 4 * sum(p.numel() for p in model.parameters()) if comm.size > 1 else 0
    assert dp.stats["bytes"] == exchanged


def test_gradients_are_the_mean_over_ranks(comm):
    """Each rank's loss is rank * sum(w): the gradient after backward is (size - 1) / 2."""
    dp = dist.DataParallel(nn.Linear(3, 2), bucket_cap_mb=TINY_MB, first_bucket_cap_mb=TINY_MB)
    out = dp(dt.ones(1, 3))
    (out.sum() * float(comm.rank)).backward()
    mean = (comm.size - 1) / 2
    numpy.testing.assert_allclose(dp.module.weight.grad.numpy(), numpy.full((2, 3), mean))
    numpy.testing.assert_allclose(dp.module.bias.grad.numpy(), numpy.full(2, mean))


def test_buckets_in_reverse_registration_order(comm):
    names = [n for n, _ in make_mlp(0).named_parameters()]
    tiny = dist.DataParallel(make_mlp(0), bucket_cap_mb=TINY_MB, first_bucket_cap_mb=TINY_MB)
    # bytes, reversed: 2.bias 20, 2.weight 320, 1.bias 64, 1.weight 1024, 0.bias 64, 0.weight 640
    grouped = dist.DataParallel(make_mlp(0), bucket_cap_mb=1e-3, first_bucket_cap_mb=1e-3)
    default = dist.DataParallel(make_mlp(0))
    assert tiny.buckets == [[n] for n in reversed(names)]
    assert grouped.buckets == [["4.bias", "4.weight", "2.bias"], ["2.weight"],
                               ["0.bias", "0.weight"]]
    assert default.buckets == [list(reversed(names))]


def test_rank0_parameters_and_buffers_broadcast_at_construction(comm):
    def make(seed):
        dt.manual_seed(seed)
        return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))

    model = make(100 + comm.rank)
    model[1].running_mean.array[...] = comm.rank
    dist.DataParallel(model, broadcast_buffers=False)
    rank0 = make(100)
    params_identical = all_params_same_on_ranks(comm, model)
    for p, q in zip(model.parameters(), rank0.parameters()):
        numpy.testing.assert_array_equal(p.array, q.array)
    numpy.testing.assert_array_equal(model[1].running_mean.numpy(), numpy.zeros(3))
    assert params_identical


def test_buffers_broadcast_at_forward(comm):
    dt.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    dp = dist.DataParallel(model)
    model[1].running_mean.array[...] = comm.rank + 5
    dp.eval()
    dp(dt.ones(2, 4))
    numpy.testing.assert_array_equal(model[1].running_mean.numpy(), numpy.full(3, 5.0))


def test_no_sync_accumulation_equals_one_full_step(comm):
    """k micro-batches under no_sync, then one synced backward, equal one full-batch step."""
    micro = 3
    batches = global_batches(comm.size, (10,), steps=2)
    reference = make_mlp(seed=100)
    train(reference, batches)

    model = make_mlp(seed=100 + comm.rank)
    dp = dist.DataParallel(model, bucket_cap_mb=TINY_MB, first_bucket_cap_mb=TINY_MB)
    optimizer = sgd(dp.parameters())
    local_grads_differ = []
    for x, y in batches:
        optimizer.zero_grad()
        xs = numpy.split(shard(x, comm.rank, comm.size), micro)
        ys = numpy.split(shard(y, comm.rank, comm.size), micro)
        with dp.no_sync():
            for xm, ym in zip(xs[:-1], ys[:-1]):
                (F.cross_entropy(dp(dt.tensor(xm)), dt.tensor(ym)) / micro).backward()
        local_grads_differ.append(not all([same_on_all_ranks(comm, p.grad.array)
                                           for p in model.parameters()]))
        (F.cross_entropy(dp(dt.tensor(xs[-1])), dt.tensor(ys[-1])) / micro).backward()
        optimizer.step()
    identical = all_params_same_on_ranks(comm, model)

    assert max_param_diff(model, reference) <= ATOL
    assert identical
    assert local_grads_differ == [comm.size > 1] * len(batches)  # no_sync did not communicate


class Branchy(nn.Module):
    """trunk -> [branch] -> head; the branch runs only when asked."""

    def __init__(self, seed: int):
        super().__init__()
        dt.manual_seed(seed)
        self.trunk, self.branch, self.head = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x, use_branch: bool):
        h = self.trunk(x).relu()
        if use_branch:
            h = self.branch(h).tanh()
        return self.head(h)


def branchy_batch(size: int, seed: int = 7):
    rng = numpy.random.default_rng(seed)
    return (rng.standard_normal((PER_RANK * size, 6)).astype(numpy.float32),
            rng.integers(0, 3, PER_RANK * size))


def reference_grads(model, x, y, size: int, use_branch) -> dict:
    """Gradients of mean over ranks of each rank's shard loss, with rank r's branch choice."""
    model.zero_grad()
    for r in range(size):
        xr, yr = dt.tensor(shard(x, r, size)), dt.tensor(shard(y, r, size))
        (F.cross_entropy(model(xr, use_branch(r)), yr) / size).backward()
    return {n: (None if p.grad is None else p.grad.numpy().copy())
            for n, p in model.named_parameters()}


@pytest.mark.parametrize("cap_mb", [TINY_MB, None], ids=["tiny", "default"])
def test_parameter_unused_on_every_rank_gets_zero_grad(comm, cap_mb):
    x, y = branchy_batch(comm.size)
    expected = reference_grads(Branchy(100), x, y, comm.size, lambda r: False)
    dp = dist.DataParallel(Branchy(100 + comm.rank), bucket_cap_mb=cap_mb,
                           first_bucket_cap_mb=cap_mb or 1.0)
    optimizer = sgd(dp.parameters())
    xr, yr = dt.tensor(shard(x, comm.rank, comm.size)), dt.tensor(shard(y, comm.rank, comm.size))
    F.cross_entropy(dp(xr, use_branch=False), yr).backward()
    grads = {n: None if p.grad is None else p.grad.numpy().copy()
             for n, p in dp.module.named_parameters()}
    optimizer.step()  # completes, and again for a second step
    optimizer.zero_grad()
    F.cross_entropy(dp(xr, use_branch=False), yr).backward()
    optimizer.step()
    identical = all_params_same_on_ranks(comm, dp.module)

    for name in ("branch.weight", "branch.bias"):
        assert expected[name] is None
        if comm.size == 1:  # NOTE: one rank: DataParallel exchanges nothing, .grad stays None
            assert grads[name] is None
        else:
            numpy.testing.assert_array_equal(grads[name], numpy.zeros_like(grads[name]))
    for name in ("trunk.weight", "trunk.bias", "head.weight", "head.bias"):
        numpy.testing.assert_allclose(grads[name], expected[name], atol=1e-6, rtol=1e-5)
    assert identical


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("cap_mb", [TINY_MB, None], ids=["tiny", "default"])
def test_parameter_unused_on_some_ranks(comm, cap_mb):
    """Odd ranks use the branch, even ranks do not: its gradient is the mean with zeros."""
    x, y = branchy_batch(comm.size)

    def use_branch(r):
        return r % 2 == 1

    reference = Branchy(100)
    expected = reference_grads(reference, x, y, comm.size, use_branch)
    sgd(reference.parameters()).step()
    dp = dist.DataParallel(Branchy(100 + comm.rank), bucket_cap_mb=cap_mb,
                           first_bucket_cap_mb=cap_mb or 1.0)
    xr, yr = dt.tensor(shard(x, comm.rank, comm.size)), dt.tensor(shard(y, comm.rank, comm.size))
    F.cross_entropy(dp(xr, use_branch=use_branch(comm.rank)), yr).backward()
    grads = {n: p.grad.numpy().copy() for n, p in dp.module.named_parameters()}
    sgd(dp.parameters()).step()
    identical = all_params_same_on_ranks(comm, dp.module)

    for name, grad in grads.items():
        numpy.testing.assert_allclose(grad, expected[name], atol=1e-6, rtol=1e-5)
    assert max_param_diff(dp.module, reference) <= ATOL
    assert identical


def test_no_sync_accumulated_grad_of_parameter_unused_in_synced_backward(comm):
    """The branch runs in the no_sync micro-batch only: its accumulated gradient is still
    averaged when the synced backward does not reach it (torch DDP's rule), not dropped."""
    x, y = branchy_batch(comm.size)
    reference = Branchy(100)
    reference.zero_grad()
    for r in range(comm.size):
        xs, ys = numpy.split(shard(x, r, comm.size), 2), numpy.split(shard(y, r, comm.size), 2)
        for i, use in enumerate((True, False)):
            loss = F.cross_entropy(reference(dt.tensor(xs[i]), use), dt.tensor(ys[i]))
            (loss / (2 * comm.size)).backward()
    dp = dist.DataParallel(Branchy(100 + comm.rank), bucket_cap_mb=TINY_MB,
                           first_bucket_cap_mb=TINY_MB)
    xs = numpy.split(shard(x, comm.rank, comm.size), 2)
    ys = numpy.split(shard(y, comm.rank, comm.size), 2)
    with dp.no_sync():
        (F.cross_entropy(dp(dt.tensor(xs[0]), use_branch=True), dt.tensor(ys[0])) / 2).backward()
    (F.cross_entropy(dp(dt.tensor(xs[1]), use_branch=False), dt.tensor(ys[1])) / 2).backward()
    grads = {n: p.grad.numpy().copy() for n, p in dp.module.named_parameters()}
    identical = all([same_on_all_ranks(comm, g) for g in grads.values()])

    for name, p in reference.named_parameters():
        numpy.testing.assert_allclose(grads[name], p.grad.numpy(), atol=1e-6, rtol=1e-5,
                                      err_msg=name)
    assert identical


def test_shared_parameter_used_twice(comm):
    """A layer applied twice in forward: one gradient, synchronised once."""

    class Tied(nn.Module):
        def __init__(self, seed):
            super().__init__()
            dt.manual_seed(seed)
            self.inp, self.shared, self.out = nn.Linear(10, 8), nn.Linear(8, 8), nn.Linear(8, 5)

        def forward(self, x):
            return self.out(self.shared(self.shared(self.inp(x).relu()).relu()))

    batches = global_batches(comm.size, (10,))
    reference = Tied(100)
    train(reference, batches)
    dp = dist.DataParallel(Tied(100 + comm.rank), bucket_cap_mb=TINY_MB,
                           first_bucket_cap_mb=TINY_MB)
    train(dp, [(shard(x, comm.rank, comm.size), shard(y, comm.rank, comm.size))
               for x, y in batches])
    identical = all_params_same_on_ranks(comm, dp.module)
    assert max_param_diff(dp.module, reference) <= ATOL
    assert identical


def test_sync_grads_explicit(comm):
    """sync_grads() averages gradients that were computed locally under no_sync."""
    dp = dist.DataParallel(nn.Linear(3, 2), bucket_cap_mb=TINY_MB, first_bucket_cap_mb=TINY_MB)
    with dp.no_sync():
        (dp(dt.ones(1, 3)).sum() * float(comm.rank + 1)).backward()
    dp.sync_grads()
    mean = (comm.size + 1) / 2
    numpy.testing.assert_allclose(dp.module.weight.grad.numpy(), numpy.full((2, 3), mean))
    numpy.testing.assert_allclose(dp.module.bias.grad.numpy(), numpy.full(2, mean))


def _construction_error(comm, model) -> tuple[str | None, float]:
    start = time.perf_counter()
    try:
        dist.DataParallel(model, comm=comm)
    except ValueError as e:
        return str(e), time.perf_counter() - start
    return None, time.perf_counter() - start


@pytest.mark.mpi(min_size=2)
def test_mismatched_shapes_raise_on_every_rank(comm):
    error, elapsed = _construction_error(comm, nn.Linear(4, 3 + comm.rank % 2))
    raised = comm.allgather_obj(error is not None)
    assert raised == [True] * comm.size
    assert elapsed < 5
    assert f"DataParallel (rank {comm.rank}): the model differs between ranks" in error
    odd = [r for r in range(1, comm.size) if r % 2]
    for r in odd:
        assert (f"parameter 'weight' has shape (4, 4) dtype float32 on rank {r} but shape "
                f"(3, 4) dtype float32 on rank 0") in error
        assert f"parameter 'bias' has shape (4,) dtype float32 on rank {r}" in error
    assert "on rank 2 " not in error  # rank 2 has rank 0's shapes


@pytest.mark.mpi(min_size=2)
def test_missing_parameter_and_dtype_raise_on_every_rank(comm):
    missing, _ = _construction_error(comm, nn.Linear(4, 3, bias=comm.rank == 0))
    dtype, _ = _construction_error(
        comm, nn.Linear(4, 3, dtype=numpy.float64 if comm.rank == comm.size - 1 else None))
    raised = comm.allgather_obj((missing is not None, dtype is not None))
    assert raised == [(True, True)] * comm.size
    assert "'bias' exists on rank 0 but not on rank 1" in missing
    assert (f"parameter 'weight' has shape (3, 4) dtype float64 on rank {comm.size - 1} but "
            "shape (3, 4) dtype float32 on rank 0") in dtype


@pytest.mark.mpi(min_size=2)
def test_registration_order_mismatch_raises(comm):
    class Pair(nn.Module):
        def __init__(self, flip):
            super().__init__()
            if flip:
                self.b, self.a = nn.Linear(2, 2), nn.Linear(2, 2)
            else:
                self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)

    error, _ = _construction_error(comm, Pair(flip=comm.rank == 1))
    raised = comm.allgather_obj(error is not None)
    assert raised == [True] * comm.size
    assert "rank 1 registers its parameters in a different order than rank 0" in error


def test_model_still_usable_after_a_failed_construction(comm):
    """A matching model after the failed checks above builds and syncs (no stale messages)."""
    dp = dist.DataParallel(nn.Linear(2, 2))
    (dp(dt.ones(1, 2)).sum() * float(comm.rank)).backward()
    numpy.testing.assert_allclose(dp.module.bias.grad.numpy(), (comm.size - 1) / 2)


def test_float16_gradient_exchange_close_to_float32(comm):
    batches = global_batches(comm.size, (10,))
    reference = make_mlp(seed=100)
    train(reference, batches)
    model = make_mlp(seed=100 + comm.rank)
    dp = dist.DataParallel(model, bucket_cap_mb=1e-3, first_bucket_cap_mb=1e-3)
    dp.register_comm_hook(None, comm_hooks.fp16_compress_hook)
    train(dp, [(shard(x, comm.rank, comm.size), shard(y, comm.rank, comm.size))
               for x, y in batches])
    identical = all_params_same_on_ranks(comm, model)
    error = max_param_diff(model, reference)

    assert all(p.grad.dtype == dt.float32 for p in model.parameters())
    # NOTE: the float32 gradient bytes handed to the hook (it sends half of them); a
    # registered hook runs on one rank too
    assert dp.stats["bytes"] == 4 * sum(p.numel() for p in model.parameters())
    # NOTE: float16 keeps 11 significant bits; measured 2.8e-5 (2 ranks) and 1.5e-5 (3 ranks)
    # after 4 steps, against 3e-8 for the float32 exchange
    assert error <= 2e-4, error
    assert identical


def test_with_distributed_sampler_and_loader(comm):
    """The usual loop: DataLoader + DistributedSampler per rank equals one process on the
    union of the ranks' batches."""
    n, batch = 8 * comm.size * 2, 4
    rng = numpy.random.default_rng(5)
    x, y = rng.standard_normal((n, 10)).astype(numpy.float32), rng.integers(0, CLASSES, n)
    dataset = TensorDataset(x, y)

    def indices(r):
        sampler = DistributedSampler(dataset, num_replicas=comm.size, rank=r, seed=3)
        sampler.set_epoch(1)
        return list(sampler)

    steps = len(indices(0)) // batch
    union = [numpy.concatenate([indices(r)[t * batch:(t + 1) * batch] for r in range(comm.size)])
             for t in range(steps)]
    reference = make_mlp(seed=100)
    train(reference, [(x[i], y[i]) for i in union])

    model = make_mlp(seed=100 + comm.rank)
    dp = dist.DataParallel(model, bucket_cap_mb=1e-3, first_bucket_cap_mb=1e-3)
    sampler = DistributedSampler(dataset, num_replicas=comm.size, rank=comm.rank, seed=3)
    sampler.set_epoch(1)
    optimizer = sgd(dp.parameters())
    for xb, yb in DataLoader(dataset, batch_size=batch, sampler=sampler):
        optimizer.zero_grad()
        F.cross_entropy(dp(xb), yb).backward()
        optimizer.step()
    identical = all_params_same_on_ranks(comm, model)

    assert max_param_diff(model, reference) <= ATOL
    assert identical


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_allreduce_mean_is_the_mean_over_ranks(comm, dtype):
    """DataParallel's exchange of a one-gradient bucket (one MPI op for two ranks)."""
    rng = numpy.random.default_rng(comm.rank)
    mine = rng.standard_normal((33, 2000)).astype(dtype)  # over the op's 256 KB minimum
    column_major = numpy.asfortranarray(mine)
    every = comm.allgather(mine)
    comm.allreduce_mean_(mine)
    comm.allreduce_mean_(column_major)
    expected = every.astype(numpy.float64).mean(axis=0)
    tol = 1e-6 if dtype == numpy.float32 else 1e-14
    assert numpy.allclose(mine, expected, rtol=tol, atol=tol)
    big = rng.standard_normal((3, 600_000)).astype(dtype)  # in 2 MB pieces
    every_big = comm.allgather(big)
    comm.allreduce_mean_(big)
    assert numpy.allclose(big, every_big.astype(numpy.float64).mean(axis=0), rtol=tol,
                          atol=tol)
    small = rng.standard_normal(5).astype(dtype)
    every_small = comm.allgather(small)
    comm.allreduce_mean_(small)
    assert numpy.allclose(small, every_small.astype(numpy.float64).mean(axis=0), rtol=tol,
                          atol=tol)
    assert numpy.array_equal(column_major, mine)
    assert same_on_all_ranks(comm, mine)
    with pytest.raises(TypeError, match=f"allreduce_mean_ \\(rank {comm.rank}\\): needs a "
                                        "float array, got int64"):
        comm.allreduce_mean_(numpy.zeros(3, numpy.int64))


def test_one_big_gradient_after_a_cast_is_still_the_mean(comm):
    """A gradient of its own bucket (1 MB and up) keeps its averaging plan between steps;
    after the model is cast to float64 the plan is remade (a float32 1/3 would scale float64
    gradients at 3 ranks: wrong in the 8th digit)."""
    dt.manual_seed(0)
    model = nn.Linear(512, 512, bias=False)  # a 1 MB float32 weight: a direct bucket
    dp = dist.DataParallel(model)
    for dtype in (numpy.float32, numpy.float32, numpy.float64):
        if dtype is numpy.float64:
            model.double()
        grads = [numpy.random.default_rng(r).standard_normal((512, 512)).astype(dtype)
                 for r in range(comm.size)]
        model.weight.grad = dt.tensor(grads[comm.rank].copy())
        dp.sync_grads()
        assert model.weight.grad.dtype == dtype
        numpy.testing.assert_allclose(model.weight.grad.numpy(), numpy.mean(grads, axis=0),
                                      rtol=1e-6 if dtype is numpy.float32 else 1e-13,
                                      atol=1e-6 if dtype is numpy.float32 else 1e-13)
