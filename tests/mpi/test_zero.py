"""ZeroRedundancyOptimizer on every rank: after N steps the parameters equal DataParallel with
the plain optimizer (float64, <= 1e-10), each rank holds ~1/size of the optimizer state, and
the state consolidates, checkpoints and resumes (also at another world size).

The model's 74 parameters (Linear(5, 7), Linear(7, 4)) split unevenly over 3 and 4 ranks;
every rank trains on its own batch (seeded by rank), so the averaging is exercised.
"""

from __future__ import annotations

import contextlib

import numpy
import pytest

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn as nn
import disttrain.optim as optim
from disttrain.distributed import comm_hooks

STEPS = 4
TOL = 1e-10
TINY_MB = 1e-6  # every parameter a bucket of its own: reduce-scatters across bucket edges

OPTIMIZERS = {
    "sgd": (optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    "adam": (optim.Adam, {"lr": 0.01, "amsgrad": True}),
    "adamw": (optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
    "rmsprop": (optim.RMSprop, {"lr": 0.01, "momentum": 0.5, "centered": True}),
    "adadelta": (optim.Adadelta, {"lr": 1.0}),
    "adagrad": (optim.Adagrad, {"lr": 0.1}),
    "nadam": (optim.NAdam, {"lr": 0.01}),
    "radam": (optim.RAdam, {"lr": 0.01}),
}


def make_model(seed: int = 0) -> nn.Module:
    dt.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 4)).to(dt.float64)


def batches(rank: int, steps: int = STEPS, seed: int = 0) -> list:
    rng = numpy.random.default_rng(1000 * seed + rank)
    return [dt.tensor(rng.standard_normal((3, 5))) for _ in range(steps)]


def train(model, opt, xs, clip=None, sched=None) -> list:
    norms = []
    for x in xs:
        opt.zero_grad()
        (model(x) ** 2).mean().backward()
        if clip is not None:
            norms.append(float(clip()))
        opt.step()
        if sched is not None:
            sched.step()
    return norms


def params(model) -> list:
    return [p.array.copy() for p in model.parameters()]


def max_diff(a: list, b: list) -> float:
    return max(float(numpy.max(numpy.abs(x - y))) for x, y in zip(a, b, strict=True))


def reference(comm, name: str, steps: int = STEPS):
    """Parameters (and the plain optimizer) after DataParallel + the plain optimizer."""
    cls, kwargs = OPTIMIZERS[name]
    dp = dist.DataParallel(make_model(), comm=comm)
    opt = cls(dp.parameters(), **kwargs)
    train(dp, opt, batches(comm.rank, steps))
    dp.remove()
    return params(dp.module), opt


@pytest.mark.parametrize("stage", [1, 2])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_equals_dataparallel_with_the_plain_optimizer(comm, name, stage):
    expected, _ = reference(comm, name)
    cls, kwargs = OPTIMIZERS[name]
    dp = dist.DataParallel(make_model(seed=7 * comm.rank), comm=comm)  # rank 0 wins
    opt = dist.ZeroRedundancyOptimizer(dp.parameters(), cls, comm=comm, stage=stage, **kwargs)
    train(dp, opt, batches(comm.rank))
    dp.remove()
    assert max_diff(params(dp.module), expected) <= TOL


@pytest.mark.parametrize("stage", [1, 2])
def test_buckets_of_one_parameter_and_no_dataparallel(comm, stage):
    expected, _ = reference(comm, "adam")
    cls, kwargs = OPTIMIZERS["adam"]
    dp = dist.DataParallel(make_model(), comm=comm, bucket_cap_mb=TINY_MB,
                           first_bucket_cap_mb=TINY_MB)
    opt = dist.ZeroRedundancyOptimizer(dp.parameters(), cls, comm=comm, stage=stage, **kwargs)
    train(dp, opt, batches(comm.rank))
    dp.remove()
    alone = make_model()  # no DataParallel: step() reduce-scatters the local .grads itself
    opt_alone = dist.ZeroRedundancyOptimizer(alone.parameters(), cls, comm=comm, stage=stage,
                                             **kwargs)
    train(alone, opt_alone, batches(comm.rank))
    assert max_diff(params(dp.module), expected) <= TOL
    assert max_diff(params(alone), expected) <= TOL


@pytest.mark.parametrize("stage", [1, 2])
def test_reduce_scatter_on_the_communication_thread(comm, stage):
    expected, _ = reference(comm, "adamw")
    cls, kwargs = OPTIMIZERS["adamw"]
    dp = dist.DataParallel(make_model(), comm=comm, overlap=True, bucket_cap_mb=TINY_MB,
                           first_bucket_cap_mb=TINY_MB)
    opt = dist.ZeroRedundancyOptimizer(dp.parameters(), cls, comm=comm, stage=stage, **kwargs)
    train(dp, opt, batches(comm.rank))
    dp.remove()
    assert max_diff(params(dp.module), expected) <= TOL


def test_stage_2_frees_the_gradients_stage_1_keeps_local_ones(comm):
    for stage in (1, 2):
        dp = dist.DataParallel(make_model(), comm=comm)
        opt = dist.ZeroRedundancyOptimizer(dp.parameters(), optim.SGD, comm=comm, stage=stage,
                                           lr=0.1)
        x = batches(comm.rank, 1)[0]
        (dp(x) ** 2).mean().backward()
        grads = [p.grad for p in dp.parameters()]
        dp.remove()
        if stage == 1:  # this rank's own gradient, not the mean
            local = make_model()
            (local(x) ** 2).mean().backward()
            assert max_diff([g.array for g in grads], [p.grad.array for p in
                                                         local.parameters()]) <= TOL
        else:
            assert all(g is None for g in grads)
        del opt


def test_clip_grad_norm_is_the_global_norm(comm):
    dp = dist.DataParallel(make_model(), comm=comm)
    opt = optim.SGD(dp.parameters(), lr=0.5)
    norms = train(dp, opt, batches(comm.rank),
                  clip=lambda: nn.utils.clip_grad_norm_(dp.parameters(), 0.05))
    dp.remove()
    dpz = dist.DataParallel(make_model(), comm=comm)
    zero = dist.ZeroRedundancyOptimizer(dpz.parameters(), optim.SGD, comm=comm, lr=0.5)
    zero_norms = train(dpz, zero, batches(comm.rank), clip=lambda: zero.clip_grad_norm_(0.05))
    dpz.remove()
    assert numpy.allclose(norms, zero_norms, rtol=1e-12, atol=0)
    assert max_diff(params(dpz.module), params(dp.module)) <= TOL


def test_lr_scheduler_and_param_groups(comm):
    def groups(model):
        first, second = model[0], model[2]
        return [{"params": first.parameters()}, {"params": second.parameters(), "lr": 0.05}]

    results = []
    for sharded in (False, True):
        dp = dist.DataParallel(make_model(), comm=comm)
        opt = (dist.ZeroRedundancyOptimizer(groups(dp.module), optim.Adam, comm=comm, lr=0.01)
               if sharded else optim.Adam(groups(dp.module), lr=0.01))
        sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
        train(dp, opt, batches(comm.rank), sched=sched)
        dp.remove()
        results.append((params(dp.module), sched.get_last_lr()))
    assert max_diff(results[0][0], results[1][0]) <= TOL
    assert results[0][1] == results[1][1]
    assert numpy.allclose(results[1][1], [1e-4, 5e-4], rtol=1e-12)


def test_optimizer_state_is_sharded(comm):
    _, plain = reference(comm, "adam")
    dp = dist.DataParallel(make_model(), comm=comm)
    opt = dist.ZeroRedundancyOptimizer(dp.parameters(), optim.Adam, comm=comm,
                                       **OPTIMIZERS["adam"][1])
    train(dp, opt, batches(comm.rank))
    dp.remove()
    unsharded = sum(v.nbytes for s in plain.state.values() for v in s.values()
                    if hasattr(v, "nbytes"))
    mine = opt.optimizer_state_bytes()
    everyone = comm.allgather_obj(mine)
    total = sum(p.numel() for p in dp.module.parameters())  # 74
    per_element = 3 * 8  # amsgrad: exp_avg, exp_avg_sq, max_exp_avg_sq, float64
    assert unsharded == total * per_element
    assert sum(everyone) == unsharded
    assert max(everyone) <= -(-total // comm.size) * per_element
    assert max(everyone) - min(everyone) <= per_element  # remainders spread one each


def test_consolidated_state_dict_is_the_plain_optimizers(comm):
    _, plain = reference(comm, "adam")
    dp = dist.DataParallel(make_model(), comm=comm)
    opt = dist.ZeroRedundancyOptimizer(dp.parameters(), optim.Adam, comm=comm, lr=0.01,
                                       amsgrad=True)
    train(dp, opt, batches(comm.rank))
    dp.remove()
    everywhere = opt.state_dict()  # collective: every rank gets it
    opt.consolidate_state_dict(to=comm.size - 1)
    expected = plain.state_dict()
    for full in [everywhere] + ([opt.state_dict()] if comm.rank == comm.size - 1 else []):
        assert full["param_groups"] == expected["param_groups"]
        assert sorted(full["state"]) == sorted(expected["state"])
        for index, entry in expected["state"].items():
            assert sorted(full["state"][index]) == sorted(entry)
            for key, value in entry.items():
                assert numpy.allclose(full["state"][index][key], value, rtol=0, atol=TOL), key
    if comm.rank != comm.size - 1:
        with pytest.raises(RuntimeError, match=f"rank {comm.rank}.*consolidated on rank "
                                               f"{comm.size - 1}"):
            opt.state_dict()


def test_resume_at_another_world_size(comm):
    """The consolidated state, saved at `size` ranks, resumed on one rank (each rank alone on
    the whole global batch) continues exactly as the `size`-rank run."""
    dp = dist.DataParallel(make_model(), comm=comm)
    opt = dist.ZeroRedundancyOptimizer(dp.parameters(), optim.Adam, comm=comm, lr=0.01)
    train(dp, opt, batches(comm.rank))
    full, saved = opt.state_dict(), params(dp.module)
    later = [batches(r, 3, seed=1) for r in range(comm.size)]
    train(dp, opt, later[comm.rank])
    dp.remove()
    alone = comm.split(color=comm.rank)  # a world of one rank
    model = make_model(seed=5)
    model.load_state_dict({n: a for (n, _), a in zip(model.named_parameters(), saved)})
    resumed = dist.ZeroRedundancyOptimizer(model.parameters(), optim.Adam, comm=alone, lr=0.5)
    resumed.load_state_dict(full)
    for step in range(3):  # the mean over ranks of per-rank means = the mean of the whole
        resumed.zero_grad()
        sum((model(xs[step]) ** 2).mean() for xs in later).__truediv__(comm.size).backward()
        resumed.step()
    assert resumed.param_groups[0]["lr"] == 0.01
    assert max_diff(params(model), params(dp.module)) <= TOL


def test_checkpoint_manager_resume_is_bit_identical(comm, mpi_tmp_path):
    def setup(seed):
        dp = dist.DataParallel(make_model(seed), comm=comm)
        return dp, dist.ZeroRedundancyOptimizer(dp.parameters(), optim.RMSprop, comm=comm,
                                                stage=2, lr=0.01, momentum=0.9)

    dp, opt = setup(0)
    ckpt = dist.CheckpointManager(str(mpi_tmp_path), comm)
    train(dp, opt, batches(comm.rank, 2))
    ckpt.save(2, model=dp, optimizer=opt)
    ckpt.wait()
    train(dp, opt, batches(comm.rank, 3, seed=1))
    dp.remove()
    expected = params(dp.module)
    ckpt.close()
    dp, opt = setup(9)
    resumed = dist.CheckpointManager(str(mpi_tmp_path), comm)
    step = resumed.restore(model=dp, optimizer=opt)
    train(dp, opt, batches(comm.rank, 3, seed=1))
    dp.remove()
    resumed.close()
    assert step == 2
    assert all(numpy.array_equal(a, b) for a, b in zip(expected, params(dp.module)))


def test_no_sync_accumulation(comm):
    results = []
    for sharded in (False, True):
        dp = dist.DataParallel(make_model(), comm=comm)
        opt = (dist.ZeroRedundancyOptimizer(dp.parameters(), optim.SGD, comm=comm, lr=0.1,
                                            momentum=0.9)
               if sharded else optim.SGD(dp.parameters(), lr=0.1, momentum=0.9))
        xs = batches(comm.rank, 4)
        for first, second in ((xs[0], xs[1]), (xs[2], xs[3])):
            opt.zero_grad()
            with dp.no_sync():
                (dp(first) ** 2).mean().backward()
            (dp(second) ** 2).mean().backward()
            opt.step()
        dp.remove()
        results.append(params(dp.module))
    assert max_diff(*results) <= TOL


def test_refusals_name_the_rank_and_the_fix(comm):
    model = make_model()
    where = f"rank {comm.rank}"
    with pytest.raises(ValueError, match=f"{where}.*LBFGS is not element-wise"):
        dist.ZeroRedundancyOptimizer(model.parameters(), optim.LBFGS, comm=comm)
    with pytest.raises(ValueError, match=f"{where}.*stage must be 1 or 2, got 3"):
        dist.ZeroRedundancyOptimizer(model.parameters(), optim.SGD, comm=comm, stage=3, lr=1)
    with pytest.raises(TypeError, match=f"{where}.*optimizer_class must be an Optimizer"):
        dist.ZeroRedundancyOptimizer(model.parameters(), "adam", comm=comm)
    dp = dist.DataParallel(model, comm=comm)
    with pytest.raises(ValueError, match=f"{where}.*all the trainable parameters of one "
                                         "DataParallel"):
        dist.ZeroRedundancyOptimizer(list(dp.parameters())[:2], optim.SGD, comm=comm, lr=1)
    opt = dist.ZeroRedundancyOptimizer(dp.parameters(), optim.SGD, comm=comm, lr=1)
    with pytest.raises(RuntimeError, match=f"add_param_group \\({where}\\)"):
        opt.add_param_group({"params": [nn.Parameter(dt.zeros(2))]})
    dp.remove()
    dp = dist.DataParallel(make_model(), comm=comm)
    dp.register_comm_hook(None, comm_hooks.fp16_compress_hook)
    with pytest.raises(RuntimeError, match=f"{where}.*already has a comm hook"):
        dist.ZeroRedundancyOptimizer(dp.parameters(), optim.SGD, comm=comm, lr=1)
    dp.remove()


def test_gradients_in_another_memory_order_than_their_parameters(comm):
    """A gradient laid out C-order for a column-major weight (or the reverse) is still
    sharded element for element."""
    def model():
        m = make_model()
        m[0].weight.array = numpy.asfortranarray(m[0].weight.array)
        m[2].weight.array = numpy.ascontiguousarray(m[2].weight.array)
        return m

    def flip_grads(m):
        for p in m.parameters():
            g = p.grad.array
            p.grad.array = (numpy.ascontiguousarray(g) if g.flags.f_contiguous
                            else numpy.asfortranarray(g))

    results = []
    for mode in ("dp", "zero", "alone"):
        net = model()
        dp = dist.DataParallel(net, comm=comm, bucket_cap_mb=TINY_MB,
                               first_bucket_cap_mb=TINY_MB) if mode != "alone" else net
        opt = (optim.Adam(dp.parameters(), lr=0.01) if mode == "dp" else
               dist.ZeroRedundancyOptimizer(dp.parameters(), optim.Adam, comm=comm, lr=0.01))
        for x in batches(comm.rank):
            opt.zero_grad()
            with dp.no_sync() if mode != "alone" else contextlib.nullcontext():
                (dp(x) ** 2).mean().backward()
            flip_grads(net)
            if mode != "alone":
                dp.sync_grads()
            opt.step()
        if mode != "alone":
            dp.remove()
        results.append(params(net))
    assert max_diff(results[0], results[1]) <= TOL
    assert max_diff(results[0], results[2]) <= TOL


@pytest.mark.parametrize("stage", [1, 2])
def test_large_buckets_go_through_the_ring_and_equal_dataparallel(comm, stage, monkeypatch):
    """Buckets of 130 KB and more per rank are reduce-scattered by the Communicator's ring of
    MPI_Sendrecv (ring.py), not MPI_Reduce_scatter: same parameters as DataParallel + Adam, and
    stage 1 still leaves each rank's own gradient in .grad (the ring only reads it)."""
    import disttrain.distributed.ring as ring_module

    calls = []
    real = ring_module.ring_reduce_scatter_sum

    def counting(*args):
        calls.append(args[3])
        return real(*args)

    monkeypatch.setattr(ring_module, "ring_reduce_scatter_sum", counting)
    monkeypatch.setattr(comm._ring, "oversubscribed", False)  # NOTE: CI: 4 ranks on 2 cores

    def big(seed=0):
        dt.manual_seed(seed)
        return nn.Sequential(nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 4)).to(dt.float64)

    xs = [dt.tensor(numpy.random.default_rng(comm.rank + 10 * s).standard_normal((3, 256)))
          for s in range(3)]
    dp = dist.DataParallel(big(), comm=comm)
    train(dp, optim.Adam(dp.parameters(), lr=0.01), xs)
    dp.remove()
    expected = params(dp.module)
    assert not calls or comm.size == 1  # DataParallel all-reduces: no reduce-scatter
    dp = dist.DataParallel(big(seed=3 * comm.rank), comm=comm)
    opt = dist.ZeroRedundancyOptimizer(dp.parameters(), optim.Adam, comm=comm, stage=stage,
                                       lr=0.01)
    train(dp, opt, xs)
    local = big(seed=0)
    local.load_state_dict(dp.module.state_dict())
    (local(xs[0]) ** 2).mean().backward()
    opt.zero_grad()
    (dp(xs[0]) ** 2).mean().backward()
    dp.remove()
    assert max_diff(params(dp.module), expected) <= TOL
    assert (len(calls) > 0) == (comm.size > 1), calls
    if stage == 1:
        assert max_diff([p.grad.array for p in dp.parameters()],
                        [p.grad.array for p in local.parameters()]) <= TOL
