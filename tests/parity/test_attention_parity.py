"""F.scaled_dot_product_attention and nn.MultiheadAttention against torch, one line per case:
forward, input gradients and (for the module) every parameter gradient, with torch's weights
loaded into disttrain through its state_dict unchanged."""

from __future__ import annotations

import numpy
import pytest

torch = pytest.importorskip("torch")

from helpers import assert_grads, compare_outputs_and_backward, helper_test_op  # noqa: E402

import disttrain as dt  # noqa: E402
import disttrain.nn.functional as F  # noqa: E402

_rng = numpy.random.default_rng(77)
BOOL_45 = _rng.random((4, 5)) > 0.3
BOOL_45[:, 0] = True  # NOTE: every query keeps one key: a fully masked row is NaN in torch
FLOAT_45 = _rng.standard_normal((4, 5)).astype(numpy.float32)
BOOL_2345 = _rng.random((2, 3, 4, 5)) > 0.3
BOOL_2345[..., 0] = True
PAD_25 = numpy.array([[False, False, False, True, True], [False] * 5])
FLOAT_PAD_25 = _rng.standard_normal((2, 5)).astype(numpy.float32)
CAUSAL_44 = numpy.triu(numpy.ones((4, 4), bool), 1)  # MultiheadAttention: True = masked out
DEAD_ROW_45 = BOOL_45.copy()
DEAD_ROW_45[2] = False  # query 2 may attend to no key: torch's SDPA gives it zeros
NEG_INF_ROW_45 = numpy.where(DEAD_ROW_45, FLOAT_45, -numpy.inf).astype(numpy.float32)
PAD_ALL_25 = numpy.array([[True] * 5, [False, False, True, False, False]])
BOOL_445 = _rng.random((4, 4, 5)) > 0.3
BOOL_445[..., 0] = False


def _t(lib, a):
    return torch.tensor(a) if lib is torch else dt.tensor(a)


def _lib(m):
    """The module of the free functions (dt.tril / torch.tril) for helper_test_op's namespace."""
    return dt if m.name == "disttrain" else torch


def op(name, fn, *shapes):
    return pytest.param(fn, shapes, id=name)


TENSOR_FUNCTIONS = [
    op("sin", lambda m, x: x.sin(), (3, 4)),
    op("cos", lambda m, x: _lib(m).cos(x), (3, 4)),
    op("tril", lambda m, x: x.tril(), (2, 3, 4)),
    op("tril_diagonal", lambda m, x: _lib(m).tril(x, diagonal=-1), (4, 3)),
    op("tril_diagonal_past_end", lambda m, x: x.tril(5), (3, 4)),
    op("triu", lambda m, x: _lib(m).triu(x), (3, 4)),
    op("triu_diagonal", lambda m, x: x.triu(diagonal=1), (2, 4, 4)),
    op("narrow", lambda m, x: x.narrow(1, 1, 2), (3, 4)),
    op("narrow_negative", lambda m, x: _lib(m).narrow(x, -1, -3, 2), (2, 3, 4)),
    op("narrow_empty", lambda m, x: x.narrow(0, 3, 0), (3, 4)),
    op("bmm", lambda m, a, b: a.bmm(b), (2, 3, 4), (2, 4, 5)),
    op("bmm_free", lambda m, a, b: _lib(m).bmm(a, b), (3, 1, 4), (3, 4, 2)),
    op("baddbmm", lambda m, c, a, b: c.baddbmm(a, b), (2, 3, 5), (2, 3, 4), (2, 4, 5)),
    op("baddbmm_scaled", lambda m, c, a, b: _lib(m).baddbmm(c, a, b, beta=0.5, alpha=-2.0),
       (2, 3, 5), (2, 3, 4), (2, 4, 5)),
    op("baddbmm_broadcast", lambda m, c, a, b: c.baddbmm(a, b, beta=2.0), (5,), (2, 3, 4),
       (2, 4, 5)),
    op("softmax_dim0", lambda m, x: x.softmax(0), (3, 4, 2)),
    op("softmax_middle_large", lambda m, x: (x * 30).softmax(1), (3, 4, 2)),
    op("masked_fill_broadcast", lambda m, x: x.masked_fill(m.const(BOOL_45[0]), -1.5),
       (3, 4, 5)),
    op("masked_fill_inf", lambda m, x: x.masked_fill(m.const(BOOL_45), float("-inf")).softmax(-1),
       (4, 5)),
]


@pytest.mark.parametrize("fn,shapes", TENSOR_FUNCTIONS)
def test_tensor_function_parity(fn, shapes):
    helper_test_op(shapes, fn)


@pytest.mark.parametrize("method", ["new_zeros", "new_ones"])
def test_new_tensor_parity(method):
    for args, kwargs in (((2, 3), {}), (((4,),), {}), (([2, 1],), {"dtype": "int64"})):
        theirs = getattr(torch.zeros(1, dtype=torch.float64), method)(
            *args, **{k: getattr(torch, v) for k, v in kwargs.items()})
        ours = getattr(dt.zeros(1, dtype=dt.float64), method)(*args, **kwargs)
        assert ours.shape == tuple(theirs.shape) and str(ours.dtype) == str(theirs.dtype)[6:]
        numpy.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def sdpa(name, q, k, v, mask=None, **kwargs):
    return pytest.param((q, k, v), mask, kwargs, id=name)


SDPA = [
    sdpa("plain", (2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 6)),
    sdpa("3d", (3, 4, 8), (3, 5, 8), (3, 5, 8)),
    sdpa("bool_mask", (2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 8), BOOL_45),
    sdpa("bool_mask_full", (2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 8), BOOL_2345),
    sdpa("float_mask", (2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 8), FLOAT_45),
    sdpa("bool_mask_dead_row", (2, 4, 8), (2, 5, 8), (2, 5, 8), DEAD_ROW_45),
    sdpa("float_mask_dead_row", (2, 4, 8), (2, 5, 8), (2, 5, 8), NEG_INF_ROW_45),
    sdpa("causal", (2, 3, 4, 8), (2, 3, 4, 8), (2, 3, 4, 8), is_causal=True),
    sdpa("causal_rect", (2, 4, 8), (2, 6, 8), (2, 6, 8), is_causal=True),
    sdpa("scale", (2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 8), scale=0.3),
    sdpa("gqa", (2, 6, 4, 8), (2, 2, 5, 8), (2, 2, 5, 4), enable_gqa=True),
    sdpa("gqa_causal_mask", (6, 4, 8), (3, 4, 8), (3, 4, 8), enable_gqa=True, is_causal=True),
    sdpa("gqa_same_heads", (2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 8), BOOL_45, enable_gqa=True),
]


@pytest.mark.parametrize("shapes,mask,kwargs", SDPA)
def test_sdpa_parity(shapes, mask, kwargs):
    arrays = [_rng.standard_normal(s).astype(numpy.float32) for s in shapes]
    ours = [dt.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = F.scaled_dot_product_attention(
        *ours, attn_mask=None if mask is None else dt.tensor(mask), **kwargs)
    torch_out = torch.nn.functional.scaled_dot_product_attention(
        *theirs, attn_mask=None if mask is None else torch.tensor(mask), **kwargs)
    compare_outputs_and_backward(out, torch_out)
    assert_grads(dict(enumerate(ours)), dict(enumerate(theirs)))


def mha(name, query, key=None, module=None, **kwargs):
    return pytest.param(query, key, module or {}, kwargs, id=name)


MHA = [
    mha("self", (4, 2, 8)),
    mha("cross", (4, 2, 8), (5, 2, 8)),
    mha("batch_first", (2, 4, 8), (2, 5, 8), {"batch_first": True}),
    mha("no_bias", (4, 2, 8), (5, 2, 8), {"bias": False}),
    mha("unbatched", (4, 8), (5, 8)),
    mha("unbatched_batch_first_3d_mask", (4, 8), (5, 8), {"batch_first": True},
        attn_mask=BOOL_445[:2]),
    mha("attn_mask_bool", (4, 2, 8), (5, 2, 8), attn_mask=~BOOL_45),
    mha("attn_mask_float", (4, 2, 8), (5, 2, 8), attn_mask=FLOAT_45),
    mha("attn_mask_3d", (4, 2, 8), (5, 2, 8), attn_mask=BOOL_445),
    mha("causal", (4, 2, 8), attn_mask=CAUSAL_44, is_causal=True),
    mha("padding_bool", (4, 2, 8), (5, 2, 8), key_padding_mask=PAD_25),
    mha("padding_float", (4, 2, 8), (5, 2, 8), key_padding_mask=FLOAT_PAD_25),
    mha("padding_and_mask", (2, 4, 8), (2, 5, 8), {"batch_first": True},
        key_padding_mask=PAD_25, attn_mask=~BOOL_45),
    mha("no_weights", (4, 2, 8), (5, 2, 8), need_weights=False),
    mha("no_weights_all_padded", (4, 2, 8), (5, 2, 8), need_weights=False,
        key_padding_mask=PAD_ALL_25),
    mha("per_head_weights", (4, 2, 8), (5, 2, 8), average_attn_weights=False),
    mha("kdim_vdim", (4, 2, 8), (5, 2, 8), {"kdim": 6, "vdim": 3}, attn_mask=~BOOL_45),
    mha("kdim_vdim_batch_first", (2, 4, 8), (2, 5, 8), {"kdim": 6, "batch_first": True},
        key_padding_mask=PAD_25),
    mha("add_bias_kv", (4, 2, 8), (5, 2, 8), {"add_bias_kv": True}),
    mha("add_bias_kv_masks", (2, 4, 8), (2, 5, 8), {"add_bias_kv": True, "batch_first": True},
        attn_mask=FLOAT_45, key_padding_mask=FLOAT_PAD_25),
    mha("add_zero_attn", (4, 2, 8), (5, 2, 8), {"add_zero_attn": True},
        key_padding_mask=PAD_25, average_attn_weights=False),
    mha("add_zero_attn_bias_kv_3d_mask", (4, 2, 8), (5, 2, 8),
        {"add_zero_attn": True, "add_bias_kv": True}, attn_mask=BOOL_445),
    mha("all_options_unbatched", (4, 8), (5, 8),
        {"add_zero_attn": True, "add_bias_kv": True, "kdim": 3, "vdim": 5},
        key_padding_mask=PAD_25[0], attn_mask=~BOOL_45),
    mha("unbatched_per_head", (4, 8), (5, 8), key_padding_mask=PAD_25[0],
        average_attn_weights=False),
]


def _mha_inputs(lib, query, key, module):
    rng = numpy.random.default_rng(5)
    q = _t(lib, rng.standard_normal(query).astype(numpy.float32)).requires_grad_()
    if key is None:
        return [q], (q, q, q)
    dims = (module.get("kdim", query[-1]), module.get("vdim", query[-1]))
    k, v = (_t(lib, rng.standard_normal((*key[:-1], d)).astype(numpy.float32)).requires_grad_()
            for d in dims)
    return [q, k, v], (q, k, v)


@pytest.mark.parametrize("query,key,module,kwargs", MHA)
def test_multihead_attention_parity(query, key, module, kwargs):
    theirs = torch.nn.MultiheadAttention(8, 2, **module)
    ours = dt.nn.MultiheadAttention(8, 2, **module)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    assert list(ours.state_dict()) == list(theirs.state_dict())
    leaves, args = _mha_inputs(dt, query, key, module)
    torch_leaves, torch_args = _mha_inputs(torch, query, key, module)
    out = ours(*args, **{k: _t(dt, v) if isinstance(v, numpy.ndarray) else v
                         for k, v in kwargs.items()})
    torch_out = theirs(*torch_args, **{k: _t(torch, v) if isinstance(v, numpy.ndarray) else v
                                       for k, v in kwargs.items()})
    if not kwargs.get("need_weights", True):
        assert out[1] is None and torch_out[1] is None
        out, torch_out = out[0], torch_out[0]
    compare_outputs_and_backward(out, torch_out)
    assert_grads(dict(enumerate(leaves)), dict(enumerate(torch_leaves)))
    assert_grads(dict(ours.named_parameters()), dict(theirs.named_parameters()))


def test_multihead_attention_init_statistics():
    mha = dt.nn.MultiheadAttention(64, 4)
    w = mha.in_proj_weight.detach().numpy()
    bound = numpy.sqrt(6.0 / (64 + 3 * 64))  # xavier_uniform_ on the (3E, E) matrix, as torch
    assert numpy.abs(w).max() <= bound and numpy.abs(w).max() > 0.9 * bound
    assert not mha.in_proj_bias.detach().numpy().any()
    assert not mha.out_proj.bias.detach().numpy().any()
