"""The Winograd F(2x2, 3x3) path of conv2d (ops.winograd) against torch, one line per case:
forward, input, weight and bias gradients, with a spy that checks which path ran (odd and even
sizes, padding 0 and 1, sizes that are not a multiple of the 2x2 tile, batch 1, channel counts
at and below the thresholds, the transposed conv, chunks of images); then its float32 error
against float64 next to the im2col path's."""

from __future__ import annotations

import numpy
import pytest

torch = pytest.importorskip("torch")

from helpers import helper_test_op  # noqa: E402

import disttrain as dt  # noqa: E402
import disttrain.nn.functional as F  # noqa: E402
from disttrain.ops import conv as conv_ops  # noqa: E402
from disttrain.ops import winograd  # noqa: E402


def case(name, fn, *shapes, calls):
    """`calls`: how many times (winograd_forward, winograd_weight_grad) must run."""
    return pytest.param(fn, shapes, calls, id=name)


def _conv(padding=1, scale=1 / 12):
    # NOTE: the weight is scaled to kaiming-like magnitudes (outputs O(1), as in a trained
    # net) so that the default float32 tolerances apply; its gradient flows through the scale
    return lambda m, x, w, b: m.F.conv2d(x, w * scale, b, padding=padding)


CASES = [
    # forward and input gradient (a 'same' conv with the flipped weight) and weight gradient
    case("same_even", _conv(), (2, 16, 8, 8), (24, 16, 3, 3), (24,), calls=(2, 1)),
    case("same_odd", _conv(), (2, 16, 7, 9), (24, 16, 3, 3), (24,), calls=(2, 1)),
    case("same_batch1_odd_tiles", _conv(), (1, 24, 5, 3), (16, 24, 3, 3), (16,), calls=(2, 1)),
    case("same_one_pixel", _conv(), (3, 16, 1, 1), (24, 16, 3, 3), (24,), calls=(2, 1)),
    # padding 0: the input gradient is not a 'same' conv and goes through col2im
    case("valid_even", _conv(0), (2, 16, 10, 8), (24, 16, 3, 3), (24,), calls=(1, 1)),
    case("valid_odd", _conv(0), (1, 17, 9, 7), (23, 17, 3, 3), (23,), calls=(1, 1)),
    case("valid_3x3_input", _conv(0), (2, 16, 3, 3), (24, 16, 3, 3), (24,), calls=(1, 1)),
    # padding 2: the output is larger than the input; its input gradient is a 'valid' conv
    case("padding_2", _conv(2), (2, 16, 5, 6), (24, 16, 3, 3), (24,), calls=(2, 1)),
    # channel counts below MIN_CHANNELS / MIN_CHANNEL_SUM keep im2col + GEMM
    case("in_channels_below", _conv(), (2, 15, 6, 6), (32, 15, 3, 3), (32,), calls=(0, 0)),
    case("out_channels_below", _conv(), (2, 32, 6, 6), (15, 32, 3, 3), (15,), calls=(0, 0)),
    case("channel_sum_below", _conv(), (2, 16, 6, 6), (16, 16, 3, 3), (16,), calls=(0, 0)),
    case("no_bias", lambda m, x, w: m.F.conv2d(x, w / 12, padding=1), (2, 16, 6, 5),
         (24, 16, 3, 3), calls=(2, 1)),
    # stride, dilation and groups keep im2col + GEMM
    case("stride_2", lambda m, x, w: m.F.conv2d(x, w / 12, stride=2, padding=1),
         (2, 16, 8, 8), (24, 16, 3, 3), calls=(0, 0)),
    case("dilation_2", lambda m, x, w: m.F.conv2d(x, w / 12, dilation=2, padding=2),
         (2, 16, 8, 8), (24, 16, 3, 3), calls=(0, 0)),
    case("groups_2", lambda m, x, w: m.F.conv2d(x, w / 12, groups=2, padding=1),
         (2, 64, 6, 6), (64, 32, 3, 3), calls=(0, 0)),
    # conv_transpose2d at stride 1 is a conv: its forward, input and weight gradients
    case("conv_transpose2d", lambda m, x, w, b: m.F.conv_transpose2d(x, w / 12, b, padding=1),
         (2, 16, 7, 6), (16, 24, 3, 3), (24,), calls=(2, 1)),
    # channels-last input (a conv output's memory order) and a ReLU between two convs
    case("two_layers", lambda m, x, w, v: m.F.conv2d(m.F.relu(m.F.conv2d(
        x, w / 12, padding=1)), v / 12, padding=1), (2, 16, 6, 7), (32, 16, 3, 3),
        (16, 32, 3, 3), calls=(4, 2)),
]  # fmt: skip


@pytest.fixture
def spy(monkeypatch):
    """Counts calls of ops.conv's winograd_forward and winograd_weight_grad."""
    counts = {"forward": 0, "weight_grad": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(conv_ops, "winograd_forward",
                        counted("forward", winograd.winograd_forward))
    monkeypatch.setattr(conv_ops, "winograd_weight_grad",
                        counted("weight_grad", winograd.winograd_weight_grad))
    return counts


@pytest.mark.parametrize("fn, shapes, calls", CASES)
def test_op(fn, shapes, calls, spy):
    helper_test_op(shapes, fn)
    assert (spy["forward"], spy["weight_grad"]) == calls


@pytest.mark.parametrize("fn, shapes, calls", CASES)
def test_op_two_images_per_chunk(fn, shapes, calls, spy, monkeypatch):
    """The same cases two images at a time (an odd batch leaves a short last chunk)."""
    monkeypatch.setattr(winograd, "_images_per_chunk", lambda *args: 2)
    helper_test_op(shapes, fn)
    assert (spy["forward"], spy["weight_grad"]) == calls


def test_integer_conv_keeps_im2col(spy):
    """G holds halves: an integer conv keeps the exact im2col + GEMM path."""
    x = numpy.arange(2 * 16 * 5 * 5).reshape(2, 16, 5, 5) % 7
    w = numpy.arange(24 * 16 * 9).reshape(24, 16, 3, 3) % 5 - 2
    out = F.conv2d(dt.tensor(x), dt.tensor(w), padding=1)
    expected = torch.nn.functional.conv2d(torch.tensor(x).double(), torch.tensor(w).double(),
                                          padding=1)
    assert out.dtype == dt.int64 and spy["forward"] == 0
    numpy.testing.assert_array_equal(out.numpy(), expected.numpy().astype(numpy.int64))


def _float32_errors(x, w, grad_y):
    """Max |error| of the float32 (forward, input grad, weight grad) against float64 torch."""
    x32, w32, g32 = (torch.tensor(a, dtype=torch.float32) for a in (x, w, grad_y))
    ours_x = dt.tensor(x32.numpy(), requires_grad=True)
    ours_w = dt.tensor(w32.numpy(), requires_grad=True)
    out = F.conv2d(ours_x, ours_w, padding=1)
    out.backward(dt.tensor(g32.numpy()))
    ref_x, ref_w = x32.double().requires_grad_(), w32.double().requires_grad_()
    ref = torch.nn.functional.conv2d(ref_x, ref_w, padding=1)
    ref.backward(g32.double())
    pairs = [(out.detach().numpy(), ref), (ours_x.grad.numpy(), ref_x.grad),
             (ours_w.grad.numpy(), ref_w.grad)]
    return numpy.array([numpy.abs(a - b.detach().numpy()).max() for a, b in pairs])


@pytest.mark.parametrize("channels, size", [(32, 16), (64, 8), (128, 4)])
def test_float32_error_close_to_im2col(channels, size, monkeypatch):
    """On ReLU activations and kaiming weights, F(2x2, 3x3)'s float32 error against a
    float64 reference stays within 2x the im2col path's (forward, input and weight grads)."""
    rng = numpy.random.default_rng(0)
    x = numpy.maximum(rng.standard_normal((4, channels, size, size)), 0)
    w = rng.standard_normal((channels, channels, 3, 3)) * numpy.sqrt(2 / (9 * channels))
    grad_y = rng.standard_normal((4, channels, size, size)) * 1e-2
    errors = _float32_errors(x, w, grad_y)
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 10**9)
    direct = _float32_errors(x, w, grad_y)
    assert numpy.all(errors <= 2 * direct), (errors, direct)
