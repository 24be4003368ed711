"""Index samplers: Sequential, Random, SubsetRandom, WeightedRandom, Batch and Distributed.

Imports numpy, disttrain.random, disttrain.checks and disttrain.env only. DistributedSampler
takes `num_replicas` and `rank` as ints; it never imports MPI: left out, they come from the
process group that dist.init_process_group() / dist.init() recorded in disttrain.env.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence, Sized

import numpy as np

from disttrain import env
from disttrain.checks import check_int
from disttrain.random import default_generator


def resolve_generator(owner: str, generator: np.random.Generator | None) -> np.random.Generator:
    """`generator`, or when None a fresh one seeded from disttrain's default generator."""
    # NOTE: a child seeded from the default (as torch's RandomSampler does), so dt.manual_seed
    # makes unseeded shuffles reproducible.
    if generator is None:
        return np.random.default_rng(int(default_generator().integers(2**63)))
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"{owner}: generator should be a dt.Generator or a numpy.random."
                        f"Generator (e.g. dt.Generator().manual_seed(0)), got "
                        f"{type(generator).__name__}")
    return generator


class Sampler:
    """Base class: `__iter__` yields dataset indices; `__len__` says how many (if known).

    Example:
        >>> class Evens(Sampler):
        ...     def __iter__(self): return iter(range(0, 6, 2))
        >>> list(Evens())
        [0, 2, 4]
    """

    def __iter__(self) -> Iterator[int]:
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")


class SequentialSampler(Sampler):
    """Yields 0, 1, ..., len(data_source) - 1.

    Args:
        data_source: anything with a length.

    Example:
        >>> list(SequentialSampler(range(3)))
        [0, 1, 2]
    """

    def __init__(self, data_source: Sized) -> None:
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """Yields a random permutation of the indices (or draws with replacement).

    Args:
        data_source: anything with a length.
        replacement: draw `num_samples` indices with replacement.
        num_samples: how many indices to draw; default len(data_source).
        generator: dt.Generator (or numpy Generator) used by every iteration; None seeds a
            fresh one from disttrain's default generator each time.

    Example:
        >>> sorted(RandomSampler(range(4), generator=np.random.default_rng(0)))
        [0, 1, 2, 3]
    """

    def __init__(self, data_source: Sized, replacement: bool = False,
                 num_samples: int | None = None,
                 generator: np.random.Generator | None = None) -> None:
        if not isinstance(replacement, bool):
            raise TypeError(f"RandomSampler: replacement should be a bool, got {replacement!r}")
        if num_samples is not None:
            check_int("RandomSampler", "num_samples", num_samples, 1)
        self.data_source, self.replacement = data_source, replacement
        self._num_samples, self.generator = num_samples, generator

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self) -> Iterator[int]:
        rng = resolve_generator("RandomSampler", self.generator)
        n = len(self.data_source)
        if self.replacement:
            return iter(rng.integers(n, size=self.num_samples).tolist())
        # NOTE: num_samples > n repeats whole permutations, as torch does.
        perms = [rng.permutation(n) for _ in range(-(-self.num_samples // max(n, 1)))]
        return iter(np.concatenate(perms)[: self.num_samples].tolist() if perms else [])

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """Yields the given indices in a random order.

    Args:
        indices: the indices to sample from.
        generator: dt.Generator (or numpy Generator); None seeds a fresh one from
            disttrain's default generator each iteration.

    Example:
        >>> sorted(SubsetRandomSampler([5, 1, 9], generator=np.random.default_rng(0)))
        [1, 5, 9]
    """

    def __init__(self, indices: Sequence[int],
                 generator: np.random.Generator | None = None) -> None:
        self.indices, self.generator = indices, generator

    def __iter__(self) -> Iterator[int]:
        rng = resolve_generator("SubsetRandomSampler", self.generator)
        return iter(np.asarray(self.indices)[rng.permutation(len(self.indices))].tolist())

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """Draws `num_samples` indices in [0, len(weights)) with probabilities proportional to
    `weights` (torch.utils.data.WeightedRandomSampler), e.g. to rebalance classes.

    Args:
        weights: non-negative weights, one per sample (a sequence, numpy array or Tensor);
            they need not sum to 1.
        num_samples: how many indices each iteration yields.
        replacement: draw with replacement; without it an index is drawn at most once (so
            num_samples must not exceed the number of non-zero weights).
        generator: dt.Generator (or numpy Generator); None seeds a fresh one from
            disttrain's default generator each iteration.

    Example:
        >>> s = WeightedRandomSampler([0.0, 1.0, 0.0], 4, generator=np.random.default_rng(0))
        >>> list(s)
        [1, 1, 1, 1]
    """

    def __init__(self, weights, num_samples: int, replacement: bool = True,
                 generator: np.random.Generator | None = None) -> None:
        if (isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer))
                or num_samples <= 0):
            raise ValueError(f"WeightedRandomSampler: num_samples should be a positive integer "
                             f"value, but got num_samples={num_samples!r}")
        if not isinstance(replacement, bool):
            raise ValueError(f"WeightedRandomSampler: replacement should be a boolean value, "
                             f"but got replacement={replacement!r}")
        weights = np.asarray(getattr(weights, "array", weights), dtype=np.float64)
        if weights.ndim != 1:
            raise ValueError(f"WeightedRandomSampler: weights should be a 1d sequence but given "
                             f"weights have shape {weights.shape}")
        if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"WeightedRandomSampler: weights should be finite, non-negative "
                             f"and not all zero, got min {weights.min(initial=0)}, sum "
                             f"{weights.sum()}")
        if not replacement and num_samples > np.count_nonzero(weights):
            raise ValueError(f"WeightedRandomSampler: cannot draw num_samples={num_samples} "
                             f"without replacement from {np.count_nonzero(weights)} non-zero "
                             "weights; pass replacement=True or fewer num_samples")
        self.weights, self.num_samples = weights, int(num_samples)
        self.replacement, self.generator = replacement, generator

    def __iter__(self) -> Iterator[int]:
        rng = resolve_generator("WeightedRandomSampler", self.generator)
        drawn = rng.choice(len(self.weights), size=self.num_samples, replace=self.replacement,
                           p=self.weights / self.weights.sum())
        return iter(drawn.tolist())

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler):
    """Groups the indices of `sampler` into lists of `batch_size`.

    Args:
        sampler: any iterable of indices.
        batch_size: indices per batch.
        drop_last: drop the final batch when it is smaller than `batch_size`.

    Example:
        >>> list(BatchSampler(SequentialSampler(range(5)), batch_size=2, drop_last=False))
        [[0, 1], [2, 3], [4]]
    """

    def __init__(self, sampler, batch_size: int, drop_last: bool) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"BatchSampler: batch_size should be a positive integer value, "
                             f"but got batch_size={batch_size!r}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"BatchSampler: drop_last should be a boolean value, but got "
                             f"drop_last={drop_last!r}")
        self.sampler, self.batch_size, self.drop_last = sampler, batch_size, drop_last

    def __iter__(self) -> Iterator[list[int]]:
        batch = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return -(-len(self.sampler) // self.batch_size)


class DistributedSampler(Sampler):
    """Yields the share of the indices that belongs to `rank` out of `num_replicas`.

    torch semantics: each epoch the indices are permuted with a Generator seeded by
    `seed + epoch` (identical on every rank), then padded by repeating indices from the start
    (or, with drop_last, truncated) to a multiple of `num_replicas`, so every rank gets
    `len(sampler)` indices; rank r takes positions r, r + num_replicas, ...

    Args:
        dataset: anything with a length.
        num_replicas: number of ranks sharing the data (default: the initialised process
            group's world size, as torch's).
        rank: this rank, in [0, num_replicas) (default: its rank in that group).
        shuffle: permute the indices each epoch.
        seed: base seed; must be the same on every rank.
        drop_last: drop the tail instead of padding it.

    Example:
        >>> s = DistributedSampler(range(5), num_replicas=2, rank=1, shuffle=False)
        >>> list(s)
        [1, 3, 0]
    """

    def __init__(self, dataset: Sized, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        if num_replicas is None or rank is None:
            group = env.process_group()  # NOTE: recorded by dist.init(); no MPI import here
            if group is None:
                raise ValueError(
                    f"DistributedSampler: num_replicas and rank are required (got "
                    f"num_replicas={num_replicas}, rank={rank}) when no process group is "
                    "initialised: call dist.init_process_group() (or dist.init()) first, under "
                    "mpirun, or pass them, e.g. num_replicas=dist.get_world_size(), "
                    "rank=dist.get_rank()")
            num_replicas = group.size if num_replicas is None else num_replicas
            rank = group.rank if rank is None else rank
        num_replicas = check_int("DistributedSampler", "num_replicas", num_replicas, 1)
        rank = check_int("DistributedSampler", "rank", rank, 0)
        if rank >= num_replicas:
            raise ValueError(f"DistributedSampler: invalid rank {rank}, rank should be in the "
                             f"interval [0, {num_replicas - 1}] for num_replicas={num_replicas}")
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed = check_int("DistributedSampler", "seed", seed, 0)
        self.epoch = 0
        n = len(dataset)
        if drop_last and n % num_replicas != 0:
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        if self.shuffle:
            indices = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            indices = np.arange(n)
        if self.drop_last:
            indices = indices[: self.total_size]
        elif self.total_size > n:
            indices = np.resize(indices, self.total_size)  # NOTE: repeats from the start
        return iter(indices[self.rank : self.total_size : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch, which reseeds the shuffle; call it before each epoch on every rank.

        Args:
            epoch: the epoch number.
        """
        self.epoch = check_int("DistributedSampler.set_epoch", "epoch", epoch, 0)

    def state_dict(self) -> dict:
        """{"epoch": int, "seed": int}, for checkpoints."""
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores what `state_dict()` returned."""
        self.set_epoch(int(state_dict["epoch"]))
        self.seed = int(state_dict["seed"])
