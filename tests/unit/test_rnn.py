"""nn.RNN / LSTM / GRU and cells beyond parity: long sequences (backward through time is one
graph node per layer, no recursion), dropout between layers, parameter layout and init, errors
for bad input, and nn.utils.rnn.pad_sequence."""

from __future__ import annotations

import math

import numpy
import pytest

import disttrain as dt
import disttrain.nn as nn
from disttrain.nn.utils.rnn import (
    pack_padded_sequence,
    pack_sequence,
    pad_packed_sequence,
    pad_sequence,
)


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
def test_thousand_steps_backward(cls):
    model = cls(3, 4, num_layers=2)
    x = dt.randn(1000, 2, 3, requires_grad=True)
    out = model(x)[0]
    out[-1].sum().backward()
    assert out.shape == (1000, 2, 4)
    assert numpy.isfinite(x.grad.numpy()).all()
    assert numpy.abs(x.grad.numpy()[-1]).sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and numpy.isfinite(p.grad.numpy()).all(), name


def test_graph_is_few_nodes_per_layer():
    """Input projection, the fused recurrence and the slices: no node per time step."""
    out, _ = nn.LSTM(3, 4)(dt.randn(50, 2, 3))
    names, stack, seen = [], [out.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen or not isinstance(node, dt.Function):
            continue
        seen.add(id(node))
        names.append(node.name)
        stack.extend(node.parents)
    assert sorted(names) == ["IndexBackward", "LSTMLayerBackward", "LinearBackward",
                            "ReshapeBackward"]


def test_parameter_names_shapes_and_init():
    model = nn.GRU(5, 4, num_layers=2, bidirectional=True)
    shapes = {name: p.shape for name, p in model.named_parameters()}
    assert list(shapes)[:8] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                "weight_ih_l0_reverse", "weight_hh_l0_reverse",
                                "bias_ih_l0_reverse", "bias_hh_l0_reverse"]
    assert shapes["weight_ih_l0"] == (12, 5) and shapes["weight_ih_l1"] == (12, 8)
    assert shapes["weight_hh_l1_reverse"] == (12, 4) and len(shapes) == 16
    bound = 1 / math.sqrt(4)
    for p in model.parameters():
        assert numpy.abs(p.detach().numpy()).max() <= bound
    assert numpy.abs(model.weight_ih_l0.detach().numpy()).max() > bound / 2  # not all near zero
    assert [n for n, _ in nn.LSTMCell(3, 2, bias=False).named_parameters()] == \
        ["weight_ih", "weight_hh"]


def test_dropout_between_layers():
    dt.manual_seed(0)
    model = nn.LSTM(3, 4, num_layers=2, dropout=0.5)
    x = dt.randn(6, 2, 3)
    dt.manual_seed(1)
    first = model(x)[0].detach().numpy()
    dt.manual_seed(1)
    again = model(x)[0].detach().numpy()
    numpy.testing.assert_array_equal(first, again)  # seeded like F.dropout
    model.eval()
    evaluated = model(x)[0].detach().numpy()
    assert not numpy.allclose(first, evaluated)
    plain = nn.LSTM(3, 4, num_layers=2)
    plain.load_state_dict(model.state_dict())
    numpy.testing.assert_array_equal(plain(x)[0].detach().numpy(), evaluated)
    assert first.shape == (6, 2, 4)


def test_single_layer_dropout_is_inactive():
    with pytest.warns(UserWarning, match=r"GRU: dropout option adds dropout after all but last "
                      r".*got dropout=0.9 and num_layers=1"):
        model = nn.GRU(3, 4, dropout=0.9)
    x = dt.randn(5, 2, 3)
    training = model(x)[0].detach().numpy()
    numpy.testing.assert_array_equal(training, model.eval()(x)[0].detach().numpy())


@pytest.mark.parametrize("make, call, message", [
    (lambda: nn.LSTM(3, 4), lambda m: m(dt.randn(5, 2, 7)),
     r"LSTM: expected input of shape \(T, B, 3\).*got \(5, 2, 7\)"),
    (lambda: nn.GRU(3, 4, 2), lambda m: m(dt.randn(5, 2, 3), dt.zeros(1, 2, 4)),
     r"GRU: expected h_0 of shape \(2, 2, 4\), got \(1, 2, 4\)"),
    (lambda: nn.LSTM(3, 4), lambda m: m(dt.randn(5, 2, 3), (dt.zeros(1, 2, 4),)),
     r"LSTM: hx must be a tuple \(h_0, c_0\), got 1 tensors"),
    (lambda: nn.LSTM(3, 4), lambda m: m(dt.randn(5, 2, 3), (dt.zeros(1, 2, 4),
                                                          dt.zeros(1, 3, 4))),
     r"LSTM: expected c_0 of shape \(1, 2, 4\), got \(1, 3, 4\)"),
    (lambda: nn.GRUCell(3, 4), lambda m: m(dt.randn(2, 3), dt.zeros(3, 4)),
     r"GRUCell: expected hidden state of shape \(2, 4\), got \(3, 4\)"),
    (lambda: nn.RNNCell(3, 4), lambda m: m(dt.randn(2, 5)),
     r"RNNCell: expected input of shape \(B, 3\) or \(3,\), got \(2, 5\)"),
])
def test_input_errors(make, call, message):
    with pytest.raises(ValueError, match=message):
        call(make())


@pytest.mark.parametrize("make, message", [
    (lambda: nn.RNN(3, 4, nonlinearity="gelu"), r"RNN: unknown nonlinearity 'gelu'"),
    (lambda: nn.RNNCell(3, 4, nonlinearity="sigmoid"), r"RNNCell: unknown nonlinearity"),
    (lambda: nn.LSTM(3, 0), r"LSTM: hidden_size must be a positive int, got 0"),
    (lambda: nn.GRU(3, 4, num_layers=1.5), r"GRU: num_layers must be a positive int, got 1.5"),
    (lambda: nn.LSTM(3, 4, dropout=1.5), r"LSTM: dropout must be a number in \[0, 1\], got 1.5"),
    (lambda: nn.LSTMCell(-1, 4), r"LSTMCell: input_size must be a positive int, got -1"),
])
def test_constructor_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_repr():
    assert repr(nn.LSTM(3, 4, 2, batch_first=True)) == "LSTM(3, 4, num_layers=2, batch_first=True)"
    assert repr(nn.RNN(3, 4, nonlinearity="relu")) == "RNN(3, 4, nonlinearity='relu')"
    assert repr(nn.GRUCell(3, 4, bias=False)) == "GRUCell(3, 4, bias=False)"


def test_float64_module_keeps_dtype():
    out, h = nn.GRU(3, 4, dtype="float64")(dt.randn(5, 2, 3, dtype=dt.float64))
    assert out.dtype == numpy.float64 and h.dtype == numpy.float64


def test_pad_sequence_values_and_grads():
    a, b = dt.randn(3, 2, requires_grad=True), dt.randn(1, 2, requires_grad=True)
    padded = pad_sequence([a, b], batch_first=True, padding_value=-1.0)
    assert padded.shape == (2, 3, 2)
    numpy.testing.assert_array_equal(padded.detach().numpy()[1, 1:], -numpy.ones((2, 2)))
    numpy.testing.assert_array_equal(padded.detach().numpy()[0], a.detach().numpy())
    (padded * 2).sum().backward()
    numpy.testing.assert_array_equal(b.grad.numpy(), numpy.full((1, 2), 2.0))
    left = pad_sequence([a, b], padding_side="left")
    assert left.shape == (3, 2, 2)
    numpy.testing.assert_array_equal(left.detach().numpy()[2, 1], b.detach().numpy()[0])


@pytest.mark.parametrize("args, message", [
    (([],), r"pad_sequence: expected a non-empty list"),
    (([dt.zeros(2, 3), dt.zeros(2, 4)],), r"sequence 1 has shape \(2, 4\)"),
    (([dt.zeros(2, 3)], False, 0.0, "middle"), r"padding_side must be 'right' or 'left'"),
])
def test_pad_sequence_errors(args, message):
    with pytest.raises(ValueError, match=message):
        pad_sequence(*args)


@pytest.mark.parametrize("call, message", [
    (lambda: pack_padded_sequence(dt.zeros(4, 2, 3), [2, 4]),
     r"lengths must be sorted in decreasing order when enforce_sorted=True, got \[2, 4\]"),
    (lambda: pack_padded_sequence(dt.zeros(4, 2, 3), [5, 1]),
     r"expected 2 lengths in \[1, 4\] for input of shape \(4, 2, 3\), got \[5, 1\]"),
    (lambda: pack_padded_sequence(dt.zeros(4, 2, 3), [1.5, 1.0]),
     r"lengths must be a 1-D list or tensor of ints, got float64"),
    (lambda: pad_packed_sequence(pack_sequence([dt.zeros(3, 2)]), total_length=2),
     r"total_length \(2\) must be at least the longest sequence \(3\)"),
    (lambda: nn.GRU(3, 4)(pack_sequence([dt.zeros(3, 2)])),
     r"GRU: expected PackedSequence data of shape \(N, 3\), got \(3, 2\)"),
])
def test_packed_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_packed_lstm_matches_each_sequence_alone():
    """A packed batch gives every sequence the output it gets when run alone."""
    model = nn.LSTM(2, 3, bidirectional=True)
    seqs = [dt.randn(4, 2), dt.randn(2, 2), dt.randn(3, 2)]
    out, (h_n, c_n) = model(pack_sequence(seqs, enforce_sorted=False))
    padded, lengths = pad_packed_sequence(out, batch_first=True)
    assert lengths.tolist() == [4, 2, 3]
    for b, seq in enumerate(seqs):
        alone, (h_alone, c_alone) = model(seq)
        n = seq.shape[0]
        numpy.testing.assert_allclose(padded.detach().numpy()[b, :n], alone.detach().numpy(),
                                      rtol=1e-5, atol=1e-6)
        assert (padded.detach().numpy()[b, n:] == 0).all()
        numpy.testing.assert_allclose(h_n.detach().numpy()[:, b], h_alone.detach().numpy(),
                                      rtol=1e-5, atol=1e-6)
        numpy.testing.assert_allclose(c_n.detach().numpy()[:, b], c_alone.detach().numpy(),
                                      rtol=1e-5, atol=1e-6)
