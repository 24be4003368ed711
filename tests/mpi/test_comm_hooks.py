"""DataParallel's comm hooks (register_comm_hook), remove() and the one-wrapper-per-module rule,
on every rank.

The loss of rank r is (r + 1) * sum(Linear(x)) with x all ones, so every gradient entry of rank
r is (r + 1) times the single-rank one: the mean over ranks is (size + 1) / 2 times it and the
sum size * (size + 1) / 2 times it.
"""

from __future__ import annotations

import threading

import numpy
import pytest
from mpi_helpers import shard
from test_data_parallel import (
    TINY_MB,
    all_params_same_on_ranks,
    global_batches,
    make_mlp,
    max_param_diff,
    train,
)

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn as nn
from disttrain.distributed import comm_hooks

IN, OUT = 3, 2


def make_linear() -> nn.Module:
    dt.manual_seed(0)
    return nn.Sequential(nn.Linear(IN, 4), nn.Linear(4, OUT))


def scaled_backward(comm, dp) -> None:
    (dp(dt.ones(1, IN)).sum() * float(comm.rank + 1)).backward()


def local_grads(comm, make=make_linear) -> dict:
    """Rank 0's gradients (factor 1) of the model `make` builds, with no DataParallel."""
    model = make()
    model(dt.ones(1, IN)).sum().backward()
    return {n: p.grad.numpy().copy() for n, p in model.named_parameters()}


def grads_of(module) -> dict:
    return {n: p.grad.numpy().copy() for n, p in module.named_parameters()}


def assert_grads_scaled(grads: dict, unit: dict, factor: float) -> None:
    for name, grad in grads.items():
        numpy.testing.assert_allclose(grad, unit[name] * factor, rtol=1e-6, err_msg=name)


def mean_factor(size: int) -> float:
    return (size + 1) / 2


class Recorder:
    """A user hook: records every call, and sums over ranks instead of averaging."""

    def __init__(self):
        self.calls = []

    def __call__(self, state, bucket) -> None:
        buffer = bucket.buffer()
        state.append((bucket.index(), bucket.is_last(), list(bucket.names), buffer.ndim,
                      buffer.size, threading.current_thread().name))
        buffer *= bucket.comm.size  # NOTE: undoes DataParallel's 1/size: the sum, not the mean
        bucket.comm.allreduce_(buffer)


@pytest.mark.parametrize("overlap", [False, True], ids=["inline", "overlap"])
@pytest.mark.parametrize("cap_mb", [TINY_MB, None], ids=["tiny", "default"])
def test_custom_hook_called_once_per_bucket_and_its_result_lands_in_grad(comm, cap_mb, overlap):
    unit = local_grads(comm)
    dp = dist.DataParallel(make_linear(), bucket_cap_mb=cap_mb, overlap=overlap,
                           first_bucket_cap_mb=cap_mb or 1.0)
    calls = []
    dp.register_comm_hook(calls, Recorder())
    steps, grads = 3, []
    for _ in range(steps):
        dp.module.zero_grad()
        scaled_backward(comm, dp)
        grads.append(grads_of(dp.module))

    sizes = {n: p.numel() for n, p in dp.module.named_parameters()}
    expected = [(i, i == len(dp.buckets) - 1, names, 1, sum(sizes[n] for n in names))
                for i, names in enumerate(dp.buckets)]
    assert [call[:5] for call in calls] == expected * steps
    if overlap and len(dp.buckets) > 1:  # all but the last bucket go to the comm thread
        assert calls[0][5] == "disttrain-allreduce"
    for step_grads in grads:
        assert_grads_scaled(step_grads, unit, comm.size * mean_factor(comm.size))


def test_default_hook_registered_explicitly_is_bit_identical_to_the_default(comm):
    batches = [(shard(x, comm.rank, comm.size), shard(y, comm.rank, comm.size))
               for x, y in global_batches(comm.size, (10,))]
    default, explicit = make_mlp(100 + comm.rank), make_mlp(100 + comm.rank)
    train(dist.DataParallel(default, bucket_cap_mb=1e-3, first_bucket_cap_mb=1e-3), batches)
    dp = dist.DataParallel(explicit, bucket_cap_mb=1e-3, first_bucket_cap_mb=1e-3)
    dp.register_comm_hook(None, comm_hooks.allreduce_hook)
    train(dp, batches)
    for p, q in zip(default.parameters(), explicit.parameters()):
        numpy.testing.assert_array_equal(p.array, q.array)


def test_grad_dtype_float16_is_a_deprecated_shortcut_for_the_fp16_hook(comm):
    batches = [(shard(x, comm.rank, comm.size), shard(y, comm.rank, comm.size))
               for x, y in global_batches(comm.size, (10,))]
    shortcut, hooked = make_mlp(100 + comm.rank), make_mlp(100 + comm.rank)
    with pytest.warns(FutureWarning, match=r"grad_dtype=float16\) is deprecated: call "
                      r"dp\.register_comm_hook\(None, comm_hooks\.fp16_compress_hook\)"):
        dp = dist.DataParallel(shortcut, grad_dtype=dt.float16)
    train(dp, batches)
    dp16 = dist.DataParallel(hooked)
    dp16.register_comm_hook(None, comm_hooks.fp16_compress_hook)
    train(dp16, batches)
    with pytest.raises(RuntimeError, match=r"a comm hook \(fp16_compress_hook\) is already "
                                           "registered"):
        dp.register_comm_hook(None, comm_hooks.allreduce_hook)
    assert max_param_diff(shortcut, hooked) == 0.0


def test_grad_dtype_other_than_float16_raises(comm):
    with pytest.raises(ValueError, match=rf"DataParallel \(rank {comm.rank}\): grad_dtype must "
                                         "be None or float16, got float64"):
        dist.DataParallel(make_linear(), grad_dtype=numpy.float64)


def test_register_twice_raises(comm):
    dp = dist.DataParallel(make_linear())
    dp.register_comm_hook(None, comm_hooks.fp16_compress_hook)
    with pytest.raises(RuntimeError, match=rf"register_comm_hook \(rank {comm.rank}\): a comm "
                       r"hook \(fp16_compress_hook\) is already registered; register_comm_hook "
                       "can be called only once"):
        dp.register_comm_hook(None, comm_hooks.fp16_compress_hook)
    dp.remove()


@pytest.mark.mpi(min_size=2)  # NOTE: one rank with the default hook exchanges nothing
def test_register_after_backward_raises(comm):
    dp = dist.DataParallel(make_linear())
    scaled_backward(comm, dp)
    with pytest.raises(RuntimeError, match=rf"register_comm_hook \(rank {comm.rank}\): must be "
                       "called before the first backward; gradients were already exchanged "
                       "with allreduce_hook"):
        dp.register_comm_hook(None, Recorder())


@pytest.mark.mpi(min_size=2)
def test_register_after_sync_grads_raises_and_bad_hooks_are_refused(comm):
    dp = dist.DataParallel(make_linear())
    with pytest.raises(TypeError, match=r"hook must be callable\(state, bucket\), got str"):
        dp.register_comm_hook(None, "fp16")
    with dp.no_sync():
        scaled_backward(comm, dp)
    dp.sync_grads()
    with pytest.raises(RuntimeError, match="must be called before the first backward"):
        dp.register_comm_hook(None, comm_hooks.allreduce_hook)


def test_hook_that_returns_a_value_raises(comm):
    def future_hook(state, bucket):  # a PyTorch-style hook: returns its result
        comm_hooks.allreduce_hook(state, bucket)
        return bucket.buffer()

    dp = dist.DataParallel(make_linear(), overlap=False)
    dp.register_comm_hook(None, future_hook)
    with pytest.raises(TypeError, match=rf"rank {comm.rank}: comm hook .*future_hook returned a "
                       r"value; a hook leaves the mean in bucket\.buffer\(\), in place"):
        scaled_backward(comm, dp)


def test_remove_stops_reduction_and_the_comm_thread(comm):
    unit = local_grads(comm)
    # NOTE: by identity, not by count: an earlier test's dropped wrapper may end its own comm
    # thread at any moment (when the garbage collector finalizes it)
    before = set(threading.enumerate())
    dp = dist.DataParallel(make_linear(), overlap=True, bucket_cap_mb=TINY_MB,
                           first_bucket_cap_mb=TINY_MB)
    started = [t for t in threading.enumerate() if t not in before]
    scaled_backward(comm, dp)
    averaged = grads_of(dp.module)
    dp.remove()
    dp.remove()  # a second call does nothing
    module = dp.module
    module.zero_grad()
    scaled_backward(comm, module)
    local = grads_of(module)

    assert len(started) == (comm.size > 1)  # one rank: nothing to exchange, no thread
    assert not any(t.is_alive() for t in started)
    assert_grads_scaled(averaged, unit, mean_factor(comm.size))
    assert_grads_scaled(local, unit, comm.rank + 1)  # this rank's own gradients
    with pytest.raises(RuntimeError, match=rf"DataParallel.forward \(rank {comm.rank}\): this "
                                           r"DataParallel was removed by remove\(\); call "
                                           r"dp\.module directly"):
        dp(dt.ones(1, IN))
    for call in (lambda: dp.register_comm_hook(None, Recorder()), dp.sync_grads):
        with pytest.raises(RuntimeError, match="was removed by remove()"):
            call()  # NOTE: registering a hook must not re-attach a removed wrapper


def test_a_dropped_wrapper_comes_off_and_the_module_can_be_wrapped_again(comm):
    """A DataParallel dropped without remove() must not keep averaging (nor block a new
    wrapper): the parameters hold only weak references to it."""
    unit = local_grads(comm)
    module = make_linear()
    first = dist.DataParallel(module)
    first.register_comm_hook(None, Recorder())  # would sum, if it were still attached
    del first
    second = dist.DataParallel(module)  # NOTE: no "already wrapped": the first is gone
    scaled_backward(comm, second)
    grads = grads_of(module)
    hooks = [len(p._post_hooks) for p in module.parameters()]

    assert_grads_scaled(grads, unit, mean_factor(comm.size))
    assert hooks == [1 if comm.size > 1 else 0] * len(hooks)  # only the second's hooks remain


def test_wrapping_twice_raises_on_every_rank_and_reduces_once(comm):
    unit = local_grads(comm)
    module = make_linear()
    dp = dist.DataParallel(module)
    errors = []
    for target in (module, module[1]):  # the module itself, or a part of it
        with pytest.raises(RuntimeError) as error:
            dist.DataParallel(target)
        errors.append(str(error.value))
    scaled_backward(comm, dp)
    once = grads_of(module)

    assert errors[0] == (
        f"DataParallel (rank {comm.rank}): Sequential is already wrapped by a live DataParallel "
        f"on rank(s) {list(range(comm.size))} (parameter '0.weight' on rank 0); a second wrapper "
        "would average its gradients twice. Call remove() on the first DataParallel before "
        "wrapping again")
    assert errors[1].startswith(f"DataParallel (rank {comm.rank}): Linear is already wrapped")
    assert_grads_scaled(once, unit, mean_factor(comm.size))


def test_wrapping_again_after_remove_reduces_once(comm):
    unit = local_grads(comm)
    module = make_linear()
    first = dist.DataParallel(module)
    first.register_comm_hook(None, Recorder())  # would sum, if it were still attached
    first.remove()
    second = dist.DataParallel(module, bucket_cap_mb=TINY_MB, first_bucket_cap_mb=TINY_MB)
    scaled_backward(comm, second)
    grads = grads_of(module)
    identical = all_params_same_on_ranks(comm, module)

    assert_grads_scaled(grads, unit, mean_factor(comm.size))
    assert identical


def test_hook_sees_the_gradients_divided_by_size_and_stats_are_kept(comm):
    unit = local_grads(comm)
    seen = {}

    def peek(state, bucket):
        for name, p in zip(bucket.names, bucket.parameters()):
            seen[name] = p.grad.numpy().copy()
            state.append(numpy.shares_memory(bucket.buffer(), p.grad.array))
        comm_hooks.allreduce_hook(state, bucket)

    cap_mb = 48 / 2**20  # buckets [1.bias, 1.weight] [0.bias] [0.weight]
    dp = dist.DataParallel(make_linear(), bucket_cap_mb=cap_mb, first_bucket_cap_mb=cap_mb)
    grads_in_buffer = []
    dp.register_comm_hook(grads_in_buffer, peek)
    scaled_backward(comm, dp)
    stats = dict(dp.stats)

    assert dp.buckets == [["1.bias", "1.weight"], ["0.bias"], ["0.weight"]]
    assert grads_in_buffer == [True] * len(seen)  # .grads are views of the buffer
    assert_grads_scaled(seen, unit, (comm.rank + 1) / comm.size)
    assert set(stats) == {"comm_s", "wait_s", "bytes"}
    assert stats["bytes"] == 4 * sum(p.numel() for p in dp.module.parameters())
    assert 0.0 < stats["comm_s"] and 0.0 < stats["wait_s"]


@pytest.mark.parametrize("overlap", [False, True], ids=["inline", "overlap"])
def test_hierarchical_hook_trains_as_the_flat_all_reduce(comm, overlap):
    """Nodes of 2 ranks faked on one machine (ranks_per_node=2): intra-node, inter-node and
    intra-node again give the flat all-reduce's mean, up to float32 summation order."""
    batches = [(shard(x, comm.rank, comm.size), shard(y, comm.rank, comm.size))
               for x, y in global_batches(comm.size, (10,))]
    flat, hier = make_mlp(100 + comm.rank), make_mlp(100 + comm.rank)
    train(dist.DataParallel(flat, bucket_cap_mb=1e-3, first_bucket_cap_mb=1e-3), batches)
    dp = dist.DataParallel(hier, bucket_cap_mb=1e-3, first_bucket_cap_mb=1e-3,
                           overlap=overlap)
    dp.register_comm_hook(dist.HierarchicalAllreduce(dp.comm, ranks_per_node=2),
                          comm_hooks.hierarchical_hook)
    train(dp, batches)
    assert max_param_diff(hier, flat) <= 1e-6
    assert all_params_same_on_ranks(comm, hier)


def test_hierarchical_hook_refuses_a_state_that_is_not_one(comm):
    dp = dist.DataParallel(make_linear())
    dp.register_comm_hook(None, comm_hooks.hierarchical_hook)  # NOTE: runs on one rank too
    with pytest.raises(Exception, match=rf"hierarchical_hook \(rank {comm.rank}\): state must "
                                        r"be dist.HierarchicalAllreduce\(dp.comm\).*NoneType"):
        scaled_backward(comm, dp)
