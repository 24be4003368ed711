"""torch.distributed's API before any process group exists (no MPI is started here): every
call raises torch's "Default process group has not been initialized" naming the call; bad
backends and arguments are refused before MPI starts; DistributedSampler's default rank and
size come from the group recorded in disttrain.env; nn.parallel reaches DDP lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import disttrain as dt
import disttrain.distributed as dist
import disttrain.nn as nn
from disttrain import env
from disttrain.utils.data.distributed import DistributedSampler

NOT_INITIALIZED = r"Default process group has not been initialized, please make sure to call " \
                  r"init_process_group"

CALLS = {
    "all_reduce": lambda: dist.all_reduce(dt.ones(2)),
    "broadcast": lambda: dist.broadcast(dt.ones(2), src=0),
    "reduce": lambda: dist.reduce(dt.ones(2), dst=0),
    "all_gather": lambda: dist.all_gather([dt.ones(2)], dt.ones(2)),
    "all_gather_into_tensor": lambda: dist.all_gather_into_tensor(dt.ones(2), dt.ones(2)),
    "reduce_scatter": lambda: dist.reduce_scatter(dt.ones(2), [dt.ones(2)]),
    "reduce_scatter_tensor": lambda: dist.reduce_scatter_tensor(dt.ones(2), dt.ones(2)),
    "gather": lambda: dist.gather(dt.ones(2), [dt.ones(2)], dst=0),
    "scatter": lambda: dist.scatter(dt.ones(2), [dt.ones(2)], src=0),
    "send": lambda: dist.send(dt.ones(2), dst=1),
    "recv": lambda: dist.recv(dt.ones(2), src=1),
    "isend": lambda: dist.isend(dt.ones(2), dst=1),
    "irecv": lambda: dist.irecv(dt.ones(2)),
    "barrier": lambda: dist.barrier(),
    "all_gather_object": lambda: dist.all_gather_object([None], 1),
    "broadcast_object_list": lambda: dist.broadcast_object_list([1], src=0),
    "gather_object": lambda: dist.gather_object(1, [None], dst=0),
    "get_backend": lambda: dist.get_backend(),
    "destroy_process_group": lambda: dist.destroy_process_group(),
    "DistributedDataParallel": lambda: nn.parallel.DistributedDataParallel(nn.Linear(2, 2)),
}  # fmt: skip


@pytest.fixture(autouse=True)
def _no_group(monkeypatch):
    """Every test here runs with no group initialised. NOTE: an earlier in-process test (an
    example's main() with --checkpoint-dir) may have called dist.init(); MPI cannot stop, so
    the group is hidden for the test (as destroy_process_group would) and restored after."""
    import sys

    from disttrain import env

    if dist.is_initialized():
        world = sys.modules[dist.is_initialized.__module__]  # where the group lives
        monkeypatch.setattr(world._World, "active", False)
        monkeypatch.setattr(env, "_group", [None])
    assert not dist.is_initialized()


@pytest.mark.parametrize("name", sorted(CALLS))
def test_calls_before_init_raise_torchs_error_naming_the_call(name):
    with pytest.raises(ValueError, match=rf"^{name}: {NOT_INITIALIZED}.*dist.init_process_group"):
        CALLS[name]()


@pytest.mark.parametrize("backend", ["nccl", "NCCL"])
def test_nccl_is_refused_naming_the_mpi_backends(backend):
    with pytest.raises(RuntimeError, match=r"init_process_group: backend 'nccl' is not "
                                           r"available.*cupy.*Pass backend='mpi' \(or 'gloo'"):
        dist.init_process_group(backend=backend)


def test_unknown_backend_store_and_timeout_are_refused():
    with pytest.raises(ValueError, match=r"backend must be None, 'mpi' or 'gloo' \(all mean MPI "
                                         r"here\), got 'ucc'"):
        dist.init_process_group("ucc")
    with pytest.raises(ValueError, match=r"store must be None: MPI's launcher"):
        dist.init_process_group("gloo", store=object())
    with pytest.raises(TypeError, match=r"timeout must be a datetime.timedelta or None, got int"):
        dist.init_process_group("gloo", timeout=30)
    assert not dist.is_initialized()


def test_availability_and_names():
    assert dist.is_available() and dist.is_mpi_available() and not dist.is_nccl_available()
    assert dist.group.WORLD is None and dist.GroupMember is dist.group
    assert (dist.Backend.MPI, dist.Backend.GLOO, dist.Backend.NCCL) == ("mpi", "gloo", "nccl")
    assert [op.name for op in dist.ReduceOp] == [
        "SUM", "PRODUCT", "MIN", "MAX", "AVG", "BAND", "BOR", "BXOR"]
    work = dist.Work()
    assert work.is_completed() and work.wait() is True


def test_distributed_sampler_needs_a_group_or_its_arguments():
    with pytest.raises(ValueError, match=r"num_replicas and rank are required \(got "
                                         r"num_replicas=None, rank=None\) when no process group "
                                         r"is initialised: call dist.init_process_group\(\)"):
        DistributedSampler(range(8))
    with pytest.raises(ValueError, match=r"num_replicas=None, rank=1\)"):
        DistributedSampler(range(8), rank=1)
    assert len(DistributedSampler(range(8), num_replicas=4, rank=1)) == 2


def test_distributed_sampler_defaults_to_the_recorded_group():
    exported = {}
    env.record_process_group(env.ProcessGroup(rank=1, size=4, local_rank=1, local_size=2),
                             environ=exported)
    try:
        sampler = DistributedSampler(range(10), shuffle=False)
        partial = DistributedSampler(range(10), num_replicas=2, shuffle=False)
    finally:
        env.forget_process_group()
    assert (sampler.num_replicas, sampler.rank, list(sampler)) == (4, 1, [1, 5, 9])
    assert (partial.num_replicas, partial.rank) == (2, 1)
    assert exported == {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1",
                        "LOCAL_WORLD_SIZE": "2"}
    assert env.process_group() is None


def test_torchrun_world_from_the_environment():
    assert env.torchrun_world({}) is None
    assert env.torchrun_world({"RANK": "3"}) is None
    assert env.torchrun_world({"RANK": "3", "WORLD_SIZE": "4"}) == (3, 4)
    with pytest.raises(ValueError, match=r"RANK='x', WORLD_SIZE='4': expected integers"):
        env.torchrun_world({"RANK": "x", "WORLD_SIZE": "4"})


def test_comm_allreduce_rejects_what_is_not_an_array():
    comm = object.__new__(dist.Communicator)  # NOTE: no MPI: the type check comes first
    comm.rank = 0
    for value, name in ((3.0, "float"), ([1.0, 2.0], "list")):
        with pytest.raises(TypeError, match=rf"allreduce_ \(rank 0\): expected a disttrain "
                                            rf"Tensor or a numpy/cupy array, got {name}"):
            comm.allreduce_(value)


def test_nn_parallel_names_ddp_without_importing_distributed():
    code = ("import sys, disttrain as dt; p = dt.nn.parallel;"
            "assert 'DistributedDataParallel' in dir(p);"
            "assert not any(m.startswith('disttrain.distributed') for m in sys.modules), 1;"
            "D = p.DistributedDataParallel; import disttrain.distributed as dist;"
            "assert D is dist.DistributedDataParallel and issubclass(D, dist.DataParallel);"
            "assert 'mpi4py.MPI' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_group_must_be_none_world_or_a_communicator():
    for call in (dist.get_rank, dist.get_world_size):
        with pytest.raises(TypeError, match=rf"{call.__name__}: group must be None, "
                                            r"dist.group.WORLD or a Communicator, got str"):
            call("world")
    with pytest.raises(TypeError, match=r"all_reduce: group must be None, .* got int"):
        dist.all_reduce(dt.ones(1), group=0)


def test_a_torchrun_started_process_is_refused_before_mpi_starts(monkeypatch):
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ValueError, match=r"^init_process_group: RANK=3, WORLD_SIZE=4 in the "
                                         r"environment \(torchrun's\?\) but no MPI launcher "
                                         r"started this process. Start N ranks with `mpirun"):
        dist.init_process_group("gloo")
    assert not dist.is_initialized()

