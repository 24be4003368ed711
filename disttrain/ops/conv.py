"""Convolution and pooling primitives (im2col + GEMM conv2d, or Winograd F(2x2, 3x3) for 3x3
stride-1 convs with enough channels in ops.winograd; max/avg pooling over strided slices) and
their padding and window helpers, shared with functional.avg_pool2d."""

from __future__ import annotations

import numpy

from disttrain.autograd import Function
from disttrain.backend import get_array_module
from disttrain.ops.winograd import is_winograd, winograd_forward, winograd_weight_grad


def pad2d(x, pads, value=0):
    """`x` padded with `value` by pads = (top, bottom, left, right) in its last two dims."""
    top, bottom, left, right = pads
    if not (top or bottom or left or right):
        return x
    widths = ((0, 0),) * (x.ndim - 2) + ((top, bottom), (left, right))
    return get_array_module(x).pad(x, widths, constant_values=value)


def _unpad2d(x, pads):
    top, bottom, left, right = pads
    return x[..., top:x.shape[-2] - bottom, left:x.shape[-1] - right]


def window_slices(kernel, stride, dilation, out_hw) -> list:
    """For each kernel offset (i, j), the strided slice of the padded input it reads (row-major
    over the kernel), so a pooling is a loop over kh*kw slices, not over output pixels."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    return [(..., slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
             slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)) for i in range(kh) for j in range(kw)]


def pad_channels_last(x, pads):
    """(N, C, H, W) -> an (N, H', W', C) view or array padded with zeros by pads = (top,
    bottom, left, right); no copy when there is no padding (any memory order)."""
    top, bottom, left, right = pads
    x_cl = x.transpose(0, 2, 3, 1)
    if not (top or bottom or left or right):
        return x_cl
    n, h, w, c = x_cl.shape
    out = get_array_module(x).empty((n, h + top + bottom, w + left + right, c), x.dtype)
    # NOTE: zero the borders only: the interior is overwritten by the copy of x
    out[:, :top], out[:, top + h:], out[:, :, :left], out[:, :, left + w:] = 0, 0, 0, 0
    out[:, top:top + h, left:left + w] = x_cl
    return out


def im2col(x_cl, kernel, stride, dilation, out_hw, groups):
    """Yields (slice of images, their (rows, G, kh*kw*C/G) columns) chunk by chunk (see
    image_chunks) from an (N, H, W, C) input; columns ordered (kh, kw, C/G) in a group. The
    columns live in one buffer reused by the next chunk.

    NOTE: channels innermost: a conv output (and anything element-wise after it) is
    channels-last in memory, so each window row is a contiguous run of C/G values (the (C, kh,
    kw) order gathered runs of kw and took 3x longer). The window view is made once per call
    and sliced per chunk (as_strided costs more than a chunk's Python)."""
    xp = get_array_module(x_cl)
    n, _, _, c = x_cl.shape
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    sn, sy, sx, sc = x_cl.strides
    windows = xp.lib.stride_tricks.as_strided(
        x_cl, (n, oh, ow, groups, kh, kw, c // groups),
        (sn, sy * sh, sx * sw, sc * (c // groups), sy * dh, sx * dw, sc))
    chunks = image_chunks(x_cl, oh * ow * kh * kw * c)
    buf = xp.empty((chunks[0].stop * oh * ow, groups, kh * kw * c // groups), x_cl.dtype)
    for s in chunks:
        cols = buf[:(s.stop - s.start) * oh * ow]
        cols.reshape(windows[s].shape)[...] = windows[s]
        yield s, cols


def weight_rows(weight, groups):
    """(O, C/G, kh, kw) -> (G, O/G, kh*kw*C/G), rows ordered as im2col's columns."""
    out_c, cg, kh, kw = weight.shape
    w = weight.reshape(groups, out_c // groups, cg, kh, kw).transpose(0, 1, 3, 4, 2)
    return w.reshape(groups, out_c // groups, -1)


def weight_from_rows(rows, shape):
    """The inverse of weight_rows: (G, O/G, kh*kw*C/G) -> a contiguous (O, C/G, kh, kw)."""
    out_c, cg, kh, kw = shape
    w = rows.reshape(out_c, kh, kw, cg).transpose(0, 3, 1, 2)
    return get_array_module(rows).ascontiguousarray(w)


def grouped_rows(a, groups):
    """(N, C, H, W) -> (G, N*H*W, C/G): a view when `a` is channels-last in memory."""
    rows = a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])
    return rows.reshape(len(rows), groups, -1).transpose(1, 0, 2)


def image_chunks(x_cl, cols_per_image: int) -> list:
    """Slices of the batch whose im2col columns take about CHUNK_BYTES each (one slice on a
    GPU, where launches cost more than memory traffic).

    NOTE: columns that stay in cache: im2col + GEMM a few images at a time ran 1.3-1.6x faster
    than over the whole batch (a (64*24*24, 288) float32 matrix is 42 MB), and the weight
    gradient recomputes them for free instead of keeping them alive from forward to backward."""
    n = x_cl.shape[0]
    if get_array_module(x_cl) is not numpy:
        return [slice(0, n)]
    step = max(1, CHUNK_BYTES // max(1, cols_per_image * x_cl.itemsize))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


CHUNK_BYTES = 2 << 20


def conv_forward(x_cl, rows, kernel, stride, dilation, out_hw, bias=None):
    """The (N*OH*OW, O) cross-correlation of a padded (N, H', W', C) input with weight rows
    (G, O/G, K), plus bias (added while each chunk is in cache), chunk by chunk."""
    xp = get_array_module(x_cl)
    groups, og, _ = rows.shape
    if is_winograd(x_cl, kernel, stride, dilation, groups, og):
        return winograd_forward(x_cl, rows, out_hw, bias)
    m = out_hw[0] * out_hw[1]
    y = xp.empty((x_cl.shape[0] * m, groups * og), x_cl.dtype)
    for s, cols in im2col(x_cl, kernel, stride, dilation, out_hw, groups):
        out = y[s.start * m:s.stop * m]
        if groups == 1:
            xp.matmul(cols.reshape(len(cols), -1), rows[0].T, out=out)
        else:
            out.reshape(len(out), groups, og)[...] = xp.matmul(
                cols.transpose(1, 0, 2), rows.transpose(0, 2, 1)).transpose(1, 0, 2)
        if bias is not None:
            out += bias
    return y


def conv_weight_grad(x_cl, grad_g, kernel, stride, dilation, out_hw):
    """The (G, O/G, K) weight-rows gradient (a transposed view) of conv_forward, for
    (G, N*OH*OW, O/G) output-gradient rows: one GEMM per chunk over recomputed columns.

    NOTE: computed as (K, O/G) = columns.T @ rows: 5-20% faster than the (O/G, K) product on
    the small-channel layers (OpenBLAS prefers the long dimension in the output's rows)."""
    groups, _, og = grad_g.shape
    if is_winograd(x_cl, kernel, stride, dilation, groups, og):
        return winograd_weight_grad(x_cl, grad_g[0], out_hw)
    m, c = out_hw[0] * out_hw[1], x_cl.shape[3]
    grad_rows_t = get_array_module(grad_g).zeros(
        (groups, kernel[0] * kernel[1] * c // groups, og), grad_g.dtype)
    for s, cols in im2col(x_cl, kernel, stride, dilation, out_hw, groups):
        grad_rows_t += cols.transpose(1, 2, 0) @ grad_g[:, s.start * m:s.stop * m]
    return grad_rows_t.transpose(0, 2, 1)


def conv_input_grad(grad, weight, pad_shape, pads, stride, dilation, groups):
    """The (N, C, H, W) input gradient (a channels-last view) of conv_forward over an input
    padded by pads to (N, H', W', C), for the (N, O, OH, OW) output gradient `grad`.

    NOTE: when the output is as large as the input (stride 1, 'same'-like padding) this is a
    stride-1 conv2d of the padded gradient with the flipped, transposed weight: one GEMM per
    chunk like forward, 1.2x faster than col2im's per-offset GEMMs on VGG's 32-channel layers.
    Otherwise (strided, or a smaller output: the full conv would multiply zeros) col2im."""
    kernel, out_hw = weight.shape[2:], grad.shape[2:]
    in_hw = (pad_shape[1] - pads[0] - pads[1], pad_shape[2] - pads[2] - pads[3])
    full = ((kernel[0] - 1) * dilation[0] - pads[0], pad_shape[1] - pads[1] - out_hw[0],
            (kernel[1] - 1) * dilation[1] - pads[2], pad_shape[2] - pads[3] - out_hw[1])
    if stride != (1, 1) or min(full) < 0 or in_hw[0] * in_hw[1] > out_hw[0] * out_hw[1]:
        grad_pad = col2im(grouped_rows(grad, groups), weight, pad_shape, stride, dilation,
                          out_hw)
        return crop_channels_last(grad_pad, pads)
    out_c, cg = weight.shape[:2]
    flipped = weight.reshape(groups, out_c // groups, cg, *kernel).transpose(0, 2, 1, 3, 4)
    flipped = flipped[..., ::-1, ::-1].reshape(groups * cg, out_c // groups, *kernel)
    rows = conv_forward(pad_channels_last(grad, full), weight_rows(flipped, groups), kernel,
                        stride, dilation, in_hw)
    return rows.reshape(grad.shape[0], *in_hw, -1).transpose(0, 3, 1, 2)


def col2im(grad_g, weight, pad_shape, stride, dilation, out_hw):
    """The (N, H', W', C) gradient of conv_forward's padded input (the adjoint of im2col +
    GEMM), for (G, N*OH*OW, O/G) output-gradient rows and the (O, C/G, kh, kw) weight.

    NOTE: one GEMM per kernel offset, each result added to its strided window: no column
    gradient, and the adds move contiguous runs of OW*C (one big GEMM + a scatter of runs of
    C took 1.6x longer on the MNIST net)."""
    xp = get_array_module(grad_g)
    (groups, _, og), kernel = grad_g.shape, weight.shape[2:]
    m, cg = out_hw[0] * out_hw[1], pad_shape[3] // groups
    grad_pad = xp.zeros((*pad_shape[:3], groups, cg), grad_g.dtype)
    w_offsets = xp.ascontiguousarray(weight.reshape(groups, og, cg, *kernel).transpose(
        3, 4, 0, 1, 2)).reshape(-1, groups, og, cg)  # (kh*kw, G, O/G, C/G)
    windows = window_slices(kernel, stride, dilation, out_hw)
    for s in image_chunks(grad_pad, m * og * groups):
        grad_c = grad_g[:, s.start * m:s.stop * m]
        buf = xp.empty((groups, grad_c.shape[1], cg), grad_g.dtype)
        added = buf.reshape(groups, -1, *out_hw, cg).transpose(1, 2, 3, 0, 4)
        for w_offset, window in zip(w_offsets, windows):
            xp.matmul(grad_c, w_offset, out=buf)
            grad_pad[(s, *window[1:])] += added
    return grad_pad.reshape(pad_shape)


def bias_grad(grad):
    """The bias gradient: the sum of an (N, C, H, W) gradient over N, H and W.

    NOTE: a GEMV over the channels-last rows: 5x faster than .sum(axis=0)."""
    rows = grad.transpose(0, 2, 3, 1).reshape(-1, grad.shape[1])
    return get_array_module(grad).ones(len(rows), grad.dtype) @ rows


def crop_channels_last(a_cl, pads):
    """(N, H', W', C) cropped by pads = (top, bottom, left, right), as an (N, C, H, W) view."""
    top, bottom, left, right = pads
    return a_cl[:, top:a_cl.shape[1] - bottom, left:a_cl.shape[2] - right].transpose(0, 3, 1, 2)


class Conv2d(Function):
    # NOTE: a primitive for speed: im2col + GEMM, a few images at a time (conv_forward,
    # conv_weight_grad, conv_input_grad). Outputs are channels-last in memory (the GEMM's
    # (N*OH*OW, O) result, viewed as NCHW), which is also the layout im2col reads fastest.
    def forward(self, x, weight, bias=None, *, stride, pads, dilation, groups, out_hw):
        x_cl = pad_channels_last(x, pads)
        y = conv_forward(x_cl, weight_rows(weight, groups), weight.shape[2:], stride, dilation,
                         out_hw, bias)
        self.save(x_cl, weight, pads, stride, dilation, groups, out_hw)
        return y.reshape(x.shape[0], *out_hw, -1).transpose(0, 3, 1, 2)

    def backward(self, grad):
        x_cl, weight, pads, stride, dilation, groups, out_hw = self.saved
        needs = self.needs_input_grad
        grad_g = grouped_rows(grad, groups)  # (G, N*OH*OW, O/G)
        grad_x = grad_w = grad_b = None
        if needs[0]:
            grad_x = conv_input_grad(grad, weight, x_cl.shape, pads, stride, dilation, groups)
        if needs[1]:
            rows = conv_weight_grad(x_cl, grad_g, weight.shape[2:], stride, dilation, out_hw)
            grad_w = weight_from_rows(rows, weight.shape)
        if len(needs) > 2 and needs[2]:
            grad_b = bias_grad(grad)
        return grad_x, grad_w, grad_b


class MaxPool2d(Function):
    # NOTE: a running maximum over the kh*kw strided slices (no window copy); the backward
    # sends each gradient to the first maximum in scan order, as torch does. Arrays are made
    # in the input's memory order ("K"): conv outputs are channels-last in memory, and mixing
    # layouts in one element-wise op costs ~5x.
    def forward(self, x, kernel, stride, dilation, pads, out_hw):
        fill = -numpy.inf if x.dtype.kind == "f" else numpy.iinfo(x.dtype).min
        xpad = pad2d(x, pads, fill)
        slices = window_slices(kernel, stride, dilation, out_hw)
        y = xpad[slices[0]].copy(order="K")
        xp = get_array_module(x)
        for window in slices[1:]:
            xp.maximum(y, xpad[window], out=y)
        # NOTE: windows that never overlap (e.g. 2x2, stride 2) own their input positions, so
        # the backward writes each one's gradient in place instead of adding a temporary
        disjoint = all(s >= d * (k - 1) + 1 for k, s, d in zip(kernel, stride, dilation))
        tiled = dilation == (1, 1) and tuple(stride) == tuple(kernel) and xpad.shape[-2:] == (
            out_hw[0] * kernel[0], out_hw[1] * kernel[1])
        self.save(xpad, y, slices, pads, disjoint, tiled)
        return y

    def backward(self, grad):
        xpad, y, slices, pads, disjoint, tiled = self.saved
        xp = get_array_module(grad)
        grad = _like_layout(grad, y)
        # NOTE: windows that tile the input write every position: no zero fill needed
        grad_pad = xp.empty_like(xpad) if tiled else xp.zeros_like(xpad)
        unrouted, hit = xp.ones_like(y, dtype=bool), xp.empty_like(y, dtype=bool)
        for k, window in enumerate(slices):
            xp.equal(xpad[window], y, out=hit)
            if k:
                hit &= unrouted
            if disjoint:
                xp.multiply(grad, hit, out=grad_pad[window])
            else:
                grad_pad[window] += grad * hit
            if k < len(slices) - 1:
                unrouted ^= hit  # NOTE: hit is a subset of unrouted: this clears hit
        return _unpad2d(grad_pad, pads)


def _like_layout(array, like):
    """`array` in `like`'s memory order (one copy, only when the orders differ)."""
    if array.strides == like.strides or array.shape != like.shape:
        return array
    out = get_array_module(like).empty_like(like)
    out[...] = array
    return out


class AvgPool2d(Function):
    def forward(self, x, kernel, stride, dilation, pads, out_hw, divisor):
        xpad = pad2d(x, pads)
        slices = window_slices(kernel, stride, dilation, out_hw)
        y = xpad[slices[0]].copy()
        for window in slices[1:]:
            y += xpad[window]
        self.save(xpad.shape, slices, pads, divisor)
        return y / divisor if not isinstance(divisor, int) else y * (1.0 / divisor)

    def backward(self, grad):
        pad_shape, slices, pads, divisor = self.saved
        grad = grad / divisor
        grad_pad = get_array_module(grad).zeros(pad_shape, grad.dtype)
        for window in slices:
            grad_pad[window] += grad
        return _unpad2d(grad_pad, pads)
