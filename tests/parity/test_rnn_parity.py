"""nn.RNN / LSTM / GRU and their cells against torch.nn, one line per case: torch's state_dict
loads unchanged (names, shapes, gate order), then forward outputs and final states, the input
and initial-state gradients and every parameter gradient agree (float32 tolerances). The loss
weighs every output with fixed random weights so that no gradient is a plain sum."""

from __future__ import annotations

import numpy
import pytest

torch = pytest.importorskip("torch")

from helpers import FORWARD_TOL, GRAD_TOL, assert_same  # noqa: E402

import disttrain as dt  # noqa: E402
import disttrain.nn as nn  # noqa: E402


def case(name, module, kwargs, input_shape, state_shapes=()):
    return pytest.param(module, kwargs, input_shape, state_shapes, id=name)


T, B, I, H = 5, 3, 4, 6
CASES = [
    case("rnn", "RNN", dict(), (T, B, I)),
    case("rnn_relu", "RNN", dict(nonlinearity="relu"), (T, B, I)),
    case("rnn_2layers_bidir", "RNN", dict(num_layers=2, bidirectional=True), (T, B, I)),
    case("rnn_h0", "RNN", dict(num_layers=2), (T, B, I), [(2, B, H)]),
    case("rnn_unbatched", "RNN", dict(), (T, I), [(1, H)]),
    case("lstm", "LSTM", dict(), (T, B, I)),
    case("lstm_2layers", "LSTM", dict(num_layers=2), (T, B, I)),
    case("lstm_bidir", "LSTM", dict(bidirectional=True), (T, B, I)),
    case("lstm_2layers_bidir_h0", "LSTM", dict(num_layers=2, bidirectional=True), (T, B, I),
         [(4, B, H), (4, B, H)]),
    case("lstm_batch_first", "LSTM", dict(batch_first=True), (B, T, I)),
    case("lstm_no_bias", "LSTM", dict(bias=False, num_layers=2), (T, B, I)),
    case("lstm_h0", "LSTM", dict(), (T, B, I), [(1, B, H), (1, B, H)]),
    case("lstm_unbatched", "LSTM", dict(), (T, I)),
    case("gru", "GRU", dict(), (T, B, I)),
    case("gru_2layers", "GRU", dict(num_layers=2), (T, B, I)),
    case("gru_bidir_batch_first", "GRU", dict(bidirectional=True, batch_first=True), (B, T, I)),
    case("gru_no_bias", "GRU", dict(bias=False), (T, B, I)),
    case("gru_h0", "GRU", dict(num_layers=2, bidirectional=True), (T, B, I), [(4, B, H)]),
    case("rnn_cell", "RNNCell", dict(), (B, I), [(B, H)]),
    case("rnn_cell_relu_no_h", "RNNCell", dict(nonlinearity="relu"), (B, I)),
    case("rnn_cell_no_bias", "RNNCell", dict(bias=False), (B, I), [(B, H)]),
    case("lstm_cell", "LSTMCell", dict(), (B, I), [(B, H), (B, H)]),
    case("lstm_cell_no_h", "LSTMCell", dict(), (B, I)),
    case("lstm_cell_unbatched", "LSTMCell", dict(bias=False), (I,), [(H,), (H,)]),
    case("gru_cell", "GRUCell", dict(), (B, I), [(B, H)]),
    case("gru_cell_no_bias_unbatched", "GRUCell", dict(bias=False), (I,), [(H,)]),
]


def _flatten(value) -> list:
    return [t for v in value for t in _flatten(v)] if isinstance(value, tuple) else [value]


def _run(lib, module, arrays, n_states: int, to_tensor):
    tensors = [to_tensor(a) for a in arrays]
    x, states = tensors[0], tensors[1:]
    hx = None if not states else (tuple(states) if n_states == 2 else states[0])
    outputs = _flatten(module(x, hx))
    rng = numpy.random.default_rng(7)
    loss = sum((o * to_tensor(rng.standard_normal(o.shape).astype(numpy.float32))).sum()
               for o in outputs)
    loss.backward()
    return outputs, tensors


@pytest.mark.parametrize("name, kwargs, input_shape, state_shapes", CASES)
def test_rnn_parity(name, kwargs, input_shape, state_shapes):
    torch.manual_seed(0)
    theirs = getattr(torch.nn, name)(I, H, **kwargs)
    ours = getattr(nn, name)(I, H, **kwargs)
    sd = theirs.state_dict()
    assert list(ours.state_dict()) == list(sd)
    ours.load_state_dict({k: v.numpy() for k, v in sd.items()})
    rng = numpy.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(numpy.float32)
              for s in (input_shape, *state_shapes)]
    n_states = 2 if "LSTM" in name else 1
    out_d, in_d = _run(dt, ours, arrays, n_states,
                       lambda a: dt.tensor(a, requires_grad=True))
    out_t, in_t = _run(torch, theirs, arrays, n_states,
                       lambda a: torch.tensor(a, requires_grad=True))
    assert len(out_d) == len(out_t)
    for i, (o, t) in enumerate(zip(out_d, out_t)):
        assert_same(o, t, f"{name} output {i}", FORWARD_TOL)
    for i, (o, t) in enumerate(zip(in_d, in_t)):
        assert_same(o.grad, t.grad, f"{name} grad of input {i}", GRAD_TOL)
    params = dict(theirs.named_parameters())
    for key, p in ours.named_parameters():
        assert_same(p.grad, params[key].grad, f"{name} grad of {key}", GRAD_TOL)


LENGTHS = [3, 5, 1]
PACKED = [
    case("rnn_packed", "RNN", dict(), (T, B, I)),
    case("lstm_packed_2layers_bidir_h0", "LSTM", dict(num_layers=2, bidirectional=True),
         (T, B, I), [(4, B, H), (4, B, H)]),
    case("gru_packed_bidir", "GRU", dict(bidirectional=True), (T, B, I)),
    case("gru_packed_batch_first_h0", "GRU", dict(batch_first=True), (B, T, I), [(1, B, H)]),
]


def _run_packed(lib, module, arrays, n_states, batch_first, to_tensor):
    """Packs the padded input (unsorted lengths) and weighs the packed output and states."""
    tensors = [to_tensor(a) for a in arrays]
    pack = lib.nn.utils.rnn.pack_padded_sequence
    packed = pack(tensors[0], LENGTHS, batch_first=batch_first, enforce_sorted=False)
    states = tensors[1:]
    hx = None if not states else (tuple(states) if n_states == 2 else states[0])
    out, finals = module(packed, hx)
    outputs = [out.data, *_flatten(finals)]
    rng = numpy.random.default_rng(3)
    loss = sum((o * to_tensor(rng.standard_normal(o.shape).astype(numpy.float32))).sum()
               for o in outputs)
    loss.backward()
    return outputs, tensors


@pytest.mark.parametrize("name, kwargs, input_shape, state_shapes", PACKED)
def test_rnn_packed_parity(name, kwargs, input_shape, state_shapes):
    torch.manual_seed(0)
    theirs = getattr(torch.nn, name)(I, H, **kwargs)
    ours = getattr(nn, name)(I, H, **kwargs)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    rng = numpy.random.default_rng(1)
    arrays = [rng.standard_normal(s).astype(numpy.float32)
              for s in (input_shape, *state_shapes)]
    n_states, batch_first = (2 if name == "LSTM" else 1), kwargs.get("batch_first", False)
    out_d, in_d = _run_packed(dt, ours, arrays, n_states, batch_first,
                              lambda a: dt.tensor(a, requires_grad=True))
    out_t, in_t = _run_packed(torch, theirs, arrays, n_states, batch_first,
                              lambda a: torch.tensor(a, requires_grad=True))
    for i, (o, t) in enumerate(zip(out_d, out_t, strict=True)):
        assert_same(o, t, f"{name} packed output {i}", FORWARD_TOL)
    for i, (o, t) in enumerate(zip(in_d, in_t, strict=True)):
        assert_same(o.grad, t.grad, f"{name} packed grad of input {i}", GRAD_TOL)
    params = dict(theirs.named_parameters())
    for key, p in ours.named_parameters():
        assert_same(p.grad, params[key].grad, f"{name} packed grad of {key}", GRAD_TOL)


def _utils_case(lib, batch_first, enforce_sorted, to_tensor):
    x = to_tensor(numpy.random.default_rng(2).standard_normal((4, 3, 2)).astype(numpy.float32))
    lengths = [4, 2, 1] if enforce_sorted else [2, 4, 1]
    padded_in = x.transpose(0, 1) if batch_first else x
    packed = lib.nn.utils.rnn.pack_padded_sequence(padded_in, lengths, batch_first,
                                                   enforce_sorted)
    padded, out_lengths = lib.nn.utils.rnn.pad_packed_sequence(
        packed, batch_first=batch_first, padding_value=-1.5, total_length=6)
    seqs = lib.nn.utils.rnn.pad_sequence([x[:, 0], x[:2, 1]], batch_first, padding_value=2.0)
    (padded.sum() * 2 + (seqs * seqs).sum()).backward()
    return [packed.data, packed.batch_sizes, padded, out_lengths, seqs, x.grad]


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_pack_pad_utils_parity(batch_first, enforce_sorted):
    ours = _utils_case(dt, batch_first, enforce_sorted, lambda a: dt.tensor(a, requires_grad=True))
    theirs = _utils_case(torch, batch_first, enforce_sorted,
                         lambda a: torch.tensor(a, requires_grad=True))
    for i, (o, t) in enumerate(zip(ours, theirs, strict=True)):
        assert_same(o, t, f"utils output {i}", FORWARD_TOL)
