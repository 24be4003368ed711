"""Numerical gradient check (float64, central differences) of the issue-11 composites:
silu, elu, softplus(beta, threshold), hardtanh, relu6, softmin, softmax with dtype=,
group_norm, normalize (several p, zero rows) and channel dropout, one line per case as in
test_grad_ops. Inputs stay off the kinks (the "distinct" domain: no value at 0, at a bound or
at softplus's threshold); the kinks themselves are compared with torch in
tests/parity/test_layers_more_parity.py.
"""

from __future__ import annotations

import numpy
import pytest
from gradcheck import check_backward, check_directional, make_inputs

import disttrain as dt
import disttrain.nn.functional as F

ZERO_ROWS = numpy.array([[1.0], [0.0], [1.0], [0.0]])


def _c(like: dt.Tensor, value) -> dt.Tensor:
    """A constant Tensor (no grad) on the device of `like`."""
    return dt.tensor(numpy.asarray(value)).to(like.device)


def _fixed_mask_dropout(fn):
    """The dropout `fn` with a generator re-made per call, so every evaluation masks alike."""
    return lambda x: fn(x, 0.4, generator=numpy.random.default_rng(7))


def case(name, fn, *shapes, domain="normal"):
    return pytest.param(fn, shapes, domain, id=name)


CASES = [
    case("silu", lambda x: F.silu(x * 3), (3, 4)),
    case("elu", lambda x: F.elu(x * 2, alpha=0.7), (3, 4), domain="distinct"),
    case("softplus", lambda x: F.softplus(x * 2), (3, 4)),
    case("softplus_beta_threshold", lambda x: F.softplus(x * 10, 2.0, 1.0), (3, 4),
         domain="distinct"),
    case("hardtanh", lambda x: F.hardtanh(x, -0.25, 0.35), (3, 4), domain="distinct"),
    case("relu6", lambda x: F.relu6(x * 10), (3, 4), domain="distinct"),
    case("softmin", lambda x: F.softmin(x, dim=0), (3, 4)),
    case("softmax_dtype", lambda x: F.softmax(x, 1, dtype=dt.float64), (3, 4)),
    case("log_softmax_dtype", lambda x: F.log_softmax(x, 0, dtype=dt.float64), (3, 4)),
    case("group_norm", lambda x, w, b: F.group_norm(x, 2, w, b), (3, 4, 5), (4,), (4,)),
    case("group_norm_4d", lambda x, w: F.group_norm(x, 3, w, eps=1e-3), (2, 6, 2, 2), (6,)),
    case("group_norm_2d_input", lambda x: F.group_norm(x, 2), (3, 4)),
    case("normalize", lambda x: F.normalize(x), (3, 4)),
    case("normalize_p1_dim0", lambda x: F.normalize(x, 1, 0), (3, 4), domain="distinct"),
    case("normalize_p3", lambda x: F.normalize(x, 3, -1), (2, 3, 4)),
    case("normalize_inf", lambda x: F.normalize(x, float("inf")), (3, 4), domain="distinct"),
    case("normalize_zero_rows", lambda x: F.normalize(x * _c(x, ZERO_ROWS)), (4, 3)),
    case("normalize_zero_rows_p3", lambda x: F.normalize(x * _c(x, ZERO_ROWS), 3), (4, 3)),
    case("normalize_large_eps", lambda x: F.normalize(x, eps=2.0), (3, 4)),
    case("dropout1d", _fixed_mask_dropout(F.dropout1d), (4, 5, 3)),
    case("dropout2d", _fixed_mask_dropout(F.dropout2d), (3, 4, 2, 2)),
]  # fmt: skip


@pytest.mark.parametrize("fn, shapes, domain", CASES)
def test_backward_elementwise(fn, shapes, domain, xp):
    check_backward(fn, make_inputs(shapes, domain, xp))


@pytest.mark.parametrize("fn, shapes, domain", CASES)
def test_backward_directional(fn, shapes, domain, xp):
    check_directional(fn, make_inputs(shapes, domain, xp))


def test_normalize_zero_rows_have_finite_gradient_as_torch():
    x = dt.tensor(numpy.array([[0.0, 0.0], [3.0, 4.0]]), requires_grad=True)
    F.normalize(x, p=3).sum().backward()
    grad = x.grad.numpy()
    assert numpy.isfinite(grad).all()
    numpy.testing.assert_array_equal(grad[0], [1e12, 1e12])  # denominator is eps there
