"""nn.parallel.DistributedDataParallel on every rank: torch's name and signature over
DataParallel. N ranks on shards equal one process on the full batch (as DataParallel's tests),
the state_dict has torch DDP's "module." keys and round-trips through dt.save / dt.load, and
device_ids must name the module's device."""

from __future__ import annotations

import re

import numpy
import pytest
from mpi_helpers import same_on_all_ranks, shard
from test_data_parallel import (
    ATOL,
    CLASSES,
    MODELS,
    all_params_same_on_ranks,
    global_batches,
    make_mlp,
    max_param_diff,
    sgd,
    train,
)

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn as nn
import disttrain.nn.functional as F
from disttrain.distributed import comm_hooks
from disttrain.nn.parallel import DistributedDataParallel as DDP
from disttrain.utils.data import DataLoader, TensorDataset
from disttrain.utils.data.distributed import DistributedSampler


@pytest.fixture
def group(comm):
    """The script's way in: init_process_group (the world again afterwards)."""
    if dist.is_initialized():
        dist.destroy_process_group()
    dist.init_process_group(backend="gloo")
    yield comm
    dist.destroy_process_group()
    dist.init()


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_ddp_equals_single_process_full_batch(group, kind):
    comm = group
    make, sample_shape = MODELS[kind]
    batches = global_batches(comm.size, sample_shape)
    reference = make(seed=100)
    train(reference, batches)

    model = make(seed=100 + comm.rank)
    ddp = DDP(model, device_ids=None, bucket_cap_mb=1e-3)
    train(ddp, [(shard(x, comm.rank, comm.size), shard(y, comm.rank, comm.size))
                for x, y in batches])
    identical = all_params_same_on_ranks(comm, model)

    assert isinstance(ddp, dist.DataParallel) and ddp.module is model
    assert max_param_diff(model, reference) <= ATOL
    assert identical


def test_ddp_with_default_sampler_and_loader_equals_single_process(group):
    """The DDP tutorial's loop: DistributedSampler(dataset) takes rank and size from the group."""
    comm = group
    n, batch = 8 * comm.size * 2, 4
    rng = numpy.random.default_rng(5)
    x, y = rng.standard_normal((n, 10)).astype(numpy.float32), rng.integers(0, CLASSES, n)
    dataset = TensorDataset(x, y)
    sampler = DistributedSampler(dataset, seed=3)
    sampler.set_epoch(1)
    shares = comm.allgather_obj(list(sampler))
    union = [numpy.concatenate([s[t * batch:(t + 1) * batch] for s in shares])
             for t in range(len(shares[0]) // batch)]
    reference = make_mlp(seed=100)
    train(reference, [(x[i], y[i]) for i in union])

    model = DDP(make_mlp(seed=100 + comm.rank))
    optimizer = sgd(model.parameters())
    for xb, yb in DataLoader(dataset, batch_size=batch, sampler=sampler):
        optimizer.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        optimizer.step()
    identical = all_params_same_on_ranks(comm, model.module)

    assert (sampler.num_replicas, sampler.rank) == (comm.size, comm.rank)
    assert max_param_diff(model.module, reference) <= ATOL
    assert identical


def test_no_sync_and_comm_hook(group):
    comm = group
    from disttrain.distributed.algorithms.ddp_comm_hooks import default_hooks  # torch's path

    ddp = DDP(nn.Linear(3, 2))
    ddp.register_comm_hook(None, default_hooks.fp16_compress_hook)
    with ddp.no_sync():
        (ddp(dt.ones(1, 3)).sum() * float(comm.rank + 1)).backward()
    local = ddp.module.bias.grad.numpy().copy()
    (ddp(dt.ones(1, 3)).sum() * float(comm.rank + 1)).backward()
    mean = (comm.size + 1) / 2
    assert default_hooks.fp16_compress_hook is comm_hooks.fp16_compress_hook
    assert default_hooks.allreduce_hook is comm_hooks.allreduce_hook
    numpy.testing.assert_array_equal(local, numpy.full(2, comm.rank + 1.0))
    numpy.testing.assert_allclose(ddp.module.bias.grad.numpy(), numpy.full(2, 2 * mean))


def test_state_dict_has_torch_ddp_keys_and_round_trips(group, mpi_tmp_path):
    comm = group

    def make(seed):
        dt.manual_seed(seed)
        return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))

    ddp = DDP(make(100 + comm.rank))
    keys = list(ddp.state_dict())
    path = mpi_tmp_path / f"ddp-{comm.rank}.safetensors"
    dt.save(ddp.state_dict(), str(path))
    fresh = DDP(make(7), init_sync=False)
    fresh.load_state_dict(dt.load(str(path)))
    plain = make(8)
    plain.load_state_dict({k[len("module."):]: v for k, v in dt.load(str(path)).items()})

    assert keys == ["module." + k for k in make(0).state_dict()]
    assert keys[:3] == ["module.0.weight", "module.0.bias", "module.1.weight"]
    for k, v in ddp.state_dict().items():
        numpy.testing.assert_array_equal(fresh.state_dict()[k], v)
        numpy.testing.assert_array_equal(plain.state_dict()[k[len("module."):]], v)


def test_init_sync_false_keeps_each_ranks_parameters(group):
    comm = group
    dt.manual_seed(100 + comm.rank)
    ddp = DDP(nn.Linear(3, 2), init_sync=False)
    synced = DDP(nn.Linear(3, 2))
    kept = same_on_all_ranks(comm, ddp.module.weight.array)
    assert kept == (comm.size == 1)
    assert same_on_all_ranks(comm, synced.module.weight.array)


def test_device_ids_must_name_the_modules_device(group):
    comm = group
    DDP(nn.Linear(2, 2), device_ids=["cpu"], output_device="cpu").remove()
    for device_ids in ([0], [comm.local_rank], "cpu", ["cpu", "cpu"]):
        with pytest.raises(ValueError, match=rf"DistributedDataParallel \(rank {comm.rank}\): "
                                             rf"device_ids={re.escape(repr(device_ids))} must be "
                                             r"None or a "
                                             r"one-item list naming the one device this rank's "
                                             r"module is on \(cpu\).*pass None for a CPU module"):
            DDP(nn.Linear(2, 2), device_ids=device_ids)
    with pytest.raises(ValueError, match=r"output_device='cuda:0' must be None or the one"):
        DDP(nn.Linear(2, 2), output_device="cuda:0")
    with pytest.raises(TypeError, match=rf"DistributedDataParallel \(rank {comm.rank}\): module "
                                        r"must be a disttrain nn.Module, got function"):
        DDP(lambda x: x)


@pytest.mark.mpi(min_size=2)
def test_model_that_differs_between_ranks_raises_on_every_rank(group):
    comm = group
    with pytest.raises(ValueError) as error:
        DDP(nn.Linear(4, 3 + comm.rank % 2))
    assert str(error.value).startswith(f"DistributedDataParallel (rank {comm.rank}): the model "
                                       "differs between ranks")

