"""conv1d, conv2d (stride, padding, dilation, groups, channels-last inputs) and
conv_transpose2d against torch, functional and module forms, one line per case: forward,
input, weight and bias gradients (helpers.helper_test_op / helper_test_layer); module reprs,
initialisation statistics and errors."""

from __future__ import annotations

import numpy
import pytest

torch = pytest.importorskip("torch")

from helpers import helper_test_layer, helper_test_op  # noqa: E402

import disttrain as dt  # noqa: E402
import disttrain.nn as nn  # noqa: E402
import disttrain.nn.functional as F  # noqa: E402
from disttrain.ops import conv as conv_ops  # noqa: E402

TORCH_SAME_PAD_WARNING = pytest.mark.filterwarnings("ignore:Using padding='same' with even")


def case(name, fn, *shapes, marks=()):
    return pytest.param(fn, shapes, id=name, marks=marks)


def _channels_last(m, x):
    """x's values, channels-last in memory (as a conv's output is here): the reshape of the
    permuted view copies it in (N, H, W, C) order."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w, c).reshape(n, h, w, c).permute(0, 3, 1, 2)


OPS = [
    # ---- conv1d
    case("conv1d", lambda m, x, w, b: m.F.conv1d(x, w, b), (2, 3, 9), (4, 3, 3), (4,)),
    case("conv1d_stride_pad", lambda m, x, w, b: m.F.conv1d(x, w, b, 2, 1), (2, 3, 9),
         (4, 3, 3), (4,)),
    case("conv1d_tuple_args", lambda m, x, w: m.F.conv1d(x, w, None, (3,), (2,), (2,)),
         (2, 3, 11), (5, 3, 3)),
    case("conv1d_dilation", lambda m, x, w: m.F.conv1d(x, w, dilation=3), (1, 2, 12), (3, 2, 3)),
    case("conv1d_groups", lambda m, x, w, b: m.F.conv1d(x, w, b, groups=2), (2, 4, 8),
         (6, 2, 3), (6,)),
    case("conv1d_depthwise", lambda m, x, w: m.F.conv1d(x, w, groups=4, padding=1), (2, 4, 7),
         (8, 1, 3)),
    case("conv1d_same", lambda m, x, w: m.F.conv1d(x, w, padding="same"), (2, 3, 8), (2, 3, 5)),
    case("conv1d_same_even_dilated", lambda m, x, w: m.F.conv1d(x, w, padding="same",
         dilation=2), (2, 3, 8), (2, 3, 4), marks=TORCH_SAME_PAD_WARNING),
    case("conv1d_valid", lambda m, x, w: m.F.conv1d(x, w, padding="valid"), (2, 3, 8), (2, 3, 4)),
    case("conv1d_unbatched", lambda m, x, w, b: m.F.conv1d(x, w, b), (3, 9), (4, 3, 2), (4,)),
    # ---- conv2d, beyond test_ops_parity's cases: every option together, channels-last input
    case("conv2d_all_options", lambda m, x, w, b: m.F.conv2d(x, w, b, (2, 1), (1, 2), (2, 1), 2),
         (2, 4, 9, 8), (6, 2, 3, 2), (6,)),
    case("conv2d_stride_gt_kernel", lambda m, x, w: m.F.conv2d(x, w, stride=3), (2, 3, 10, 10),
         (4, 3, 2, 2)),
    case("conv2d_channels_last_input", lambda m, x, w, b: m.F.conv2d(
        _channels_last(m, x), w, b, padding=1), (2, 5, 6, 7), (4, 5, 3, 3), (4,)),
    case("conv2d_groups_padding_dilation", lambda m, x, w: m.F.conv2d(
        x, w, padding=2, dilation=2, groups=3), (2, 6, 7, 7), (9, 2, 3, 3)),
    case("conv2d_many_images", lambda m, x, w, b: m.F.conv2d(x, w, b, padding=1),
         (40, 8, 12, 12), (16, 8, 3, 3), (16,)),
    # ---- conv_transpose2d
    case("conv_transpose2d", lambda m, x, w, b: m.F.conv_transpose2d(x, w, b), (2, 4, 5, 5),
         (4, 3, 3, 3), (3,)),
    case("conv_transpose2d_stride", lambda m, x, w, b: m.F.conv_transpose2d(x, w, b, stride=2),
         (2, 4, 5, 6), (4, 3, 3, 3), (3,)),
    case("conv_transpose2d_padding", lambda m, x, w: m.F.conv_transpose2d(
        x, w, stride=2, padding=1), (2, 4, 5, 5), (4, 3, 3, 3)),
    case("conv_transpose2d_output_padding", lambda m, x, w, b: m.F.conv_transpose2d(
        x, w, b, stride=2, padding=1, output_padding=1), (2, 4, 5, 5), (4, 3, 3, 3), (3,)),
    case("conv_transpose2d_tuples", lambda m, x, w, b: m.F.conv_transpose2d(
        x, w, b, (2, 3), (1, 0), (1, 2)), (1, 2, 4, 5), (2, 3, 3, 4), (3,)),
    case("conv_transpose2d_dilation", lambda m, x, w: m.F.conv_transpose2d(
        x, w, dilation=2, padding=1), (2, 3, 5, 5), (3, 2, 3, 3)),
    case("conv_transpose2d_dilation_output_padding", lambda m, x, w: m.F.conv_transpose2d(
        x, w, stride=1, dilation=3, output_padding=2), (1, 3, 4, 4), (3, 2, 2, 2)),
    case("conv_transpose2d_shrinking_output_padding", lambda m, x, w, b: m.F.conv_transpose2d(
        x, w, b, padding=3, dilation=2, output_padding=1, groups=2), (2, 4, 6, 7), (4, 3, 3, 3),
         (6,)),
    case("conv_transpose2d_groups", lambda m, x, w, b: m.F.conv_transpose2d(
        x, w, b, stride=2, groups=2), (2, 4, 4, 4), (4, 3, 3, 3), (6,)),
    case("conv_transpose2d_depthwise", lambda m, x, w: m.F.conv_transpose2d(
        x, w, groups=4, padding=1), (2, 4, 5, 5), (4, 1, 3, 3)),
    case("conv_transpose2d_unbatched", lambda m, x, w, b: m.F.conv_transpose2d(x, w, b, 2),
         (4, 3, 3), (4, 2, 2, 2), (2,)),
    case("conv_transpose2d_1x1", lambda m, x, w: m.F.conv_transpose2d(x, w), (2, 5, 3, 3),
         (5, 2, 1, 1)),
]  # fmt: skip


@pytest.mark.parametrize("fn, shapes", OPS)
def test_op(fn, shapes, device):
    helper_test_op(shapes, fn, device=device)


@pytest.mark.parametrize("fn, shapes", OPS)
def test_op_one_image_per_chunk(fn, shapes, monkeypatch):
    """The same cases with im2col/GEMM run one image at a time (ops.conv.image_chunks)."""
    monkeypatch.setattr(conv_ops, "CHUNK_BYTES", 1)
    assert len(conv_ops.image_chunks(numpy.zeros((3, 2, 2, 1)), 4)) == 3
    helper_test_op(shapes, fn)


def layer(name, make, shape, marks=()):
    return pytest.param(make, shape, id=name, marks=marks)


LAYERS = [
    layer("conv1d", lambda nn: nn.Conv1d(3, 4, 3), (2, 3, 10)),
    layer("conv1d_all", lambda nn: nn.Conv1d(4, 6, 3, 2, 1, 2, groups=2, bias=False),
          (2, 4, 11)),
    layer("conv1d_same", lambda nn: nn.Conv1d(3, 5, 4, padding="same"), (2, 3, 8),
          marks=TORCH_SAME_PAD_WARNING),
    layer("conv_transpose2d", lambda nn: nn.ConvTranspose2d(4, 3, 3), (2, 4, 5, 5)),
    layer("conv_transpose2d_all", lambda nn: nn.ConvTranspose2d(
        4, 6, (3, 2), stride=2, padding=1, output_padding=1, groups=2, dilation=(1, 2)),
        (2, 4, 5, 4)),
    layer("conv_transpose2d_no_bias", lambda nn: nn.ConvTranspose2d(2, 4, 2, 2, bias=False),
          (1, 2, 3, 3)),
    layer("decoder", lambda nn: nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(8, 3, 3, stride=2, padding=1, output_padding=1)), (2, 3, 8, 8)),
]  # fmt: skip


@pytest.mark.parametrize("make, shape", LAYERS)
def test_layer(make, shape, device):
    helper_test_layer(make, [shape], device=device)


def test_conv_transpose2d_output_size():
    x = numpy.random.default_rng(0).standard_normal((1, 4, 5, 5)).astype(numpy.float32)
    ours, theirs = nn.ConvTranspose2d(4, 6, 3, stride=2), torch.nn.ConvTranspose2d(4, 6, 3, 2)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    for size in ([12, 12], (1, 6, 11, 12)):
        out, expected = ours(dt.tensor(x), output_size=size), theirs(torch.tensor(x), size)
        assert out.shape == tuple(expected.shape)
        numpy.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(),
                                   atol=1e-5)
    with pytest.raises(ValueError, match=r"output size of \[13, 13\], but valid sizes range "
                                         r"from \[11, 11\] to \[12, 12\]"):
        ours(dt.tensor(x), output_size=[13, 13])


@pytest.mark.parametrize("make", [
    lambda nn: nn.Conv1d(16, 33, 3, stride=2),
    lambda nn: nn.Conv1d(3, 4, 3, 2, 1, 2, groups=1, bias=False),
    lambda nn: nn.Conv1d(4, 4, 3, padding="same", groups=2),
    lambda nn: nn.Conv2d(3, 4, 3, padding="valid"),
    lambda nn: nn.Conv2d(3, 4, (3, 5), padding=(1, 2), dilation=2),
    lambda nn: nn.ConvTranspose2d(16, 33, 3, stride=2),
    lambda nn: nn.ConvTranspose2d(4, 6, 3, 2, 1, 1, groups=2, bias=False, dilation=2),
])
def test_repr_and_state_layout(make):
    ours, theirs = make(nn), make(torch.nn)
    assert repr(ours) == repr(theirs)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in theirs.state_dict().items()}


@pytest.mark.parametrize("make, fan_in", [(lambda nn: nn.ConvTranspose2d(64, 32, 4, groups=2),
                                            16 * 16), (lambda nn: nn.Conv1d(64, 32, 5), 64 * 5)])
def test_default_init_bounds(make, fan_in):
    """torch's kaiming_uniform_(a=sqrt(5)) weight and U(+-1/sqrt(fan_in)) bias, with fan_in
    from the weight's dim 1 (C_out/groups * kh * kw for a transposed convolution)."""
    torch.manual_seed(0)
    bound = 1 / numpy.sqrt(fan_in)
    for module in (make(nn), make(torch.nn)):
        for name, p in module.named_parameters():
            values = numpy.abs(p.detach().numpy())
            assert bound * 0.8 <= values.max() <= bound * (1 + 1e-6), (type(module), name)


@pytest.mark.parametrize("call, match", [
    (lambda: F.conv1d(dt.randn(2, 3, 8), dt.randn(4, 2, 3)), r"conv1d: input has 3 channels"),
    (lambda: F.conv1d(dt.randn(2, 3, 8, 8), dt.randn(4, 3, 3)), r"conv1d: expected input "
                                                                  r"\(N, C, L\)"),
    (lambda: F.conv1d(dt.randn(2, 3, 8), dt.randn(4, 3, 3), stride=2, padding="same"),
     r"conv1d: padding='same' is not supported for strided"),
    (lambda: F.conv1d(dt.randn(2, 3, 8), dt.randn(4, 3, 3), stride=(1, 2)),
     r"conv1d: stride: expected an int or a 1-tuple"),
    (lambda: F.conv1d(dt.randn(2, 3, 2), dt.randn(4, 3, 3)), r"conv1d: output size"),
    (lambda: F.conv_transpose2d(dt.randn(1, 3, 4, 4), dt.randn(4, 2, 3, 3)),
     r"conv_transpose2d: input has 3 channels but weight \(4, 2, 3, 3\)"),
    (lambda: F.conv_transpose2d(dt.randn(1, 4, 4, 4), dt.randn(4, 2, 3, 3), output_padding=1),
     r"output_padding must be smaller than either stride or dilation.*output_padding=\(1, 1\)"),
    (lambda: F.conv_transpose2d(dt.randn(1, 4, 4, 4), dt.randn(4, 2, 3, 3), groups=3),
     r"conv_transpose2d: in_channels=4 is not divisible by groups=3"),
    (lambda: F.conv_transpose2d(dt.randn(1, 4, 1, 1), dt.randn(4, 2, 1, 1), padding=1),
     r"conv_transpose2d: output size \(-1, -1\) is too small"),
    (lambda: nn.Conv1d(4, 6, 3, groups=4), r"Conv1d: in_channels=4 and out_channels=6 must "
                                           r"both be divisible by groups=4"),
    (lambda: nn.ConvTranspose2d(4, 6, 3, padding_mode="reflect"),
     r"ConvTranspose2d: padding_mode='reflect' is not supported"),
    (lambda: nn.ConvTranspose2d(4, 6, 3, padding="same"), r"ConvTranspose2d: padding must be "
                                                          r"ints, got 'same'"),
    (lambda: nn.Conv1d(4, 6, 3, stride=2, padding="same"), r"Conv1d: padding='same' is not "
                                                           r"supported for strided"),
    (lambda: nn.Conv2d(4, 6, 3, padding="full"), r"Conv2d: padding must be 'valid', 'same' or "
                                                 r"ints, got 'full'"),
])
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("fn, shape", [
    (lambda m, x: m.F.max_pool2d(x, 2), (2, 3, 6, 6)),
    (lambda m, x: m.F.max_pool2d(_channels_last(m, m.F.relu(x)), 2), (2, 4, 8, 6)),
    (lambda m, x: m.F.max_pool2d(x, 2), (1, 2, 7, 5)),
    (lambda m, x: m.F.max_pool2d(x, (2, 3), stride=(3, 4)), (1, 2, 8, 9)),
])
def test_max_pool2d_ties_disjoint_windows(fn, shape):
    """Ties (and ReLU zeros) in non-overlapping windows go to the first maximum, as in torch;
    windows that tile the input, leave a remainder, or skip positions (stride > kernel)."""
    helper_test_op([shape], fn, domain="ties")
