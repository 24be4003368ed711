"""Affine warps of image batches on numpy: torchvision's inverse affine matrix, its expanded
output size, and a batched inverse-affine gather (nearest or bilinear) with one matrix per
sample. Used by RandomRotation and RandomAffine. Imports numpy and disttrain.data.augment.
"""

from __future__ import annotations

import numpy as np

from disttrain.data.augment import InterpolationMode


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
    ftype = batch.dtype if batch.dtype.kind == "f" else np.dtype(np.float32)
    src_x, src_y = _source_pixels(matrix.astype(ftype), h, w, out_size or (h, w))
    fill = np.broadcast_to(np.asarray(fill, np.float64).reshape(-1, 1, 1, 1), (c, 1, 1, 1))
    itype = np.int32 if n * (h + 4) * (w + 4) < 2**31 else np.int64
    # NOTE: the batch is gathered from a (C, N*H'*W') copy with a border (of `fill` for
    # nearest, of zeros for bilinear), so sources outside the image are clipped onto the
    # border instead of masked: one gather per corner, int32 indices, in-place float maths
    # (this is the hot path of batch augmentation)
    if InterpolationMode(interpolation) is InterpolationMode.NEAREST:
        if batch.dtype.kind != "f":
            fill = np.rint(fill)
        flat = _with_border(batch, 1, fill.astype(batch.dtype), batch.dtype)
        index = _flat_index(np.rint(src_x, out=src_x), np.rint(src_y, out=src_y), h, w, 1,
                            itype)
        return np.ascontiguousarray(np.moveaxis(flat[:, index], 0, 1))
    flat = _with_border(batch, 2, 0, ftype)
    out = np.moveaxis(_bilinear(flat, src_x, src_y, h, w, fill.astype(ftype), itype), 0, 1)
    if batch.dtype.kind != "f":
        return np.rint(out).astype(batch.dtype)
    return np.ascontiguousarray(out)


def _source_pixels(m: np.ndarray, h: int, w: int, out_size) -> list[np.ndarray]:
    """(N, oh, ow) input x and y pixel coordinates read by each output pixel."""
    (oh, ow), ftype = out_size, m.dtype.type
    xs = np.arange(ow, dtype=m.dtype) - ftype((ow - 1) / 2)
    ys = np.arange(oh, dtype=m.dtype)[:, None] - ftype((oh - 1) / 2)
    coords = []
    for k, size in ((0, w), (1, h)):
        src = m[:, k, 1, None, None] * ys + m[:, k, 0, None, None] * xs
        src += (m[:, k, 2] + ftype((size - 1) / 2))[:, None, None]
        coords.append(src)
    return coords


def _with_border(batch: np.ndarray, border: int, value, dtype) -> np.ndarray:
    """(C, N * (H + 2 border) * (W + 2 border)) copy of the batch inside a `value` border."""
    n, c, h, w = batch.shape
    out = np.empty((c, n, h + 2 * border, w + 2 * border), dtype)
    out[...] = value
    out[:, :, border:border + h, border:border + w] = np.moveaxis(batch, 1, 0)
    return out.reshape(c, -1)


def _flat_index(ix: np.ndarray, iy: np.ndarray, h: int, w: int, border: int, itype,
                reach: int = 0):
    """Index into `_with_border`'s rows of pixel (ix, iy) (float, whole, clipped onto the
    border so that the pixels up to `reach` right and below stay inside the copy; ix and iy
    are overwritten)."""
    n, width = len(ix), w + 2 * border
    np.clip(ix, -border, w - 1 + border - reach, out=ix)
    np.clip(iy, -border, h - 1 + border - reach, out=iy)
    iy += border
    iy *= width
    iy += ix
    iy += border
    index = iy.astype(itype)
    index += (np.arange(n, dtype=itype) * ((h + 2 * border) * width))[:, None, None]
    return index


def _inside_weight(low: np.ndarray, frac_high: np.ndarray, frac_low: np.ndarray, size: int):
    """Weight of the two bilinear neighbours (low, low + 1) that lie inside [0, size - 1]."""
    return (frac_low * ((low >= 0) & (low <= size - 1))
            + frac_high * ((low >= -1) & (low <= size - 2)))


def _bilinear(flat, src_x, src_y, h: int, w: int, fill, itype) -> np.ndarray:
    x0, y0 = np.floor(src_x), np.floor(src_y)
    wx1, wy1 = np.subtract(src_x, x0, out=src_x), np.subtract(src_y, y0, out=src_y)
    wx0, wy0 = 1 - wx1, 1 - wy1
    # NOTE: the mask of torchvision's fill rule is separable: inside weight along x times y
    mask = _inside_weight(x0, wx1, wx0, w)
    mask *= _inside_weight(y0, wy1, wy0, h)
    # NOTE: a border of 2: a corner clipped to -2 or w still has both neighbours on it
    index = _flat_index(x0, y0, h, w, 2, itype, reach=1)
    row = w + 4
    top, right = flat[:, index], flat[:, index + 1]
    top *= wx0
    right *= wx1
    top += right
    bottom, right = flat[:, index + row], flat[:, index + (row + 1)]
    bottom *= wx0
    right *= wx1
    bottom += right
    top *= wy0
    bottom *= wy1
    top += bottom
    # NOTE: torchvision's fill rule: (sampled - fill) * inside_weight + fill
    top -= fill
    top *= mask
    top += fill
    return top
