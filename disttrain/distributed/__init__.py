"""disttrain.distributed: MPI communicators, data and pipeline parallelism (mpi4py via comm)."""

from disttrain.data import DistributedSampler
from disttrain.distributed.buckets import assign_buckets
from disttrain.distributed.checkpoint import CheckpointManager
from disttrain.distributed.comm import Communicator, get_rank, get_world_size, init, is_initialized
from disttrain.distributed.data_parallel import DataParallel
from disttrain.distributed.env import launched_with_mpi, rank_env
from disttrain.distributed.grid import ProcessGrid
from disttrain.distributed.pipeline.stage import Pipeline
from disttrain.distributed.watchdog import heartbeat
