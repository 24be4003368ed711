"""F.scaled_dot_product_attention and nn.MultiheadAttention against torch, one line per case:
forward, input gradients and (for the module) every parameter gradient, with torch's weights
loaded into disttrain through its state_dict unchanged."""

from __future__ import annotations

import numpy
import pytest

torch = pytest.importorskip("torch")

from helpers import assert_grads, compare_outputs_and_backward  # noqa: E402

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
BOOL_445 = _rng.random((4, 4, 5)) > 0.3
BOOL_445[..., 0] = False


def _t(lib, a):
    return torch.tensor(a) if lib is torch else dt.tensor(a)


def sdpa(name, q, k, v, mask=None, **kwargs):
    return pytest.param((q, k, v), mask, kwargs, id=name)


SDPA = [
    sdpa("plain", (2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 6)),
    sdpa("3d", (3, 4, 8), (3, 5, 8), (3, 5, 8)),
    sdpa("bool_mask", (2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 8), BOOL_45),
    sdpa("bool_mask_full", (2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 8), BOOL_2345),
    sdpa("float_mask", (2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 8), FLOAT_45),
    sdpa("causal", (2, 3, 4, 8), (2, 3, 4, 8), (2, 3, 4, 8), is_causal=True),
    sdpa("causal_rect", (2, 4, 8), (2, 6, 8), (2, 6, 8), is_causal=True),
    sdpa("scale", (2, 3, 4, 8), (2, 3, 5, 8), (2, 3, 5, 8), scale=0.3),
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
    mha("attn_mask_bool", (4, 2, 8), (5, 2, 8), attn_mask=~BOOL_45),
    mha("attn_mask_float", (4, 2, 8), (5, 2, 8), attn_mask=FLOAT_45),
    mha("attn_mask_3d", (4, 2, 8), (5, 2, 8), attn_mask=BOOL_445),
    mha("causal", (4, 2, 8), attn_mask=CAUSAL_44, is_causal=True),
    mha("padding_bool", (4, 2, 8), (5, 2, 8), key_padding_mask=PAD_25),
    mha("padding_float", (4, 2, 8), (5, 2, 8), key_padding_mask=FLOAT_PAD_25),
    mha("padding_and_mask", (2, 4, 8), (2, 5, 8), {"batch_first": True},
        key_padding_mask=PAD_25, attn_mask=~BOOL_45),
    mha("no_weights", (4, 2, 8), (5, 2, 8), need_weights=False),
    mha("per_head_weights", (4, 2, 8), (5, 2, 8), average_attn_weights=False),
    mha("unbatched_per_head", (4, 8), (5, 8), key_padding_mask=PAD_25[0],
        average_attn_weights=False),
]


def _mha_inputs(lib, query, key):
    rng = numpy.random.default_rng(5)
    q = _t(lib, rng.standard_normal(query).astype(numpy.float32)).requires_grad_()
    if key is None:
        return [q], (q, q, q)
    k, v = (_t(lib, rng.standard_normal(key).astype(numpy.float32)).requires_grad_()
            for _ in range(2))
    return [q, k, v], (q, k, v)


@pytest.mark.parametrize("query,key,module,kwargs", MHA)
def test_multihead_attention_parity(query, key, module, kwargs):
    theirs = torch.nn.MultiheadAttention(8, 2, **module)
    ours = dt.nn.MultiheadAttention(8, 2, **module)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    assert list(ours.state_dict()) == list(theirs.state_dict())
    leaves, args = _mha_inputs(dt, query, key)
    torch_leaves, torch_args = _mha_inputs(torch, query, key)
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
