"""DistributedDataParallel: DataParallel under torch's name and signature, so DDP scripts port
(`from disttrain.nn.parallel import DistributedDataParallel as DDP`)."""

from __future__ import annotations

from disttrain.distributed.data_parallel import DataParallel
from disttrain.distributed.process_group import world_comm
from disttrain.nn import Module

__all__ = ["DistributedDataParallel"]


class DistributedDataParallel(DataParallel):
    """torch's DistributedDataParallel over MPI: after `loss.backward()` every gradient is the
    mean over the ranks of the (initialised) process group. It is `dist.DataParallel`: one
    replica per rank, rank 0's parameters and buffers broadcast at construction, gradients
    averaged in buckets during backward, `no_sync()`, `register_comm_hook()`, `.module`, and
    a state_dict whose keys start with "module." as torch DDP's do.

    Differences from torch: `bucket_cap_mb=None` means disttrain's 8 MB (torch: 25 MB);
    parameters unused in a step always get a zero gradient, whatever `find_unused_parameters`
    says, and gradients always live in the buckets, so `find_unused_parameters`,
    `check_reduction`, `gradient_as_bucket_view` and `static_graph` change nothing; a comm hook
    is `hook(state, bucket)` returning None (disttrain.distributed.comm_hooks), not a Future.
    `dim` only mattered for torch's removed multi-device-per-process mode.

    Args:
        module: the model, the same on every rank.
        device_ids: None, or a one-item list naming the device the module is on (a GPU index
            such as `local_rank`, "cuda:0", "cpu").
        output_device: None, or that same device.
        dim: unused (see above).
        broadcast_buffers: re-send rank 0's buffers (BatchNorm statistics) at every forward.
        init_sync: take rank 0's parameters and buffers at construction.
        process_group: None (the world), dist.group.WORLD or a Communicator.
        bucket_cap_mb: bucket size in MB (None: 8).
        find_unused_parameters, check_reduction, gradient_as_bucket_view, static_graph:
            accepted, see above.

    Example:
        >>> dist.init_process_group(backend="gloo")          # under mpirun
        >>> model = DistributedDataParallel(nn.Linear(4, 2))
        >>> model(dt.randn(8, 4)).sum().backward()          # .grad = mean over ranks
        >>> sorted(model.state_dict())
        ['module.bias', 'module.weight']
    """

    def __init__(self, module: Module, device_ids=None, output_device=None, dim: int = 0,
                 broadcast_buffers: bool | None = True, init_sync: bool = True,
                 process_group=None, bucket_cap_mb: float | None = None,
                 find_unused_parameters: bool = False, check_reduction: bool = False,
                 gradient_as_bucket_view: bool = False, static_graph: bool = False):
        comm = world_comm("DistributedDataParallel", process_group)
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel (rank {comm.rank}): module must be a "
                            f"disttrain nn.Module, got {type(module).__name__}")
        _check_device("device_ids", device_ids, module, comm.rank)
        _check_device("output_device", output_device, module, comm.rank)
        super().__init__(module, comm=comm, bucket_cap_mb=bucket_cap_mb,
                         broadcast_buffers=broadcast_buffers is not False, init_sync=init_sync)
        self.device_ids, self.output_device, self.dim = device_ids, output_device, dim
        self.find_unused_parameters = find_unused_parameters
        self.gradient_as_bucket_view, self.static_graph = gradient_as_bucket_view, static_graph


def _check_device(name: str, value, module: Module, rank: int) -> None:
    """`value` (device_ids or output_device) must be None or the one device of the module."""
    if value is None:
        return
    on = sorted({str(p.device) for p in module.parameters()}) or ["cpu"]
    if name == "device_ids":
        one = value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else None
        form = "a one-item list naming "
    else:
        one, form = value, ""
    if one is None or len(on) != 1 or not _same_device(one, on[0]):
        raise ValueError(
            f"DistributedDataParallel (rank {rank}): {name}={value!r} must be None or "
            f"{form}the one device this rank's module is on ({', '.join(on)}); each rank "
            "drives one device: pass None for a CPU module, or [local_rank] for the GPU the "
            "module was moved to")


def _same_device(wanted, actual: str) -> bool:
    """Whether `wanted` (an int GPU index, "cuda", "cuda:1", "cpu", a device) names `actual`."""
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        return actual == f"cuda:{wanted}"
    name = str(wanted)
    return name == actual or (":" not in name and actual.split(":")[0] == name)
