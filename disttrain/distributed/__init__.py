"""disttrain.distributed: MPI communicators, data and pipeline parallelism, checkpoints.

    import disttrain.distributed as dist
    comm = dist.init()  # MPI starts here, never at import

torch.distributed's names work too (`dist.init_process_group()`, `all_reduce`, `ReduceOp`,
`DistributedDataParallel` ...): collectives.py, p2p.py and process_group.py, over MPI.

Names load on first use (disttrain.lazy): importing this package, or a pure module in it
(grid, buckets, pipeline.schedule), imports neither mpi4py's MPI runtime nor numpy.
"""

from disttrain.lazy import attach as _attach

_FROM = {
    "disttrain.data": ("DistributedSampler",),
    "disttrain.distributed.buckets": ("assign_buckets",),
    "disttrain.distributed.checkpoint": ("CheckpointManager",),
    "disttrain.distributed.checkpoint_store": ("CheckpointRefusedError",),
    "disttrain.distributed.comm_hooks": ("GradBucket",),
    "disttrain.distributed.collectives": (
        "ReduceOp", "Work", "all_gather", "all_gather_into_tensor", "all_reduce", "barrier",
        "broadcast", "gather", "reduce", "reduce_scatter", "reduce_scatter_tensor", "scatter"),
    "disttrain.distributed.comm": ("Communicator", "init", "is_initialized"),
    "disttrain.distributed.data_parallel": ("DataParallel",),
    "disttrain.distributed.ddp": ("DistributedDataParallel",),
    "disttrain.distributed.p2p": (
        "all_gather_object", "broadcast_object_list", "gather_object", "irecv", "isend", "recv",
        "send"),
    "disttrain.distributed.process_group": (
        "Backend", "GroupMember", "destroy_process_group", "get_backend", "get_rank",
        "get_world_size", "group", "init_process_group", "is_available", "is_mpi_available",
        "is_nccl_available"),
    "disttrain.distributed.grid": ("ProcessGrid",),
    "disttrain.distributed.hierarchical": ("HierarchicalAllreduce", "hierarchical_allreduce_"),
    "disttrain.distributed.pipeline": ("Pipeline",),
    "disttrain.distributed.watchdog": ("heartbeat",),
    "disttrain.distributed.zero": ("ZeroRedundancyOptimizer",),
    "disttrain.env": ("launched_with_mpi", "rank_env"),
}  # fmt: skip
_SUBMODULES = (
    "algorithms", "buckets", "checkpoint", "collectives", "comm", "comm_hooks", "data_parallel",
    "ddp", "grid", "hierarchical", "p2p", "pipeline", "process_group", "reducer", "watchdog",
    "step_stats", "world", "zero",
)  # fmt: skip

__getattr__, __dir__, __all__ = _attach(
    __name__, _SUBMODULES, {name: module for module, names in _FROM.items() for name in names})
