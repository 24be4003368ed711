"""Geometric augmentation: RandomCrop, RandomRotation, RandomAffine, with torchvision's
arguments and pixel conventions, vectorised over a batch (one grid, one gather, no loop over
samples). Exported by `disttrain.data.transforms`. Imports numpy and disttrain.data.augment.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from disttrain.data.augment import InterpolationMode, RandomTransform, as_float_pair


def inverse_affine_matrix(angle, translate=(0.0, 0.0), scale=1.0, shear=(0.0, 0.0),
                          center=(0.0, 0.0)) -> np.ndarray:
    """(N, 2, 3) matrices mapping an output pixel to the input pixel it samples, both as
    (x, y) relative to the image centre: torchvision's `_get_inverse_affine_matrix` on arrays.

    Args:
        angle: (N,) rotation in degrees (torchvision's affine convention).
        translate: (tx, ty) in pixels, each a number or an (N,) array.
        scale: number or (N,) array, > 0.
        shear: (sx, sy) in degrees, each a number or an (N,) array.
        center: (cx, cy) relative to the image centre.

    Example:
        >>> bool(np.allclose(inverse_affine_matrix([0.0], translate=(2, 1))[0],
        ...                  [[1, 0, -2], [0, 1, -1]]))
        True
    """
    angle = np.atleast_1d(np.asarray(angle, dtype=np.float64))
    (tx, ty), (cx, cy) = translate, center
    rot, sx, sy = np.radians(angle), np.radians(shear[0]), np.radians(shear[1])
    a = np.cos(rot - sy) / np.cos(sy)
    b = -(a * np.tan(sx) + np.sin(rot))
    c = np.sin(rot - sy) / np.cos(sy)
    d = np.cos(rot) - c * np.tan(sx)
    zero = np.zeros_like(angle)
    m = np.stack(np.broadcast_arrays(d, -b, zero, -c, a, zero)) / scale  # (6, N)
    # NOTE: C * RSS^-1 * C^-1 * T^-1: the inverse translation, then the centre
    m[2] += cx - m[0] * (cx + tx) - m[1] * (cy + ty)
    m[5] += cy - m[3] * (cx + tx) - m[4] * (cy + ty)
    return m.T.reshape(-1, 2, 3)


def expanded_size(matrix: np.ndarray, width: int, height: int) -> tuple[int, int]:
    """(height, width) holding the whole transformed image (torchvision's expand=True)."""
    corners = np.array([[-0.5, -0.5, 1.0], [-0.5, 0.5, 1.0], [0.5, 0.5, 1.0], [0.5, -0.5, 1.0]])
    points = (corners * [width, height, 1.0]) @ np.asarray(matrix, np.float32).T
    low = points.min(axis=0) + [width * 0.5, height * 0.5]
    high = points.max(axis=0) + [width * 0.5, height * 0.5]
    # NOTE: truncate to 1e-4 first, as torchvision, so 28.000000001 does not ceil to 29
    size = np.ceil(np.trunc(high * 1e4) * 1e-4) - np.floor(np.trunc(low * 1e4) * 1e-4)
    return int(size[1]), int(size[0])


def warp_affine(batch: np.ndarray, matrix: np.ndarray, interpolation: str = "nearest",
                fill=0.0, out_size: tuple[int, int] | None = None) -> np.ndarray:
    """Samples each image of a (N, C, H, W) batch through its own inverse matrix (N, 2, 3).

    Output pixel (x, y), relative to the output centre, reads input pixel matrix @ (x, y, 1)
    relative to the input centre, as torchvision's affine grid with grid_sample
    (align_corners=False, zeros padding) and its fill rule: nearest puts `fill` where the
    source is outside; bilinear mixes `fill` in by the outside weight.

    Args:
        batch: (N, C, H, W) array (integer dtypes are computed in float32 and rounded back).
        matrix: (N, 2, 3) from `inverse_affine_matrix`.
        interpolation: "nearest" (round half to even) or "bilinear".
        fill: a number or one per channel.
        out_size: (height, width) of the output; default the input's.
    """
    n, c, h, w = batch.shape
    oh, ow = out_size or (h, w)
    ftype = batch.dtype if batch.dtype.kind == "f" else np.dtype(np.float32)
    m = matrix.astype(ftype)
    xs = np.arange(ow, dtype=ftype) - ftype.type((ow - 1) / 2)
    ys = np.arange(oh, dtype=ftype)[:, None] - ftype.type((oh - 1) / 2)
    src = [m[:, k, 0, None, None] * xs + m[:, k, 1, None, None] * ys
           + (m[:, k, 2] + ftype.type((size - 1) / 2))[:, None, None]
           for k, size in ((0, w), (1, h))]
    flat = np.moveaxis(batch, 1, 0).reshape(c, n * h * w)
    base = (np.arange(n) * (h * w))[:, None, None]
    fill = np.broadcast_to(np.asarray(fill, ftype).reshape(-1, 1, 1, 1), (c, 1, 1, 1))
    if InterpolationMode(interpolation) is InterpolationMode.NEAREST:
        ix, iy = (np.rint(s).astype(np.intp) for s in src)
        out = flat[:, base + np.clip(iy, 0, h - 1) * w + np.clip(ix, 0, w - 1)]
        outside = (ix < 0) | (ix >= w) | (iy < 0) | (iy >= h)
        out = np.where(outside, fill.astype(out.dtype) if out.dtype.kind == "f" else
                       np.rint(fill).astype(out.dtype), out)
        return np.ascontiguousarray(np.moveaxis(out, 0, 1))
    out = _bilinear(flat, base, src, h, w, fill)
    out = np.moveaxis(out, 0, 1)
    if batch.dtype.kind != "f":
        return np.rint(out).astype(batch.dtype)
    return np.ascontiguousarray(out)


def _bilinear(flat, base, src, h: int, w: int, fill) -> np.ndarray:
    x0, y0 = np.floor(src[0]), np.floor(src[1])
    wx, wy = src[0] - x0, src[1] - y0
    x0, y0 = x0.astype(np.intp), y0.astype(np.intp)
    value, mask = 0.0, 0.0
    for dy, dx, weight in ((0, 0, (1 - wx) * (1 - wy)), (0, 1, wx * (1 - wy)),
                           (1, 0, (1 - wx) * wy), (1, 1, wx * wy)):
        ix, iy = x0 + dx, y0 + dy
        weight = weight * ((ix >= 0) & (ix < w) & (iy >= 0) & (iy < h))
        value = value + flat[:, base + np.clip(iy, 0, h - 1) * w + np.clip(ix, 0, w - 1)] * weight
        mask = mask + weight
    # NOTE: torchvision's fill rule: (sampled - fill) * inside_weight + fill
    return (value - fill) * mask + fill


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
