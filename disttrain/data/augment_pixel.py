"""Pixel-value augmentation: GaussianNoise, RandomErasing and ColorJitter (torchvision's
formulas), vectorised over a batch with per-sample parameters. Exported by
`disttrain.data.transforms`. Imports numpy and disttrain.data.augment.
"""

from __future__ import annotations

import numpy as np

from disttrain.data.augment import RandomTransform, check_probability


class GaussianNoise(RandomTransform):
    """Adds N(mean, sigma^2) noise to a float image, as torchvision.transforms.v2.GaussianNoise.

    Args:
        mean: mean of the noise.
        sigma: standard deviation of the noise (>= 0).
        clip: clamp the result to [0, 1].
        generator: dt.Generator / numpy Generator (default: disttrain's default generator).

    Example:
        >>> GaussianNoise(sigma=0.0)(np.full((1, 2, 2), 2.0, np.float32)).max()
        np.float32(1.0)
    """

    def __init__(self, mean: float = 0.0, sigma: float = 0.1, clip: bool = True, *,
                 generator=None) -> None:
        super().__init__(generator)
        if sigma < 0:
            raise ValueError(f"GaussianNoise: sigma shouldn't be negative, got {sigma}")
        self.mean, self.sigma, self.clip = float(mean), float(sigma), bool(clip)

    def make_params(self, batch: np.ndarray) -> dict:
        dtype = batch.dtype if batch.dtype in (np.float32, np.float64) else np.float64
        return {"noise": self.rng().standard_normal(batch.shape, dtype=dtype)}

    def transform(self, batch: np.ndarray, params: dict) -> np.ndarray:
        if batch.dtype.kind != "f":
            raise TypeError(f"GaussianNoise: input should be a float array, got dtype "
                            f"{batch.dtype}")
        dtype = batch.dtype.type
        out = batch + (dtype(self.mean) + params["noise"].astype(dtype) * dtype(self.sigma))
        return np.clip(out, 0, 1, out=out) if self.clip else out

    def __repr__(self) -> str:
        return f"GaussianNoise(mean={self.mean}, sigma={self.sigma}, clip={self.clip})"


class RandomErasing(RandomTransform):
    """Erases a random rectangle with probability p, as torchvision's RandomErasing.

    The rectangle's area is a `scale` fraction of the image and its aspect ratio is drawn
    log-uniformly from `ratio`; up to 10 tries per sample, else the sample is left as is.

    Args:
        p: probability of erasing.
        scale: (min, max) fraction of the image area erased.
        ratio: (min, max) aspect ratio (height / width) of the rectangle.
        value: fill value: a number, one per channel, or "random" (standard normal values).
        inplace: erase in the input array itself.
        generator: dt.Generator / numpy Generator (default: disttrain's default generator).

    Example:
        >>> out = RandomErasing(p=1.0, scale=(0.25, 0.25), ratio=(1, 1))(np.ones((1, 4, 4)))
        >>> int((out == 0).sum())
        4
    """

    _TRIES = 10

    def __init__(self, p: float = 0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0,
                 inplace: bool = False, *, generator=None) -> None:
        super().__init__(generator)
        self.p = check_probability("RandomErasing", p)
        for name, pair in (("scale", scale), ("ratio", ratio)):
            if len(tuple(pair)) != 2 or pair[0] > pair[1] or pair[0] < 0:
                raise ValueError(f"RandomErasing: {name} should be (min, max) with "
                                 f"0 <= min <= max, got {pair!r}")
        if scale[1] > 1:
            raise ValueError(f"RandomErasing: scale should be between 0 and 1, got {scale!r}")
        if isinstance(value, str) and value != "random":
            raise ValueError(f"RandomErasing: a str value should be 'random', got {value!r}")
        self.scale, self.ratio, self.value, self.inplace = scale, ratio, value, inplace

    def make_params(self, batch: np.ndarray) -> dict:
        n, height, width = len(batch), *batch.shape[-2:]
        rng = self.rng()
        erase = rng.random(n) < self.p
        area = height * width * rng.uniform(*self.scale, size=(n, self._TRIES))
        aspect = np.exp(rng.uniform(*np.log(self.ratio), size=(n, self._TRIES)))
        h = np.rint(np.sqrt(area * aspect)).astype(np.int64)
        w = np.rint(np.sqrt(area / aspect)).astype(np.int64)
        fits = (h < height) & (w < width)
        first = (np.arange(n), fits.argmax(axis=1))  # NOTE: torchvision keeps the first fit
        erase &= fits.any(axis=1)
        h, w = np.where(erase, h[first], 0), np.where(erase, w[first], 0)
        params = {"i": rng.integers(0, height - h + 1), "j": rng.integers(0, width - w + 1),
                  "h": h, "w": w}
        if self.value == "random":
            params["noise"] = rng.standard_normal(batch.shape, dtype=np.float32)
        return params

    def transform(self, batch: np.ndarray, params: dict) -> np.ndarray:
        i, j, h, w = (np.asarray(params[k])[:, None] for k in "ijhw")
        rows = np.arange(batch.shape[-2])
        cols = np.arange(batch.shape[-1])
        inside = (((rows >= i) & (rows < i + h))[:, None, :, None]
                  & ((cols >= j) & (cols < j + w))[:, None, None, :])
        out = batch if self.inplace else batch.copy()
        np.copyto(out, self._fill(batch, params), where=inside, casting="unsafe")
        return out

    def _fill(self, batch: np.ndarray, params: dict) -> np.ndarray:
        if self.value == "random":
            return params["noise"]
        value = np.atleast_1d(np.asarray(self.value, dtype=np.float64))
        if value.size not in (1, batch.shape[1]):
            raise ValueError(f"RandomErasing: value should have 1 or {batch.shape[1]} (number "
                             f"of input channels) values, got {value.size}")
        return value[:, None, None]

    def __repr__(self) -> str:
        return (f"RandomErasing(p={self.p}, scale={self.scale}, ratio={self.ratio}, "
                f"value={self.value}, inplace={self.inplace})")


_JITTERS = ("brightness", "contrast", "saturation", "hue")


def _jitter_range(name: str, value, center: float = 1.0, bound=(0.0, float("inf")),
                  clip_first_on_zero: bool = True) -> list[float] | None:
    """torchvision's ColorJitter._check_input: [min, max] of the factor, None for no-op."""
    if isinstance(value, (int, float, np.number)):
        if value < 0:
            raise ValueError(f"ColorJitter: if {name} is a single number, it must be "
                             f"non-negative, got {value}")
        value = [center - float(value), center + float(value)]
        if clip_first_on_zero:
            value[0] = max(value[0], 0.0)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        value = [float(value[0]), float(value[1])]
    else:
        raise TypeError(f"ColorJitter: {name} should be a single number or a list/tuple with "
                        f"length 2, got {value!r}")
    if not bound[0] <= value[0] <= value[1] <= bound[1]:
        raise ValueError(f"ColorJitter: {name} values should be between {bound}, got {value}")
    return None if value[0] == value[1] == center else value


def _bound(dtype: np.dtype) -> float:
    return 1.0 if dtype.kind == "f" else float(np.iinfo(dtype).max)


def _float_type(dtype: np.dtype):
    return dtype.type if dtype.kind == "f" else np.float32


def blend(img1: np.ndarray, img2, ratio: np.ndarray) -> np.ndarray:
    """ratio * img1 + (1 - ratio) * img2 clamped to [0, max of the dtype], in img1's dtype
    (integers truncated, as torch's .to(uint8)); `ratio` is one factor per sample."""
    ftype = _float_type(img1.dtype)
    ratio = np.asarray(ratio, ftype).reshape(-1, 1, 1, 1)
    out = ratio * img1 + (1 - ratio) * img2
    return np.clip(out, 0, _bound(img1.dtype)).astype(img1.dtype)


def rgb_to_grayscale(batch: np.ndarray) -> np.ndarray:
    """(N, 1, H, W) luma 0.2989 R + 0.587 G + 0.114 B in the batch's dtype (torchvision)."""
    r, g, b = (batch[:, k:k + 1].astype(_float_type(batch.dtype)) for k in range(3))
    return (0.2989 * r + 0.587 * g + 0.114 * b).astype(batch.dtype)


def adjust_brightness(batch: np.ndarray, factor: np.ndarray) -> np.ndarray:
    return blend(batch, 0.0, factor)


def adjust_contrast(batch: np.ndarray, factor: np.ndarray) -> np.ndarray:
    gray = rgb_to_grayscale(batch) if batch.shape[1] == 3 else batch
    mean = gray.astype(_float_type(batch.dtype)).mean(axis=(1, 2, 3), keepdims=True)
    return blend(batch, mean, factor)


def adjust_saturation(batch: np.ndarray, factor: np.ndarray) -> np.ndarray:
    return batch if batch.shape[1] == 1 else blend(batch, rgb_to_grayscale(batch), factor)


def adjust_hue(batch: np.ndarray, factor: np.ndarray) -> np.ndarray:
    if batch.shape[1] == 1:
        return batch
    img = batch / np.float32(255) if batch.dtype.kind != "f" else batch
    h, s, v = _rgb_to_hsv(img)
    h = (h + np.asarray(factor, h.dtype).reshape(-1, 1, 1)) % 1.0
    out = _hsv_to_rgb(h, s, v)
    if batch.dtype.kind != "f":  # NOTE: torchvision's convert_image_dtype float -> int
        return (out * (_bound(batch.dtype) + 1.0 - 1e-3)).astype(batch.dtype)
    return out.astype(batch.dtype)


def _rgb_to_hsv(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r, g, b = img[:, 0], img[:, 1], img[:, 2]
    maxc, minc = img.max(axis=1), img.min(axis=1)
    equal = maxc == minc
    span = maxc - minc
    s = span / np.where(equal, 1, maxc)
    span = np.where(equal, 1, span)
    rc, gc, bc = ((maxc - x) / span for x in (r, g, b))
    h = ((maxc == r) * (bc - gc) + ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
         + ((maxc != g) & (maxc != r)) * (4.0 + gc - rc))
    return np.fmod(h / 6.0 + 1.0, 1.0), s, maxc


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    sector = np.floor(h * 6.0)
    f = h * 6.0 - sector
    sector = sector.astype(np.int64) % 6
    p = np.clip(v * (1.0 - s), 0.0, 1.0)
    q = np.clip(v * (1.0 - s * f), 0.0, 1.0)
    t = np.clip(v * (1.0 - s * (1.0 - f)), 0.0, 1.0)
    channels = ((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))
    return np.stack([np.choose(sector, c) for c in channels], axis=1)


_ADJUST = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


class ColorJitter(RandomTransform):
    """Randomly changes brightness, contrast, saturation and hue, in a random order per sample,
    with torchvision's formulas: brightness blends with black, contrast with the mean of the
    grayscale image, saturation with the grayscale image; hue shifts H in HSV space.

    Args:
        brightness: b for a factor in [max(0, 1 - b), 1 + b], or a (min, max) pair.
        contrast: as brightness.
        saturation: as brightness (3-channel images; 1-channel ones are left as they are).
        hue: h in [0, 0.5] for a shift in [-h, h], or a (min, max) pair in [-0.5, 0.5].
        generator: dt.Generator / numpy Generator (default: disttrain's default generator).

    Example:
        >>> t = ColorJitter(brightness=0.5, contrast=0.5)
        >>> t(np.full((4, 1, 2, 2), 0.5, np.float32)).shape
        (4, 1, 2, 2)
    """

    def __init__(self, brightness=0, contrast=0, saturation=0, hue=0, *,
                 generator=None) -> None:
        super().__init__(generator)
        self.brightness = _jitter_range("brightness", brightness)
        self.contrast = _jitter_range("contrast", contrast)
        self.saturation = _jitter_range("saturation", saturation)
        self.hue = _jitter_range("hue", hue, center=0.0, bound=(-0.5, 0.5),
                                 clip_first_on_zero=False)

    def check_input(self, array: np.ndarray) -> None:
        channels = array.shape[-3] if array.ndim > 2 else 1
        if channels not in (1, 3):
            raise ValueError(f"ColorJitter: expected 1 or 3 channels, got {channels} (input "
                             f"shape {array.shape})")

    def make_params(self, batch: np.ndarray) -> dict:
        rng, n = self.rng(), len(batch)
        params = {"order": rng.random((n, 4)).argsort(axis=1)}  # NOTE: torch.randperm(4)
        for name in _JITTERS:
            if getattr(self, name) is not None:
                params[name] = rng.uniform(*getattr(self, name), size=n)
        return params

    def transform(self, batch: np.ndarray, params: dict) -> np.ndarray:
        out, order = batch.copy(), np.asarray(params["order"])
        for slot in range(4):
            for op, name in enumerate(_JITTERS):
                chosen = order[:, slot] == op
                if name in params and chosen.any():
                    factor = np.asarray(params[name])[chosen]
                    out[chosen] = _ADJUST[op](out[chosen], factor)
        return out

    def __repr__(self) -> str:
        return (f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
                f"saturation={self.saturation}, hue={self.hue})")
