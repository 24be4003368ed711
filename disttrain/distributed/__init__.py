"""disttrain.distributed: MPI communicators, data and pipeline parallelism, checkpoints.

    import disttrain.distributed as dist
    comm = dist.init()  # MPI starts here, never at import

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
    "disttrain.distributed.comm": (
        "Communicator", "get_rank", "get_world_size", "init", "is_initialized"),
    "disttrain.distributed.data_parallel": ("DataParallel",),
    "disttrain.distributed.grid": ("ProcessGrid",),
    "disttrain.distributed.pipeline": ("Pipeline",),
    "disttrain.distributed.watchdog": ("heartbeat",),
    "disttrain.env": ("launched_with_mpi", "rank_env"),
}  # fmt: skip
_SUBMODULES = (
    "buckets", "checkpoint", "comm", "comm_hooks", "data_parallel", "grid", "pipeline",
    "reducer", "watchdog",
)  # fmt: skip

__getattr__, __dir__, __all__ = _attach(
    __name__, _SUBMODULES, {name: module for module, names in _FROM.items() for name in names})
