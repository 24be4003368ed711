"""disttrain.quantization kernels, qparams and observers: the float32 GEMM is exact against an
int64 reference (worst-case values, K across the block boundary), convolutions equal an int64
direct convolution, requantization rounds half to even, the histogram range beats min-max."""

import numpy
import pytest

from disttrain.quantization import kernels
from disttrain.quantization.observers import (
    HistogramObserver,
    MinMaxObserver,
    PerChannelMinMaxObserver,
)
from disttrain.quantization.qtypes import (
    QTensor,
    calculate_qparams,
    dequantize_array,
    qint8,
    quantize_array,
    quint8,
)
from disttrain.tensor import Tensor


def _reference_linear(x_q, zero_point, w_q):
    return (x_q.astype(numpy.int64) - zero_point) @ w_q.astype(numpy.int64).T


@pytest.mark.parametrize("k", [1, 9, 1024, 1025, 1032, 3000, 5408])
def test_exact_matmul_worst_case_values(k):
    # every product at its largest magnitude and the same sign: the sums float32 must hold
    a = numpy.full((3, k), -128.0, numpy.float32)
    b = numpy.full((k, 2), -127.0, numpy.float32)
    b[:, 1] = 127.0
    out = kernels.exact_matmul(a, b)
    assert out.dtype == numpy.int32
    assert out[:, 0].tolist() == [128 * 127 * k] * 3 and out[:, 1].tolist() == [-128 * 127 * k] * 3


def test_unblocked_float32_sum_is_not_exact_past_the_bound():
    # why K_BLOCK exists: one float32 GEMM over K = 3000 worst-case terms loses integers
    rng = numpy.random.default_rng(0)
    a = rng.choice([-128.0, 127.0], (64, 3000)).astype(numpy.float32)
    b = rng.choice([-127.0, 127.0], (3000, 64)).astype(numpy.float32)
    a[:, :2000], b[:2000] = -128.0, 127.0  # a large common part pushes sums past 2**24
    reference = a.astype(numpy.int64) @ b.astype(numpy.int64)
    assert numpy.abs(reference).max() > 2 ** 24
    assert (kernels.exact_matmul(a, b) == reference).all()
    assert not ((a @ b).astype(numpy.int64) == reference).all()


@pytest.mark.parametrize("zero_point", [0, 37, 128, 255])
@pytest.mark.parametrize("k", [5, 700, 2100])
def test_int8_linear_equals_int64_reference(zero_point, k):
    rng = numpy.random.default_rng(k + zero_point)
    x_q = rng.integers(0, 256, (17, k)).astype(numpy.uint8)
    w_q = rng.integers(-127, 128, (11, k)).astype(numpy.int8)
    weight_kn, row_sums = kernels.weight_matrix(w_q)
    out = kernels.int8_linear(x_q, zero_point, weight_kn, row_sums)
    assert (out == _reference_linear(x_q, zero_point, w_q)).all()


def _reference_conv(x_q, zero_point, w_q, stride, padding, dilation, groups):
    x = numpy.pad(x_q.astype(numpy.int64) - zero_point,
                  ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    n, c, h, w = x.shape
    o, cg, kh, kw = w_q.shape
    oh = (h - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = numpy.zeros((n, o, oh, ow), numpy.int64)
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(kh):
            for j in range(kw):
                patch = x[:, g * cg:(g + 1) * cg, i * dilation[0]:i * dilation[0] + stride[0] * (
                    oh - 1) + 1:stride[0], j * dilation[1]:j * dilation[1] + stride[1] * (
                    ow - 1) + 1:stride[1]]
                out[:, oc] += numpy.einsum("nchw,c->nhw", patch, w_q[oc, :, i, j].astype(
                    numpy.int64))
    return out


@pytest.mark.parametrize("stride,padding,dilation,groups,channels", [
    ((1, 1), (0, 0), (1, 1), 1, 1),
    ((2, 1), (1, 2), (1, 1), 1, 3),
    ((1, 1), (2, 2), (2, 2), 2, 4),
    ((1, 1), (1, 1), (1, 1), 1, 130),  # K = 1170 > K_BLOCK
])
def test_int8_conv2d_equals_int64_reference(stride, padding, dilation, groups, channels):
    rng = numpy.random.default_rng(channels)
    x_q = rng.integers(0, 256, (2, channels, 7, 8)).astype(numpy.uint8)
    w_q = rng.integers(-127, 128, (4, channels // groups, 3, 3)).astype(numpy.int8)
    acc, (oh, ow) = kernels.int8_conv2d(x_q, 91, w_q, stride, padding, dilation, groups)
    expected = _reference_conv(x_q, 91, w_q, stride, padding, dilation, groups)
    assert (acc.reshape(2, oh, ow, 4).transpose(0, 3, 1, 2) == expected).all()


def test_requantize_rounds_half_to_even_and_clips():
    acc = numpy.array([[1, 3, 5, -1000, 1000]], numpy.int32)
    out = kernels.requantize(acc, numpy.float32(0.5), 10)
    assert out.dtype == numpy.uint8 and out.tolist() == [[10, 12, 12, 0, 255]]
    assert kernels.requantize(acc, numpy.float32(0.5), 10, qmin=10).tolist() == [
        [10, 12, 12, 10, 255]]


def test_bias_int32_units():
    bias = kernels.bias_int32([0.3, -0.3], 0.1, numpy.array([0.5, 1.0], numpy.float32))
    assert bias.dtype == numpy.int32 and bias.tolist() == [6, -3]
    huge = kernels.bias_int32([1.0, -1.0], 1e-3, numpy.array([1e-9, 1e-9], numpy.float32))
    assert huge.tolist() == [2 ** 31 - 1, -2 ** 31]


def test_qparams_hold_zero_exactly_and_roundtrip_within_half_a_step():
    scale, zero = calculate_qparams(-1.0, 3.0, quint8, symmetric=False)
    assert zero == 64 and float(dequantize_array(numpy.uint8(zero), scale, zero)) == 0.0
    x = numpy.linspace(-1, 3, 1001, dtype=numpy.float32)
    back = dequantize_array(quantize_array(x, scale, zero, quint8), scale, zero)
    assert numpy.abs(back - x).max() <= scale / 2 + 1e-7
    scale, zero = calculate_qparams([-2.0, -0.5], [1.0, 0.25], qint8, symmetric=True)
    assert zero.tolist() == [0, 0] and numpy.allclose(scale, [2 / 127, 0.5 / 127])


def test_quantize_array_per_channel_and_range():
    w = numpy.array([[1.0, -1.0], [100.0, 0.5]], numpy.float32)
    q = quantize_array(w, numpy.array([1 / 127, 100 / 127], numpy.float32), 0, qint8, axis=0)
    assert q.dtype == numpy.int8 and q.tolist() == [[127, -127], [127, 1]]


def test_qtensor_dequantize_and_repr():
    q = QTensor.quantize(Tensor(numpy.array([-0.5, 0.0, 1.0], numpy.float32)), 0.5, 3)
    assert q.int_repr.tolist() == [2, 3, 5] and q.dequantize().tolist() == [-0.5, 0.0, 1.0]
    assert "scale=0.5, zero_point=3" in repr(q)


def test_minmax_observers():
    obs = MinMaxObserver()
    obs(Tensor(numpy.array([0.5, 2.0], numpy.float32)))
    obs(numpy.array([-1.0, 1.0], numpy.float32))
    assert (float(obs.min_val.array), float(obs.max_val.array)) == (-1.0, 2.0)
    assert MinMaxObserver().calculate_qparams()[1] == 0  # no data: a usable placeholder
    per_channel = PerChannelMinMaxObserver()
    per_channel(numpy.array([[1.0, -3.0], [0.5, 0.25]], numpy.float32))
    scale, zero = per_channel.calculate_qparams()
    assert numpy.allclose(scale, [3 / 127, 0.5 / 127]) and zero.tolist() == [0, 0]


def _mse(x, scale, zero):
    return float(((dequantize_array(quantize_array(x, scale, zero, quint8), scale, zero) - x)
                  ** 2).mean())


def test_histogram_observer_beats_minmax_on_long_tails():
    # Laplace data: the L2-optimal range trims the sparse tails, which min-max spends levels on
    rng = numpy.random.default_rng(0)
    batches = [rng.laplace(size=20000).astype(numpy.float32) for _ in range(4)]
    hist, minmax = HistogramObserver(), MinMaxObserver()
    for batch in batches:
        hist(batch), minmax(batch)
    data = numpy.concatenate(batches)
    hist_scale, hist_zero = hist.calculate_qparams()
    mm_scale, mm_zero = minmax.calculate_qparams()
    assert hist_scale < 0.9 * mm_scale
    assert _mse(data, hist_scale, hist_zero) < 0.9 * _mse(data, mm_scale, mm_zero)


@pytest.mark.parametrize("name", ["qtypes", "observers", "fuse", "static", "dynamic"])
def test_docstring_examples_run(name):
    import doctest
    import importlib

    module = importlib.import_module(f"disttrain.quantization.{name}")
    result = doctest.testmod(module, extraglobs={"numpy": numpy, "Tensor": Tensor},
                             report=False)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("shape", [(16, 24), (3, 5)])  # 8-byte words, and a ragged size
def test_weight_cache_refreshes_on_in_place_writes(shape):
    weight = numpy.random.default_rng(1).integers(-127, 128, shape).astype(numpy.int8)
    cache = kernels.WeightCache()
    first = cache.get(weight)
    assert cache.get(weight) is first
    weight[-1, -1] = -weight[-1, -1] - 1 if weight[-1, -1] != -127 else 5
    kn, sums = cache.get(weight)
    assert kn is not first[0] and (kn == weight.T).all() and (sums == weight.sum(1)).all()
