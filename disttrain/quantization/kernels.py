"""int8 x int8 -> int32 GEMM and convolution kernels on numpy, and requantization.

How the integer products stay exact and fast: numpy has no fast integer GEMM (its int32
matmul is a plain loop: 250 ms against 9 ms for float32 BLAS on a (256, 5408) x (5408, 128)
product), so the kernels run float32 BLAS on integer values and keep every partial sum
exactly representable:

- uint8 activations are shifted by -128 into [-128, 127] (exact), weights are int8 in
  [-127, 127] (disttrain.quantization.qint8), so each product is at most 128 * 127 = 16256
  < 2**14;
- a float32 holds every integer below 2**24 exactly, so any sum of K such products, in any
  order BLAS chooses (blocking, FMA), is exact while K * 16256 < 2**24, i.e. K <= 1032;
- the K dimension is cut into blocks of K_BLOCK = 1024 and the exact block results are added
  in int32; when K <= K_BLOCK and the per-channel offset (zero-point correction + int32 bias)
  keeps every sum below 2**24, the float32 GEMM output is used as it is (no int32 pass; the
  conv's (N*OH*OW, O) accumulators are the largest array of the int8 model). A blocked int32
  path was not chosen: numpy's integer matmul is the slow loop above.

The shift is undone with the weight row sums: sum_k (x_k - z) w_k = sum_k (x_k - 128) w_k +
(128 - z) sum_k w_k. tests/unit/test_quantization_kernels.py checks exactness against an int64
GEMM. Imports numpy and disttrain.ops.conv (im2col) only.
"""

from __future__ import annotations

import numpy

from disttrain.ops.conv import CHUNK_BYTES, im2col, pad2d

K_BLOCK = 1024  # NOTE: 1024 * 128 * 127 = 16,646,144 < 2**24 = 16,777,216 (see module doc)
_SHIFT = 128
_MAX_PRODUCT = 128 * 127


def shifted_activations(q):
    """uint8 (or int8) activations as float32 values in [-128, 127] (uint8 minus 128)."""
    out = q.astype(numpy.float32)
    if q.dtype == numpy.uint8:
        out -= _SHIFT
    return out


def weight_matrix(weight_q):
    """(O, K...) int8 weights -> (K, O) float32 GEMM operand and (O,) int64 row sums."""
    rows = weight_q.reshape(weight_q.shape[0], -1)
    return rows.T.astype(numpy.float32), rows.sum(axis=1, dtype=numpy.int64)


class WeightCache:
    """weight_matrix of an int8 weight, recomputed only when the weight's values change.

    NOTE: the float32 operand costs ~1 ms to rebuild for a 700k-weight layer (more than a
    batch-1 GEMM); comparing with a private copy (0.1 ms) also catches in-place writes such
    as load_state_dict's, which no identity check would see."""

    def __init__(self):
        self._weight_q = self._operands = None

    def get(self, weight_q) -> tuple:
        if self._weight_q is None or self._weight_q.shape != weight_q.shape or \
                not _same_values(self._weight_q, weight_q):
            self._weight_q, self._operands = weight_q.copy(), weight_matrix(weight_q)
        return self._operands


def _same_values(a, b) -> bool:
    """Whether int8 arrays a and b (same shape) hold the same values; compared 8 bytes at a
    time when both are contiguous (2.3x faster than element by element)."""
    if a.nbytes % 8 == 0 and a.flags.c_contiguous and b.flags.c_contiguous:
        a, b = a.reshape(-1).view(numpy.uint64), b.reshape(-1).view(numpy.uint64)
    return bool(numpy.array_equal(a, b))


def exact_matmul(a, b):
    """The int32 product of float32 matrices holding integers, a (M, K) in [-128, 127] and b
    (K, N) in [-127, 127], exact for any K (blocks of K_BLOCK, see the module docstring)."""
    k = a.shape[1]
    if k <= K_BLOCK:
        return (a @ b).astype(numpy.int32)
    acc = numpy.zeros((a.shape[0], b.shape[1]), numpy.int32)
    for start in range(0, k, K_BLOCK):
        acc += (a[:, start:start + K_BLOCK] @ b[start:start + K_BLOCK]).astype(numpy.int32)
    return acc


def accumulate(a, b, offset):
    """a @ b + offset (an int64 per output column) exactly: float32 when every partial sum
    stays below 2**24 (K <= K_BLOCK and a small offset: one GEMM, no int32 pass), else int32.
    Either way float32(result) is float32 of the exact sum, what requantize multiplies."""
    if _fits_float32(a.shape[1], offset):
        out = a @ b
        out += offset.astype(numpy.float32)
        return out
    acc = exact_matmul(a, b)
    acc += offset.astype(numpy.int32)
    return acc


def _offset(dtype, zero_point: int, row_sums, bias_q):
    """The per-column integer added to the shifted GEMM: (128 - zero_point) * row sums (undo
    the shift of uint8 activations) plus the int32 bias."""
    offset = (_SHIFT - zero_point) * row_sums if dtype == numpy.uint8 else -zero_point * row_sums
    return offset if bias_q is None else offset + bias_q


def int8_linear(x_q, zero_point: int, weight_kn, row_sums, bias_q=None):
    """Exact accumulators (see accumulate) sum_k (x_q - zero_point)[m, k] * w[n, k] (+ bias_q)
    of uint8 x_q (M, K) with int8 weights given as weight_matrix's operand and row sums."""
    return accumulate(shifted_activations(x_q), weight_kn,
                      _offset(x_q.dtype, zero_point, row_sums, bias_q))


def conv_chunks(x_q, zero_point: int, weight_q, stride, padding, dilation, groups: int,
                bias_q=None):
    """Yields (output rows, group, exact accumulators (rows, O/G)) of a uint8 (N, C, H, W)
    input and int8 (O, C/G, kh, kw) weights, a few images at a time; the padding holds the
    zero point. Output rows index the (N*OH*OW, O) channels-last result.

    NOTE: chunks of about CHUNK_BYTES of float32 accumulators, so the requantization passes
    after each GEMM run in cache (3x faster than over the whole batch's outputs)."""
    out_c, _, kh, kw = weight_q.shape
    x_pad = pad2d(x_q, (padding[0], padding[0], padding[1], padding[1]), zero_point)
    oh, ow = conv_output_size(x_pad.shape[2:], (kh, kw), stride, dilation)
    operands = _conv_operands(weight_q, zero_point, x_q.dtype, groups, bias_q)
    x_cl, k = x_pad.transpose(0, 2, 3, 1), operands[0][0].shape[0]
    step = max(1, CHUNK_BYTES // (oh * ow * max(out_c, k) * 4))
    for start in range(0, x_cl.shape[0], step):
        for s, cols in im2col(x_cl[start:start + step], (kh, kw), stride, dilation, (oh, ow),
                              groups):
            rows_out = slice((start + s.start) * oh * ow, (start + s.stop) * oh * ow)
            for g, (weight_kn, offset) in enumerate(operands):
                yield rows_out, g, _chunk_accumulators(cols[:, g], weight_kn, offset)


def _conv_operands(weight_q, zero_point: int, dtype, groups: int, bias_q) -> list:
    """Per group (weight operand, offset): (K, O/G) and the int64 offset, or, when the sums
    fit float32, (K + 1, O/G) with the offset as its last row and None."""
    out_c, cg, kh, kw = weight_q.shape
    og = out_c // groups
    # NOTE: weight rows ordered (kh, kw, C/G) to match im2col's channels-last columns
    rows = weight_q.reshape(groups, og, cg, kh, kw).transpose(0, 1, 3, 4, 2)
    mats = [weight_matrix(rows[g].reshape(og, -1)) for g in range(groups)]
    bias_q = numpy.zeros(out_c, numpy.int64) if bias_q is None else bias_q
    offsets = [_offset(dtype, zero_point, sums, bias_q[g * og:(g + 1) * og])
               for g, (_, sums) in enumerate(mats)]
    if not all(_fits_float32(kh * kw * cg, offset) for offset in offsets):
        return [(kn, offset) for (kn, _), offset in zip(mats, offsets)]
    # NOTE: the offset as one more GEMM row against a column of ones: no extra pass
    return [(numpy.vstack([kn, offset.astype(numpy.float32)[None]]), None)
            for (kn, _), offset in zip(mats, offsets)]


def _chunk_accumulators(cols, weight_kn, offset):
    if offset is not None:
        return accumulate(shifted_activations(cols), weight_kn, offset)
    k = weight_kn.shape[0] - 1
    buf = numpy.empty((len(cols), k + 1), numpy.float32)
    buf[:, k] = 1.0
    buf[:, :k] = cols
    if cols.dtype == numpy.uint8:
        buf[:, :k] -= _SHIFT
    return buf @ weight_kn


def _fits_float32(k: int, offset) -> bool:
    """Whether k products and `offset` keep every partial sum below 2**24 (exact float32)."""
    return k <= K_BLOCK and k * _MAX_PRODUCT + int(numpy.abs(offset).max(initial=0)) < 2 ** 24


def conv_output_size(hw_padded, kernel, stride, dilation) -> tuple:
    return tuple((size - d * (k - 1) - 1) // s + 1
                 for size, k, s, d in zip(hw_padded, kernel, stride, dilation))


def int8_conv2d(x_q, zero_point: int, weight_q, stride, padding, dilation, groups: int,
                bias_q=None):
    """The exact int64 accumulators (N*OH*OW, O) of conv_chunks and (OH, OW) (reference use;
    the quantized layers requantize chunk by chunk instead)."""
    n, _, h, w = x_q.shape
    oh, ow = conv_output_size((h + 2 * padding[0], w + 2 * padding[1]), weight_q.shape[2:],
                              stride, dilation)
    og = weight_q.shape[0] // groups
    acc = numpy.empty((n * oh * ow, weight_q.shape[0]), numpy.int64)
    for rows, g, chunk in conv_chunks(x_q, zero_point, weight_q, stride, padding, dilation,
                                      groups, bias_q):
        acc[rows, g * og:(g + 1) * og] = chunk
    return acc, (oh, ow)


def requantize(acc, multiplier, zero_point: int, qmin: int = 0, qmax: int = 255):
    """uint8 round(acc * multiplier) + zero_point, clipped to [qmin, qmax] (float32
    accumulators are overwritten); multiplier is the per-output-channel float32 input_scale *
    weight_scale / output_scale (along the last axis).
    NOTE: float32(acc) times a float32 multiplier, round half to even, then the zero point:
    ONNX Runtime's requantization, so its int8 kernels give the same integers."""
    out = acc if acc.dtype == numpy.float32 else acc.astype(numpy.float32)
    out *= multiplier
    numpy.rint(out, out=out)
    if zero_point:
        out += numpy.float32(zero_point)
    # NOTE: float32 bounds: with Python ints numpy.clip/maximum run 4x slower
    numpy.clip(out, numpy.float32(qmin), numpy.float32(qmax), out=out)
    return out.astype(numpy.uint8)


def bias_int32(bias, input_scale: float, weight_scale):
    """The float bias as int32 in units of input_scale * weight_scale (ONNX's QLinearConv
    bias), added to the accumulators before requantization."""
    step = numpy.float32(input_scale) * numpy.asarray(weight_scale, numpy.float32)
    bias_q = numpy.rint(numpy.asarray(bias, numpy.float64) / step)
    # NOTE: saturate (an all-zero weight channel has a tiny scale) instead of wrapping around
    info = numpy.iinfo(numpy.int32)
    return numpy.clip(bias_q, info.min, info.max).astype(numpy.int32)
