"""Geometric augmentation: RandomCrop, RandomRotation, RandomAffine, with torchvision's
arguments and pixel conventions, vectorised over a batch (one grid, one gather, no loop over
samples). Exported by `disttrain.data.transforms`. Imports numpy and disttrain.data.augment,
disttrain.data.warp.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from disttrain.data.augment import InterpolationMode, RandomTransform, as_float_pair
from disttrain.data.warp import expanded_size, inverse_affine_matrix, warp_affine


def check_fill(owner: str, fill):
    if fill is None:
        return 0
    if isinstance(fill, (int, float, np.number)) or (
            isinstance(fill, Sequence) and all(isinstance(f, (int, float)) for f in fill)):
        return fill
    raise TypeError(f"{owner}: fill should be a number or a sequence of numbers, got {fill!r}")


def _fill_for(owner: str, fill, channels: int) -> np.ndarray:
    values = np.atleast_1d(np.asarray(fill, dtype=np.float64))
    if values.size not in (1, channels):
        raise ValueError(f"{owner}: fill has {values.size} values but the input has {channels} "
                         f"channels; give one value or one per channel")
    return values


def parse_padding(owner: str, padding) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) from an int or a sequence of 1, 2 or 4 ints (torchvision)."""
    pads = (padding,) if isinstance(padding, int) else tuple(padding)
    pads = {1: pads * 4, 2: pads * 2, 4: pads}.get(len(pads))
    if pads is None or any(not isinstance(p, int) or p < 0 for p in pads):
        raise ValueError(f"{owner}: padding should be a non-negative int or a sequence of 1, 2 "
                         f"or 4 non-negative ints, got {padding!r}")
    return pads


def _pair(owner: str, size) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) == 1:
        pair = pair * 2
    if len(pair) != 2 or any(not isinstance(s, int) or s <= 0 for s in pair):
        raise ValueError(f"{owner}: size should be a positive int or a pair of positive ints, "
                         f"got {size!r}")
    return pair


class RandomCrop(RandomTransform):
    """Crops a random (height, width) window, after optional padding, as torchvision's.

    A batch is padded once and each sample's window is gathered at its own offset.

    Args:
        size: (height, width) of the crop, or an int for a square.
        padding: int or sequence of 1, 2 (left/right, top/bottom) or 4 (left, top, right,
            bottom) ints, added on the borders first.
        pad_if_needed: pad an image smaller than `size` (torchvision: each side by the
            shortfall).
        fill: padding value for padding_mode="constant": a number or one per channel.
        padding_mode: "constant", "edge", "reflect" or "symmetric".
        generator: dt.Generator / numpy Generator (default: disttrain's default generator).

    Example:
        >>> RandomCrop(28, padding=2)(np.zeros((256, 1, 28, 28), np.float32)).shape
        (256, 1, 28, 28)
    """

    _MODES = ("constant", "edge", "reflect", "symmetric")

    def __init__(self, size, padding=None, pad_if_needed: bool = False, fill=0,
                 padding_mode: str = "constant", *, generator=None) -> None:
        super().__init__(generator)
        self.size = _pair("RandomCrop", size)
        self._pads = (0, 0, 0, 0) if padding is None else parse_padding("RandomCrop", padding)
        if padding_mode not in self._MODES:
            raise ValueError(f"RandomCrop: padding_mode should be one of {self._MODES}, got "
                             f"{padding_mode!r}")
        self.padding, self.pad_if_needed = padding, pad_if_needed
        self.fill, self.padding_mode = check_fill("RandomCrop", fill), padding_mode

    def _padding_for(self, height: int, width: int) -> tuple[int, int, int, int]:
        left, top, right, bottom = self._pads
        height, width = height + top + bottom, width + left + right
        if self.pad_if_needed and width < self.size[1]:
            left, right = left + self.size[1] - width, right + self.size[1] - width
        if self.pad_if_needed and height < self.size[0]:
            top, bottom = top + self.size[0] - height, bottom + self.size[0] - height
        return left, top, right, bottom

    def _padded_size(self, batch: np.ndarray) -> tuple[int, int]:
        left, top, right, bottom = self._padding_for(*batch.shape[-2:])
        height, width = batch.shape[-2] + top + bottom, batch.shape[-1] + left + right
        if height < self.size[0] or width < self.size[1]:
            raise ValueError(f"RandomCrop: required crop size {self.size} is larger than the "
                             f"(padded) input image size {(height, width)}")
        return height, width

    def make_params(self, batch: np.ndarray) -> dict:
        height, width = self._padded_size(batch)
        rng, n = self.rng(), len(batch)
        return {"i": rng.integers(0, height - self.size[0] + 1, n),
                "j": rng.integers(0, width - self.size[1] + 1, n)}

    def pad(self, batch: np.ndarray) -> np.ndarray:
        """The (N, C, H, W) batch with this transform's padding (before the crop)."""
        self._padded_size(batch)
        left, top, right, bottom = self._padding_for(*batch.shape[-2:])
        n, c, h, w = batch.shape
        if self.padding_mode != "constant":
            return np.pad(batch, [(0, 0), (0, 0), (top, bottom), (left, right)],
                          mode=self.padding_mode)
        out = np.empty((n, c, h + top + bottom, w + left + right), batch.dtype)
        out[...] = _fill_for("RandomCrop", self.fill, c).astype(batch.dtype)[:, None, None]
        out[:, :, top:top + h, left:left + w] = batch
        return out

    def transform(self, batch: np.ndarray, params: dict) -> np.ndarray:
        windows = sliding_window_view(self.pad(batch), self.size, axis=(2, 3))
        return windows[np.arange(len(batch)), :, np.asarray(params["i"]),
                       np.asarray(params["j"])]

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


def _check_interpolation(owner: str, interpolation) -> InterpolationMode:
    try:
        return InterpolationMode(interpolation)
    except ValueError:
        raise ValueError(f"{owner}: interpolation should be 'nearest' or 'bilinear' "
                         f"(InterpolationMode.NEAREST/BILINEAR), got {interpolation!r}") from None


def _check_center(owner: str, center):
    if center is not None and len(tuple(center)) != 2:
        raise ValueError(f"{owner}: center should be a sequence of 2 numbers (x, y), got "
                         f"{center!r}")
    return center


def _center_offset(center, height: int, width: int) -> tuple[float, float]:
    """torchvision's centre: pixel coordinates moved so (0, 0) is the image centre."""
    return (0.0, 0.0) if center is None else (center[0] - width * 0.5, center[1] - height * 0.5)


class RandomRotation(RandomTransform):
    """Rotates by an angle drawn from `degrees`, counter-clockwise, as torchvision's.

    Args:
        degrees: a number d for [-d, d], or a (min, max) pair, in degrees.
        interpolation: "nearest" or "bilinear" (or InterpolationMode.NEAREST/BILINEAR).
        expand: enlarge the output to hold the whole rotated image (single samples only,
            since the size depends on each sample's angle).
        center: (x, y) pixel centre of rotation; default the image centre.
        fill: value for the area outside the rotated image: a number or one per channel.
        generator: dt.Generator / numpy Generator (default: disttrain's default generator).

    Example:
        >>> RandomRotation(10)(np.zeros((256, 1, 28, 28), np.float32)).shape
        (256, 1, 28, 28)
    """

    def __init__(self, degrees, interpolation=InterpolationMode.NEAREST, expand: bool = False,
                 center=None, fill=0, *, generator=None) -> None:
        super().__init__(generator)
        self.degrees = as_float_pair("RandomRotation", "degrees", degrees)
        self.interpolation = _check_interpolation("RandomRotation", interpolation)
        self.expand, self.center = expand, _check_center("RandomRotation", center)
        self.fill = check_fill("RandomRotation", fill)

    def check_input(self, array: np.ndarray) -> None:
        if self.expand and array.ndim == 4:
            raise ValueError(f"RandomRotation: expand=True gives each sample of a batch its own "
                             f"size; apply it per sample, or use expand=False for a batch "
                             f"(got shape {array.shape})")

    def make_params(self, batch: np.ndarray) -> dict:
        return {"angle": self.rng().uniform(*self.degrees, size=len(batch))}

    def transform(self, batch: np.ndarray, params: dict) -> np.ndarray:
        height, width = batch.shape[-2:]
        # NOTE: torchvision's rotate passes -angle (its affine angles are clockwise)
        matrix = inverse_affine_matrix(-np.asarray(params["angle"], dtype=np.float64),
                                       center=_center_offset(self.center, height, width))
        size = expanded_size(matrix[0], width, height) if self.expand else None
        fill = _fill_for("RandomRotation", self.fill, batch.shape[1])
        return warp_affine(batch, matrix, self.interpolation, fill, size)

    def __repr__(self) -> str:
        center = f", center={self.center}" if self.center is not None else ""
        return (f"RandomRotation(degrees={self.degrees}, interpolation="
                f"{self.interpolation.value}, expand={self.expand}{center}, fill={self.fill})")


class RandomAffine(RandomTransform):
    """Random rotation, translation, scale and shear keeping the centre, as torchvision's.

    Args:
        degrees: a number d for [-d, d], or a (min, max) pair; 0 for no rotation.
        translate: (a, b): horizontal shift drawn in [-a * W, a * W], vertical in
            [-b * H, b * H], rounded to whole pixels; None for none.
        scale: (min, max) scale factor; None for 1.
        shear: a number s (x shear in [-s, s]), a pair (x range) or 4 numbers (x and y
            ranges), in degrees; None for none.
        interpolation: "nearest" or "bilinear" (or InterpolationMode.NEAREST/BILINEAR).
        fill: value for the area outside the transformed image: a number or one per channel.
        center: (x, y) pixel centre; default the image centre.
        generator: dt.Generator / numpy Generator (default: disttrain's default generator).

    Example:
        >>> t = RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(0.9, 1.1))
        >>> t(np.zeros((8, 1, 28, 28), np.float32)).shape
        (8, 1, 28, 28)
    """

    def __init__(self, degrees, translate=None, scale=None, shear=None,
                 interpolation=InterpolationMode.NEAREST, fill=0, center=None, *,
                 generator=None) -> None:
        super().__init__(generator)
        owner = "RandomAffine"
        self.degrees = as_float_pair(owner, "degrees", degrees)
        if translate is not None and (len(translate) != 2 or
                                      not all(0.0 <= t <= 1.0 for t in translate)):
            raise ValueError(f"{owner}: translate should be 2 fractions in [0, 1], got "
                             f"{translate!r}")
        if scale is not None and (len(scale) != 2 or not all(s > 0 for s in scale)
                                  or scale[0] > scale[1]):
            raise ValueError(f"{owner}: scale should be a (min, max) pair of positive numbers, "
                             f"got {scale!r}")
        if shear is not None and not isinstance(shear, (int, float)) and len(shear) == 4:
            self.shear = (as_float_pair(owner, "shear", shear[:2])
                          + as_float_pair(owner, "shear", shear[2:]))
        else:
            self.shear = None if shear is None else as_float_pair(owner, "shear", shear)
        self.translate, self.scale = translate, scale
        self.interpolation = _check_interpolation(owner, interpolation)
        self.fill, self.center = check_fill(owner, fill), _check_center(owner, center)

    def make_params(self, batch: np.ndarray) -> dict:
        rng, n, (height, width) = self.rng(), len(batch), batch.shape[-2:]
        params = {"angle": rng.uniform(*self.degrees, size=n),
                  "translate": np.zeros((n, 2)), "scale": np.ones(n), "shear": np.zeros((n, 2))}
        if self.translate is not None:
            limit = np.array([self.translate[0] * width, self.translate[1] * height])
            params["translate"] = np.rint(rng.uniform(-limit, limit, size=(n, 2)))
        if self.scale is not None:
            params["scale"] = rng.uniform(*self.scale, size=n)
        if self.shear is not None:
            params["shear"][:, 0] = rng.uniform(*self.shear[:2], size=n)
            if len(self.shear) == 4:
                params["shear"][:, 1] = rng.uniform(*self.shear[2:], size=n)
        return params

    def transform(self, batch: np.ndarray, params: dict) -> np.ndarray:
        height, width = batch.shape[-2:]
        translate, shear = np.asarray(params["translate"]), np.asarray(params["shear"])
        matrix = inverse_affine_matrix(params["angle"], translate.T, params["scale"], shear.T,
                                       _center_offset(self.center, height, width))
        fill = _fill_for("RandomAffine", self.fill, batch.shape[1])
        return warp_affine(batch, matrix, self.interpolation, fill)

    def __repr__(self) -> str:
        parts = [f"degrees={self.degrees}"]
        parts += [f"{name}={value}" for name, value in (("translate", self.translate),
                  ("scale", self.scale), ("shear", self.shear)) if value is not None]
        if self.interpolation is not InterpolationMode.NEAREST:
            parts.append(f"interpolation={self.interpolation.value}")
        parts += [f"fill={self.fill}"] if self.fill != 0 else []
        parts += [f"center={self.center}"] if self.center is not None else []
        return f"RandomAffine({', '.join(parts)})"
