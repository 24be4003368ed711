"""Argument checks, error messages and warnings of the issue-11 layers and functionals
(activations, GroupNorm, channel dropout, normalize, softmaxes, one_hot, trunc_normal_ and
orthogonal_), without torch: each names the op or layer, the expected and the actual value.
"""

from __future__ import annotations

import statistics
import warnings

import numpy
import pytest

import disttrain as dt
import disttrain.nn as nn
import disttrain.nn.functional as F
from disttrain.nn.init import _normal_ppf


# ---------------------------------------------------------------- activations
def test_hardtanh_rejects_reversed_bounds():
    with pytest.raises(ValueError, match=r"hardtanh: min_val cannot be greater than max_val, "
                                         r"got min_val=2, max_val=1"):
        F.hardtanh(dt.ones(2), 2, 1)
    with pytest.raises(ValueError, match=r"Hardtanh: max_val \(1\) must be greater than "
                                         r"min_val \(1\)"):
        nn.Hardtanh(1, 1)


def test_hardtanh_deprecated_keyword_names_warn_and_apply():
    with pytest.warns(FutureWarning, match="keyword argument `min_value` is deprecated and "
                                           "renamed to `min_val`"):
        layer = nn.Hardtanh(min_value=-3.0)
    assert (layer.min_val, layer.max_val) == (-3.0, 1.0)
    with pytest.warns(FutureWarning, match="`max_value` is deprecated"):
        assert nn.Hardtanh(max_value=4.0).max_val == 4.0


def test_relu6_is_a_hardtanh_with_torch_bounds():
    layer = nn.ReLU6()
    assert isinstance(layer, nn.Hardtanh) and (layer.min_val, layer.max_val) == (0.0, 6.0)
    assert F.relu6(dt.tensor([-1.0, 3.0, 7.0])).tolist() == [0.0, 3.0, 6.0]


def test_inplace_flag_leaves_the_input_unchanged():
    x = dt.tensor([-2.0, 0.5, 3.0])
    for fn in (F.silu, F.elu, F.hardtanh, F.relu6):
        fn(x, inplace=True)
    assert x.tolist() == [-2.0, 0.5, 3.0]


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_activations_stay_finite_far_out(dtype):
    x = dt.tensor(numpy.array([-1e4, -80.0, 0.0, 80.0, 1e4], dtype), requires_grad=True)
    out = F.elu(x) + F.softplus(x, beta=0.5, threshold=1e5) + F.silu(x)
    out.sum().backward()
    assert out.dtype == dtype and x.grad.dtype == dtype
    assert numpy.isfinite(out.detach().numpy()).all() and numpy.isfinite(x.grad.numpy()).all()


# ---------------------------------------------------------------- group_norm
@pytest.mark.parametrize("shape, groups, kwargs, error, match", [
    ((2, 5, 3), 2, {}, RuntimeError, r"group_norm: expected number of channels in input to be "
     r"divisible by num_groups, but got input of shape \(2, 5, 3\) and num_groups=2"),
    ((2, 4, 3), 0, {}, RuntimeError, r"divisible by num_groups.*num_groups=0"),
    ((3,), 1, {}, RuntimeError, r"group_norm: expected at least 2 dimensions for input tensor "
     r"but received 1"),
    ((1, 2), 2, {}, ValueError, r"group_norm: expected more than 1 value per channel when "
     r"training, got input size \[1, 2\]"),
    ((2, 4, 3), 2, {"weight": (3,)}, RuntimeError, r"group_norm: expected weight to be a vector "
     r"of size equal to the number of channels in input, but got weight of shape \(3,\) and "
     r"input of shape \(2, 4, 3\)"),
    ((2, 4, 3), 2, {"bias": (5,)}, RuntimeError, r"expected bias to be a vector.*\(5,\)"),
])  # fmt: skip
def test_group_norm_errors(shape, groups, kwargs, error, match):
    params = {name: dt.ones(*size) for name, size in kwargs.items()}
    with pytest.raises(error, match=match):
        F.group_norm(dt.ones(*shape), groups, **params)


def test_group_norm_layer_checks_divisibility():
    with pytest.raises(ValueError, match=r"GroupNorm: num_channels \(5\) must be divisible by "
                                         r"num_groups \(2\)"):
        nn.GroupNorm(2, 5)
    with pytest.raises(ValueError, match=r"num_groups \(0\)"):
        nn.GroupNorm(0, 4)


def test_group_norm_of_an_empty_batch_is_empty():
    layer = nn.GroupNorm(2, 4)
    assert layer(dt.zeros(0, 4, 3)).shape == (0, 4, 3)


def test_group_norm_normalises_each_group():
    x = dt.tensor(numpy.random.default_rng(0).normal(3.0, 2.0, (4, 6, 5)))
    out = F.group_norm(x, 3).numpy().reshape(4, 3, 10)
    numpy.testing.assert_allclose(out.mean(-1), 0.0, atol=1e-12)
    numpy.testing.assert_allclose(out.var(-1), 1.0, rtol=1e-4)  # biased variance, eps 1e-5


# ---------------------------------------------------------------- channel dropout
@pytest.mark.parametrize("fn", [F.dropout1d, F.dropout2d, F.dropout])
@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_probability_checked(fn, p):
    with pytest.raises(ValueError, match=rf"{fn.__name__}: dropout probability has to be between "
                                         rf"0 and 1, but got {p}"):
        fn(dt.ones(2, 3, 4), p)


@pytest.mark.parametrize("cls", [nn.Dropout, nn.Dropout1d, nn.Dropout2d])
def test_dropout_layers_check_probability(cls):
    with pytest.raises(ValueError, match=rf"{cls.__name__}: dropout probability has to be "
                                         r"between 0 and 1, but got 2"):
        cls(2)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4, 5)])
def test_dropout1d_rejects_other_than_2d_or_3d(shape):
    with pytest.raises(RuntimeError, match=rf"dropout1d: Expected 2D or 3D input, but received "
                                           rf"a {len(shape)}D input"):
        F.dropout1d(dt.ones(*shape))


def test_channel_dropouts_are_not_dropout_subclasses():
    # NOTE: as torch, where isinstance(m, nn.Dropout) picks element-wise dropout only
    assert not isinstance(nn.Dropout2d(), nn.Dropout)
    assert not isinstance(nn.Dropout1d(), nn.Dropout)


def test_dropout2d_on_4d_input_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.dropout2d(dt.ones(2, 3, 4, 4))
        nn.Dropout2d().eval()(dt.ones(2, 3, 4, 4))


def test_unbatched_dropout1d_keeps_its_shape_and_masks_channels():
    out = F.dropout1d(dt.ones(300, 4), 0.5, generator=numpy.random.default_rng(0)).numpy()
    assert out.shape == (300, 4)
    assert (out == out[:, :1]).all() and 0 < (out[:, 0] == 0).sum() < 300


# ---------------------------------------------------------------- softmax, normalize
def test_implicit_dim_follows_torch_rule():
    x = numpy.random.default_rng(1).standard_normal((2, 3, 4, 5))
    for ndim, dim in ((1, 0), (2, 1), (3, 0), (4, 1)):
        data = x.reshape(-1)[: numpy.prod(x.shape[:ndim])].reshape(x.shape[:ndim])
        with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
            implicit = F.softmax(dt.tensor(data))
        numpy.testing.assert_allclose(implicit.numpy(), F.softmax(dt.tensor(data), dim).numpy())


def test_softmax_with_dim_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.softmax(dt.ones(2, 3), 1)
        F.log_softmax(dt.ones(2, 3), dim=0)
        F.softmin(dt.ones(2, 3), dim=-1)


def test_normalize_checks_dim():
    with pytest.raises(IndexError, match=r"normalize: dimension out of range \(expected to be in "
                                         r"range of \[-1, 0\], but got 1\)"):
        F.normalize(dt.ones(3))


def test_normalize_zero_vector_stays_zero():
    out = F.normalize(dt.tensor([[0.0, 0.0], [3.0, 4.0]]), p=2.0, dim=1)
    assert out.tolist() == [[0.0, 0.0], [pytest.approx(0.6), pytest.approx(0.8)]]


# ---------------------------------------------------------------- init
def test_normal_ppf_matches_the_standard_library():
    p = numpy.concatenate([numpy.linspace(1e-12, 1 - 1e-12, 2001),
                           [1e-300, 1e-20, 0.02425, 0.5, 0.97575, 1 - 1e-16]])
    expected = numpy.array([statistics.NormalDist().inv_cdf(v) for v in p])
    numpy.testing.assert_allclose(_normal_ppf(p), expected, rtol=2e-9, atol=1e-12)


def test_trunc_normal_keeps_dtype_and_device_of_the_tensor():
    w = nn.init.trunc_normal_(dt.zeros(4, 5, dtype=dt.float64), std=0.1)
    assert w.dtype == numpy.float64 and w.device == dt.zeros(1).device


def test_orthogonal_of_a_wide_conv_weight_has_orthonormal_rows():
    w = nn.init.orthogonal_(dt.zeros(4, 2, 3, 3), gain=0.5).numpy().reshape(4, -1)
    numpy.testing.assert_allclose(w @ w.T, 0.25 * numpy.eye(4), atol=1e-6)
