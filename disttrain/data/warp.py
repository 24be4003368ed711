"""Affine warps of image batches on numpy: torchvision's inverse affine matrix, its expanded
output size, and a batched inverse-affine gather (nearest or bilinear) with one matrix per
sample. Used by RandomRotation and RandomAffine. Imports numpy and disttrain.data.augment.
"""

from __future__ import annotations

import math
import threading

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
    itype = np.dtype(np.int32 if n * (h + 4) * (w + 4) < 2**31 else np.int64)
    # NOTE: the batch is gathered from a (C, N*H'*W') copy with a border (of `fill` for
    # nearest, of zeros for bilinear), so sources outside the image are clipped onto the
    # border instead of masked: one gather per corner, int32 indices, in-place float maths
    # in reused buffers (this is the hot path of batch augmentation)
    if InterpolationMode(interpolation) is InterpolationMode.NEAREST:
        if batch.dtype.kind != "f":
            fill = np.rint(fill)
        flat = _with_border(batch, 1, fill.astype(batch.dtype), batch.dtype)
        index = _flat_index(np.rint(src_x, out=src_x), np.rint(src_y, out=src_y), h, w, 1,
                            itype)
        return np.ascontiguousarray(np.moveaxis(np.take(flat, index, axis=1, mode="clip"), 0, 1))
    flat = _with_border(batch, 2, 0, ftype)
    out = np.moveaxis(_bilinear(flat, src_x, src_y, h, w, fill.astype(ftype), itype), 0, 1)
    if batch.dtype.kind != "f":
        return np.rint(out).astype(batch.dtype)
    return np.ascontiguousarray(out)


_LOCAL = threading.local()
_KEEP_BYTES = 64 << 20


def scratch(name: str, shape: tuple, dtype) -> np.ndarray:
    """A per-thread work buffer of this shape and dtype, reused across calls: a view of the
    first bytes of a kept buffer, reallocated only when a larger one is needed.

    NOTE: glibc gives freed blocks over 128 KB back to the OS, so without reuse every batch
    page-faulted its few MB of temporaries in again (977 faults in each RandomRotation of a
    256x1x28x28 batch: 2.9 of its 3.4 ms when the cores are busy). Keeping the largest size
    lets an epoch's smaller last batch reuse it too. Buffers over 64 MB are not kept.
    Threads (DataLoader workers) each get their own.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    buffers = _LOCAL.__dict__.setdefault("buffers", {})
    raw = buffers.get(name)
    if raw is None or raw.nbytes < nbytes:
        raw = np.empty(max(nbytes, 1), np.uint8)
        if nbytes <= _KEEP_BYTES:
            buffers[name] = raw
    return raw[:nbytes].view(dtype).reshape(shape)


def _source_pixels(m: np.ndarray, h: int, w: int, out_size) -> list[np.ndarray]:
    """(N, oh, ow) input x and y pixel coordinates read by each output pixel."""
    (oh, ow), ftype = out_size, m.dtype.type
    xs = np.arange(ow, dtype=m.dtype) - ftype((ow - 1) / 2)
    ys = np.arange(oh, dtype=m.dtype)[:, None] - ftype((oh - 1) / 2)
    coords = []
    for k, size in ((0, w), (1, h)):
        # NOTE: (N, oh, 1) + (N, 1, ow) in one pass over the output
        column = m[:, k, 1, None, None] * ys + (m[:, k, 2] + ftype((size - 1) / 2))[:, None, None]
        coords.append(np.add(column, m[:, k, 0, None, None] * xs,
                             out=scratch(f"src{k}", (len(m), oh, ow), m.dtype)))
    return coords


def _with_border(batch: np.ndarray, border: int, value, dtype) -> np.ndarray:
    """(C, N * (H + 2 border) * (W + 2 border)) copy of the batch inside a `value` border."""
    n, c, h, w = batch.shape
    out = scratch("border", (c, n, h + 2 * border, w + 2 * border), dtype)
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
    iy *= width
    iy += ix
    index = scratch("index", iy.shape, itype)
    np.copyto(index, iy, casting="unsafe")
    starts = np.arange(n, dtype=itype) * ((h + 2 * border) * width) + (border * width + border)
    index += starts[:, None, None]
    return index


def _inside_weight(src: np.ndarray, size: int, name: str) -> np.ndarray:
    """Weight of the two bilinear neighbours of `src` that lie inside [0, size - 1]:
    clip(min(src + 1, size - src), 0, 1)."""
    weight = np.add(src, 1, out=scratch(name, src.shape, src.dtype))
    np.minimum(weight, np.subtract(size, src, out=scratch("room", src.shape, src.dtype)),
               out=weight)
    return np.clip(weight, 0, 1, out=weight)


def _bilinear(flat, src_x, src_y, h: int, w: int, fill, itype) -> np.ndarray:
    # NOTE: the mask of torchvision's fill rule is separable: inside weight along x times y
    mask = _inside_weight(src_x, w, "mask")
    mask *= _inside_weight(src_y, h, "mask_y")
    x0 = np.floor(src_x, out=scratch("x0", src_x.shape, src_x.dtype))
    y0 = np.floor(src_y, out=scratch("y0", src_y.shape, src_y.dtype))
    wx1, wy1 = np.subtract(src_x, x0, out=src_x), np.subtract(src_y, y0, out=src_y)
    wx0 = np.subtract(1, wx1, out=scratch("wx0", wx1.shape, wx1.dtype))
    wy0 = np.subtract(1, wy1, out=scratch("wy0", wy1.shape, wy1.dtype))
    # NOTE: a border of 2: a corner clipped to -2 or w still has both neighbours on it
    index = _flat_index(x0, y0, h, w, 2, itype, reach=1)
    shifted = scratch("shifted", index.shape, index.dtype)
    corner = scratch("corner", (len(flat), *index.shape), flat.dtype)
    row, out = w + 4, None
    for offset, weight_y, weight_x in ((0, wy0, wx0), (1, wy0, wx1), (row, wy1, wx0),
                                       (row + 1, wy1, wx1)):
        # NOTE: mode="clip" (the indices are in range): the default "raise" with out= gathers
        # into a temporary first (752 page faults per 256x1x28x28 batch)
        np.take(flat, np.add(index, offset, out=shifted), axis=1, out=corner, mode="clip")
        corner *= weight_x
        corner *= weight_y
        out = corner.copy() if out is None else np.add(out, corner, out=out)
    # NOTE: torchvision's fill rule: (sampled - fill) * inside_weight + fill
    out -= fill
    out *= mask
    out += fill
    return out
