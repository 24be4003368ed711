"""`disttrain.utils.data.distributed`: torch's path to DistributedSampler."""

from disttrain.data.sampler import DistributedSampler  # noqa: F401
