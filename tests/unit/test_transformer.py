"""Transformer layers: independent clones, the causal mask and its detection, activation and
input errors, dropout modes (numerics are in tests/parity/test_transformer_parity.py)."""

import numpy
import pytest

import disttrain as dt
import disttrain.nn as nn
from disttrain.nn import transformer


def _layer(**kw):
    return nn.TransformerEncoderLayer(8, 2, 16, **kw)


def test_encoder_clones_have_independent_parameters():
    layer = _layer()
    encoder = nn.TransformerEncoder(layer, num_layers=3)
    weights = [encoder.layers[i].self_attn.in_proj_weight for i in range(3)]
    assert len({id(w) for w in weights} | {id(layer.self_attn.in_proj_weight)}) == 4
    before = [w.detach().numpy().copy() for w in weights[1:]]
    weights[0].array[...] = 7.0
    for w, b in zip(weights[1:], before, strict=True):
        numpy.testing.assert_array_equal(w.detach().numpy(), b)
    assert len(list(encoder.parameters())) == 3 * len(list(layer.parameters()))
    assert "layers.2.self_attn.in_proj_weight" in encoder.state_dict()


def test_decoder_state_dict_names():
    decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16), 2, nn.LayerNorm(8))
    names = list(decoder.state_dict())
    assert names[0] == "layers.0.self_attn.in_proj_weight"
    assert "layers.1.multihead_attn.out_proj.weight" in names
    assert "layers.1.norm3.bias" in names and names[-1] == "norm.bias"


def test_generate_square_subsequent_mask():
    mask = nn.Transformer.generate_square_subsequent_mask(3).numpy()
    expected = numpy.array([[0, -numpy.inf, -numpy.inf], [0, 0, -numpy.inf], [0, 0, 0]])
    numpy.testing.assert_array_equal(mask, expected)
    assert nn.Transformer.generate_square_subsequent_mask(2, dtype=dt.float64).dtype == dt.float64


def test_causal_mask_detection():
    causal = nn.Transformer.generate_square_subsequent_mask(4)
    assert transformer._detect_is_causal_mask(causal, None, 4)
    assert not transformer._detect_is_causal_mask(causal, False, 4)
    assert not transformer._detect_is_causal_mask(causal, None, 5)
    assert not transformer._detect_is_causal_mask(dt.zeros(4, 4), None, 4)
    assert not transformer._detect_is_causal_mask(None, None, 4)


def test_encoder_passes_detected_causal_hint_to_layers(monkeypatch):
    encoder = nn.TransformerEncoder(_layer(dropout=0.0), num_layers=2)
    seen = []
    for layer in encoder.layers:
        forward = layer.forward
        monkeypatch.setattr(layer, "forward", lambda *a, f=forward, **k: (
            seen.append(k["is_causal"]), f(*a, **k))[1])
    encoder(dt.randn(4, 2, 8), mask=nn.Transformer.generate_square_subsequent_mask(4))
    encoder(dt.randn(4, 2, 8), mask=dt.zeros(4, 4))
    assert seen == [True, True, False, False]


def test_unknown_activation_names_it():
    with pytest.raises(RuntimeError, match="activation should be relu/gelu, not tanh"):
        _layer(activation="tanh")


def test_transformer_input_errors():
    model = nn.Transformer(8, 2, 1, 1, 16)
    with pytest.raises(RuntimeError, match=r"batch number .* src \(5, 3, 8\), tgt \(4, 2, 8\)"):
        model(dt.randn(5, 3, 8), dt.randn(4, 2, 8))
    with pytest.raises(RuntimeError, match=r"d_model 8: src \(5, 3, 6\)"):
        model(dt.randn(5, 3, 6), dt.randn(4, 3, 6))


def test_transformer_weight_matrices_are_xavier_uniform():
    model = nn.Transformer(16, 2, 1, 1, 32)
    w = model.encoder.layers[0].linear1.weight.detach().numpy()  # (32, 16)
    bound = (6 / (16 + 32)) ** 0.5
    assert numpy.abs(w).max() <= bound and numpy.abs(w).max() > 0.8 * bound


def test_dropout_only_in_training():
    layer = _layer(dropout=0.5)
    x = dt.randn(4, 2, 8)
    layer.eval()
    numpy.testing.assert_array_equal(layer(x).detach().numpy(), layer(x).detach().numpy())
    layer.train()
    assert not numpy.allclose(layer(x).detach().numpy(), layer(x).detach().numpy())


def test_unbatched_input_and_backward():
    layer = _layer(dropout=0.0, batch_first=True)
    x = dt.randn(5, 8, requires_grad=True)
    out = layer(x, src_mask=nn.Transformer.generate_square_subsequent_mask(5), is_causal=True)
    assert out.shape == (5, 8)
    out.sum().backward()
    assert x.grad.shape == (5, 8)
