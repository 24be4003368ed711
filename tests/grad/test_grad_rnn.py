"""Numerical gradient check (float64, central differences) of the fused recurrence primitives
in disttrain/ops/rnn.py (every input: projected inputs, initial states, W_hh, b_hh; forward and
reverse time; no bias), then the recurrent modules once per kind through their input and
initial states (their weight gradients are the primitives' plus nn.Linear's).

A case is `case(name, fn, *input_shapes)` as in test_grad_ops.py.
"""

from __future__ import annotations

import numpy
import pytest
from gradcheck import check_backward, check_directional, make_inputs

import disttrain as dt
import disttrain.nn as nn
from disttrain.ops.rnn import GRULayer, LSTMLayer, RNNLayer

T, B, H = 4, 2, 3
LENGTHS = numpy.array([4, 2])  # packed sequences: the second ends after 2 steps


def case(name, fn, *shapes):
    return pytest.param(fn, shapes, id=name)


def _module(cls, *args, **kwargs):
    """A float64 module with fixed weights, built once per case."""
    dt.manual_seed(0)
    return cls(*args, dtype="float64", **kwargs)


def _flat(*tensors) -> dt.Tensor:
    return dt.cat([t.reshape(-1) for t in tensors])


RNN2 = _module(nn.RNN, 2, H, 2, bidirectional=True)
LSTM2 = _module(nn.LSTM, 2, H, 2, bidirectional=True, batch_first=True)
GRU2 = _module(nn.GRU, 2, H, 2, bidirectional=True)
RNN_CELL = _module(nn.RNNCell, 2, H, nonlinearity="relu")
LSTM_CELL = _module(nn.LSTMCell, 2, H)
GRU_CELL = _module(nn.GRUCell, 2, H)

PRIMITIVES = [
    case("rnn_layer_tanh", lambda x, h, w, b: RNNLayer.apply(x, h, w, b),
         (T, B, H), (B, H), (H, H), (H,)),
    case("rnn_layer_relu_reverse",
         lambda x, h, w, b: RNNLayer.apply(x, h, w, b, nonlinearity="relu", reverse=True),
         (T, B, H), (B, H), (H, H), (H,)),
    case("rnn_layer_no_bias", lambda x, h, w: RNNLayer.apply(x, h, w), (T, B, H), (B, H), (H, H)),
    case("lstm_layer", lambda x, h, c, w, b: LSTMLayer.apply(x, h, c, w, b),
         (T, B, 4 * H), (B, H), (B, H), (4 * H, H), (4 * H,)),
    case("lstm_layer_reverse",
         lambda x, h, c, w, b: LSTMLayer.apply(x, h, c, w, b, reverse=True),
         (T, B, 4 * H), (B, H), (B, H), (4 * H, H), (4 * H,)),
    case("lstm_layer_no_bias", lambda x, h, c, w: LSTMLayer.apply(x, h, c, w),
         (T, B, 4 * H), (B, H), (B, H), (4 * H, H)),
    case("gru_layer", lambda x, h, w, b: GRULayer.apply(x, h, w, b),
         (T, B, 3 * H), (B, H), (3 * H, H), (3 * H,)),
    case("gru_layer_reverse", lambda x, h, w, b: GRULayer.apply(x, h, w, b, reverse=True),
         (T, B, 3 * H), (B, H), (3 * H, H), (3 * H,)),
    case("rnn_layer_lengths", lambda x, h, w: RNNLayer.apply(x, h, w, lengths=LENGTHS),
         (T, B, H), (B, H), (H, H)),
    case("lstm_layer_lengths_reverse",
         lambda x, h, c, w, b: LSTMLayer.apply(x, h, c, w, b, reverse=True, lengths=LENGTHS),
         (T, B, 4 * H), (B, H), (B, H), (4 * H, H), (4 * H,)),
    case("lstm_layer_lengths", lambda x, h, c, w: LSTMLayer.apply(x, h, c, w, lengths=LENGTHS),
         (T, B, 4 * H), (B, H), (B, H), (4 * H, H)),
    case("gru_layer_lengths", lambda x, h, w, b: GRULayer.apply(x, h, w, b, lengths=LENGTHS),
         (T, B, 3 * H), (B, H), (3 * H, H), (3 * H,)),
    case("gru_layer_no_bias", lambda x, h, w: GRULayer.apply(x, h, w),
         (T, B, 3 * H), (B, H), (3 * H, H)),
]

MODULES = [
    case("rnn_2layers_bidir", lambda x, h: _flat(*RNN2(x, h)), (T, B, 2), (4, B, H)),
    case("lstm_2layers_bidir_batch_first",
         lambda x, h, c: _flat(*(lambda o, s: (o, *s))(*LSTM2(x, (h, c)))),
         (B, T, 2), (4, B, H), (4, B, H)),
    case("gru_2layers_bidir", lambda x, h: _flat(*GRU2(x, h)), (T, B, 2), (4, B, H)),
    case("rnn_cell_relu", lambda x, h: RNN_CELL(x, h), (B, 2), (B, H)),
    case("lstm_cell", lambda x, h, c: _flat(*LSTM_CELL(x, (h, c))), (B, 2), (B, H), (B, H)),
    case("gru_cell", lambda x, h: GRU_CELL(x, h), (B, 2), (B, H)),
]


@pytest.mark.parametrize("fn, shapes", PRIMITIVES + MODULES)
def test_backward_rnn(fn, shapes, xp):
    check_backward(fn, make_inputs(shapes, "normal", xp))


@pytest.mark.parametrize("fn, shapes", PRIMITIVES)
def test_backward_rnn_directional(fn, shapes, xp):
    check_directional(fn, make_inputs(shapes, "normal", xp))
