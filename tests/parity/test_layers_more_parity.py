"""The activations, GroupNorm, channel Dropouts, normalize, implicit-dim softmaxes, one_hot and
the trunc_normal_/orthogonal_ initialisers of issue 11 against torch: one line per op or layer
case (forward, input and parameter gradients, reprs), then the warnings torch gives, then the
random parts by their statistics (channel masks, truncated-normal moments, orthogonality).
"""

from __future__ import annotations

import math
import warnings

import numpy
import pytest

torch = pytest.importorskip("torch")

from helpers import helper_test_layer, helper_test_op  # noqa: E402

import disttrain as dt  # noqa: E402
import disttrain.nn as nn  # noqa: E402
import disttrain.nn.functional as F  # noqa: E402

ZERO_ROWS = numpy.array([[1.0], [0.0], [1.0], [0.0]], numpy.float32)  # rows 1 and 3 vanish
TINY_ROW = numpy.array([[1.0], [1e-14], [1.0]], numpy.float32)  # row 1's norm is below eps


def op(name, fn, *shapes, domain="normal", **kwargs):
    return pytest.param(fn, shapes, domain, kwargs, id=name)


OPS = [
    # ---- activations (the "ties" domain puts inputs exactly on kinks and bounds)
    op("silu", lambda m, x: m.F.silu(x * 4), (3, 4)),
    op("silu_inplace_arg", lambda m, x: m.F.silu(x * 1.0, inplace=True), (3, 4)),
    op("elu", lambda m, x: m.F.elu(x), (3, 4)),
    op("elu_alpha_at_zero", lambda m, x: m.F.elu(x, alpha=0.5), (4, 5), domain="ties"),
    op("elu_large_inputs", lambda m, x: m.F.elu(x * 60, 2.0), (3, 4)),
    op("softplus_default", lambda m, x: m.F.softplus(x * 3), (3, 4)),
    op("softplus_beta", lambda m, x: m.F.softplus(x * 3, beta=2.5), (3, 4)),
    op("softplus_threshold", lambda m, x: m.F.softplus(x * 3, 2.0, 1.0), (4, 5)),
    op("softplus_at_threshold", lambda m, x: m.F.softplus(x * 2, 2.0, 2.0), (4, 5),
       domain="ties"),
    op("softplus_large", lambda m, x: m.F.softplus(x * 80), (3, 4)),
    op("hardtanh", lambda m, x: m.F.hardtanh(x * 2), (3, 4)),
    op("hardtanh_at_bounds", lambda m, x: m.F.hardtanh(x), (4, 5), domain="ties"),
    op("hardtanh_range", lambda m, x: m.F.hardtanh(x, -0.5, 1.0), (4, 5), domain="ties"),
    op("relu6_at_bounds", lambda m, x: m.F.relu6(x * 6), (4, 5), domain="ties"),
    op("relu6", lambda m, x: m.F.relu6(x * 5), (3, 4)),
    # ---- softmaxes: explicit dim and dtype
    op("softmin", lambda m, x: m.F.softmin(x, dim=1), (3, 4)),
    op("softmin_dim0", lambda m, x: m.F.softmin(x * 3, 0), (3, 4)),
    op("softmax_dtype", lambda m, x: m.F.softmax(x, 1, dtype=m.float64), (3, 4)),
    op("log_softmax_dtype", lambda m, x: m.F.log_softmax(x, -1, dtype=m.float64), (2, 3, 4)),
    op("softmin_dtype", lambda m, x: m.F.softmin(x, dim=0, dtype=m.float64), (3, 4)),
    # ---- group_norm
    op("group_norm", lambda m, x, w, b: m.F.group_norm(x, 2, w, b), (3, 4, 5), (4,), (4,)),
    op("group_norm_4d", lambda m, x, w, b: m.F.group_norm(x, 3, w, b, eps=1e-3),
       (2, 6, 3, 2), (6,), (6,)),
    op("group_norm_2d_input", lambda m, x: m.F.group_norm(x, 2), (3, 4)),
    op("group_norm_one_group", lambda m, x, w: m.F.group_norm(x, 1, w), (2, 3, 4), (3,)),
    op("group_norm_instance", lambda m, x: m.F.group_norm(x, 4), (2, 4, 3, 3)),
    op("group_norm_5d", lambda m, x: m.F.group_norm(x, 2), (2, 4, 2, 2, 2)),
    # ---- normalize
    op("normalize", lambda m, x: m.F.normalize(x), (3, 4)),
    op("normalize_dim", lambda m, x: m.F.normalize(x, dim=-1), (2, 3, 4)),
    op("normalize_p1", lambda m, x: m.F.normalize(x, p=1, dim=0), (3, 4)),
    op("normalize_p3", lambda m, x: m.F.normalize(x, 3.0, 2), (2, 3, 4)),
    op("normalize_p_half", lambda m, x: m.F.normalize(x, 0.5, 1), (3, 4)),
    op("normalize_inf", lambda m, x: m.F.normalize(x, float("inf")), (3, 4), domain="distinct"),
    op("normalize_minus_inf", lambda m, x: m.F.normalize(x, -math.inf, 0), (3, 4),
       domain="distinct"),
    op("normalize_p0", lambda m, x: m.F.normalize(x, 0), (3, 4)),
    op("normalize_zero_rows", lambda m, x: m.F.normalize(x * m.const(ZERO_ROWS), dim=1),
       (4, 3)),
    op("normalize_zero_rows_p3", lambda m, x: m.F.normalize(x * m.const(ZERO_ROWS), 3, 1),
       (4, 3)),
    op("normalize_zero_rows_p1", lambda m, x: m.F.normalize(x * m.const(ZERO_ROWS), 1, 1),
       (4, 3)),
    op("normalize_below_eps", lambda m, x: m.F.normalize(x * m.const(TINY_ROW)), (3, 4)),
    op("normalize_eps", lambda m, x: m.F.normalize(x, eps=3.0), (3, 4)),
    op("normalize_1d", lambda m, x: m.F.normalize(x, dim=0), (5,)),
    # ---- channel dropout out of training: the identity
    op("dropout1d_eval", lambda m, x: m.F.dropout1d(x, 0.5, training=False), (2, 3, 4)),
    op("dropout2d_eval", lambda m, x: m.F.dropout2d(x, 0.5, False), (2, 3, 4, 4)),
    op("dropout2d_p0", lambda m, x: m.F.dropout2d(x, 0.0), (2, 3, 4, 4)),
]  # fmt: skip


@pytest.mark.parametrize("fn, shapes, domain, kwargs", OPS)
def test_op(fn, shapes, domain, kwargs, device):
    helper_test_op(shapes, fn, domain=domain, device=device, **kwargs)


def layer(name, make, *shapes, **kwargs):
    return pytest.param(make, shapes, kwargs, id=name)


LAYERS = [
    layer("silu", lambda nn: nn.SiLU(), (3, 4)),
    layer("elu", lambda nn: nn.Sequential(nn.Linear(4, 4), nn.ELU(alpha=0.7, inplace=True)),
          (3, 4)),
    layer("elu_ties", lambda nn: nn.ELU(), (4, 5), domain="ties"),
    layer("softplus", lambda nn: nn.Softplus(beta=2.0, threshold=1.0), (4, 5)),
    layer("hardtanh", lambda nn: nn.Hardtanh(-0.5, 0.5), (4, 5), domain="ties"),
    layer("relu6", lambda nn: nn.Sequential(nn.Linear(4, 5), nn.ReLU6()), (3, 4)),
    layer("softmin", lambda nn: nn.Softmin(dim=1), (3, 4)),
    layer("group_norm", lambda nn: nn.GroupNorm(2, 4), (3, 4, 5), steps=2),
    layer("group_norm_4d_eps", lambda nn: nn.GroupNorm(3, 6, eps=1e-3), (2, 6, 3, 2)),
    layer("group_norm_no_affine", lambda nn: nn.GroupNorm(2, 4, affine=False), (3, 4, 5)),
    layer("group_norm_no_bias", lambda nn: nn.GroupNorm(1, 4, bias=False), (3, 4, 2, 2)),
    layer("group_norm_in_cnn", lambda nn: nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.SiLU(), nn.Flatten(),
        nn.Linear(64, 3)), (3, 2, 4, 4), steps=2),
    layer("dropout1d_eval", lambda nn: nn.Dropout1d(0.3), (2, 3, 4), training=False),
    layer("dropout2d_eval", lambda nn: nn.Dropout2d(0.3), (2, 3, 4, 4), training=False),
]  # fmt: skip


@pytest.mark.parametrize("make, shapes, kwargs", LAYERS)
def test_layer(make, shapes, kwargs, device):
    helper_test_layer(make, shapes, device=device, **kwargs)


@pytest.mark.parametrize("make", [
    lambda nn: nn.SiLU(), lambda nn: nn.SiLU(inplace=True), lambda nn: nn.ELU(),
    lambda nn: nn.ELU(0.5, True), lambda nn: nn.Softplus(), lambda nn: nn.Softplus(2, 10),
    lambda nn: nn.Hardtanh(), lambda nn: nn.Hardtanh(-2, 3, True), lambda nn: nn.ReLU6(),
    lambda nn: nn.ReLU6(inplace=True), lambda nn: nn.GroupNorm(2, 4),
    lambda nn: nn.GroupNorm(3, 6, 1e-3, affine=False), lambda nn: nn.GroupNorm(1, 2, bias=False),
    lambda nn: nn.Dropout1d(), lambda nn: nn.Dropout2d(0.2, True), lambda nn: nn.Softmax(),
    lambda nn: nn.Softmin(1), lambda nn: nn.LogSoftmax(dim=-1),
])  # fmt: skip
def test_repr_and_attributes_match_torch(make):
    ours, theirs = make(nn), make(torch.nn)
    assert repr(ours) == repr(theirs)
    for name in ("inplace", "alpha", "beta", "threshold", "min_val", "max_val", "num_groups",
                 "num_channels", "eps", "affine", "p", "dim"):
        assert getattr(ours, name, None) == getattr(theirs, name, None), name


@pytest.mark.parametrize("kwargs", [{}, {"affine": False}, {"bias": False}, {"dtype": "float64"}])
def test_group_norm_init_state_matches_torch(kwargs):
    ours = nn.GroupNorm(2, 4, **kwargs).state_dict()
    torch_kwargs = {k: getattr(torch, v) if k == "dtype" else v for k, v in kwargs.items()}
    theirs = torch.nn.GroupNorm(2, 4, **torch_kwargs).state_dict()
    assert list(ours) == list(theirs)
    for key in ours:
        numpy.testing.assert_array_equal(ours[key], theirs[key].numpy(), err_msg=key)
        assert ours[key].dtype == theirs[key].numpy().dtype, key


# ---------------------------------------------------------------- implicit softmax dims
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "softmin"])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), (2, 3, 2, 2)])
def test_implicit_softmax_dim_warns_and_matches_torch(name, shape):
    x = numpy.random.default_rng(0).standard_normal(shape).astype(numpy.float32)
    ours, theirs = dt.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    message = (f"^Implicit dimension choice for {name} has been deprecated. Change the call to "
               f"include dim=X as an argument.$")
    with pytest.warns(UserWarning, match=message) as ours_record:
        out = getattr(F, name)(ours)
    with pytest.warns(UserWarning, match=message):
        expected = getattr(torch.nn.functional, name)(theirs)
    assert ours_record[0].filename == __file__  # stacklevel: the warning names the caller
    numpy.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-5,
                                  atol=1e-7)
    upstream = numpy.random.default_rng(1).standard_normal(shape).astype(numpy.float32)
    out.backward(dt.tensor(upstream))
    expected.backward(torch.tensor(upstream))
    numpy.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cls", ["Softmax", "LogSoftmax", "Softmin"])
def test_softmax_modules_without_dim_warn_as_torch(cls):
    x = numpy.random.default_rng(2).standard_normal((2, 3, 4)).astype(numpy.float32)
    with pytest.warns(UserWarning, match="Implicit dimension choice") as record:
        out = getattr(nn, cls)()(dt.tensor(x))
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        expected = getattr(torch.nn, cls)()(torch.tensor(x))
    assert record[0].filename == __file__
    numpy.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-5, atol=1e-7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit dim never warns
        getattr(nn, cls)(dim=0)(dt.tensor(x))


# ---------------------------------------------------------------- one_hot
@pytest.mark.parametrize("labels, num_classes", [
    ([0, 2, 1, 2], -1), ([0, 2, 1], 5), ([[1, 0], [3, 3]], 4), (3, 5), ([], 3),
])  # fmt: skip
def test_one_hot_matches_torch(labels, num_classes):
    labels = numpy.array(labels, numpy.int64)
    ours = F.one_hot(dt.tensor(labels), num_classes)
    theirs = torch.nn.functional.one_hot(torch.tensor(labels), num_classes)
    assert ours.shape == tuple(theirs.shape) and ours.dtype == numpy.int64
    numpy.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize("labels, num_classes, dtype, match", [
    ([0, -1], -1, numpy.int64, r"one_hot: class values must be non-negative, got -1"),
    ([0, 3], 3, numpy.int64, r"one_hot: class values must be smaller than num_classes=3, got 3"),
    ([1], -2, numpy.int64, r"smaller than num_classes=-2"),
    ([], -1, numpy.int64, r"one_hot: can not infer total number of classes from empty tensor"),
    ([0, 1], 3, numpy.int32, r"one_hot: expected an index tensor of dtype int64 .* int32"),
    ([1.0], 3, numpy.float32, r"dtype int64 .* got dtype float32"),
])  # fmt: skip
def test_one_hot_errors_as_torch(labels, num_classes, dtype, match):
    labels = numpy.array(labels, dtype)
    with pytest.raises(RuntimeError, match=match):
        F.one_hot(dt.tensor(labels), num_classes)
    with pytest.raises(RuntimeError):
        torch.nn.functional.one_hot(torch.tensor(labels), num_classes)


# ---------------------------------------------------------------- channel dropout, trained
@pytest.mark.parametrize("fn, shape", [
    (F.dropout1d, (40, 50, 3)), (F.dropout2d, (40, 50, 2, 3)),
    (lambda x, p: F.dropout1d(x, p), (2000, 3)),  # unbatched (C, L)
])  # fmt: skip
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_channel_dropout_zeroes_whole_channels(fn, shape, p):
    x = dt.ones(*shape, requires_grad=True)
    y = fn(x, p)
    out = y.detach().numpy()
    channels = out.reshape(out.shape[0], -1) if len(shape) == 2 else \
        out.reshape(shape[0] * shape[1], -1)
    first = channels[:, :1]
    assert (channels == first).all()  # one draw per channel: all kept or all zeroed
    assert abs((first == 0).mean() - p) < 0.03  # 2000 channels: binomial std <= 0.012
    numpy.testing.assert_allclose(first[first != 0], numpy.float32(1 / (1 - p)), rtol=1e-6)
    y.backward(dt.ones(*shape))
    numpy.testing.assert_array_equal(x.grad.numpy(), out)  # the gradient is the same mask


def test_channel_dropout_generator_and_manual_seed_repeat():
    x = dt.ones(8, 16, 3, 3)
    first = F.dropout2d(x, generator=numpy.random.default_rng(5)).numpy()
    second = nn.Dropout2d(generator=numpy.random.default_rng(5))(x).numpy()
    numpy.testing.assert_array_equal(first, second)
    dt.manual_seed(11)
    a = nn.Dropout1d(0.5)(dt.ones(8, 16, 3)).numpy()
    dt.manual_seed(11)
    b = nn.Dropout1d(0.5)(dt.ones(8, 16, 3)).numpy()
    numpy.testing.assert_array_equal(a, b)
    assert not numpy.array_equal(b, nn.Dropout1d(0.5)(dt.ones(8, 16, 3)).numpy())


@pytest.mark.parametrize("p, expected", [(0.0, 1.0), (1.0, 0.0)])
def test_channel_dropout_extremes(p, expected):
    x = dt.ones(2, 3, 4, 4, requires_grad=True)
    y = nn.Dropout2d(p)(x)
    numpy.testing.assert_array_equal(y.detach().numpy(), numpy.full(x.shape, expected))
    y.sum().backward()
    numpy.testing.assert_array_equal(x.grad.numpy(), numpy.full(x.shape, expected))


DEPRECATED_2D = (r"^dropout2d: Received a {}-D input to dropout2d, which is deprecated and will "
                 r"result in an error in a future release\. To retain the behavior and silence "
                 r"this warning, please use dropout instead\.")
THREE_D = r"^dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D"


@pytest.mark.parametrize("shape, match, noise_shape", [
    ((6, 5, 40), THREE_D, (6, 5, 1)),
    ((60, 50), DEPRECATED_2D.format(2), (60, 50)),
    ((4, 5, 2, 2, 3), DEPRECATED_2D.format(5), (4, 5, 1, 1, 1)),
])  # fmt: skip
def test_dropout2d_warns_and_masks_as_torch(shape, match, noise_shape):
    with pytest.warns(UserWarning, match=match) as record:
        out = F.dropout2d(dt.ones(*shape)).numpy()
    with pytest.warns(UserWarning, match=match):
        torch.nn.functional.dropout2d(torch.ones(shape))
    assert record[0].filename == __file__
    # the mask is constant over every dim past the noise shape's, and drawn per entry of it
    reduced = out.reshape(noise_shape + (-1,))
    assert (reduced == reduced[..., :1]).all()
    assert 0 < (reduced[..., 0] == 0).mean() < 1


def test_dropout2d_1d_input_fails_as_torch_in_training_only():
    with pytest.warns(UserWarning, match=DEPRECATED_2D.format(1)):
        with pytest.raises(RuntimeError, match="Feature dropout requires at least 2 dimensions"):
            F.dropout2d(dt.ones(5))
    with pytest.warns(UserWarning, match=DEPRECATED_2D.format(1)):
        assert F.dropout2d(dt.ones(5), training=False).shape == (5,)


# ---------------------------------------------------------------- trunc_normal_
def _truncated_moments(mean, std, a, b):
    """Mean and std of N(mean, std) truncated to [a, b] (closed form)."""
    alpha, beta = (a - mean) / std, (b - mean) / std
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda z: (1 + math.erf(z / math.sqrt(2))) / 2  # noqa: E731
    mass = cdf(beta) - cdf(alpha)
    shift = (pdf(alpha) - pdf(beta)) / mass
    var = 1 + (alpha * pdf(alpha) - beta * pdf(beta)) / mass - shift ** 2
    return mean + std * shift, std * math.sqrt(var)


@pytest.mark.parametrize("mean, std, a, b", [
    (0.0, 1.0, -2.0, 2.0), (0.0, 0.02, -0.04, 0.04), (1.0, 2.0, 0.0, 5.0), (0.0, 1.0, 1.5, 4.0),
])  # fmt: skip
def test_trunc_normal_bounds_and_moments(mean, std, a, b):
    w = nn.init.trunc_normal_(dt.zeros(200, 500), mean, std, a, b).numpy()
    t = torch.nn.init.trunc_normal_(torch.zeros(200, 500), mean, std, a, b).numpy()
    expected_mean, expected_std = _truncated_moments(mean, std, a, b)
    assert w.dtype == numpy.float32 and w.shape == (200, 500)
    assert w.min() >= a and w.max() <= b
    for sample in (w, t):  # torch's own sample passes the same bar
        assert abs(sample.mean() - expected_mean) < 0.01 * expected_std
        assert abs(sample.std() / expected_std - 1) < 0.01
    if math.isfinite(a):  # fills the whole range, not a narrower one
        assert w.min() < a + 0.01 * (b - a) and w.max() > b - 0.05 * (b - a)


def test_trunc_normal_generator_and_warning():
    a = nn.init.trunc_normal_(dt.zeros(50), generator=numpy.random.default_rng(3)).numpy()
    b = nn.init.trunc_normal_(dt.zeros(50), generator=numpy.random.default_rng(3)).numpy()
    numpy.testing.assert_array_equal(a, b)
    match = "mean is more than 2 std from \\[a, b\\] in nn.init.trunc_normal_"
    with pytest.warns(UserWarning, match=match) as record:
        w = nn.init.trunc_normal_(dt.zeros(100), mean=5.0, std=1.0, a=-1.0, b=1.0).numpy()
    with pytest.warns(UserWarning, match=match):
        torch.nn.init.trunc_normal_(torch.zeros(100), mean=5.0, std=1.0, a=-1.0, b=1.0)
    assert record[0].filename == __file__
    assert numpy.isfinite(w).all() and w.min() >= -1.0 and w.max() <= 1.0


def test_trunc_normal_fills_in_place_and_returns_the_tensor():
    layer = nn.Linear(30, 20)
    out = nn.init.trunc_normal_(layer.weight, std=0.02)  # NOTE: a, b are absolute: +-2
    assert out is layer.weight and layer.weight.requires_grad
    assert 0.05 < numpy.abs(layer.weight.detach().numpy()).max() <= 2.0
    half = nn.init.trunc_normal_(dt.zeros(1000), a=-math.inf, b=0.0).numpy()
    assert half.max() <= 0.0 and numpy.isfinite(half).all()  # torch rejects an infinite bound


# ---------------------------------------------------------------- orthogonal_
@pytest.mark.parametrize("shape", [(6, 10), (10, 6), (7, 7), (8, 3, 2, 2), (4, 1)])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_orthogonal_is_orthogonal(shape, gain):
    w = nn.init.orthogonal_(dt.zeros(*shape), gain=gain).numpy()
    t = torch.nn.init.orthogonal_(torch.zeros(shape), gain=gain).numpy()
    assert w.shape == shape and w.dtype == numpy.float32
    rows = shape[0]
    for flat in (w.reshape(rows, -1), t.reshape(rows, -1)):
        small = flat @ flat.T if rows <= flat.shape[1] else flat.T @ flat
        numpy.testing.assert_allclose(small, gain**2 * numpy.eye(len(small)), atol=1e-5 * gain**2)


def test_orthogonal_entries_are_spread_as_torch_and_repeat_with_generator():
    w = nn.init.orthogonal_(dt.zeros(256, 256)).numpy()
    torch.manual_seed(0)
    t = torch.nn.init.orthogonal_(torch.zeros(256, 256)).numpy()
    assert abs(w.std() / t.std() - 1) < 0.02  # Haar: every entry has variance 1 / n
    assert abs(w.std() * math.sqrt(256) - 1) < 0.02 and abs(w.mean()) < 0.005
    assert numpy.diag(numpy.linalg.qr(w)[1]).std() > 0  # not a signed identity
    a = nn.init.orthogonal_(dt.zeros(5, 3), generator=numpy.random.default_rng(1)).numpy()
    b = nn.init.orthogonal_(dt.zeros(5, 3), generator=numpy.random.default_rng(1)).numpy()
    numpy.testing.assert_array_equal(a, b)


def test_orthogonal_errors_and_empty():
    with pytest.raises(ValueError, match=r"orthogonal_: only tensors with 2 or more dimensions "
                                         r"are supported, got shape \(5,\)"):
        nn.init.orthogonal_(dt.zeros(5))
    with pytest.raises(ValueError):
        torch.nn.init.orthogonal_(torch.zeros(5))
    assert nn.init.orthogonal_(dt.zeros(0, 3)).shape == (0, 3)
