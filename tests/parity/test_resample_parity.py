"""pad, interpolate and adaptive pooling against torch: one line per case (forward value, shape,
dtype and input gradient), the modules, torch's index rules over many sizes and scale factors,
adaptive max-pool indices (ties included), and the errors."""

from __future__ import annotations

import warnings

import numpy
import pytest

torch = pytest.importorskip("torch")

from helpers import helper_test_layer, helper_test_op  # noqa: E402

import disttrain as dt  # noqa: E402


def case(name, fn, *shapes, domain="normal", **kwargs):
    return pytest.param(fn, shapes, domain, kwargs, id=name)


CASES = [
    case("pad_constant", lambda m, x: m.F.pad(x, (1, 2)), (2, 3, 4)),
    case("pad_constant_value_2d", lambda m, x: m.F.pad(x, [1, 0, 2, 3], value=-1.5), (2, 3, 4)),
    case("pad_constant_all_dims", lambda m, x: m.F.pad(x, (1, 1, 0, 2, 1, 0)), (2, 3, 4)),
    case("pad_constant_crop", lambda m, x: m.F.pad(x, (-1, -2, 2, -1)), (2, 4, 5)),
    case("pad_constant_empty_result", lambda m, x: m.F.pad(x, (-2, -2)), (2, 4)),
    case("pad_reflect_1d", lambda m, x: m.F.pad(x, (3, 2), mode="reflect"), (2, 3, 5)),
    case("pad_reflect_2d", lambda m, x: m.F.pad(x, (2, 2, 1, 3), mode="reflect"), (2, 3, 4, 5)),
    case("pad_reflect_unbatched", lambda m, x: m.F.pad(x, (1, 1, 2, 0), "reflect"), (3, 4, 5)),
    case("pad_reflect_3d", lambda m, x: m.F.pad(x, (1, 2, 1, 0, 1, 1), mode="reflect"),
         (1, 2, 3, 4, 3)),
    case("pad_reflect_negative", lambda m, x: m.F.pad(x, (-1, 3), mode="reflect"), (2, 5)),
    case("pad_replicate", lambda m, x: m.F.pad(x, (4, 0, 2, 5), mode="replicate"), (2, 1, 3, 4)),
    case("pad_replicate_negative", lambda m, x: m.F.pad(x, (2, -3), mode="replicate"), (2, 6)),
    case("pad_circular", lambda m, x: m.F.pad(x, (3, 1, 2, 2), mode="circular"), (1, 2, 3, 4)),
    case("pad_circular_negative", lambda m, x: m.F.pad(x, (-1, 2, 2, -1), mode="circular"),
         (2, 4, 5)),
    case("nearest_2x", lambda m, x: m.F.interpolate(x, scale_factor=2), (2, 3, 4, 5)),
    case("nearest_size", lambda m, x: m.F.interpolate(x, size=(7, 3)), (2, 3, 4, 5)),
    case("nearest_int_size", lambda m, x: m.F.interpolate(x, size=6), (1, 2, 4, 5)),
    case("nearest_1d", lambda m, x: m.F.interpolate(x, size=11), (2, 3, 4)),
    case("nearest_down", lambda m, x: m.F.interpolate(x, scale_factor=0.4), (2, 3, 9, 7)),
    case("nearest_scale_tuple", lambda m, x: m.F.interpolate(x, scale_factor=(1.5, 0.7)),
         (1, 2, 5, 7)),
    case("nearest_scale_recompute", lambda m, x: m.F.interpolate(
        x, scale_factor=1.7, recompute_scale_factor=True), (1, 2, 5, 7)),
    case("bilinear_up", lambda m, x: m.F.interpolate(x, scale_factor=2, mode="bilinear"),
         (2, 3, 4, 5)),
    case("bilinear_size", lambda m, x: m.F.interpolate(x, size=(7, 3), mode="bilinear"),
         (2, 3, 4, 5)),
    case("bilinear_align_corners", lambda m, x: m.F.interpolate(
        x, size=(9, 6), mode="bilinear", align_corners=True), (1, 2, 4, 5)),
    case("bilinear_down_scale", lambda m, x: m.F.interpolate(
        x, scale_factor=0.45, mode="bilinear"), (1, 2, 9, 11)),
    case("bilinear_scale_not_recomputed", lambda m, x: m.F.interpolate(
        x, scale_factor=(1.3, 2.6), mode="bilinear", recompute_scale_factor=False),
         (1, 2, 5, 4)),
    case("bilinear_to_one", lambda m, x: m.F.interpolate(x, size=(1, 3), mode="bilinear",
                                                         align_corners=True), (1, 2, 4, 5)),
    case("linear_1d", lambda m, x: m.F.interpolate(x, size=9, mode="linear"), (2, 3, 4)),
    case("area", lambda m, x: m.F.interpolate(x, size=(3, 2), mode="area"), (2, 3, 7, 5)),
    case("adaptive_avg_global", lambda m, x: m.F.adaptive_avg_pool2d(x, (1, 1)), (2, 3, 7, 7)),
    case("adaptive_avg_divisible", lambda m, x: m.F.adaptive_avg_pool2d(x, (2, 3)),
         (2, 3, 6, 9)),
    case("adaptive_avg_general", lambda m, x: m.F.adaptive_avg_pool2d(x, 3), (2, 3, 7, 5)),
    case("adaptive_avg_larger", lambda m, x: m.F.adaptive_avg_pool2d(x, (9, 4)), (1, 2, 5, 3)),
    case("adaptive_avg_none", lambda m, x: m.F.adaptive_avg_pool2d(x, (None, 2)), (2, 3, 5, 7)),
    case("adaptive_avg_unbatched", lambda m, x: m.F.adaptive_avg_pool2d(x, (2, 5)), (3, 7, 6)),
    case("adaptive_max_divisible", lambda m, x: m.F.adaptive_max_pool2d(x, 2), (2, 3, 6, 4),
         domain="distinct"),
    case("adaptive_max_general", lambda m, x: m.F.adaptive_max_pool2d(x, (3, 4)), (2, 3, 7, 9),
         domain="distinct"),
    case("adaptive_max_ties", lambda m, x: m.F.adaptive_max_pool2d(x, (3, 2)), (2, 3, 7, 5),
         domain="ties"),
    case("adaptive_max_indices", lambda m, x: m.F.adaptive_max_pool2d(x, (4, None), True),
         (2, 3, 7, 5), domain="ties"),
]  # fmt: skip


@pytest.mark.parametrize("fn, shapes, domain, kwargs", CASES)
def test_resample(fn, shapes, domain, kwargs, device):
    helper_test_op(shapes, fn, domain=domain, device=device, **kwargs)


MODULES = [
    pytest.param(lambda nn: nn.AdaptiveAvgPool2d((1, 1)), (2, 3, 5, 5), id="AdaptiveAvgPool2d"),
    pytest.param(lambda nn: nn.AdaptiveAvgPool2d((3, None)), (2, 3, 7, 5), id="AdaptiveAvg_none"),
    pytest.param(lambda nn: nn.AdaptiveMaxPool2d(3), (2, 3, 7, 5), id="AdaptiveMaxPool2d"),
    pytest.param(lambda nn: nn.AdaptiveMaxPool2d((2, 2), return_indices=True), (2, 3, 5, 5),
                 id="AdaptiveMaxPool2d_indices"),
    pytest.param(lambda nn: nn.Upsample(scale_factor=2), (2, 3, 4, 5), id="Upsample"),
    pytest.param(lambda nn: nn.Upsample(size=(5, 7), mode="bilinear"), (2, 3, 4, 5),
                 id="Upsample_bilinear"),
    pytest.param(lambda nn: nn.UpsamplingNearest2d(size=6), (2, 3, 4, 5), id="UpsamplingNearest2d"),
    pytest.param(lambda nn: nn.UpsamplingBilinear2d(scale_factor=1.5), (2, 3, 4, 5),
                 id="UpsamplingBilinear2d"),
]


@pytest.mark.parametrize("make, shape", MODULES)
def test_module(make, shape, device):
    helper_test_layer(make, [shape], domain="distinct", device=device)
    assert repr(make(dt.nn)) == repr(make(torch.nn))


def _index_rule_mismatches(dtype: str, modes) -> list:
    """(size or scale, mode) pairs where disttrain and torch resample a 1-D signal differently."""
    bad = []
    for n_in in range(1, 17):
        x = numpy.random.default_rng(n_in).random((1, 1, n_in)).astype(dtype)
        calls = [dict(size=n) for n in range(1, 35)] + [
            dict(scale_factor=s, recompute_scale_factor=r)
            for s in (0.3, 0.7, 1.1, 1.5, 1.7, 2.5, 3.3, 1 / 3) for r in (None, True)]
        for kwargs in calls:
            if int(n_in * kwargs.get("scale_factor", 1)) == 0:  # NOTE: empty output
                continue
            for mode, align in modes:
                ours = dt.nn.functional.interpolate(dt.tensor(x), mode=mode, align_corners=align,
                                                    **kwargs)
                theirs = torch.nn.functional.interpolate(torch.tensor(x), mode=mode,
                                                         align_corners=align, **kwargs)
                if ours.shape != tuple(theirs.shape) or not numpy.allclose(
                        ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6):
                    bad.append((n_in, kwargs, mode, align))
    return bad


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nearest_source_index_is_torchs_for_every_size(dtype):
    assert _index_rule_mismatches(dtype, [("nearest", None)]) == []


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linear_weights_are_torchs_for_every_size(dtype):
    assert _index_rule_mismatches(dtype, [("linear", False), ("linear", True)]) == []


def test_adaptive_bins_are_torchs_for_every_size():
    rng = numpy.random.default_rng(0)
    for h, w in [(1, 1), (5, 7), (7, 5), (10, 3)]:
        x = rng.random((2, 2, h, w)).astype("float32")
        for oh in range(1, 2 * h + 2):
            for ow in (1, w, max(1, w - 2), w + 3):
                for name in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
                    ours = getattr(dt.nn.functional, name)(dt.tensor(x), (oh, ow))
                    theirs = getattr(torch.nn.functional, name)(torch.tensor(x), (oh, ow))
                    numpy.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6,
                                                  atol=1e-7, err_msg=f"{name} {h, w} {oh, ow}")


def test_adaptive_max_indices_and_ties_are_torchs():
    x = numpy.random.default_rng(1).integers(0, 3, (2, 3, 7, 9)).astype("float32")
    for size in [2, 3, (4, 5), (7, 9), (14, 3), (1, 1)]:
        values, indices = dt.nn.functional.adaptive_max_pool2d(dt.tensor(x), size, True)
        t_values, t_indices = torch.nn.functional.adaptive_max_pool2d(torch.tensor(x), size, True)
        numpy.testing.assert_array_equal(indices.numpy(), t_indices.numpy())
        assert indices.dtype == numpy.int64 and values.shape == tuple(t_values.shape)


ERRORS = [
    ("pad_odd", lambda F, x: F.pad(x, (1, 2, 3)), ValueError, r"pad: padding length must be "
     r"divisible by 2, got 3"),
    ("pad_too_long", lambda F, x: F.pad(x, (1,) * 10), ValueError, r"pad: padding length "
     r"should be less than or equal to two times the input dimension but got padding length "
     r"10 and input of dimension 4"),
    ("pad_negative_size", lambda F, x: F.pad(x, (-2, -2)), RuntimeError,
     r"pad: padding \(-2, -2\) makes dimension 3 of input \(1, 2, 3, 3\) negative \(-1\)"),
    ("pad_mode", lambda F, x: F.pad(x, (1, 1), mode="edge"), NotImplementedError,
     r"pad: unrecognised padding mode 'edge'"),
    ("pad_value", lambda F, x: F.pad(x, (1, 1, 1, 1), mode="reflect", value=1.0), RuntimeError,
     r"pad: padding mode \"reflect\" doesn't take in value argument, got value=1.0"),
    ("pad_reflect_dims", lambda F, x: F.pad(x, (1, 1), mode="reflect"), NotImplementedError,
     r"pad: padding size 2 is not supported for 4D input with mode='reflect'"),
    ("pad_reflect_size", lambda F, x: F.pad(x, (3, 1, 0, 0), mode="reflect"), RuntimeError,
     r"padding size should be less than the corresponding input dimension, but got: padding "
     r"\(3, 1\) at dimension 3 of input \(1, 2, 3, 3\)"),
    ("pad_circular_twice", lambda F, x: F.pad(x, (4, 0, 0, 0), mode="circular"), RuntimeError,
     r"pad: padding \(4, 0, 0, 0\) causes wrapping around more than once"),
    ("pad_float", lambda F, x: F.pad(x, (1.5, 1)), TypeError, r"pad: pad must be a tuple of "
     r"ints, got \(1.5, 1\)"),
    ("interp_both", lambda F, x: F.interpolate(x, size=2, scale_factor=2), ValueError,
     r"interpolate: exactly one of size or scale_factor should be defined"),
    ("interp_neither", lambda F, x: F.interpolate(x), ValueError,
     r"interpolate: exactly one of size or scale_factor"),
    ("interp_align_nearest", lambda F, x: F.interpolate(x, size=2, align_corners=False),
     ValueError, r"align_corners option can only be set with the interpolating modes"),
    ("interp_size_len", lambda F, x: F.interpolate(x, size=(2, 3, 4)), ValueError,
     r"interpolate: input with spatial dimensions of \[3, 3\] and output size of \(2, 3, 4\)"),
    ("interp_scale_len", lambda F, x: F.interpolate(x, scale_factor=(2, 3, 4)), ValueError,
     r"interpolate: input with spatial dimensions of \[3, 3\] and scale_factor of shape"),
    ("interp_recompute_size", lambda F, x: F.interpolate(x, size=4, recompute_scale_factor=True),
     ValueError, r"recompute_scale_factor is not meaningful with an explicit size"),
    ("interp_bilinear_3d", lambda F, x: F.interpolate(x[0], size=4, mode="bilinear"),
     NotImplementedError, r"interpolate: got 3D input, but mode 'bilinear' needs 4D input"),
    ("interp_linear_4d", lambda F, x: F.interpolate(x, size=4, mode="linear"),
     NotImplementedError, r"interpolate: got 4D input, but mode 'linear' needs 3D input"),
    ("bilinear_int", lambda F, x: F.interpolate(x.long(), size=4, mode="bilinear"),
     NotImplementedError, r"interpolate\(mode='bilinear'\): not implemented for dtype int64"),
    ("adaptive_int", lambda F, x: F.adaptive_avg_pool2d(x.long(), 2), NotImplementedError,
     r"adaptive_avg_pool2d: not implemented for dtype int64 \(as in torch\); convert the input"),
    ("adaptive_size", lambda F, x: F.adaptive_avg_pool2d(x, (1, 2, 3)), ValueError,
     r"adaptive_avg_pool2d: output_size must be an int or 2 values, got \(1, 2, 3\)"),
    ("adaptive_2d_input", lambda F, x: F.adaptive_max_pool2d(x[0, 0], 1), ValueError,
     r"adaptive_max_pool2d: expected a 3-D or 4-D input \(N, C, H, W\) with non-zero H and W, "
     r"got shape \(3, 3\)"),
]


@pytest.mark.parametrize("call, error, message", [pytest.param(*e[1:], id=e[0]) for e in ERRORS])
def test_errors_name_the_op_and_torch_refuses_too(call, error, message):
    x = numpy.zeros((1, 2, 3, 3), "float32")
    with pytest.raises(error, match=message):
        call(dt.nn.functional, dt.tensor(x))
    with pytest.raises(Exception), warnings.catch_warnings():  # noqa: B017  NOTE: torch's own types
        warnings.simplefilter("ignore")
        call(torch.nn.functional, torch.tensor(x))


def test_unsupported_modes_say_what_is_supported():
    x = dt.zeros(1, 1, 3, 3)
    for mode in ("bicubic", "nearest-exact", "trilinear"):
        with pytest.raises(NotImplementedError, match=rf"interpolate: mode '{mode}' is not "
                                                      r"supported; disttrain has \('nearest'"):
            dt.nn.functional.interpolate(x, size=4, mode=mode)
    with pytest.raises(NotImplementedError, match=r"antialias=True is not supported"):
        dt.nn.functional.interpolate(x, size=2, mode="bilinear", antialias=True)


def test_pad_keeps_integer_dtype_and_truncates_the_value_as_torch():
    x = numpy.arange(6).reshape(2, 3)
    ours = dt.nn.functional.pad(dt.tensor(x), (1, 1), value=2.7)
    theirs = torch.nn.functional.pad(torch.tensor(x), (1, 1), value=2.7)
    assert ours.dtype == numpy.int64
    numpy.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    reflected = dt.nn.functional.pad(dt.tensor(x), (2, 2), mode="reflect")
    numpy.testing.assert_array_equal(
        reflected.numpy(), torch.nn.functional.pad(torch.tensor(x), (2, 2), mode="reflect"))
