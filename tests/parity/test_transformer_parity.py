"""Transformer layers, stacks and nn.Transformer against torch.nn, one line per case:
state_dict layout, forward, input gradients and every parameter gradient (dropout=0, torch
loads disttrain's initial state); masks are built by each library (the causal one with its own
generate_square_subsequent_mask).
"""

from __future__ import annotations

import numpy
import pytest

torch = pytest.importorskip("torch")

from helpers import (  # noqa: E402
    DT,
    TORCH,
    assert_grads,
    compare_outputs_and_backward,
    make_inputs,
    state_layout,
)

import disttrain as dt  # noqa: E402

S, T, N, E = 5, 4, 3, 8  # source length, target length, batch, d_model
PAD_S = numpy.array([[False] * S, [False] * 3 + [True] * 2, [False] * 4 + [True]])
PAD_T = numpy.array([[False] * T, [False] * 2 + [True] * 2, [False] * 3 + [True]])
# NOTE: float twins of the padding masks, for cases that also pass a float attention mask
# (torch warns when the two mask types differ).
PAD_S_FLOAT, PAD_T_FLOAT = (numpy.where(p, -numpy.inf, 0.0) for p in (PAD_S, PAD_T))
TOL = dict(atol=1e-5, rtol=1e-3)
NESTED_WARNING = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")


def causal(size):
    return lambda m: m.nn.Transformer.generate_square_subsequent_mask(size)


def const(array):
    return lambda m: m.const(array)


def encoder_layer(**kw):
    return lambda nn: nn.TransformerEncoderLayer(E, 2, 16, dropout=0.0, **kw)


def decoder_layer(**kw):
    return lambda nn: nn.TransformerDecoderLayer(E, 2, 16, dropout=0.0, **kw)


def case(name, make, *shapes, marks=(), **masks):
    return pytest.param(make, shapes, masks, id=name, marks=marks)


SRC, SRC_BF, TGT, TGT_BF = (S, N, E), (N, S, E), (T, N, E), (N, T, E)
CASES = [
    case("enc", encoder_layer(), SRC),
    case("enc_norm_first", encoder_layer(norm_first=True), SRC),
    case("enc_gelu", encoder_layer(activation="gelu"), SRC),
    case("enc_callable_act", lambda nn: nn.TransformerEncoderLayer(
        E, 2, 16, dropout=0.0, activation=nn.GELU()), SRC),
    case("enc_no_bias", encoder_layer(bias=False), SRC),
    case("enc_eps", encoder_layer(layer_norm_eps=1e-3), SRC),
    case("enc_batch_first", encoder_layer(batch_first=True), SRC_BF),
    case("enc_causal", encoder_layer(), SRC, src_mask=causal(S)),
    case("enc_causal_hint", encoder_layer(norm_first=True), SRC, src_mask=causal(S),
         is_causal=lambda m: True),
    case("enc_key_padding", encoder_layer(), SRC, src_key_padding_mask=const(PAD_S)),
    case("enc_bf_causal_padding_gelu_nf", encoder_layer(
        batch_first=True, norm_first=True, activation="gelu"), SRC_BF, src_mask=causal(S),
         src_key_padding_mask=const(PAD_S_FLOAT)),
    case("dec", decoder_layer(), TGT, SRC),
    case("dec_norm_first", decoder_layer(norm_first=True), TGT, SRC),
    case("dec_gelu", decoder_layer(activation="gelu"), TGT, SRC),
    case("dec_batch_first", decoder_layer(batch_first=True), TGT_BF, SRC_BF),
    case("dec_causal", decoder_layer(), TGT, SRC, tgt_mask=causal(T)),
    case("dec_masks_padding", decoder_layer(norm_first=True), TGT, SRC, tgt_mask=causal(T),
         tgt_key_padding_mask=const(PAD_T_FLOAT), memory_key_padding_mask=const(PAD_S)),
    case("dec_memory_mask", decoder_layer(batch_first=True), TGT_BF, SRC_BF,
         memory_mask=const(numpy.triu(numpy.full((T, S), -1e9), 2))),
    case("encoder_stack", lambda nn: nn.TransformerEncoder(
        nn.TransformerEncoderLayer(E, 2, 16, dropout=0.0), 2, enable_nested_tensor=False),
         SRC, mask=causal(S), src_key_padding_mask=const(PAD_S_FLOAT)),
    case("encoder_stack_norm", lambda nn: nn.TransformerEncoder(
        nn.TransformerEncoderLayer(E, 2, 16, dropout=0.0, batch_first=True, norm_first=True),
        2, norm=nn.LayerNorm(E)), SRC_BF, marks=NESTED_WARNING),
    case("decoder_stack", lambda nn: nn.TransformerDecoder(
        nn.TransformerDecoderLayer(E, 2, 16, dropout=0.0), 2, norm=nn.LayerNorm(E)),
         TGT, SRC, tgt_mask=causal(T), memory_key_padding_mask=const(PAD_S)),
    case("transformer", lambda nn: nn.Transformer(E, 2, 2, 2, 16, dropout=0.0), SRC, TGT,
         tgt_mask=causal(T), src_key_padding_mask=const(PAD_S),
         memory_key_padding_mask=const(PAD_S), marks=NESTED_WARNING),
    case("transformer_bf_nf_gelu", lambda nn: nn.Transformer(
        E, 2, 1, 2, 16, dropout=0.0, activation="gelu", batch_first=True, norm_first=True),
         SRC_BF, TGT_BF, src_mask=causal(S), tgt_mask=causal(T),
         tgt_key_padding_mask=const(PAD_T_FLOAT), marks=NESTED_WARNING),
]


@pytest.mark.parametrize("make,shapes,masks", CASES)
def test_transformer_parity(make, shapes, masks):
    ours, theirs = make(dt.nn), make(torch.nn)
    assert state_layout(ours) == state_layout(theirs)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    arrays = make_inputs(shapes, seed=7)
    xs = [dt.tensor(a, requires_grad=True) for a in arrays]
    txs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = ours(*xs, **{k: f(DT()) for k, f in masks.items()})
    torch_out = theirs(*txs, **{k: f(TORCH) for k, f in masks.items()})
    compare_outputs_and_backward(out, torch_out, forward_tol=TOL)
    assert_grads({f"input {i}": x for i, x in enumerate(xs)},
                 {f"input {i}": x for i, x in enumerate(txs)})
    assert_grads(dict(ours.named_parameters()), dict(theirs.named_parameters()))


def test_generate_square_subsequent_mask_parity():
    ours = dt.nn.Transformer.generate_square_subsequent_mask(6)
    theirs = torch.nn.Transformer.generate_square_subsequent_mask(6)
    assert ours.dtype == dt.float32
    numpy.testing.assert_array_equal(ours.numpy(), theirs.numpy())
