"""Random augmentation: the base class, seeding per rank and epoch, flips, noise, erasing.

Every random transform takes one sample (C, H, W) (or (H, W)) or a whole batch (N, C, H, W),
as a numpy array or a Tensor, and returns the same kind. A batch is augmented in one
vectorised numpy pass with its own random parameters for each sample (torchvision would draw
one set for the whole batch). Randomness comes from the transform's `generator` (a
dt.Generator or numpy Generator), else from disttrain's default generator, so `dt.manual_seed`
makes a script reproducible; `seed_for` and `BatchAugment` make it reproducible per rank,
epoch and batch. (As a dataset transform under DataLoader(num_workers > 0), samples draw in
whatever order the worker threads run: use BatchAugment, or num_workers=0, to reproduce a run.)
These names are exported by `disttrain.data.transforms`.
Imports numpy, disttrain.random, disttrain.checks and disttrain.tensor only.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator

import numpy as np

from disttrain import random as dt_random
from disttrain.checks import check_int
from disttrain.tensor import Tensor


class InterpolationMode(str, enum.Enum):
    """torchvision's interpolation names; plain strings ("nearest", "bilinear") work too."""

    NEAREST = "nearest"
    BILINEAR = "bilinear"


def unwrap(x, owner: str) -> tuple[np.ndarray, bool]:
    """(the numpy array of x, whether x was a Tensor); TypeError for anything else."""
    array = x.array if isinstance(x, Tensor) else x
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{owner}: expected a numpy array or a CPU Tensor, got "
                        f"{type(x).__name__}; transforms run on the host, before .to('cuda')")
    return array, isinstance(x, Tensor)


def check_probability(owner: str, p) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{owner}: p should be a probability in [0, 1], got {p}")
    return float(p)


def seed_for(seed: int, rank: int = 0, epoch: int = 0, batch_index: int | None = None):
    """A dt.Generator seeded from (seed, rank, epoch[, batch_index]) through numpy's
    SeedSequence, so every rank and epoch gets its own independent, reproducible stream.

    Args:
        seed: the run's base seed (non-negative int).
        rank: this process's rank (e.g. `dist.get_rank()`); ranks get different streams.
        epoch: the epoch; epochs get different streams.
        batch_index: optionally the batch within the epoch (what `BatchAugment` uses, so a
            run resumed mid-epoch augments its remaining batches as the uninterrupted run).

    Example:
        >>> g = seed_for(0, rank=1, epoch=3)
        >>> float(g.random()) == float(seed_for(0, rank=1, epoch=3).random())
        True
    """
    keys = [check_int("seed_for", name, value, 0) for name, value in
            (("seed", seed), ("rank", rank), ("epoch", epoch))]
    if batch_index is not None:
        keys.append(check_int("seed_for", "batch_index", batch_index, 0))
    state = np.random.SeedSequence(keys).generate_state(1, np.uint64)[0]
    return dt_random.Generator().manual_seed(int(state))


def set_generator(transform, generator) -> None:
    """Sets `generator` on every RandomTransform in `transform` (recursing into Compose).

    Args:
        transform: a transform, or a Compose (anything with a `transforms` list) of them.
        generator: a dt.Generator / numpy Generator, or None for the default generator.
    """
    if isinstance(transform, RandomTransform):
        transform.generator = check_generator(type(transform).__name__, generator)
    for inner in getattr(transform, "transforms", ()):
        set_generator(inner, generator)


def check_generator(owner: str, generator):
    if generator is not None and not isinstance(generator, np.random.Generator):
        raise TypeError(f"{owner}: generator should be a dt.Generator or a numpy Generator, "
                        f"got {type(generator).__name__}")
    return generator


class RandomTransform:
    """Base of the random transforms: draws per-sample parameters, then applies them.

    Subclasses define `make_params(batch)` (for a (N, C, H, W) batch: a dict of arrays with
    one row per sample, drawn from `self.rng()`) and `transform(batch, params)` (vectorised
    over the batch).
    `apply(x, params)` applies given parameters, so a batch and its samples can be compared.
    """

    def __init__(self, generator=None) -> None:
        self.generator = check_generator(type(self).__name__, generator)

    def rng(self) -> np.random.Generator:
        return dt_random.resolve(self.generator)

    def __call__(self, x):
        batch, restore = self._as_batch(x)
        return restore(self.transform(batch, self.make_params(batch)))

    def apply(self, x, params: dict):
        """Applies `params` (as `make_params` returns them, one row per sample) to x."""
        batch, restore = self._as_batch(x)
        return restore(self.transform(batch, params))

    def _as_batch(self, x) -> tuple[np.ndarray, Callable]:
        owner = type(self).__name__
        array, is_tensor = unwrap(x, owner)
        if array.ndim not in (2, 3, 4):
            raise ValueError(f"{owner}: expected a sample (C, H, W) or (H, W), or a batch "
                             f"(N, C, H, W), got shape {array.shape}")
        self.check_input(array)
        lead = (None,) * (4 - array.ndim)
        shape = array.shape

        def restore(out: np.ndarray):
            out = out if array.ndim == 4 else out.reshape(out.shape[4 - len(shape):])
            return Tensor(out) if is_tensor else out

        return array[lead], restore

    def check_input(self, array: np.ndarray) -> None:
        """Hook: raise for inputs this transform cannot take (the default takes all)."""

    def make_params(self, batch: np.ndarray) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must define make_params")

    def transform(self, batch: np.ndarray, params: dict) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must define transform")


class RandomHorizontalFlip(RandomTransform):
    """Flips the image left-right with probability p (each sample of a batch on its own draw).

    Args:
        p: probability of flipping.
        generator: dt.Generator / numpy Generator (default: disttrain's default generator).

    Example:
        >>> RandomHorizontalFlip(p=1.0)(np.array([[[1, 2, 3]]]))
        array([[[3, 2, 1]]])
    """

    _axis = -1

    def __init__(self, p: float = 0.5, *, generator=None) -> None:
        super().__init__(generator)
        self.p = check_probability(type(self).__name__, p)

    def make_params(self, batch: np.ndarray) -> dict:
        return {"flip": self.rng().random(len(batch)) < self.p}

    def transform(self, batch: np.ndarray, params: dict) -> np.ndarray:
        out, flip = batch.copy(), np.asarray(params["flip"], dtype=bool)
        out[flip] = np.flip(batch[flip], axis=self._axis)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class RandomVerticalFlip(RandomHorizontalFlip):
    """Flips the image upside down with probability p (each sample of a batch on its own draw).

    Args:
        p: probability of flipping.
        generator: dt.Generator / numpy Generator (default: disttrain's default generator).

    Example:
        >>> RandomVerticalFlip(p=1.0)(np.array([[[1], [2]]]))[0, :, 0]
        array([2, 1])
    """

    _axis = -2


class BatchAugment:
    """Wraps a loader so every batch's inputs go through `transform`, each sample with its own
    random parameters and each batch with the generator `seed_for(seed, rank, epoch, index)`.

    The same seed gives the same augmented batches on every run, different ranks get different
    ones, and a run resumed mid-epoch from `state_dict()` continues exactly. The epoch counts
    the `iter()` calls from 0 (as DataLoader's shuffle), or is set by `set_epoch`. The batch
    element `index` (a position in a tuple/list batch, a key in a dict batch; a Tensor batch
    is the input itself) must be (N, C, H, W), or (N, H, W), augmented as (N, 1, H, W). Other
    attributes (`dataset`, `sampler`, `batch_size`) are the loader's.

    Args:
        loader: an iterable of batches (e.g. a DataLoader).
        transform: a transform or Compose taking a (N, C, H, W) batch.
        seed: base seed; None draws one from disttrain's default generator at construction.
        rank: this process's rank (`dist.get_rank()`), so ranks augment differently.
        index: which element of each batch to augment.

    Example:
        >>> from disttrain.data import DataLoader, TensorDataset
        >>> ds = TensorDataset(np.zeros((8, 1, 4, 4), np.float32), np.arange(8))
        >>> train = BatchAugment(DataLoader(ds, batch_size=4), RandomHorizontalFlip(), seed=0)
        >>> [tuple(x.shape) for x, y in train]
        [(4, 1, 4, 4), (4, 1, 4, 4)]
    """

    def __init__(self, loader, transform: Callable, seed: int | None = None, rank: int = 0,
                 index: int | str = 0) -> None:
        if seed is None:
            seed = int(dt_random.default_generator().integers(2**63))
        self.seed = check_int("BatchAugment", "seed", seed, 0)
        self.rank = check_int("BatchAugment", "rank", rank, 0)
        self.loader, self.transform, self.index = loader, transform, index
        self._next_epoch, self._resume, self._epoch, self._yielded = 0, 0, 0, 0
        self._in_epoch = False

    def set_epoch(self, epoch: int) -> None:
        """Makes the next `iter()` augment as epoch `epoch` (as DistributedSampler.set_epoch)."""
        self._next_epoch = check_int("BatchAugment.set_epoch", "epoch", epoch, 0)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str):
        if name == "loader":  # NOTE: not set yet (e.g. during copy): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self) -> Iterator:
        epoch, skip = self._next_epoch, self._resume
        self._next_epoch, self._resume = epoch + 1, 0
        self._epoch, self._yielded, self._in_epoch = epoch, skip, True
        for batch in self.loader:
            set_generator(self.transform, seed_for(self.seed, self.rank, epoch, self._yielded))
            self._yielded += 1
            yield self._augment(batch)
        self._in_epoch = False

    def _augment(self, batch):
        if isinstance(batch, (Tensor, np.ndarray)):
            return self._augment_inputs(batch)
        if isinstance(batch, dict):
            return {**batch, self.index: self._augment_inputs(batch[self.index])}
        if isinstance(batch, (list, tuple)):
            items = list(batch)
            items[self.index] = self._augment_inputs(items[self.index])
            return type(batch)(items) if isinstance(batch, list) else tuple(items)
        raise TypeError(f"BatchAugment: expected batches that are Tensors, arrays, tuples, "
                        f"lists or dicts, got {type(batch).__name__}")

    def _augment_inputs(self, x):
        array, is_tensor = unwrap(x, "BatchAugment")
        if array.ndim not in (3, 4):
            raise ValueError(f"BatchAugment: batch element {self.index!r} should be (N, C, H, W) "
                             f"or (N, H, W), got shape {array.shape}")
        inputs = array[:, None] if array.ndim == 3 else array
        out, _ = unwrap(self.transform(Tensor(inputs) if is_tensor else inputs), "BatchAugment")
        out = out[:, 0] if array.ndim == 3 else out
        return Tensor(out) if is_tensor else out

    def state_dict(self) -> dict:
        """{"epoch", "batches_yielded", "seed"} plus the loader's own state under "loader"."""
        if self._in_epoch:
            state = {"epoch": self._epoch, "batches_yielded": self._yielded}
        else:
            state = {"epoch": self._next_epoch, "batches_yielded": self._resume}
        state["seed"] = self.seed
        if callable(getattr(self.loader, "state_dict", None)):
            state["loader"] = self.loader.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores a `state_dict()`: the next `iter()` continues that epoch's augmentation."""
        self._next_epoch = check_int("BatchAugment", "epoch", state_dict["epoch"], 0)
        self._resume = check_int("BatchAugment", "batches_yielded",
                                 state_dict["batches_yielded"], 0)
        self.seed, self._in_epoch = int(state_dict["seed"]), False
        if "loader" in state_dict and callable(getattr(self.loader, "load_state_dict", None)):
            self.loader.load_state_dict(state_dict["loader"])

    def __repr__(self) -> str:
        return f"BatchAugment({self.transform!r}, seed={self.seed}, rank={self.rank})"


def as_float_pair(owner: str, name: str, value, low: float = -math.inf) -> list[float]:
    """A [min, max] range from a number v (-> [-v, v]) or a pair, checked against `low`."""
    if isinstance(value, (int, float, np.number)):
        if value < 0:
            raise ValueError(f"{owner}: if {name} is a single number, it must be non-negative, "
                             f"got {value}")
        value = (-value, value)
    pair = [float(v) for v in value]
    if len(pair) != 2 or pair[0] > pair[1] or pair[0] < low:
        raise ValueError(f"{owner}: {name} should be a number or a (min, max) pair with "
                         f"min >= {low}, got {value!r}")
    return pair
