"""DataLoader and default_collate: batches of Tensors from a map-style dataset.

Imports numpy and disttrain.tensor only (never nn, optim, distributed or mpi4py).
"""

from __future__ import annotations

import collections.abc
import itertools
from collections.abc import Callable, Iterator

import numpy as np

from disttrain.backend import get_array_module
from disttrain.checks import check_int
from disttrain.data.dataset import Dataset, Subset
from disttrain.data.sampler import (
    BatchSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    resolve_generator,
)
from disttrain.tensor import Tensor


def default_collate(batch: list):
    """Stacks a list of samples into a batch, recursing into tuples, lists and dicts.

    Tensors and numpy arrays are stacked along a new first dimension; python floats become a
    float32 Tensor (torch uses float64; disttrain's default float is float32), ints int64 and
    bools bool; strings are returned as a list. Tuples and lists come back as lists (torch).

    Args:
        batch: a list of samples of the same structure.

    Example:
        >>> x, y = default_collate([(np.zeros(2), 0), (np.ones(2), 1)])
        >>> x.shape, y.dtype
        ((2, 2), dtype('int64'))
    """
    elem = batch[0]
    if isinstance(elem, Tensor):
        return Tensor(get_array_module(elem.array).stack([b.array for b in batch]))
    if isinstance(elem, (np.ndarray, np.generic)):
        if elem.dtype.kind not in "biuf":
            raise TypeError(f"default_collate: numpy dtype {elem.dtype} is not supported; "
                            "batch must contain tensors, numpy arrays, numbers, dicts or lists")
        return Tensor(np.stack(batch) if isinstance(elem, np.ndarray) else np.array(batch))
    if isinstance(elem, bool):
        return Tensor(np.array(batch, dtype=np.bool_))
    if isinstance(elem, int):
        return Tensor(np.array(batch, dtype=np.int64))
    if isinstance(elem, float):
        return Tensor(np.array(batch, dtype=np.float32))
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        return {key: default_collate([d[key] for d in batch]) for key in elem}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch, strict=True)))
    if isinstance(elem, collections.abc.Sequence):
        if any(len(b) != len(elem) for b in batch):
            raise RuntimeError(f"default_collate: each element in list of batch should be of "
                               f"equal size, got sizes {sorted({len(b) for b in batch})}")
        return [default_collate(list(samples)) for samples in zip(*batch, strict=True)]
    raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts "
                    f"or lists; found {type(elem).__name__}")


def _array_source(dataset) -> tuple[tuple, np.ndarray | None] | None:
    """(arrays, index map or None) when batches can be gathered by fancy indexing."""
    index_map = None
    while isinstance(dataset, Subset):  # NOTE: compose Subset indices instead of copying
        indices = np.asarray(dataset.indices, dtype=np.intp)
        index_map = indices if index_map is None else indices[index_map]
        dataset = dataset.dataset
    arrays = dataset.arrays() if callable(getattr(dataset, "arrays", None)) else None
    return None if arrays is None else (tuple(arrays), index_map)


class DataLoader:
    """Iterates over a dataset in batches, optionally shuffled, as torch.utils.data.DataLoader.

    Shuffling is reproducible: epoch e (the e-th `iter()`, counting from 0) uses the
    permutation of `numpy.random.default_rng(seed + e)`. Without `seed` the base seed is drawn
    once, at construction, from `generator` or else from disttrain's default generator (so
    `dt.manual_seed` makes it reproducible). `state_dict()` records the epoch
    and the batches already yielded, so a loader restored with `load_state_dict` continues
    mid-epoch with the same order. A custom `sampler` must itself be deterministic for that.

    When `collate_fn` is the default and the dataset exposes `arrays()` (TensorDataset, MNIST
    and Digits without transforms, and Subsets of those), each batch is one fancy-indexing op
    per array instead of a `__getitem__` per sample and a stack.

    Args:
        dataset: the dataset to load from.
        batch_size: samples per batch.
        shuffle: reshuffle every epoch (mutually exclusive with `sampler`).
        sampler: iterable of indices (e.g. a DistributedSampler).
        batch_sampler: iterable of index lists; excludes batch_size, shuffle, sampler, drop_last.
        drop_last: drop the last incomplete batch.
        collate_fn: merges a list of samples into a batch; default `default_collate`.
        seed: base seed of the shuffle (epoch e uses seed + e).
        generator: numpy Generator to draw the base seed from when `seed` is None.

    Example:
        >>> from disttrain.data import TensorDataset
        >>> ds = TensorDataset(np.arange(10, dtype=np.float32))
        >>> [x.shape for (x,) in DataLoader(ds, batch_size=4, shuffle=True, seed=0)]
        [(4,), (4,), (2,)]
    """

    def __init__(self, dataset: Dataset, batch_size: int | None = 1, shuffle: bool = False,
                 sampler: Sampler | None = None, batch_sampler=None, drop_last: bool = False,
                 collate_fn: Callable | None = None, seed: int | None = None,
                 generator: np.random.Generator | None = None) -> None:
        if sampler is not None and shuffle:
            raise ValueError(f"DataLoader: sampler option is mutually exclusive with shuffle "
                             f"(got shuffle=True and sampler={type(sampler).__name__}); shuffle "
                             "inside the sampler instead")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("DataLoader: batch_sampler option is mutually exclusive with "
                                 "batch_size, shuffle, sampler, and drop_last")
        elif batch_size is None:
            raise ValueError("DataLoader: batch_size=None (no automatic batching) is not "
                             "supported; pass a positive int")
        if seed is not None and generator is not None:
            raise ValueError("DataLoader: pass either seed or generator, not both")
        if generator is not None:
            resolve_generator("DataLoader", generator)  # type check
        self.dataset, self.drop_last = dataset, drop_last
        self.collate_fn = collate_fn if collate_fn is not None else default_collate
        if seed is not None:
            self._seed = check_int("DataLoader", "seed", seed, 0)
        elif shuffle:  # NOTE: draw only when needed, so an eval loader leaves RNG streams alone
            self._seed = int(resolve_generator("DataLoader", generator).integers(2**63))
        else:
            self._seed = 0
        self._shuffle = shuffle
        if sampler is None:
            sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
        self.sampler = sampler
        if batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
            self.batch_size = batch_size
        else:
            self.batch_size = None
        self.batch_sampler = batch_sampler
        self._next_epoch, self._epoch, self._yielded, self._in_epoch = 0, 0, 0, False
        self._resume_batches = 0

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator:
        epoch, skip = self._next_epoch, self._resume_batches
        self._next_epoch, self._resume_batches = epoch + 1, 0
        self._epoch, self._yielded, self._in_epoch = epoch, skip, True
        if self._shuffle:  # NOTE: reseed per epoch so any epoch's order can be rebuilt
            self.sampler.generator = np.random.default_rng(self._seed + epoch)
        return self._iterate(itertools.islice(iter(self.batch_sampler), skip, None))

    def _iterate(self, index_batches: Iterator) -> Iterator:
        source = _array_source(self.dataset) if self.collate_fn is default_collate else None
        for indices in index_batches:
            if source is None:
                batch = self.collate_fn([self.dataset[i] for i in indices])
            else:
                arrays, index_map = source
                indices = np.asarray(indices, dtype=np.intp)
                if index_map is not None:
                    indices = index_map[indices]
                batch = [Tensor(a[indices]) for a in arrays]
            self._yielded += 1
            yield batch
        self._in_epoch = False

    def state_dict(self) -> dict:
        """Position for checkpoints: {"epoch", "batches_yielded", "seed"} (plus "sampler").

        Mid-epoch it is the current epoch and the batches handed out so far; between epochs,
        the next epoch and 0. A sampler with its own `state_dict` is saved under "sampler".

        Example:
            >>> from disttrain.data import TensorDataset
            >>> loader = DataLoader(TensorDataset(np.arange(6)), batch_size=2, seed=3)
            >>> _ = next(iter(loader)); loader.state_dict()
            {'epoch': 0, 'batches_yielded': 1, 'seed': 3}
        """
        if self._in_epoch:
            state = {"epoch": self._epoch, "batches_yielded": self._yielded}
        else:
            state = {"epoch": self._next_epoch, "batches_yielded": self._resume_batches}
        state["seed"] = self._seed
        if callable(getattr(self.sampler, "state_dict", None)):
            state["sampler"] = self.sampler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores a `state_dict()`: the next `iter()` resumes that epoch after its batches.

        Args:
            state_dict: what `state_dict()` returned.
        """
        epoch = check_int("DataLoader.load_state_dict", "epoch", state_dict["epoch"], 0)
        skip = check_int("DataLoader.load_state_dict", "batches_yielded",
                          state_dict["batches_yielded"], 0)
        self._next_epoch, self._resume_batches, self._in_epoch = epoch, skip, False
        self._seed = int(state_dict["seed"])
        if "sampler" in state_dict and callable(getattr(self.sampler, "load_state_dict", None)):
            self.sampler.load_state_dict(state_dict["sampler"])
