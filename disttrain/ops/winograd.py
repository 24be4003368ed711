"""Winograd F(2x2, 3x3) convolution for ops.conv: the forward (and so the stride-1 'same' input
gradient, itself a forward conv) and the weight gradient of 3x3, stride-1, undilated, ungrouped
conv2d over channels-last inputs on the CPU, a few images at a time. Imports numpy/backend only.

Each 2x2 output tile is A^T [(G g G^T) * (B^T d B)] A over the 4x4 input tile d: 16 products
per tile and channel pair instead of 36, so the GEMMs do 2.25x fewer multiplications, and the
transforms are adds and subtracts of whole (images, tiles, C) slabs.
- Paper: https://arxiv.org/abs/1509.09308 (Lavin & Gray, Fast Algorithms for Convolutional
  Neural Networks)
"""

from __future__ import annotations

import contextlib

import numpy

from disttrain.backend import get_array_module

# NOTE: G's last row and A^T's last column are negated from the paper's (their product is the
# same), so the output transform and its adjoint (the weight gradient's) are adds only: no
# negation pass over any slab.
_G = numpy.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, -1]])
_KRON_G = numpy.kron(_G, _G)  # (16, 9): G w G^T of a flattened 3x3 w, flattened

MIN_CHANNELS = 16
MIN_CHANNEL_SUM = 40
CHUNK_BYTES = 2 << 20
MIN_TILES = 64


def is_winograd(x_cl, kernel, stride, dilation, groups, out_channels) -> bool:
    """Whether conv_forward/conv_weight_grad take the Winograd path for this conv.

    NOTE: CPU only (a GPU's GEMMs are not the bottleneck) and floating point only (G holds
    halves). The transforms cost ~C + K per pixel and the multiplies saved ~C * K: at batch
    64, 16 -> 16 channels ran 0.8-1.06x as fast as im2col + GEMM, 16 -> 24 1.07-1.3x,
    32 -> 32 1.4x."""
    c = x_cl.shape[3]
    return (tuple(kernel) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1)
            and groups == 1 and min(c, out_channels) >= MIN_CHANNELS
            and c + out_channels >= MIN_CHANNEL_SUM and x_cl.dtype.kind == "f"
            and get_array_module(x_cl) is numpy)


def winograd_forward(x_cl, rows, out_hw, bias=None):
    """The (N*OH*OW, K) stride-1 cross-correlation of a padded (N, H', W', C) input with
    (1, K, 9*C) weight rows ordered (kh, kw, C), plus bias; H' = OH + 2, W' = OW + 2."""
    k = rows.shape[1]
    u = _weight_transform(rows)
    y = numpy.empty((x_cl.shape[0], *out_hw, k), x_cl.dtype)
    work = None
    with _unbuffered_loops():
        for s, v in _input_tiles(x_cl, out_hw, k):
            if work is None:
                work = numpy.empty((2 * 16 * v.shape[1], k), x_cl.dtype)
            m = numpy.matmul(v, u, out=work[:16 * v.shape[1]].reshape(16, -1, k))
            _output_transform(m, work[16 * v.shape[1]:], y[s], bias)
    return y.reshape(-1, k)


def winograd_weight_grad(x_cl, grad_rows, out_hw):
    """The (1, K, 9*C) weight-rows gradient of winograd_forward for (N*OH*OW, K) output-gradient
    rows: sum over tiles of V^T dM per tile element, then G^T (.) G back to 3x3."""
    k, c = grad_rows.shape[1], x_cl.shape[3]
    grad_y = grad_rows.reshape(x_cl.shape[0], *out_hw, k)
    grad_u = numpy.zeros((16, c, k), x_cl.dtype)
    grad_m = None
    with _unbuffered_loops():
        for s, v in _input_tiles(x_cl, out_hw, k):
            if grad_m is None:
                grad_m = numpy.empty((16, v.shape[1], k), x_cl.dtype)
            _grad_transform(grad_y[s], grad_m[:, :v.shape[1]])
            grad_u += numpy.matmul(v.transpose(0, 2, 1), grad_m[:, :v.shape[1]])
    g = _G.astype(x_cl.dtype)
    grad_w = g.T @ grad_u.reshape(4, 4 * c * k)  # rows of the kernel, (3, 4 * C * K)
    grad_w = g.T @ grad_w.reshape(3, 4, c * k)  # then columns, (3, 3, C * K)
    return grad_w.reshape(9, c, k).transpose(2, 0, 1).reshape(1, k, 9 * c)


@contextlib.contextmanager
def _unbuffered_loops():
    """numpy's ufunc buffer size lowered to 1024 elements while the transforms run.

    NOTE: with its default 8192-element buffer, numpy 2.4 runs a ufunc over strided operands
    whose contiguous runs are under ~2,500 elements 3x slower (3.5 against 10.7 G elements/s
    for runs of 2048; 7.0 against 18.6 us with a 1024-element buffer). The tile transforms
    add runs of 256-1280 values: 1.7x faster with 1024."""
    previous = numpy.setbufsize(1024)
    try:
        yield
    finally:
        numpy.setbufsize(previous)


def _weight_transform(rows):
    """(1, K, 9*C) rows ordered (kh, kw, C) -> U = G w G^T as (16, C, K), tile elements
    row-major: one (16, 9) @ (9, C*K) GEMM with kron(G, G).

    NOTE: the weight is transposed to (kh, kw, C, K) before the GEMM, not U after it: U's
    (K, 16, C) -> (16, C, K) copy strode 8 KB (cache-set conflicts) and took 1.6 ms of the
    128-channel layer's 8 ms."""
    k, c = rows.shape[1], rows.shape[2] // 9
    w = numpy.ascontiguousarray(rows.reshape(k, 9, c).transpose(1, 2, 0))
    return (_KRON_G.astype(rows.dtype) @ w.reshape(9, c * k)).reshape(16, c, k)


def _input_tiles(x_cl, out_hw, out_channels):
    """Yields (slice of images, V) chunk by chunk: V (16, tiles, C) is B^T d B for every 4x4
    input tile d (stride 2) of those images, tiles ordered (image, tile row, tile column).

    The buffers are reused by the next chunk (_images_per_chunk images)."""
    n, _, _, c = x_cl.shape
    th, tw = (out_hw[0] + 1) // 2, (out_hw[1] + 1) // 2
    step = _images_per_chunk(n, th * tw, c, out_channels, x_cl.itemsize)
    split = numpy.empty((step, 2 * th + 2, 2, tw + 1, c), x_cl.dtype)
    rows = numpy.empty((4, step, th, 2, tw + 1, c), x_cl.dtype)
    v = numpy.empty((4, 4, step * th * tw, c), x_cl.dtype)
    for start in range(0, n, step):
        s = slice(start, min(start + step, n))
        m = s.stop - s.start
        _split_columns(x_cl[s], split[:m])
        tiles = v[:, :, :m * th * tw]
        _transform_tiles(split[:m], rows[:, :m], tiles.reshape(4, 4, m, th, tw, c))
        yield s, tiles.reshape(16, -1, c)


def _images_per_chunk(n, tiles_per_image, c, k, itemsize) -> int:
    """Images whose V (16, tiles, C) and GEMM output (16, tiles, K) fit CHUNK_BYTES next to
    U (16, C, K), but at least MIN_TILES tiles (the GEMMs' rows).

    NOTE: in cache (L2): 2 images of VGG's 32x32x32 layer, 3-4 of its 8x8x128 layer run
    1.1-1.4x faster than 8; fewer than ~64 rows starve the GEMMs (a 4x4x256 layer one image
    at a time took 2x longer)."""
    per_image = 16 * tiles_per_image * (c + k) * itemsize
    fit = (CHUNK_BYTES - 16 * c * k * itemsize) // per_image
    return max(1, min(n, max(fit, -(-MIN_TILES // tiles_per_image))))


def _split_columns(x, split):
    """Copies (m, H', W', C) into (m, 2*th + 2, 2, tw + 1, C): even then odd columns of each
    row, zeros past the input (an odd output size reads one row/column of padding).

    NOTE: the column transform then adds contiguous runs of tw*C values instead of
    stride-2 runs of C (numpy's inner loop was C = 32 values long: 2.3x slower)."""
    h, w = x.shape[1:3]
    even, odd = split[:, :h, 0, :(w + 1) // 2], split[:, :h, 1, :w // 2]
    even[...], odd[...] = x[:, :, 0::2], x[:, :, 1::2]
    if h < split.shape[1]:
        split[:, h:] = 0
    if w < 2 * split.shape[3]:
        split[:, :h, 0, (w + 1) // 2:] = 0
        split[:, :h, 1, w // 2:] = 0


def _transform_tiles(split, rows, v):
    """V = B^T d B: rows of tiles from the column-split input, then their columns."""
    th = v.shape[3]
    d = [split[:, r:r + 2 * th:2] for r in range(4)]  # row r of every tile, (m, th, 2, tw+1, C)
    numpy.subtract(d[0], d[2], out=rows[0])
    numpy.add(d[1], d[2], out=rows[1])
    numpy.subtract(d[2], d[1], out=rows[2])
    numpy.subtract(d[1], d[3], out=rows[3])
    even, odd = rows[:, :, :, 0], rows[:, :, :, 1]
    col0, col2, col1, col3 = even[..., :-1, :], even[..., 1:, :], odd[..., :-1, :], odd[..., 1:, :]
    numpy.subtract(col0, col2, out=v[:, 0])
    numpy.add(col1, col2, out=v[:, 1])
    numpy.subtract(col2, col1, out=v[:, 2])
    numpy.subtract(col1, col3, out=v[:, 3])


def _output_transform(m, work, y, bias):
    """y (m, OH, OW, K) = A^T M A (+ bias) for the GEMM output M (16, tiles, K)."""
    k = m.shape[2]
    m = m.reshape(4, 4, -1, k)
    if bias is not None:
        m[1, 1] += bias  # NOTE: A^T's column 1 is all ones: M[1, 1] reaches every output once
    s = work[:8 * m.shape[2]].reshape(2, 4, -1, k)  # A^T M: the tiles' two output rows
    numpy.add(m[1], m[2], out=s[0])
    s[0] += m[0]
    numpy.subtract(m[1], m[2], out=s[1])
    s[1] += m[3]
    z = work[8 * m.shape[2]:12 * m.shape[2]].reshape(2, 2, -1, k)  # (A^T M) A
    numpy.add(s[:, 1], s[:, 2], out=z[:, 0])
    z[:, 0] += s[:, 0]
    numpy.subtract(s[:, 1], s[:, 2], out=z[:, 1])
    z[:, 1] += s[:, 3]
    _interleave(z, y)


def _interleave(z, y):
    """y[:, 2i + a, 2j + b] = z[a, b][:, i, j] for the (2, 2, m*th*tw, K) tile outputs."""
    n, oh, ow, k = y.shape
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    z = z.reshape(2, 2, n, th, tw, k)
    if oh % 2 == 0 and ow % 2 == 0:
        y.reshape(n, th, 2, tw, 2, k)[...] = z.transpose(2, 3, 0, 4, 1, 5)
        return
    for a in range(2):
        for b in range(2):
            out = y[:, a::2, b::2]
            out[...] = z[a, b, :, :out.shape[1], :out.shape[2]]


def _grad_transform(grad_y, grad_m):
    """grad_m (16, tiles, K) = A dY A^T, the adjoint of _output_transform, for grad_y (m, OH,
    OW, K); outputs past an odd OH/OW are zeros."""
    n, oh, ow, k = grad_y.shape
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    g = grad_m.reshape(4, 4, n, th, tw, k)
    corners = g[0::3, 0::3]  # NOTE: A's rows 0 and 3 are (1, 0) and (0, 1): plain copies
    if oh % 2 == 0 and ow % 2 == 0:
        corners[...] = grad_y.reshape(n, th, 2, tw, 2, k).transpose(2, 4, 0, 1, 3, 5)
    else:
        corners[...] = 0
        for a in range(2):
            for b in range(2):
                src = grad_y[:, a::2, b::2]
                corners[a, b, :, :src.shape[1], :src.shape[2]] = src
    numpy.add(g[0::3, 0], g[0::3, 3], out=g[0::3, 1])
    numpy.subtract(g[0::3, 0], g[0::3, 3], out=g[0::3, 2])
    numpy.add(g[0], g[3], out=g[1])
    numpy.subtract(g[0], g[3], out=g[2])
