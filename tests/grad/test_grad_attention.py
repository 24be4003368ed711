"""Numerical gradient check (float64, central differences) of the sequence-model tensor
functions (sin, cos, tril, triu, narrow, bmm, baddbmm, masked_fill), scaled dot-product
attention and nn.MultiheadAttention (inputs and every parameter), one line per case as in
test_grad_ops. Constant masks are made inside `fn` with `_c`."""

from __future__ import annotations

import numpy
import pytest
from gradcheck import check_backward, check_directional, make_inputs

import disttrain as dt
import disttrain.nn.functional as F

_rng = numpy.random.default_rng(99)
MASK_45 = _rng.random((4, 5)) > 0.4
MASK_45[:, 0] = True  # NOTE: every query keeps one key (a fully masked row has no gradient)
FLOAT_45 = _rng.standard_normal((4, 5))
PAD_25 = numpy.array([[False, False, False, True, True], [False] * 5])
BROADCAST_MASK_4 = numpy.array([True, False, False, True])


def _c(like: dt.Tensor, value) -> dt.Tensor:
    """A constant Tensor (no grad) on the device of `like`."""
    return dt.tensor(numpy.asarray(value)).to(like.device)


def case(name, fn, *shapes, domain="normal"):
    return pytest.param(fn, shapes, domain, id=name)


def _mha(x, y, in_w, in_b, out_w, out_b, batch_first=False, **kwargs):
    """nn.MultiheadAttention(4, 2) with the given float64 parameters, attending x over y."""
    mha = dt.nn.MultiheadAttention(4, 2, dtype="float64", batch_first=batch_first)
    for p, name in zip((in_w, in_b, out_w, out_b), ("in_proj_weight", "in_proj_bias",
                                                     "out_proj.weight", "out_proj.bias")):
        owner = mha.out_proj if name.startswith("out_proj") else mha
        owner._parameters[name.split(".")[-1]] = p  # NOTE: the leaf itself, so its grad is ours
    kwargs = {k: _c(x, v) if isinstance(v, numpy.ndarray) else v for k, v in kwargs.items()}
    out, weights = mha(x, y, y, **kwargs)
    return out if weights is None else out + weights.sum()


MHA_PARAMS = ((12, 4), (12,), (4, 4), (4,))


def _mha_options(x, y, z):
    """MultiheadAttention(4, 2) with every option, freshly made from a fixed seed per call."""
    mha = dt.nn.MultiheadAttention(4, 2, add_bias_kv=True, add_zero_attn=True, kdim=3, vdim=2,
                                   dtype="float64", generator=numpy.random.default_rng(0))
    out, weights = mha(x, y, z, key_padding_mask=_c(x, PAD_25), attn_mask=_c(x, ~MASK_45))
    return out + weights.sum()

CASES = [
    case("sin", lambda x: x.sin(), (3, 4)),
    case("cos", lambda x: dt.cos(x), (3, 4)),
    case("tril", lambda x: x.tril(), (2, 3, 4)),
    case("tril_diagonal", lambda x: dt.tril(x, -1), (4, 3)),
    case("triu", lambda x: x.triu(), (3, 4)),
    case("triu_diagonal", lambda x: dt.triu(x, diagonal=2), (2, 3, 4)),
    case("narrow", lambda x: x.narrow(1, 1, 2), (3, 4)),
    case("narrow_negative_start", lambda x: dt.narrow(x, -1, -3, 2), (2, 3, 4)),
    case("bmm", lambda a, b: a.bmm(b), (2, 3, 4), (2, 4, 5)),
    case("baddbmm", lambda c, a, b: c.baddbmm(a, b), (2, 3, 5), (2, 3, 4), (2, 4, 5)),
    case("baddbmm_scaled_broadcast", lambda c, a, b: dt.baddbmm(c, a, b, beta=0.5, alpha=-2),
         (3, 5), (2, 3, 4), (2, 4, 5)),
    case("baddbmm_beta_zero", lambda c, a, b: dt.baddbmm(c, a, b, beta=0) + c.sum(),
         (2, 3, 5), (2, 3, 4), (2, 4, 5)),
    case("masked_fill_broadcast", lambda x: x.masked_fill(_c(x, BROADCAST_MASK_4), 2.0),
         (3, 4)),
    case("softmax_dim0", lambda x: x.softmax(0), (3, 4, 2)),
    case("softmax_middle_dim", lambda x: dt.softmax(x * 3, 1), (3, 4, 2)),
    case("sdpa", lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
         (2, 4, 3), (2, 5, 3), (2, 5, 2)),
    case("sdpa_bool_mask", lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, attn_mask=_c(q, MASK_45)), (2, 4, 3), (2, 5, 3), (2, 5, 3)),
    case("sdpa_float_mask", lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, attn_mask=_c(q, FLOAT_45)), (2, 4, 3), (2, 5, 3), (2, 5, 3)),
    case("sdpa_float_mask_grad", lambda q, k, v, m: F.scaled_dot_product_attention(
        q, k, v, attn_mask=m), (2, 4, 3), (2, 5, 3), (2, 5, 3), (4, 5)),
    case("sdpa_causal_scale", lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, is_causal=True, scale=0.7), (1, 2, 4, 3), (1, 2, 4, 3), (1, 2, 4, 3)),
    case("sdpa_gqa", lambda q, k, v: F.scaled_dot_product_attention(
        q, k, v, enable_gqa=True), (1, 4, 3, 2), (1, 2, 3, 2), (1, 2, 3, 2)),
    case("mha_self", lambda x, *p: _mha(x, x, *p), (3, 2, 4), *MHA_PARAMS),
    case("mha_cross_masks", lambda x, y, *p: _mha(
        x, y, *p, attn_mask=~MASK_45, key_padding_mask=PAD_25), (4, 2, 4), (5, 2, 4),
        *MHA_PARAMS),
    case("mha_batch_first_per_head", lambda x, y, *p: _mha(
        x.transpose(0, 1), y.transpose(0, 1), *p, batch_first=True,
        average_attn_weights=False, attn_mask=FLOAT_45), (4, 2, 4), (5, 2, 4), *MHA_PARAMS),
    case("mha_all_options", _mha_options, (4, 2, 4), (5, 2, 3), (5, 2, 2)),
    case("mha_no_weights", lambda x, y, *p: _mha(x, y, *p, need_weights=False),
         (4, 2, 4), (5, 2, 4), *MHA_PARAMS),
]


@pytest.mark.parametrize("fn, shapes, domain", CASES)
def test_backward(fn, shapes, domain, xp):
    check_backward(fn, make_inputs(shapes, domain, xp))


@pytest.mark.parametrize("fn, shapes, domain", CASES)
def test_backward_directional(fn, shapes, domain, xp):
    check_directional(fn, make_inputs(shapes, domain, xp))
