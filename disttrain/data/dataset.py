"""Datasets: Dataset, IterableDataset, ChainDataset, TensorDataset, Subset, ConcatDataset,
random_split.

Imports numpy and disttrain.tensor only (never nn, optim, distributed or mpi4py).
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections.abc import Sequence

import numpy as np

from disttrain.data.sampler import resolve_generator
from disttrain.tensor import Tensor


def _as_ndarray(item):
    # NOTE: a[i] of a 1-d numpy array is a numpy scalar, which Tensor() would convert like a
    # python number (float64 -> float32); a 0-d array keeps the dtype, as the fast path does.
    return np.asarray(item) if isinstance(item, np.generic) else item


class Dataset:
    """A map-style dataset: subclasses define `__getitem__(index)` and `__len__()`.

    A dataset may also define `arrays()`, returning a tuple of arrays whose first dimension is
    `len(self)` such that `self[i]` equals `tuple(a[i] for a in arrays())` (or None when that
    does not hold, e.g. with a transform). DataLoader then builds each batch with one
    fancy-indexing op per array instead of a Python loop over samples.

    Example:
        >>> class Squares(Dataset):
        ...     def __len__(self): return 4
        ...     def __getitem__(self, i): return i * i
        >>> Squares()[3]
        9
    """

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def __add__(self, other: Dataset) -> ConcatDataset:
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """An iterable-style dataset: subclasses define `__iter__` (a stream with no indices).

    DataLoader batches what `iter(dataset)` yields. With `num_workers > 0` every worker calls
    `iter(dataset)` itself, as in torch, so each would yield the whole stream: split the work
    in `__iter__` with `get_worker_info()` (`id`, `num_workers`). The workers are threads
    sharing this one object, so `__iter__` must return a new iterator each call.

    Example:
        >>> class Count(IterableDataset):
        ...     def __iter__(self): return iter(range(3))
        >>> list(Count())
        [0, 1, 2]
    """

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")

    def __len__(self) -> int:
        # NOTE: TypeError (not Dataset's NotImplementedError): a stream may have no length,
        # and list()/len() treat TypeError as exactly that
        raise TypeError(f"object of type {type(self).__name__} has no len()")

    def __add__(self, other: IterableDataset) -> ChainDataset:
        return ChainDataset([self, other])


class ChainDataset(IterableDataset):
    """Chains iterable datasets: yields all of the first, then all of the second, ...

    Args:
        datasets: the IterableDatasets, in order.

    Example:
        >>> class Count(IterableDataset):
        ...     def __iter__(self): return iter(range(2))
        >>> list(ChainDataset([Count(), Count()]))
        [0, 1, 0, 1]
    """

    def __init__(self, datasets) -> None:
        self.datasets = datasets

    def __iter__(self):
        for i, dataset in enumerate(self.datasets):
            if not isinstance(dataset, IterableDataset):
                raise TypeError(f"ChainDataset only supports IterableDataset, but datasets[{i}] "
                                f"is a {type(dataset).__name__}")
            yield from dataset

    def __len__(self) -> int:
        return sum(len(dataset) for dataset in self.datasets)


class TensorDataset(Dataset):
    """Samples are slices along the first dimension of each of `tensors`.

    Args:
        *tensors: Tensors or numpy arrays with the same first dimension (numpy arrays are
            wrapped without a copy).

    Example:
        >>> ds = TensorDataset(np.zeros((5, 3), np.float32), np.arange(5))
        >>> x, y = ds[2]
        >>> x.shape, int(y.item())
        ((3,), 2)
    """

    def __init__(self, *tensors) -> None:
        if not tensors:
            raise ValueError("TensorDataset: expected at least one tensor, got none")
        wrapped = []
        for i, t in enumerate(tensors):
            if isinstance(t, np.ndarray):
                t = Tensor(t)
            elif not isinstance(t, Tensor):
                raise TypeError(f"TensorDataset: tensors[{i}] must be a Tensor or a numpy "
                                f"array, got {type(t).__name__}")
            if t.ndim == 0:
                raise ValueError(f"TensorDataset: tensors[{i}] is 0-dimensional; every tensor "
                                 "needs a first (sample) dimension")
            if wrapped and t.shape[0] != wrapped[0].shape[0]:
                raise ValueError(f"TensorDataset: size mismatch between tensors: tensors[0] has "
                                 f"first dimension {wrapped[0].shape[0]} but tensors[{i}] has "
                                 f"{t.shape[0]} (shapes {wrapped[0].shape} and {t.shape})")
            wrapped.append(t)
        self.tensors = tuple(wrapped)

    def __getitem__(self, index):
        return tuple(Tensor(_as_ndarray(t.array[index])) for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def arrays(self) -> tuple:
        """The backing arrays, for DataLoader's batched fast path (see `Dataset`)."""
        return tuple(t.array for t in self.tensors)


class Subset(Dataset):
    """The samples of `dataset` at `indices`, in that order.

    Args:
        dataset: the whole dataset.
        indices: the indices (into `dataset`) that make up the subset.

    Example:
        >>> Subset(TensorDataset(np.arange(10)), [7, 3])[1][0].item()
        3
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, indices

    def __getitem__(self, index):
        if isinstance(index, list):
            return self.dataset[[self.indices[i] for i in index]]
        return self.dataset[self.indices[index]]

    def __len__(self) -> int:
        return len(self.indices)


class ConcatDataset(Dataset):
    """The concatenation of several datasets.

    Args:
        datasets: the datasets, in order.

    Example:
        >>> len(ConcatDataset([TensorDataset(np.zeros(3)), TensorDataset(np.ones(2))]))
        5
    """

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        self.cumulative_sizes = np.cumsum([len(d) for d in self.datasets]).tolist()

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index: int):
        if index < 0:
            if -index > len(self):
                raise IndexError(f"ConcatDataset: index {index} out of range for length "
                                 f"{len(self)}")
            index += len(self)
        which = bisect.bisect_right(self.cumulative_sizes, index)
        if which == len(self.datasets):
            raise IndexError(f"ConcatDataset: index {index} out of range for length {len(self)}")
        start = self.cumulative_sizes[which - 1] if which > 0 else 0
        return self.datasets[which][index - start]


def random_split(dataset: Dataset, lengths: Sequence[int | float],
                 generator: np.random.Generator | None = None) -> list[Subset]:
    """Randomly splits `dataset` into non-overlapping Subsets of the given lengths.

    Fractions summing to 1 become floor(fraction * len(dataset)) each, with the remainder
    handed out one at a time round-robin, as in torch.

    Args:
        dataset: the dataset to split.
        lengths: lengths summing to len(dataset), or fractions summing to 1.
        generator: dt.Generator (or numpy Generator) for the permutation; None seeds one
            from disttrain's default generator.

    Example:
        >>> a, b = random_split(TensorDataset(np.arange(10)), [0.7, 0.3],
        ...                     generator=np.random.default_rng(0))
        >>> len(a), len(b)
        (7, 3)
    """
    n = len(dataset)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        for i, frac in enumerate(lengths):
            if not 0 <= frac <= 1:
                raise ValueError(f"random_split: fraction lengths[{i}]={frac} is not between "
                                 "0 and 1")
        counts = [math.floor(n * frac) for frac in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        for i, count in enumerate(counts):
            if count == 0:
                warnings.warn(f"random_split: length of split at index {i} is 0. This might "
                              "result in an empty dataset.", stacklevel=2)
        lengths = counts
    if any(int(length) != length or length < 0 for length in lengths):
        raise ValueError(f"random_split: lengths must be non-negative ints or fractions summing "
                         f"to 1, got {list(lengths)}")
    if sum(lengths) != n:
        raise ValueError(f"random_split: sum of lengths {list(lengths)} is {sum(lengths)}, which "
                         f"does not equal the length of the dataset ({n})")
    perm = resolve_generator("random_split", generator).permutation(n).tolist()
    offsets = np.cumsum([0, *lengths]).tolist()
    return [Subset(dataset, perm[lo:hi]) for lo, hi in zip(offsets[:-1], offsets[1:], strict=True)]
