"""Data loading: datasets, samplers, DataLoader, transforms (numpy only; never imports MPI).

Example:
    >>> from disttrain.data import DataLoader, datasets
    >>> loader = DataLoader(datasets.Digits("train"), batch_size=64, shuffle=True, seed=0)
"""

from disttrain.data import datasets, transforms
from disttrain.data.dataset import (
    ChainDataset,
    ConcatDataset,
    Dataset,
    IterableDataset,
    Subset,
    TensorDataset,
    random_split,
)
from disttrain.data.loader import DataLoader, default_collate
from disttrain.data.sampler import (
    BatchSampler,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)
from disttrain.data.worker import WorkerInfo, get_worker_info

__all__ = [
    "BatchSampler",
    "ChainDataset",
    "ConcatDataset",
    "DataLoader",
    "Dataset",
    "DistributedSampler",
    "IterableDataset",
    "RandomSampler",
    "Sampler",
    "SequentialSampler",
    "Subset",
    "SubsetRandomSampler",
    "TensorDataset",
    "WeightedRandomSampler",
    "WorkerInfo",
    "datasets",
    "default_collate",
    "get_worker_info",
    "random_split",
    "transforms",
]
