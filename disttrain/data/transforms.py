"""Image transforms on numpy arrays and Tensors, as torchvision.transforms (numpy only).

Transforms other than ToTensor take a numpy array or a Tensor and return the same kind.
The random augmentations (RandomCrop, RandomHorizontalFlip, RandomVerticalFlip,
RandomRotation, RandomAffine, ColorJitter, RandomErasing, GaussianNoise) live in
disttrain.data.augment*, are exported here, and take one sample (C, H, W) or a whole batch
(N, C, H, W) with its own random parameters per sample, in one vectorised pass.

Reproducible augmentation, per rank and epoch: either reseed a Compose at each epoch
(`aug.reseed(seed, rank, epoch)`, i.e. `set_generator(aug, seed_for(seed, rank, epoch))`), or
augment whole batches from the loader, each batch seeded by (seed, rank, epoch, batch index):

    >>> aug = Compose([RandomCrop(28, padding=2), RandomRotation(10)])
    >>> train = BatchAugment([np.zeros((256, 1, 28, 28), np.float32)], aug, seed=0, rank=0)
    >>> [x.shape for x in train]  # e.g. BatchAugment(DataLoader(...), aug, seed, dist.get_rank())
    [(256, 1, 28, 28)]

Imports numpy, disttrain.random and disttrain.tensor only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from disttrain.data.augment import (
    BatchAugment,
    InterpolationMode,
    RandomHorizontalFlip,
    RandomTransform,
    RandomVerticalFlip,
    seed_for,
    set_generator,
)
from disttrain.data.augment import unwrap as _unwrap
from disttrain.data.augment_geometry import RandomAffine, RandomCrop, RandomRotation
from disttrain.data.augment_pixel import ColorJitter, GaussianNoise, RandomErasing
from disttrain.tensor import Tensor

__all__ = [
    "BatchAugment", "ColorJitter", "Compose", "GaussianNoise", "InterpolationMode", "Lambda",
    "Normalize", "Pad", "RandomAffine", "RandomCrop", "RandomErasing", "RandomHorizontalFlip",
    "RandomRotation", "RandomTransform", "RandomVerticalFlip", "Resize", "ToTensor", "resize",
    "seed_for", "set_generator",
]


def _pair(value, owner: str, name: str) -> tuple[int, int]:
    values = (value, value) if isinstance(value, int) else tuple(value)
    if len(values) != 2 or any(not isinstance(v, int) or v <= 0 for v in values):
        raise ValueError(f"{owner}: {name} should be a positive int or a pair of positive "
                         f"ints, got {value!r}")
    return values


def _bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) interpolation matrix, half-pixel centres (align_corners=False)."""
    src = np.maximum((np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.intp), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo
    weights = np.zeros((out_size, in_size))
    np.add.at(weights, (np.arange(out_size), lo), 1.0 - frac)
    np.add.at(weights, (np.arange(out_size), hi), frac)
    return weights


def resize(array: np.ndarray, size: tuple[int, int], interpolation: str = "bilinear"):
    """Resizes the last two dims of `array` to `size` (no antialiasing, like F.interpolate).

    Integer inputs are rounded and clipped back to their dtype; bool becomes float32.

    Args:
        array: (..., H, W) numpy array.
        size: (height, width) of the output.
        interpolation: "bilinear" (half-pixel centres) or "nearest" (floor(dst * in / out)).

    Example:
        >>> resize(np.ones((1, 8, 8)), (24, 24)).shape
        (1, 24, 24)
    """
    if array.ndim < 2:
        raise ValueError(f"resize: expected an array with at least 2 dims (..., H, W), got "
                         f"shape {array.shape}")
    (h, w), (out_h, out_w) = array.shape[-2:], size
    if interpolation == "nearest":
        rows = np.arange(out_h) * h // out_h
        cols = np.arange(out_w) * w // out_w
        return array[..., rows[:, None], cols]
    if interpolation != "bilinear":
        raise ValueError(f"resize: interpolation should be 'bilinear' or 'nearest', got "
                         f"{interpolation!r}")
    # NOTE: bilinear is separable: one (out_h, h) and one (out_w, w) matrix, any batch dims.
    out = _bilinear_weights(h, out_h) @ array.astype(np.float64) @ _bilinear_weights(w, out_w).T
    if array.dtype.kind in "iu":
        info = np.iinfo(array.dtype)
        return np.clip(np.round(out), info.min, info.max).astype(array.dtype)
    return out.astype(array.dtype if array.dtype.kind == "f" else np.float32)


class Compose:
    """Applies transforms in order.

    Args:
        transforms: callables, each taking the previous one's output.

    Example:
        >>> t = Compose([ToTensor(), Normalize((0.5,), (0.5,))])
        >>> t(np.full((2, 2), 255, np.uint8)).array.max()
        np.float32(1.0)
    """

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x):
        for transform in self.transforms:
            x = transform(x)
        return x

    def reseed(self, seed: int, rank: int = 0, epoch: int = 0):
        """Gives every random transform inside the generator `seed_for(seed, rank, epoch)` and
        returns it (disttrain only): call it at the start of each epoch for augmentation that
        is the same on every run and different on every rank and epoch.

        Args:
            seed: the run's base seed.
            rank: this process's rank (`dist.get_rank()`).
            epoch: the epoch about to start.
        """
        generator = seed_for(seed, rank, epoch)
        set_generator(self, generator)
        return generator

    def __repr__(self) -> str:
        lines = "".join(f"\n    {t}" for t in self.transforms)
        return f"Compose({lines}\n)"


class ToTensor:
    """HxW or HxWxC numpy array to a CxHxW Tensor; uint8 becomes float32 in [0, 1].

    Other dtypes keep their values and dtype, as in torchvision.

    Example:
        >>> ToTensor()(np.zeros((28, 28, 3), np.uint8)).shape
        (3, 28, 28)
    """

    def __call__(self, pic: np.ndarray) -> Tensor:
        if not isinstance(pic, np.ndarray):
            raise TypeError(f"ToTensor: pic should be a numpy ndarray, got {type(pic).__name__}")
        if pic.ndim not in (2, 3):
            raise ValueError(f"ToTensor: pic should be 2 or 3 dimensional (HxW or HxWxC), got "
                             f"shape {pic.shape}")
        chw = (pic[None] if pic.ndim == 2 else pic.transpose(2, 0, 1))
        if pic.dtype == np.uint8:
            return Tensor(np.ascontiguousarray(chw, dtype=np.float32) / np.float32(255))
        return Tensor(np.ascontiguousarray(chw))

    def __repr__(self) -> str:
        return "ToTensor()"


class Normalize:
    """(x - mean) / std per channel of a (..., C, H, W) float array or Tensor.

    Args:
        mean: per-channel means (or one value for all channels).
        std: per-channel standard deviations, all non-zero.

    Example:
        >>> Normalize((0.5,), (0.25,))(np.ones((1, 2, 2), np.float32))[0, 0, 0]
        np.float32(2.0)
    """

    def __init__(self, mean: Sequence[float] | float, std: Sequence[float] | float) -> None:
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))
        if np.any(self.std == 0):
            raise ValueError(f"Normalize: std should be non-zero (division by zero), got "
                             f"std={list(self.std)}")

    def __call__(self, x):
        array, is_tensor = _unwrap(x, "Normalize")
        if array.dtype.kind != "f":
            raise TypeError(f"Normalize: input should be a float array, got dtype {array.dtype}")
        if array.ndim < 3:
            raise ValueError(f"Normalize: expected (..., C, H, W), got shape {array.shape}")
        channels = array.shape[-3]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values.size not in (1, channels):
                raise ValueError(f"Normalize: {name} has {values.size} values but the input has "
                                 f"{channels} channels (shape {array.shape})")
        mean = self.mean.astype(array.dtype)[:, None, None]
        std = self.std.astype(array.dtype)[:, None, None]
        out = (array - mean) / std
        return Tensor(out) if is_tensor else out

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class Lambda:
    """Wraps a function as a transform.

    Args:
        lambd: the function.

    Example:
        >>> Lambda(lambda x: x * 2)(np.ones(2))
        array([2., 2.])
    """

    def __init__(self, lambd: Callable) -> None:
        if not callable(lambd):
            raise TypeError(f"Lambda: argument should be callable, got {type(lambd).__name__}")
        self.lambd = lambd

    def __call__(self, x):
        return self.lambd(x)


class Pad:
    """Pads the last two dims (..., H, W).

    Args:
        padding: int (all sides), (left/right, top/bottom) or (left, top, right, bottom).
        fill: value for padding_mode="constant".
        padding_mode: "constant", "edge", "reflect" or "symmetric".

    Example:
        >>> Pad(2)(np.ones((1, 24, 24))).shape
        (1, 28, 28)
    """

    _MODES = ("constant", "edge", "reflect", "symmetric")

    def __init__(self, padding: int | Sequence[int], fill: float = 0,
                 padding_mode: str = "constant") -> None:
        pads = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
        if len(pads) == 2:
            pads = pads * 2
        if len(pads) != 4 or any(not isinstance(p, int) or p < 0 for p in pads):
            raise ValueError(f"Pad: padding should be a non-negative int or a sequence of 2 or 4 "
                             f"non-negative ints, got {padding!r}")
        if padding_mode not in self._MODES:
            raise ValueError(f"Pad: padding_mode should be one of {self._MODES}, got "
                             f"{padding_mode!r}")
        self.padding, self.fill, self.padding_mode = pads, fill, padding_mode

    def __call__(self, x):
        array, is_tensor = _unwrap(x, "Pad")
        left, top, right, bottom = self.padding
        widths = [(0, 0)] * (array.ndim - 2) + [(top, bottom), (left, right)]
        kwargs = {"constant_values": self.fill} if self.padding_mode == "constant" else {}
        out = np.pad(array, widths, mode=self.padding_mode, **kwargs)
        return Tensor(out) if is_tensor else out


class Resize:
    """Resizes the last two dims (..., H, W), as torchvision's Resize on tensors.

    Args:
        size: (height, width), or an int: the smaller edge becomes `size`, keeping the aspect.
        interpolation: "bilinear" or "nearest" (no antialiasing).

    Example:
        >>> Resize(24)(np.ones((1, 8, 16), np.float32)).shape
        (1, 24, 48)
    """

    def __init__(self, size: int | Sequence[int], interpolation: str = "bilinear") -> None:
        _pair(size, "Resize", "size")
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"Resize: interpolation should be 'bilinear' or 'nearest', got "
                             f"{interpolation!r}")
        self.size, self.interpolation = size, interpolation

    def __call__(self, x):
        array, is_tensor = _unwrap(x, "Resize")
        if array.ndim < 2:
            raise ValueError(f"Resize: expected (..., H, W), got shape {array.shape}")
        h, w = array.shape[-2:]
        if isinstance(self.size, int):
            short, long = sorted((h, w))
            other = int(self.size * long / short)
            size = (self.size, other) if h <= w else (other, self.size)
        else:
            size = tuple(self.size)
        out = resize(array, size, self.interpolation)
        return Tensor(out) if is_tensor else out
