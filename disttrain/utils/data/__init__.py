"""`disttrain.utils.data`: torch.utils.data's names; the implementation is disttrain.data.

Example:
    >>> from disttrain.utils.data import DataLoader, TensorDataset
"""

from disttrain.data import (  # noqa: F401
    BatchSampler,
    ChainDataset,
    ConcatDataset,
    DataLoader,
    Dataset,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    default_collate,
    get_worker_info,
    random_split,
)
from disttrain.utils.data import distributed  # noqa: F401
