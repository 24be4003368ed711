"""The sequence-model tensor functions, scaled dot-product attention and MultiheadAttention:
error messages for bad input, and the behaviour parity tests cannot pin down (dropout with a
seeded generator, infinities under tril/triu, module options)."""

from __future__ import annotations

import numpy
import pytest

import disttrain as dt
import disttrain.nn as nn
import disttrain.nn.functional as F


@pytest.mark.parametrize("call, message", [
    (lambda: dt.randn(3, 4).bmm(dt.randn(2, 4, 5)), r"bmm: both arguments must be 3-D"),
    (lambda: dt.bmm(dt.randn(2, 3, 4), dt.randn(3, 4, 5)),
     r"bmm: shapes \(2, 3, 4\) and \(3, 4, 5\) do not match: expected mat2 of shape \(2, 4, p\)"),
    (lambda: dt.bmm(dt.randn(2, 3, 4), dt.randn(2, 4, 5, dtype=dt.float64)),
     r"bmm: expected both arguments to have the same dtype, got float32 and float64"),
    (lambda: dt.baddbmm(dt.randn(4, 5), dt.randn(2, 3, 4), dt.randn(2, 4, 5)),
     r"baddbmm: input of shape \(4, 5\) does not broadcast to the product's shape \(2, 3, 5\)"),
    (lambda: dt.randn(3, 4).narrow(1, 3, 2),
     r"narrow: start \(3\) \+ length \(2\) must lie within dimension 1 of size 4"),
    (lambda: dt.randn(3, 4).narrow(0, -4, 1), r"narrow: start \(-4\) \+ length \(1\)"),
    (lambda: dt.randn(4).tril(), r"tril: input must have at least 2 dims, got shape \(4,\)"),
    (lambda: dt.triu(dt.randn(4)), r"triu: input must have at least 2 dims"),
    (lambda: dt.randn(2, 3).masked_fill(dt.tensor([1, 0, 1]), 0.0),
     r"masked_fill: mask must be a bool tensor, got dtype int64"),
    (lambda: dt.randn(2, 3).masked_fill(dt.ones(3, 3).bool(), 0.0),
     r"masked_fill: mask of shape \(3, 3\) does not broadcast to the input's shape \(2, 3\)"),
])
def test_tensor_function_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_narrow_dimension_out_of_range_is_an_index_error():
    with pytest.raises(IndexError, match=r"narrow: dimension out of range .* but got 2"):
        dt.randn(3, 4).narrow(2, 0, 1)


def test_tril_triu_keep_infinities_out_of_the_other_triangle():
    x = dt.full((3, 3), float("-inf"))
    assert not numpy.isnan(x.tril().numpy()).any() and not numpy.isnan(x.triu(1).numpy()).any()
    assert x.triu(1).numpy()[0, 1] == -numpy.inf and x.triu(1).numpy()[1, 0] == 0


def test_baddbmm_beta_zero_ignores_nan_input():
    out = dt.baddbmm(dt.full((2, 1, 1), float("nan")), dt.ones(2, 1, 3), dt.ones(2, 3, 1), beta=0)
    assert out.tolist() == [[[3.0]], [[3.0]]]


Q = dt.randn(2, 4, 8)


@pytest.mark.parametrize("call, error, message", [
    (lambda: F.scaled_dot_product_attention(dt.randn(8), Q, Q), ValueError,
     r"need at least 2 dims \(\.\.\., L, E\), got shapes \(8,\)"),
    (lambda: F.scaled_dot_product_attention(Q, dt.randn(2, 4, 6), Q), ValueError,
     r"key.shape\[-1\]=6 must equal query.shape\[-1\]=8"),
    (lambda: F.scaled_dot_product_attention(Q, Q, dt.randn(2, 5, 8)), ValueError,
     r"key.shape\[-2\]=4 \(S\) must equal value.shape\[-2\]=5"),
    (lambda: F.scaled_dot_product_attention(Q, Q, Q, dropout_p=1.5), ValueError,
     r"dropout_p must be in \[0, 1\], got 1.5"),
    (lambda: F.scaled_dot_product_attention(Q, Q, Q, dt.ones(4, 4).bool(), is_causal=True),
     ValueError, r"attn_mask must be None when is_causal=True, got a mask of shape \(4, 4\)"),
    (lambda: F.scaled_dot_product_attention(Q, Q, Q, dt.zeros(4, 4, dtype=dt.float64)),
     ValueError, r"a float attn_mask must have the query's dtype float32, got float64"),
    (lambda: F.scaled_dot_product_attention(dt.randn(1, 3, 4, 8), dt.randn(1, 2, 4, 8),
                                            dt.randn(1, 2, 4, 8), enable_gqa=True), ValueError,
     r"with enable_gqa the query's heads \(dim -3\) must be a multiple of the key's"),
    (lambda: nn.MultiheadAttention(10, 3), ValueError,
     r"embed_dim \(10\) must be divisible by num_heads \(3\)"),
    (lambda: nn.MultiheadAttention(8, 2)(Q, Q, Q, is_causal=True), RuntimeError,
     r"need attn_mask if specifying the is_causal hint"),
    (lambda: nn.MultiheadAttention(8, 2)(Q, Q, Q, attn_mask=dt.ones(4, 2).bool()), ValueError,
     r"attn_mask must have shape \(2, 2\) or \(8, 2, 2\), got \(4, 2\)"),
    (lambda: nn.MultiheadAttention(8, 2, batch_first=True)(
        Q, Q, Q, key_padding_mask=dt.ones(4, 2).bool()), ValueError,
     r"key_padding_mask must have shape \(2, 4\) \(N, S\), got \(4, 2\)"),
    (lambda: nn.MultiheadAttention(8, 2)(Q, Q, Q, attn_mask=dt.zeros(2, 2).long()), ValueError,
     r"attn_mask must be bool or float32, got int64"),
    (lambda: nn.MultiheadAttention(8, 2)(Q, dt.randn(4, 8), dt.randn(4, 8)), ValueError,
     r"query, key and value must all be 3-D \(batched\) or 2-D \(unbatched\)"),
    (lambda: nn.MultiheadAttention(6, 2)(Q, Q, Q), ValueError,
     r"the last dims of query, key and value must be embed_dim=6, kdim=6, vdim=6, got"),
    (lambda: nn.MultiheadAttention(8, 2, kdim=5)(Q, Q, Q), ValueError,
     r"must be embed_dim=8, kdim=5, vdim=8, got shapes \(2, 4, 8\)"),
    (lambda: nn.MultiheadAttention(8, 2)(Q, dt.randn(5, 3, 8), dt.randn(5, 3, 8)), ValueError,
     r"key and value must have the same batch and length and the query's batch size"),
])
def test_attention_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_sdpa_dropout_is_seeded_and_unbiased():
    q = dt.randn(4, 16, 8)
    a = F.scaled_dot_product_attention(q, q, q, dropout_p=0.5,
                                       generator=numpy.random.default_rng(3))
    b = F.scaled_dot_product_attention(q, q, q, dropout_p=0.5,
                                       generator=numpy.random.default_rng(3))
    plain = F.scaled_dot_product_attention(q, q, q)
    numpy.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not numpy.allclose(a.numpy(), plain.numpy())
    v = dt.ones(1, 200, 1)  # every output is then the sum of the kept, rescaled weights
    out = F.scaled_dot_product_attention(dt.zeros(1, 200, 4), dt.zeros(1, 200, 4), v,
                                         dropout_p=0.25, generator=numpy.random.default_rng(0))
    assert abs(float(out.mean().item()) - 1.0) < 0.02


def test_multihead_attention_dropout_only_in_training():
    mha = nn.MultiheadAttention(8, 2, dropout=0.5, generator=numpy.random.default_rng(1))
    x = dt.randn(6, 3, 8)
    train_out, _ = mha(x, x, x)
    mha.eval()
    eval_a, eval_b = mha(x, x, x)[0], mha(x, x, x)[0]
    numpy.testing.assert_array_equal(eval_a.detach().numpy(), eval_b.detach().numpy())
    assert not numpy.allclose(train_out.detach().numpy(), eval_a.detach().numpy())


def test_multihead_attention_separate_projection_layout():
    mha = nn.MultiheadAttention(8, 2, kdim=5, vdim=3, add_bias_kv=True)
    assert [(k, v.shape) for k, v in mha.state_dict().items()] == [
        ("q_proj_weight", (8, 8)), ("k_proj_weight", (8, 5)), ("v_proj_weight", (8, 3)),
        ("in_proj_bias", (24,)), ("bias_k", (1, 1, 8)), ("bias_v", (1, 1, 8)),
        ("out_proj.weight", (8, 8)), ("out_proj.bias", (8,))]
    assert mha.in_proj_weight is None and not mha._qkv_same_embed_dim


def test_multihead_attention_layout_and_repr():
    mha = nn.MultiheadAttention(8, 2, bias=False)
    assert [(k, v.shape) for k, v in mha.state_dict().items()] == [
        ("in_proj_weight", (24, 8)), ("out_proj.weight", (8, 8))]
    assert mha.in_proj_bias is None and mha.out_proj.bias is None
    assert "embed_dim=8, num_heads=2" in repr(mha) and "out_proj" in repr(mha)
