"""DataLoader and default_collate: batches of Tensors from a map- or iterable-style dataset.

Imports numpy and disttrain.tensor only (never nn, optim, distributed or mpi4py).
"""

from __future__ import annotations

import collections.abc
import itertools
import multiprocessing
import warnings
import weakref
from collections.abc import Callable, Iterator

import numpy as np

from disttrain.backend import cuda_is_available, get_array_module
from disttrain.checks import check_int
from disttrain.data.dataset import Dataset, IterableDataset, Subset
from disttrain.data.sampler import (
    BatchSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    resolve_generator,
)
from disttrain.data.worker import WorkerPool, gather, next_batch
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


def _check_workers(num_workers, prefetch_factor, persistent_workers, timeout,
                   multiprocessing_context) -> int | None:
    """torch's checks of the worker arguments; returns prefetch_factor (2 by default)."""
    if check_int("DataLoader", "num_workers", num_workers) < 0:
        raise ValueError(f"DataLoader: num_workers option should be non-negative; use "
                         f"num_workers=0 to disable multiprocessing (got {num_workers})")
    if timeout < 0:
        raise ValueError(f"DataLoader: timeout option should be non-negative, got {timeout}")
    if num_workers == 0 and prefetch_factor is not None:
        raise ValueError(f"DataLoader: prefetch_factor option could only be specified with "
                         f"num_workers > 0; let num_workers > 0 to load in background workers, "
                         f"otherwise set prefetch_factor to None (got {prefetch_factor})")
    if num_workers > 0 and prefetch_factor is None:
        prefetch_factor = 2
    elif prefetch_factor is not None and check_int("DataLoader", "prefetch_factor",
                                                   prefetch_factor) < 0:
        raise ValueError(f"DataLoader: prefetch_factor option should be non-negative, got "
                         f"{prefetch_factor}")
    if persistent_workers and num_workers == 0:
        raise ValueError("DataLoader: persistent_workers option needs num_workers > 0")
    if multiprocessing_context is not None:
        if num_workers == 0:
            raise ValueError(f"DataLoader: multiprocessing_context can only be used with "
                             f"num_workers > 0, but got num_workers={num_workers}")
        methods = multiprocessing.get_all_start_methods()
        if isinstance(multiprocessing_context, str) and multiprocessing_context not in methods:
            raise ValueError(f"DataLoader: multiprocessing_context option should specify a "
                             f"valid start method in {methods!r}, but got "
                             f"multiprocessing_context={multiprocessing_context!r}")
    return prefetch_factor


def _check_iterable(shuffle, sampler, batch_sampler) -> None:
    """torch's checks for an IterableDataset: it has no indices to sample or shuffle."""
    for name, value, unset in (("shuffle", shuffle, (None, False)), ("sampler", sampler, (None,)),
                               ("batch_sampler", batch_sampler, (None,))):
        if all(value is not u for u in unset):
            raise ValueError(f"DataLoader with IterableDataset: expected unspecified {name} "
                             f"option, but got {name}={value!r}")


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

    With `num_workers > 0`, batches are loaded by that many background worker threads (see
    disttrain.data.worker for why threads rather than torch's processes), up to
    `prefetch_factor * num_workers` batches ahead, and yielded in sampler order: the batches
    equal those of num_workers=0. `worker_init_fn(worker_id)` runs once in each worker, where
    `get_worker_info()` describes it; an exception in a worker is re-raised in the main thread
    with the worker and the sample index; leaving the loop early (`break`) stops the workers,
    unless `persistent_workers` keeps them for the next epoch.

    An IterableDataset is batched in the order it yields (no sampler, no shuffle); with
    workers each one iterates the dataset itself and their batches alternate, as in torch.

    Args:
        dataset: the dataset to load from.
        batch_size: samples per batch.
        shuffle: reshuffle every epoch (mutually exclusive with `sampler`).
        sampler: iterable of indices (e.g. a DistributedSampler).
        batch_sampler: iterable of index lists; excludes batch_size, shuffle, sampler, drop_last.
        num_workers: background worker threads; 0 loads in the main thread.
        collate_fn: merges a list of samples into a batch; default `default_collate`.
        pin_memory: accepted for torch scripts and a no-op: batches are numpy host arrays in
            pageable memory, moved to a GPU by `.to("cuda")`. Warns, as torch does, when no
            accelerator is available.
        drop_last: drop the last incomplete batch.
        timeout: seconds to wait for a worker's batch before a RuntimeError (0: no limit).
        worker_init_fn: called as `worker_init_fn(worker_id)` once in each worker.
        multiprocessing_context: checked as torch does, otherwise unused (workers are threads).
        generator: dt.Generator (or numpy Generator) to draw the base seed from when `seed`
            is None (the shuffle's, and the workers' `get_worker_info().seed`).
        prefetch_factor: batches loaded ahead per worker (default 2 with workers; must be
            None without).
        persistent_workers: keep the workers alive between epochs (needs num_workers > 0).
        pin_memory_device: accepted and ignored (deprecated in torch).
        in_order: accepted; batches always come in sampler order (allowed by in_order=False).
        seed: base seed of the shuffle (epoch e uses seed + e); disttrain only.

    Example:
        >>> from disttrain.data import TensorDataset
        >>> ds = TensorDataset(np.arange(10, dtype=np.float32))
        >>> [x.shape for (x,) in DataLoader(ds, batch_size=4, shuffle=True, seed=0)]
        [(4,), (4,), (2,)]
    """

    def __init__(self, dataset: Dataset, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler: Sampler | None = None, batch_sampler=None, num_workers: int = 0,
                 collate_fn: Callable | None = None, pin_memory: bool = False,
                 drop_last: bool = False, timeout: float = 0,
                 worker_init_fn: Callable | None = None, multiprocessing_context=None,
                 generator: np.random.Generator | None = None, *,
                 prefetch_factor: int | None = None, persistent_workers: bool = False,
                 pin_memory_device: str = "", in_order: bool = True,
                 seed: int | None = None) -> None:
        self.prefetch_factor = _check_workers(num_workers, prefetch_factor, persistent_workers,
                                              timeout, multiprocessing_context)
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            _check_iterable(shuffle, sampler, batch_sampler)
        shuffle = bool(shuffle)
        self._check_sampling(batch_size, shuffle, sampler, batch_sampler, drop_last)
        if seed is not None and generator is not None:
            raise ValueError("DataLoader: pass either seed or generator, not both")
        if generator is not None:
            resolve_generator("DataLoader", generator)  # type check
        self.dataset, self.drop_last, self.generator = dataset, drop_last, generator
        self.collate_fn = collate_fn if collate_fn is not None else default_collate
        self.num_workers, self.timeout, self.worker_init_fn = num_workers, timeout, worker_init_fn
        self.pin_memory, self.pin_memory_device = pin_memory, pin_memory_device
        self.persistent_workers, self.in_order = persistent_workers, in_order
        self.multiprocessing_context = multiprocessing_context
        if seed is not None:
            self._seed = check_int("DataLoader", "seed", seed, 0)
        elif shuffle or num_workers > 0:  # NOTE: draw only when needed, so an eval loader
            # leaves RNG streams alone
            self._seed = int(resolve_generator("DataLoader", generator).integers(2**63))
        else:
            self._seed = 0
        self._shuffle = shuffle
        if sampler is None and not self._iterable:
            sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
        self.sampler = sampler
        # NOTE: as torch: batch_size is None only when the user passed a batch_sampler
        self.batch_size = batch_size if batch_sampler is None else None
        if batch_sampler is None and not self._iterable:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_sampler = batch_sampler
        self._next_epoch, self._epoch, self._yielded, self._in_epoch = 0, 0, 0, False
        self._resume_batches, self._pool = 0, None

    @staticmethod
    def _check_sampling(batch_size, shuffle: bool, sampler, batch_sampler, drop_last) -> None:
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

    def __len__(self) -> int:
        if self._iterable:  # NOTE: as torch: from the dataset's __len__ (TypeError without)
            length, size = len(self.dataset), self.batch_size
            return length // size if self.drop_last else -(-length // size)
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator:
        if self.pin_memory and not cuda_is_available():
            warnings.warn("'pin_memory' argument is set as true but no accelerator is found, "
                          "then device pinned memory won't be used.", stacklevel=2)
        epoch, skip = self._next_epoch, self._resume_batches
        self._next_epoch, self._resume_batches = epoch + 1, 0
        self._epoch, self._yielded, self._in_epoch = epoch, skip, True
        if self._shuffle:  # NOTE: reseed per epoch so any epoch's order can be rebuilt
            self.sampler.generator = np.random.default_rng(self._seed + epoch)
        if self._iterable:
            tasks, source = itertools.repeat(None), None
        else:
            tasks = itertools.islice(iter(self.batch_sampler), skip, None)
            source = _array_source(self.dataset) if self.collate_fn is default_collate else None
        if self.num_workers > 0:
            batches = self._worker_batches(tasks, source, epoch)
        elif self._iterable:
            batches = self._stream_batches()
        else:
            batches = (self._load(source, indices) for indices in tasks)
        return self._iterate(batches, skip if self._iterable else 0)

    def _stream_batches(self) -> Iterator:
        iterator = iter(self.dataset)
        while (batch := next_batch(iterator, self.batch_size, self.drop_last,
                                   self.collate_fn)) is not None:
            yield batch

    def _load(self, source: tuple | None, indices) -> object:
        if source is not None:
            return gather(source, indices)
        return self.collate_fn([self.dataset[i] for i in indices])

    def _worker_batches(self, index_batches: Iterator, source, epoch: int) -> Iterator:
        pool = self._pool
        if pool is None:
            # NOTE: SeedSequence mixes (seed, epoch), so worker seeds differ across epochs
            base_seed = int(np.random.SeedSequence([self._seed, epoch]).generate_state(
                1, np.uint64)[0])
            pool = WorkerPool(self.dataset, self.collate_fn, self.num_workers,
                              self.prefetch_factor * self.num_workers, self.worker_init_fn,
                              base_seed, self.timeout, self.batch_size, self.drop_last)
            if self.persistent_workers:
                self._pool = pool
                weakref.finalize(self, pool.shutdown)
        try:
            yield from pool.run(index_batches, source)
        finally:
            if not self.persistent_workers:
                pool.shutdown()

    def _iterate(self, batches: Iterator, skip: int) -> Iterator:
        try:
            for _ in itertools.islice(batches, skip):  # NOTE: a stream resumes by re-reading
                pass
            for batch in batches:
                self._yielded += 1
                yield batch
            self._in_epoch = False
        finally:
            batches.close()  # NOTE: stops the workers now on `break`, not when collected

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
